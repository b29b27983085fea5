"""Structure signals: turn video frames into ControlNet conditioning images.

A *structure signal* (canny, softedge, depth, lineart, pose, ...) keeps a video's
layout while discarding its appearance, so a diffusion model conditioned on it can
restyle the content without losing the shapes (ControlNet; Gen-1, Esser et al.
2023). Each signal is an :class:`Extractor` registered by name::

    from videdit.structure import extract_structure, get_extractor, list_signals

    maps = extract_structure(frames, "canny", low=50, high=150)   # (F,H,W,3) uint8
    for out in extract_structure(chunks, "depth", detail=3):      # streaming
        ...

Frames are ``(n, H, W, 3) uint8`` RGB chunks; videos are processed chunk by chunk
so memory stays bounded, and a model is loaded once and reused for all chunks.

Importing this package is cheap: torch, transformers and controlnet-aux are only
imported when a model-based signal first runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import UsageError
from .base import Extractor
from .coarsen import MAX_DETAIL, check_detail, coarsen
from .registry import SignalInfo, get_extractor, list_signals, register, signal_names

# Imported for their @register side effect; order does not matter (names are sorted).
from . import edges as _edges  # noqa: E402,F401  isort:skip
from . import depth as _depth  # noqa: E402,F401  isort:skip
from . import annotators as _annotators  # noqa: E402,F401  isort:skip

__all__ = [
    "Extractor",
    "SignalInfo",
    "register",
    "list_signals",
    "signal_names",
    "get_extractor",
    "extract_structure",
    "coarsen",
    "MAX_DETAIL",
]


def extract_structure(
    frames_or_chunks,
    signal: str | Extractor = "canny",
    detail: int = 0,
    batch_size: int = 8,
    **params,
):
    """Extract a structure signal from frames, optionally coarsened.

    ``frames_or_chunks``: either one ``(F, H, W, 3) uint8`` RGB array, or an
    iterable of such chunks (e.g. from ``videdit.io.iter_video``). ``signal``: a
    registered name (see :func:`list_signals`) or an already built
    :class:`Extractor` (then ``batch_size`` and ``params`` must not be given: the
    extractor has its options). ``detail``: 0..7, Gen-1's structure-fidelity level
    (see :func:`coarsen`; 0 = full detail). ``batch_size``: frames per model call.
    ``params``: the signal's options (e.g. ``low``/``high`` for canny, ``model`` for
    depth).

    Returns, for an array, the ``(F, H, W, 3) uint8`` control images (0..255); for
    an iterable, a generator yielding one processed ``(n, H, W, 3) uint8`` chunk per
    input chunk, lazily (one chunk in memory at a time). Options, the signal name
    and ``detail`` are checked here, before any frame is read, so a mistake fails
    fast with :class:`UsageError` even in streaming mode.
    """
    detail = check_detail(detail)
    if isinstance(signal, Extractor):
        if params or batch_size != 8:
            raise UsageError("extract_structure: give options to get_extractor(), not with an Extractor instance")
        extractor = signal
    else:
        extractor = get_extractor(signal, batch_size=batch_size, **params)
    if isinstance(frames_or_chunks, np.ndarray):
        return coarsen(extractor(frames_or_chunks), detail)
    if isinstance(frames_or_chunks, (str, bytes)) or not isinstance(frames_or_chunks, Iterable):
        raise UsageError(
            "extract_structure: expected an (F, H, W, 3) uint8 array or an iterable of such chunks, "
            f"got {type(frames_or_chunks).__name__}"
        )
    return _stream(extractor, frames_or_chunks, detail)


def _stream(extractor: Extractor, chunks: Iterable, detail: int) -> Iterator[np.ndarray]:
    """Generator half of :func:`extract_structure` (kept apart so checks run eagerly)."""
    for chunk in chunks:
        yield coarsen(extractor(chunk), detail)
