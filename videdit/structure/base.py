"""The :class:`Extractor` base class and the option checks every signal shares.

A structure signal turns RGB frames into a ControlNet conditioning image: an
``(n, H, W, 3) uint8`` array, white structure on black (edges), or near = bright
(depth). Videos arrive chunk by chunk, so an extractor is built once (options
checked then, where the error can name the option), loads its model once (lazily,
on the first chunk or in :meth:`Extractor.prepare`) and is then called per chunk.

Nothing heavy is imported here: ``import videdit.structure`` must stay cheap so
that ``videdit --help`` and the weight-free signals do not pay for torch.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np

from ..errors import UsageError

__all__ = [
    "Extractor",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_frames",
    "to_rgb",
]


def check_int(signal: str, name: str, value, lo: int, hi: int) -> int:
    """Return ``value`` as an int in ``lo..hi`` or raise :class:`UsageError` naming it.

    Whole floats (``100.0``, as a config file may give) are accepted; bools are not,
    because ``True`` silently meaning 1 hides a mistyped option.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and not float(value).is_integer():
        ok = False
    if not ok or not lo <= int(value) <= hi:
        raise UsageError(f"{signal}: option '{name}' must be a whole number in {lo}..{hi} (got {value!r})")
    return int(value)


def check_float(signal: str, name: str, value, lo: float, hi: float) -> float:
    """Return ``value`` as a float in ``lo..hi`` (inclusive) or raise :class:`UsageError`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not np.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise UsageError(f"{signal}: option '{name}' must be a number in {lo:g}..{hi:g} (got {value!r})")
    return float(value)


def check_bool(signal: str, name: str, value) -> bool:
    """Return ``value`` if it is a bool (numpy bools too) or raise :class:`UsageError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{signal}: option '{name}' must be true or false (got {value!r})")
    return bool(value)


def check_choice(signal: str, name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices`` or raise :class:`UsageError` listing them."""
    if value not in choices:
        raise UsageError(f"{signal}: option '{name}' must be one of: {', '.join(choices)} (got {value!r})")
    return value


def check_frames(frames, what: str = "frames") -> np.ndarray:
    """Check a chunk is ``(n, H, W, 3) uint8`` and return it as an ndarray.

    A wrong array is a caller's mistake (not a bad video), hence :class:`UsageError`;
    the message gives the shape and dtype actually received.
    """
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise UsageError(
            f"{what} must be an (n, H, W, 3) uint8 RGB array; got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def to_rgb(maps: np.ndarray) -> np.ndarray:
    """Replicate single-channel maps to the 3-channel control-image format.

    ``maps``: ``(n, H, W)`` or ``(n, H, W, 1)``, any real dtype already scaled to
    0..255. Returns ``(n, H, W, 3) uint8`` (clipped and rounded), C-contiguous
    because ControlNet pipelines and video encoders both want that.
    """
    if maps.ndim == 4:
        maps = maps[..., 0]
    if maps.dtype != np.uint8:
        maps = np.clip(np.rint(maps), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(maps[..., None], 3, axis=-1))


class Extractor:
    """Base of every structure signal.

    Subclasses set ``name``/``description`` (via :func:`videdit.structure.register`),
    check their options in ``__init__`` (keyword-only arguments, each raising
    :class:`UsageError` naming the option and its valid range), and implement
    :meth:`_extract`. Signals that need a model also override :meth:`_load` (called
    once) and :meth:`unavailable_reason` (cheap: looks for files, loads nothing).

    ``batch_size`` (1..1024) is how many frames go through :meth:`_extract` at once,
    which bounds peak memory for model-based signals; a chunk of ``n`` frames is cut
    into ``ceil(n / batch_size)`` batches.
    """

    name: ClassVar[str] = "?"
    description: ClassVar[str] = ""
    # True when the map is one channel replicated to RGB: writers may then send a
    # third of the bytes to the encoder.
    gray: ClassVar[bool] = True

    def __init__(self, *, batch_size: int = 8):
        self.batch_size = check_int(self.name, "batch_size", batch_size, 1, 1024)
        self._prepared = False

    # -- availability and setup -------------------------------------------------

    @classmethod
    def unavailable_reason(cls, **params) -> str | None:
        """Why this signal cannot run here (one line), or ``None`` if it can.

        Must be cheap: it may look for files and importable packages, but never load
        weights or touch the network (it runs for every entry of ``list_signals``).
        """
        return None

    def prepare(self) -> "Extractor":
        """Do the expensive setup (model load) now instead of on the first chunk.

        Idempotent: the model is loaded once and reused for every later chunk.
        Raises :class:`~videdit.errors.MissingWeightsError` if weights are absent.
        """
        if not self._prepared:
            self._load()
            self._prepared = True
        return self

    def _load(self) -> None:
        """Load models; weight-free signals have nothing to do."""

    # -- extraction --------------------------------------------------------------

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Extract the control image of each frame.

        ``frames``: ``(n, H, W, 3) uint8`` RGB, values 0..255. Returns
        ``(n, H, W, 3) uint8`` with the same ``n, H, W``: the control image, values
        0..255 (single-channel signals replicated to 3 channels). ``n == 0`` gives an
        empty ``(0, H, W, 3)`` array without loading anything.
        """
        frames = check_frames(frames)
        n, h, w, _ = frames.shape
        if n == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        self.prepare()
        out = np.empty((n, h, w, 3), np.uint8)
        for i in range(0, n, self.batch_size):
            batch = frames[i : i + self.batch_size]
            res = self._extract(batch)
            if res.shape != batch.shape or res.dtype != np.uint8:
                # A signal returning the wrong shape would corrupt the video silently
                # downstream; fail here where the culprit is known.
                raise AssertionError(f"{self.name}: produced {res.shape} {res.dtype} for input {batch.shape}")
            out[i : i + len(batch)] = res
        return out

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        """Process one batch: ``(b, H, W, 3) uint8`` RGB -> ``(b, H, W, 3) uint8``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
