"""Expensive preparation, done once per call: prompt embeddings, VAE encode/decode, control images.

Kept apart from the per-step work (``sampling.py``) so the denoising loop only
does UNet/ControlNet passes, as SAM separates its image encoder from its prompt
decoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PromptEmbeds", "encode_prompt", "vae_encode", "vae_decode", "frames_to_tensor",
           "tensor_to_frames", "control_tensor"]

log = logging.getLogger("videdit")


@dataclass
class PromptEmbeds:
    """``cond``/``uncond``: ``(1, tokens, dim)`` text-encoder hidden states; ``uncond`` None without CFG."""

    cond: torch.Tensor
    uncond: torch.Tensor | None

    def batch(self, frames: int) -> torch.Tensor:
        """``(branches * frames, tokens, dim)`` in branch-major order ``[uncond..., cond...]``."""
        parts = ([self.uncond] if self.uncond is not None else []) + [self.cond]
        return torch.cat([p.expand(frames, -1, -1) for p in parts])

    @property
    def branches(self) -> int:
        return 1 if self.uncond is None else 2


def _tokens(tokenizer, text: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    limit = tokenizer.model_max_length
    enc = tokenizer(text, padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
    words = tokenizer(text, add_special_tokens=False, verbose=False).input_ids
    if len(words) > limit - 2:  # CLIP reads only the first tokens (BOS/EOS take two): say what it never saw
        dropped = tokenizer.decode(words[limit - 2:]).strip()
        log.warning("the prompt has more than the %d tokens the text encoder reads; ignored: %r", limit - 2,
                    dropped if len(dropped) <= 80 else dropped[:77] + "...")
    return enc.input_ids.to(device), enc.attention_mask.to(device)


@torch.no_grad()
def encode_prompt(tokenizer, text_encoder, prompt: str, negative: str | None = None, *,
                  guidance: float = 7.5, device="cpu", dtype=None) -> PromptEmbeds:
    """CLIP text embeddings of ``prompt`` (and of ``negative``, "" by default, when ``guidance > 1``).

    Same tokenisation as diffusers' Stable Diffusion pipelines: padded to the
    tokenizer's max length, truncated beyond it, last hidden state.
    """
    use_mask = getattr(text_encoder.config, "use_attention_mask", False)
    dtype = dtype or text_encoder.dtype

    def embed(text):
        ids, mask = _tokens(tokenizer, text, device)
        return text_encoder(ids, attention_mask=mask if use_mask else None)[0].to(dtype)

    cond = embed(prompt)
    uncond = embed(negative or "") if guidance > 1.0 else None
    return PromptEmbeds(cond, uncond)


def frames_to_tensor(frames: np.ndarray, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """``(F, H, W, 3) uint8`` in [0, 255] -> ``(F, 3, H, W)`` float in [-1, 1] (the VAE's input range)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)
    return (x.to(dtype) / 127.5 - 1.0)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """``(F, 3, H, W)`` float in [-1, 1] -> ``(F, H, W, 3) uint8`` (rounded, as diffusers' ``numpy_to_pil``)."""
    x = (x.float() / 2 + 0.5).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def control_tensor(maps: np.ndarray, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """``(F, H, W, 3) uint8`` control images -> ``(F, 3, H, W)`` float in [0, 1] (ControlNet's input)."""
    x = torch.from_numpy(np.ascontiguousarray(maps)).to(device).permute(0, 3, 1, 2)
    return x.to(dtype) / 255.0


def _scale_shift(vae) -> tuple[float, float]:
    cfg = vae.config
    return float(getattr(cfg, "scaling_factor", 0.18215) or 0.18215), float(getattr(cfg, "shift_factor", 0.0) or 0.0)


@torch.no_grad()
def vae_encode(vae, images: torch.Tensor, *, chunk: int = 8, generator: torch.Generator | None = None,
               mode: str = "mean") -> torch.Tensor:
    """``(F, 3, H, W)`` in [-1, 1] -> latents ``(F, C, H/8, W/8)`` scaled for the UNet, ``chunk`` frames at a time.

    ``mode="mean"`` takes the posterior mean (deterministic, what an editor
    wants); ``"sample"`` draws from it with ``generator`` (diffusers' default).
    """
    scale, shift = _scale_shift(vae)
    out = []
    for part in images.split(chunk):
        enc = vae.encode(part.to(vae.dtype))
        if hasattr(enc, "latent_dist"):
            dist = enc.latent_dist
            lat = dist.sample(generator) if mode == "sample" else dist.mode()
        else:  # AutoencoderTiny returns latents directly
            lat = enc.latents
        out.append((lat - shift) * scale)
    return torch.cat(out)


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor, *, chunk: int = 8) -> torch.Tensor:
    """Latents ``(F, C, h, w)`` -> images ``(F, 3, 8h, 8w)`` float in about [-1, 1], ``chunk`` frames at a time."""
    scale, shift = _scale_shift(vae)
    out = [vae.decode(part.to(vae.dtype) / scale + shift).sample.float() for part in latents.split(chunk)]
    return torch.cat(out)
