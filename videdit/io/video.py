"""The in-memory ``Video`` type."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
        f = np.asarray(self.frames)
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"Video.frames must be (F, H, W, 3) uint8, got {f.shape} {f.dtype}")
        if not self.fps or self.fps <= 0:
            raise ValueError(f"Video.fps must be > 0, got {self.fps}")
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
