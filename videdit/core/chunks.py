"""Long videos in bounded memory: overlapping windows, anchor frames, latent blending.

A clip is cut into windows of ``size`` frames that overlap by ``overlap`` frames.
Each window after the first re-attaches the *anchor* (the first window's frame 0,
with its own noise and structure) at index 0, so cross-frame attention in every
window looks at the same reference frame (Text2Video-Zero's chunking; Khachatryan
et al. 2023), and noise depends only on the frame number, so overlapping frames
start identically. The overlapping frames' final latents are blended with a
linear ramp (as FreeNoise / AnimateDiff context windows blend), which removes
the jump at window borders. Only one window is in memory at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

__all__ = ["Window", "windows", "ramp", "OverlapBlender"]


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
