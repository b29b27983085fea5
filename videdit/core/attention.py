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

The temporal attention of a UNet3D is changed only where its recipe asks: frame
positions (:class:`TemporalPositionProcessor`, ``[model] temporal_positions``).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CONSISTENCY_MODES", "FrameContext", "CrossFrameAttnProcessor", "install_cross_frame",
           "spatial_self_attention_names", "cross_frame_attention", "TEMPORAL_POSITIONS", "frame_positions",
           "TemporalPositionProcessor", "temporal_attention_names", "install_temporal_positions"]

CONSISTENCY_MODES = ("none", "first", "sparse-causal", "full", "window")
#: Frame-position schemes a recipe's ``[model] temporal_positions`` may name.
TEMPORAL_POSITIONS = ("sinusoidal",)


@dataclass
class FrameContext:
    """Per-call facts the processors need; shared by all processors of one install.

    ``frames``: frames per guidance branch in the current UNet call (the engine
    sets it before each call; the batch is ``branches * frames``).
    """

    frames: int = 1


@functools.lru_cache(maxsize=64)  # called by every attn1 layer at every step: build once
def _sources(mode: str, frames: int, window: int, device) -> tuple[tuple[slice, torch.Tensor, torch.Tensor | None], ...]:
    """Key/value source frames for every query frame, in groups of equal source count.

    Returns a tuple ``((frame_slice, index, keep), ...)`` (cached: do not modify): ``index`` ``(len(slice), L) int64`` names
    the source frames of each query frame in the slice; ``keep`` ``(len(slice), L) bool``
    or None (False marks padding, only for ``window`` near the ends).
    """
    ar = torch.arange(frames, device=device)
    whole = slice(0, frames)
    if mode == "first":
        return ((whole, torch.zeros(frames, 1, dtype=torch.long, device=device), None),)
    if mode == "sparse-causal":
        # Frames 0 and 1 would see [0, 0]: a duplicated key set leaves attention
        # unchanged (Tune-A-Video's indexing), so they attend to frame 0 once and
        # skip half the work; the rest see [0, i - 1].
        head = min(frames, 2)
        groups = [(slice(0, head), torch.zeros(head, 1, dtype=torch.long, device=device), None)]
        if frames > 2:
            rest = ar[2:]
            groups.append((slice(2, frames), torch.stack([torch.zeros_like(rest), rest - 1], 1), None))
        return tuple(groups)
    if mode == "full":
        return ((whole, ar.expand(frames, frames).clone(), None),)
    if mode == "window":
        offs = torch.arange(-window, window + 1, device=device)
        idx = ar[:, None] + offs[None, :]
        keep = (idx >= 0) & (idx < frames) & (idx != 0)  # frame 0 comes first, once
        idx = torch.cat([torch.zeros(frames, 1, dtype=torch.long, device=device), idx.clamp(0, frames - 1)], 1)
        keep = torch.cat([torch.ones(frames, 1, dtype=torch.bool, device=device), keep], 1)
        return ((whole, idx, keep),)
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
        heads = attn.heads
        dim = key.shape[-1] // heads

        def split(t):  # (B*F, N, C) -> (branches, F, heads, N, dim)
            return t.view(branches, frames, tokens, heads, dim).transpose(2, 3)

        query, key, value = split(query), split(key), split(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = torch.empty_like(query)
        for frame_slice, index, keep in _sources(self.mode, frames, self.window, hidden_states.device):
            q = query[:, frame_slice]
            n, sources = index.shape

            def gather(t):  # (branches, F, heads, N, dim) -> (branches, n, heads, L*N, dim): each frame's set
                t = t[:, index].permute(0, 1, 3, 2, 4, 5)  # (branches, n, heads, L, N, dim)
                return t.reshape(branches, n, heads, sources * tokens, dim)

            k, v = gather(key), gather(value)
            mask = None
            if keep is not None:  # (branches*n, 1, 1, L*N), broadcast over heads and queries
                mask = keep[:, None, :, None].expand(n, 1, sources, tokens).reshape(n, 1, 1, sources * tokens)
                mask = mask.repeat(branches, 1, 1, 1)
            o = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), attn_mask=mask,
                                               dropout_p=0.0, is_causal=False)
            out[:, frame_slice] = o.view(branches, n, heads, tokens, dim)
        out = out.transpose(2, 3).reshape(batch, tokens, heads * dim).to(hidden_states.dtype)
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


def frame_positions(frames: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(frames, dim)`` sinusoidal encodings of frame indices 0..frames-1 (Vaswani et al. 2017), values
    in [-1, 1]: even channels ``sin(f / 10000^(2i/dim))``, odd channels the matching cosines, the layout of
    diffusers' ``SinusoidalPositionalEmbedding`` (AnimateDiff's motion modules, Guo et al. 2023)."""
    pos = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-torch.log(torch.tensor(1e4)) / dim))
    pe = torch.zeros(frames, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * rate)
    pe[:, 1::2] = torch.cos(pos * rate)[:, : dim // 2]
    return pe.to(dtype)


class TemporalPositionProcessor:
    """Temporal self-attention (over frames) that first adds each frame's absolute position encoding.

    UNet3D's temporal attention (ModelScope's design, as diffusers builds it) has no position
    information: it is exactly symmetric in time, and it cannot tell the first frame from the
    last, so the object's place in frame ``f`` cannot depend on ``f`` through it ("a red circle
    moving left" has to put the circle further left in later frames). AnimateDiff's motion modules
    (Guo et al. 2023) add sinusoidal frame encodings to the normalised input of their temporal
    attention; this processor does the same to the input of q, k and v, which is what diffusers'
    ``BasicTransformerBlock(positional_embeddings="sinusoidal")`` does (``tests/test_t2v.py`` checks
    the two agree), then runs diffusers' own attention (``inner``). It has no weights: a model
    trained with it is a plain UNet3D whose recipe says ``temporal_positions = "sinusoidal"``.

    Input ``(N, F, C)``: the temporal transformer's layout, one sequence of ``F`` frames per pixel.
    """

    def __init__(self, inner=None):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.inner = inner or AttnProcessor2_0()
        self._pe: dict = {}  # (frames, dim, device, dtype) -> encodings: every layer, every step asks again

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kw):
        if encoder_hidden_states is not None or hidden_states.ndim != 3:
            raise RuntimeError("TemporalPositionProcessor is for the temporal self-attention of UNet3D blocks only")
        _, frames, dim = hidden_states.shape
        key = (frames, dim, hidden_states.device, hidden_states.dtype)
        if key not in self._pe:
            self._pe[key] = frame_positions(frames, dim, device=hidden_states.device, dtype=hidden_states.dtype)
        return self.inner(attn, hidden_states + self._pe[key], None, attention_mask, temb)


def temporal_attention_names(model) -> list[str]:
    """Processor names of a UNet3D's temporal attention layers (the input transformer's and the blocks')."""
    return [name for name in model.attn_processors if "temp_attentions" in name or name.startswith("transformer_in")]


def install_temporal_positions(model, scheme: str = "sinusoidal") -> None:
    """Give every temporal attention layer of ``model`` frame positions (:class:`TemporalPositionProcessor`)."""
    if scheme not in TEMPORAL_POSITIONS:
        raise ValueError(f"unknown temporal_positions {scheme!r}; choose one of: {', '.join(TEMPORAL_POSITIONS)}")
    names = temporal_attention_names(model)
    if not names:
        raise ValueError("the model has no temporal attention layers (not a UNet3D?)")
    proc = TemporalPositionProcessor()
    model.set_attn_processor({**model.attn_processors, **{name: proc for name in names}})
