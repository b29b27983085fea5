"""Cross-frame attention processors: how zero-shot video editors keep frames consistent.

A frame's spatial *self*-attention normally looks only at its own tokens. Here
each frame's queries stay its own, but keys/values come from other frames of the
same chunk, so every frame paints with the same appearance:

- ``first``: frame 0 only (Text2Video-Zero, Khachatryan et al. 2023);
- ``sparse-causal``: frame 0 and the previous frame (Tune-A-Video, Wu et al. 2023;
  Pix2Video; Rerender-A-Video);
- ``full``: all frames of the chunk (ControlVideo, Zhang et al. 2023; FLATTEN);
- ``window``: frame 0 plus the ``window`` nearest frames on each side;
- ``none``: plain per-frame attention.

Processors are installed with ``set_attn_processor`` on spatial ``attn1`` modules
only: cross-attention to text (``attn2``), IP-Adapter processors and the temporal
attention of UNet3D models are left untouched. Frame 0 of a chunk is the anchor;
chunked long videos put the first chunk's anchor frame at index 0 of every chunk.

Tensor layout: the UNet batch is ``branches x frames`` in branch-major order
(``[uncond f0..fF-1, cond f0..fF-1]`` under classifier-free guidance), which is
the order both ``UNet2DConditionModel`` on stacked frames and
``UNet3DConditionModel`` (``(B, C, F, H, W) -> (B*F, C, H, W)``) produce.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CONSISTENCY_MODES", "FrameContext", "CrossFrameAttnProcessor", "install_cross_frame",
           "spatial_self_attention_names", "cross_frame_attention"]

CONSISTENCY_MODES = ("none", "first", "sparse-causal", "full", "window")


@dataclass
class FrameContext:
    """Per-call facts the processors need; shared by all processors of one install.

    ``frames``: frames per guidance branch in the current UNet call (the engine
    sets it before each call; the batch is ``branches * frames``).
    """

    frames: int = 1


def _sources(mode: str, frames: int, window: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Key/value source frames for every query frame.

    Returns ``index`` ``(frames, L) int64`` and an optional ``keep`` mask
    ``(frames, L) bool`` (False marks padding, only for ``window`` near the ends).
    """
    ar = torch.arange(frames, device=device)
    if mode == "first":
        return torch.zeros(frames, 1, dtype=torch.long, device=device), None
    if mode == "sparse-causal":
        # Frame 0 sees [0, 0]: an exact duplicate of the whole key set leaves
        # attention unchanged, so no mask is needed (Tune-A-Video's indexing).
        return torch.stack([torch.zeros_like(ar), (ar - 1).clamp(min=0)], 1), None
    if mode == "full":
        return ar.expand(frames, frames).clone(), None
    if mode == "window":
        offs = torch.arange(-window, window + 1, device=device)
        idx = ar[:, None] + offs[None, :]
        keep = (idx >= 0) & (idx < frames) & (idx != 0)  # frame 0 comes first, once
        idx = torch.cat([torch.zeros(frames, 1, dtype=torch.long, device=device), idx.clamp(0, frames - 1)], 1)
        keep = torch.cat([torch.ones(frames, 1, dtype=torch.bool, device=device), keep], 1)
        return idx, keep
    raise ValueError(f"unknown consistency mode {mode!r}")


class CrossFrameAttnProcessor:
    """SDPA self-attention whose keys/values come from other frames (see module doc).

    Batch/CFG-aware: the batch ``B = branches * ctx.frames`` is split per branch, so
    the unconditional branch attends to unconditional frames only.
    """

    def __init__(self, mode: str, ctx: FrameContext, window: int = 1):
        if mode not in CONSISTENCY_MODES or mode == "none":
            raise ValueError(f"mode must be one of {CONSISTENCY_MODES[1:]}, got {mode!r}")
        self.mode, self.ctx, self.window = mode, ctx, window

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is not None:
            raise RuntimeError("CrossFrameAttnProcessor is for self-attention (attn1) only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        four_d = hidden_states.ndim == 4
        if four_d:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape
        frames = self.ctx.frames
        if batch % frames:
            raise RuntimeError(f"batch {batch} is not a multiple of {frames} frames")
        branches = batch // frames

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        index, keep = _sources(self.mode, frames, self.window, hidden_states.device)
        sources = index.shape[1]

        def gather(t):  # (B*F, N, C) -> (B*F, L*N, C): each frame's key/value set
            t = t.view(branches, frames, tokens, -1)[:, index]  # (branches, F, L, N, C)
            return t.reshape(batch, sources * tokens, -1)

        key, value = gather(key), gather(value)
        mask = None
        if keep is not None:
            mask = keep[:, :, None].expand(frames, sources, tokens).reshape(frames, 1, 1, sources * tokens)
            mask = mask.repeat(branches, 1, 1, 1)
        heads, dim = attn.heads, key.shape[-1] // attn.heads
        query = query.view(batch, -1, heads, dim).transpose(1, 2)
        key = key.view(batch, -1, heads, dim).transpose(1, 2)
        value = value.view(batch, -1, heads, dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, heads * dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if four_d:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def spatial_self_attention_names(model) -> list[str]:
    """Processor names of spatial self-attention layers (``attn1`` outside temporal blocks)."""
    return [name for name in model.attn_processors
            if name.endswith("attn1.processor") and "temp_attentions" not in name
            and not name.startswith("transformer_in") and "motion_modules" not in name]


def install_cross_frame(model, mode: str, ctx: FrameContext, window: int = 1) -> dict:
    """Put ``mode`` processors on ``model``'s spatial self-attention; returns the old processors.

    ``mode="none"`` leaves the model as it is. Other processors (text
    cross-attention, IP-Adapter, temporal layers) are kept.
    """
    old = dict(model.attn_processors)
    if mode == "none":
        return old
    if mode not in CONSISTENCY_MODES:
        raise ValueError(f"unknown consistency mode {mode!r}; choose one of: {', '.join(CONSISTENCY_MODES)}")
    new = dict(old)
    proc = CrossFrameAttnProcessor(mode, ctx, window)
    for name in spatial_self_attention_names(model):
        new[name] = proc
    model.set_attn_processor(new)
    return old


@contextmanager
def cross_frame_attention(models, mode: str, ctx: FrameContext, window: int = 1):
    """Install cross-frame processors on each model for the duration of a ``with`` block."""
    olds = [(m, install_cross_frame(m, mode, ctx, window)) for m in models]
    try:
        yield ctx
    finally:
        for m, old in olds:
            m.set_attn_processor(old)
