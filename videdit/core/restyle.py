"""Restyle engine: structure- and content-guided repainting of every frame.

The Gen-1 / Text2Video-Zero / ControlVideo family, zero-shot on image models:
each frame's structure (depth, edges) drives one or more ControlNets (Zhang et
al. 2023), the text prompt and optionally a reference image (IP-Adapter, Ye et al.
2023) give the content, and cross-frame attention (``attention.py``) makes the
frames agree. Frames are processed window by window (``chunks.py``) so memory
does not grow with the clip.

Expensive preparation (prompt and reference-image embeddings, extractor models)
happens once in :func:`prepare`; per window, structure is extracted and the
denoising loop (``sampling.py``) runs over a model closure built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import InputError, UsageError
from ..options import DiffusionOptions
from .attention import FrameContext, cross_frame_attention
from .chunks import OverlapBlender, windows
from .components import Components
from .conditioning import (PromptEmbeds, control_tensor, encode_prompt, frames_to_tensor, tensor_to_frames,
                           vae_decode, vae_encode)
from .sampling import classifier_free, frame_noise, fresh_scheduler, make_timesteps, noised_start, sample, \
    step_kwargs

__all__ = ["Prepared", "prepare", "controlled_unet", "denoise_window", "denoise_clip", "restyle_windows",
           "encode_reference"]


@dataclass
class Prepared:
    """Everything computed once per run: embeddings, extractors, control specs in use."""

    opts: DiffusionOptions
    embeds: PromptEmbeds
    image_embeds: list[torch.Tensor] | None  # per IP-Adapter: (branches, 1, D) [uncond, cond]
    controls: list[tuple[object, object, float, float, float]]  # (extractor, controlnet, scale, start, end)


def _load_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: reference image not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable image ({type(err).__name__})") from None


@torch.no_grad()
def encode_reference(comps: Components, image: np.ndarray | str, branches: int) -> list[torch.Tensor]:
    """IP-Adapter image embeddings, diffusers' layout: one ``(branches, 1, D)`` tensor per adapter.

    ``image``: ``(H, W, 3) uint8`` or a path. The unconditional branch gets zeros (or
    the embedding of a black image for hidden-state adapters), as diffusers does.
    """
    from diffusers.models.embeddings import ImageProjection

    if isinstance(image, str):
        image = _load_image(image)
    pixels = comps.feature_extractor(image, return_tensors="pt").pixel_values.to(comps.device,
                                                                                  comps.image_encoder.dtype)
    out = []
    for proj in comps.unet.encoder_hid_proj.image_projection_layers:
        if isinstance(proj, ImageProjection):
            cond = comps.image_encoder(pixels).image_embeds
            uncond = torch.zeros_like(cond)
        else:
            cond = comps.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
            uncond = comps.image_encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        parts = ([uncond] if branches == 2 else []) + [cond]
        out.append(torch.cat(parts)[:, None])
    return out


def prepare(comps: Components, opts: DiffusionOptions) -> Prepared:
    """Encode prompt / reference image and build the structure extractors (once per run)."""
    from ..structure import get_extractor

    recipe = comps.recipe
    if not opts.prompt.strip() and not opts.has_ref_image:
        raise UsageError("give a --prompt or a --ref-image (both empty)")
    if opts.has_ref_image and recipe.ip_adapter is None:
        from .recipes import list_recipes

        names = [r.name for r in list_recipes() if r.ip_adapter is not None and r.kind == recipe.kind]
        raise UsageError(f"pipeline '{recipe.name}' has no IP-Adapter, so --ref-image cannot be used; "
                         f"choose one with [ip_adapter]: {', '.join(names) or 'none installed'}")
    specs = list(comps.controlnets)
    if opts.structure:
        by_signal = {s.signal: (s, m) for s, m in specs}
        unknown = [s for s in opts.structure if s not in by_signal]
        if unknown:
            raise UsageError(f"--structure {','.join(unknown)}: pipeline '{recipe.name}' has ControlNets for: "
                             f"{', '.join(by_signal) or 'none'}")
        specs = [by_signal[s] for s in opts.structure]
    scales = list(opts.structure_scale or [])
    if scales and len(scales) not in (1, len(specs)):
        valid = "one value" if len(specs) == 1 else f"one value, or one per ControlNet ({len(specs)})"
        raise UsageError(f"--structure-scale: give {valid} for {', '.join(s.signal for s, _ in specs)} "
                         f"(got {len(scales)})")
    controls = []
    for i, (spec, model) in enumerate(specs):
        scale = scales[0] if len(scales) == 1 else scales[i] if scales else spec.scale
        controls.append((get_extractor(spec.signal, **spec.params), model, float(scale), spec.start, spec.end))
    embeds = encode_prompt(comps.tokenizer, comps.text_encoder, opts.prompt, opts.negative_prompt,
                           guidance=opts.guidance, device=comps.device, dtype=comps.dtype)
    image_embeds = None
    if recipe.ip_adapter is not None:
        if opts.has_ref_image:
            image_embeds = encode_reference(comps, opts.ref_image, embeds.branches)
        else:  # adapter loaded, no image given: zero embeddings (the adapter's own "no image")
            shapes = encode_reference(comps, np.zeros((224, 224, 3), np.uint8), embeds.branches)
            image_embeds = [torch.zeros_like(e) for e in shapes]
    return Prepared(opts, embeds, image_embeds, controls)


def controlled_unet(comps: Components, prep: Prepared, conds: list[torch.Tensor], frames: int,
                    ctx: FrameContext, n_steps: int) -> Callable:
    """``eps = model(x, t, i)`` for a batch of ``branches * frames`` latents ``(B, C, h, w)``.

    ``conds``: per ControlNet, control images ``(frames, 3, H, W)`` in [0, 1].
    ControlNet residuals are summed over nets (as diffusers' MultiControlNetModel);
    a net outside its ``[start, end]`` share of the steps is skipped.
    """
    embeds = prep.embeds
    branches = embeds.branches

    def model(x, t, i):
        ctx.frames = frames
        b = x.shape[0] // frames
        text = embeds.batch(frames) if b == branches else embeds.cond.expand(frames, -1, -1)
        down = mid = None
        for (_, net, scale, start, end), cond in zip(prep.controls, conds):
            keep = 1.0 - float(i / n_steps < start or (i + 1) / n_steps > end)
            if scale * keep == 0:
                continue
            d, m = net(x, t, encoder_hidden_states=text, controlnet_cond=cond.repeat(b, 1, 1, 1),
                       conditioning_scale=scale * keep, return_dict=False)
            down = d if down is None else [a + c for a, c in zip(down, d)]
            mid = m if mid is None else mid + m
        added = None
        if prep.image_embeds is not None:
            added = {"image_embeds": [e[-b:].repeat_interleave(frames, dim=0) for e in prep.image_embeds]}
        return comps.unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid, added_cond_kwargs=added, return_dict=False)[0]

    return model


@torch.no_grad()
def denoise_window(comps: Components, prep: Prepared, frames: np.ndarray, indices: list[int],
                   ctx: FrameContext, *, clean: torch.Tensor | None = None,
                   on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Final latents ``(n, C, h, w)`` of one window.

    ``frames``: ``(n, H, W, 3) uint8`` source frames; ``indices``: their frame numbers
    (noise is drawn per frame number); ``clean``: their VAE latents if already known.
    """
    opts = prep.opts
    dev, dtype = comps.device, comps.dtype
    scheduler = fresh_scheduler(comps.scheduler)
    timesteps = make_timesteps(scheduler, opts.steps, opts.strength, device=dev)
    if len(timesteps) == 0:
        raise UsageError(f"--strength {opts.strength} with --steps {opts.steps} runs no denoising step")
    from ..structure import coarsen

    conds = [control_tensor(coarsen(ex(frames), opts.structure_detail), dev, dtype) for ex, *_ in prep.controls]
    h, w = frames.shape[1] // comps.vae_factor, frames.shape[2] // comps.vae_factor
    noise = frame_noise(opts.seed, indices, (comps.unet.config.in_channels, h, w), share=opts.initial_noise_share,
                        dtype=dtype, device=dev)
    full = opts.strength >= 1.0
    if clean is None and not full:
        clean = vae_encode(comps.vae, frames_to_tensor(frames, dev, dtype), chunk=opts.decode_chunk_size)
    x = noised_start(scheduler, clean, noise, timesteps, full)
    model = classifier_free(controlled_unet(comps, prep, conds, len(frames), ctx, len(timesteps)), opts.guidance)
    g = torch.Generator("cpu").manual_seed(opts.seed + 1 + indices[0])
    return sample(model, scheduler, x, timesteps, extra=step_kwargs(scheduler, g, opts.eta), on_step=on_step)


def restyle_windows(comps: Components, prep: Prepared, chunks: Iterable[np.ndarray], *, total: int | None = None,
                    on_step: Callable[[int, torch.Tensor], None] | None = None) -> Iterator[np.ndarray]:
    """Restyle a stream of ``(n, H, W, 3) uint8`` chunks; yields ``(m, H, W, 3) uint8`` output chunks in order.

    ``H, W`` must be multiples of the model's size multiple. Frames are grouped in
    windows of ``opts.chunk`` overlapping by ``opts.overlap``; with cross-frame
    attention, every window after the first starts with the anchor frame.
    ``on_step(i, latents)`` is called after every denoising step of every window.
    """
    opts = prep.opts
    ctx = FrameContext()
    blender = OverlapBlender(opts.overlap)
    anchor: tuple[np.ndarray, torch.Tensor | None] | None = None
    nets = [comps.unet, *[net for _, net, *_ in prep.controls]]
    with cross_frame_attention(nets, opts.consistency, ctx, window=opts.window):
        for win in windows(chunks, opts.chunk, opts.overlap):
            frames, idx = win.frames, list(range(win.start, win.stop))
            use_anchor = anchor is not None and opts.consistency != "none"
            if use_anchor:
                frames = np.concatenate([anchor[0], frames])
                idx = [0] + idx
            latents = denoise_window(comps, prep, frames, idx, ctx, on_step=on_step)
            if use_anchor:
                latents = latents[1:]
            if anchor is None:
                anchor = (win.frames[:1], None)
            final = blender.push(win, latents)
            if len(final):
                images = vae_decode(comps.vae, final, chunk=opts.decode_chunk_size)
                yield tensor_to_frames(images)


@torch.no_grad()
def denoise_clip(comps: Components, opts: DiffusionOptions, frames: np.ndarray) -> torch.Tensor:
    """All of ``frames`` ``(n, H, W, 3) uint8`` as one window, cross-frame attention installed.

    Returns final latents ``(n, C, h, w)``; the building block that equivalence tests
    and benchmarks compare with diffusers' pipelines.
    """
    prep = prepare(comps, opts)
    ctx = FrameContext()
    nets = [comps.unet, *[net for _, net, *_ in prep.controls]]
    with cross_frame_attention(nets, opts.consistency, ctx, window=opts.window):
        return denoise_window(comps, prep, frames, list(range(len(frames))), ctx)
