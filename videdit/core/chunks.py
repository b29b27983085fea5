"""Long videos in bounded memory: overlapping windows, anchor frames, latent blending.

A clip is cut into windows of ``size`` frames that overlap by ``overlap`` frames.
Each window after the first re-attaches the *anchor* (the first window's frame 0,
with its own noise and structure) at index 0, so cross-frame attention in every
window looks at the same reference frame (Text2Video-Zero's chunking; Khachatryan
et al. 2023), and noise depends only on the frame number, so overlapping frames
start identically. The overlapping frames' final latents are blended with a
linear ramp (as FreeNoise / AnimateDiff context windows blend), which removes
the jump at window borders. Only one window is in memory at a time.

Video UNets (UNet3D) denoise their frames jointly, so they cannot blend finished
windows: :func:`co_denoise` instead runs the model on every window at every step
and averages the predictions where windows overlap (temporal co-denoising;
Wang et al. 2023, "Gen-L-Video"; the temporal form of MultiDiffusion, Bar-Tal et
al. 2023). Every model call sees at most ``size`` frames, the clip length the
model was trained on, whatever the length of the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

__all__ = ["Window", "windows", "spans", "window_count", "co_denoise", "rescheduled_frames", "fusion_weights",
           "ramp", "OverlapBlender"]


@dataclass
class Window:
    """``frames``: ``(n, H, W, 3) uint8`` source frames ``start .. start + n - 1``; ``new``: how many
    of them (at the end) were not in the previous window; ``last``: no window follows."""

    start: int
    frames: np.ndarray
    new: int
    last: bool = False

    @property
    def stop(self) -> int:
        return self.start + len(self.frames)


def windows(chunks: Iterable[np.ndarray], size: int, overlap: int) -> Iterator[Window]:
    """Regroup a stream of frame chunks into windows of ``size`` frames overlapping by ``overlap``."""
    if not 0 <= overlap < size:
        raise ValueError(f"overlap {overlap} must be in [0, size={size})")
    buf: list[np.ndarray] = []
    start, carried = 0, 0
    pending: Window | None = None
    for chunk in chunks:
        buf.extend(chunk)
        while len(buf) >= size:
            w = Window(start, np.stack(buf[:size]), size - carried)
            if pending is not None:
                yield pending
            pending = w
            buf = buf[size - overlap:]
            start += size - overlap
            carried = overlap
    if len(buf) > carried or pending is None and buf:
        if pending is not None:
            yield pending
        pending = Window(start, np.stack(buf), len(buf) - carried)
    if pending is not None:
        pending.last = True
        yield pending


def spans(frames: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the windows over ``frames`` frames: ``size`` frames each
    (all ``frames`` if fewer), starting every ``size - overlap`` frames; the last one ends
    at the last frame, so it overlaps its predecessor by ``overlap`` frames or more.

    As many windows as :func:`windows` cuts (there, the last window is the shorter one).
    """
    if not 0 <= overlap < size:
        raise ValueError(f"overlap {overlap} must be in [0, size={size})")
    if frames <= size:
        return [(0, frames)]
    starts = list(range(0, frames - size, size - overlap)) + [frames - size]
    return [(a, a + size) for a in starts]


def window_count(frames: int, size: int, overlap: int) -> int:
    """How many windows :func:`windows` (or :func:`spans`) cuts ``frames`` frames into."""
    return len(spans(frames, size, overlap))


def co_denoise(model_for: Callable[[int], Callable], frames: int, size: int, overlap: int) -> Callable:
    """Temporal co-denoising: ``eps = model(x, t, i)`` over ``x`` ``(frames, C, h, w)`` from window models.

    ``model_for(n)`` returns a model over ``n`` frames (``(n, C, h, w)`` in and out).
    With one window (``frames <= size``) it is ``model_for(frames)`` itself, so short
    clips run exactly as before. Otherwise every :func:`spans` window is predicted
    on its own and each frame's prediction is the weighted mean over the windows
    that hold it (Gen-L-Video averages them, the least-squares fit of MultiDiffusion;
    we weight each window's frames by :func:`fusion_weights`, a pyramid, so that
    the windows hand over gradually), so consecutive windows agree on their shared
    frames at every step and the clip has no seams.
    """
    plan = spans(frames, size, overlap)
    if len(plan) == 1:
        return model_for(frames)
    model = model_for(size)
    weight = fusion_weights(size)
    cover = torch.zeros(frames)
    for a, b in plan:
        cover[a:b] += weight

    def fused(x, t, i):
        if x.shape[0] != frames:
            raise RuntimeError(f"co_denoise: batch {x.shape[0]} is not the {frames} frames it was made for")
        out = torch.zeros_like(x)
        w = weight.to(out)[:, None, None, None]
        for a, b in plan:
            out[a:b] += w * model(x[a:b], t, i)
        return out / cover.to(out)[:, None, None, None]

    return fused


def rescheduled_frames(frames: int, size: int, overlap: int, seed: int) -> list[int]:
    """Noise rescheduling (Qiu et al. 2023, "FreeNoise"): which frame's initial noise each of ``frames``
    frames takes when co-denoised in windows of ``size``.

    The first ``size`` frames keep their own; after that, each block of ``size - overlap``
    frames takes the noise of the block ``size`` frames earlier, shuffled (seeded). Every
    window then starts from a reordering of the same noise, so the windows agree on
    what the clip shows instead of each drawing its own scene.
    """
    import random

    out = list(range(frames))
    if frames <= size:
        return out
    rng, stride = random.Random(seed), size - overlap
    for a in range(size, frames, stride):
        block = out[a - size: a - size + stride]
        rng.shuffle(block)
        out[a: a + stride] = block[: max(0, min(stride, frames - a))]
    return out[:frames]


def fusion_weights(size: int) -> torch.Tensor:
    """Weights ``(size,)`` of a window's frames in :func:`co_denoise`: a pyramid, 1 at both ends, highest mid-window.

    With equal weights a frame's prediction switches its set of windows abruptly
    at every window border, which shows as a jump between two frames: with
    videdit-mini-t2v (40 frames, windows of 16 overlapping by 8) the frame
    difference at the borders is 1.59x the clip's median with equal weights, 1.10x
    with this pyramid, and 0.93x at the same frames of one joint pass
    (``python -m videdit.mini.probe seams``).
    """
    j = torch.arange(size, dtype=torch.float32)
    return torch.minimum(j + 1, size - j)


def ramp(overlap: int) -> torch.Tensor:
    """Weights ``(overlap,)`` of the newer window over an overlap: 1/(o+1) .. o/(o+1)."""
    return torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)


class OverlapBlender:
    """Blends each window's final latents with the previous window's over their overlap.

    ``push(window, latents)`` takes ``(n, C, h, w)`` latents for the window's frames
    and returns the latents that are now final (in frame order); the last
    ``overlap`` frames of a non-final window are held back until the next window.
    """

    def __init__(self, overlap: int):
        self.overlap = overlap
        self.held: torch.Tensor | None = None

    def push(self, window: Window, latents: torch.Tensor) -> torch.Tensor:
        shared = len(window.frames) - window.new  # frames also in the previous window
        if self.held is not None and shared:
            w = ramp(shared).to(latents)[:, None, None, None]
            latents = latents.clone()
            latents[:shared] = (1 - w) * self.held[-shared:] + w * latents[:shared]
        keep = 0 if window.last else min(self.overlap, len(latents))
        self.held = latents[len(latents) - keep:] if keep else None
        return latents[: len(latents) - keep]
