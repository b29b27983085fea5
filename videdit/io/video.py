"""The in-memory ``Video`` type."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from .probe import VideoInfo

__all__ = ["Video"]


@dataclass
class Video:
    """Decoded frames plus the timing needed to write them back with their audio.

    ``frames``: ``(F, H, W, 3) uint8`` RGB in [0, 255].
    ``fps``: the rate the frames are meant to be shown at.
    ``source``: the file they came from (``None`` for generated video).
    ``start``: seconds into ``source`` where ``frames[0]`` is shown, so a writer
    can cut the source's audio to the same range.
    """

    frames: np.ndarray
    fps: float
    source: VideoInfo | None = None
    start: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # UsageError is a ValueError: callers that caught ValueError still do, and `except VideditError` works
        f = np.asarray(self.frames)
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise UsageError(f"Video.frames must be (F, H, W, 3) uint8, got {f.shape} {f.dtype}")
        if not len(f) or not f.shape[1] or not f.shape[2]:
            raise UsageError(f"Video.frames holds no frames (shape {f.shape})")
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps < math.inf:
            raise UsageError(f"Video.fps must be a finite number > 0, got {fps!r}")
        self.frames = f

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def duration(self) -> float:
        return len(self) / self.fps
