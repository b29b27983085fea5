"""Quality metrics for an edited video against its source.

Two questions, two numbers:

* **Temporal consistency** — does the output flicker or crawl where the source
  does not? Measured by the *flow warping error* of Lai et al., "Learning Blind
  Video Temporal Consistency", ECCV 2018 (https://arxiv.org/abs/1808.00449):
  optical flow is estimated on the **source**, each output frame ``t + 1`` is
  warped back onto frame ``t`` with it, and the squared difference is averaged
  over pixels the flow can be trusted on (not occluded, not on a motion boundary).
  See :func:`warp_error` and :func:`temporal_consistency` (which also reports the
  source's own score, the *floor*, and the ratio to it).
* **Structure fidelity** — did the edit keep the source's layout? Measured as the
  F1 score between Canny edge maps of source and output frames, with a small
  spatial tolerance. See :func:`structure_fidelity`.

:func:`video_metrics` returns all of them in a JSON-ready dict (what
``videdit metrics`` prints).

Every function takes its videos as a :class:`videdit.io.Video`, a numpy array
``(F, H, W, 3)`` RGB — ``uint8`` in [0, 255] or floating point in [0, 1] — or a
path to a video file (read with :func:`videdit.io.read_video`).

OpenCV and scikit-image are imported inside the functions that need them, so
importing this module is cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

__all__ = [
    "WarpErrorResult",
    "PairFlow",
    "source_flows",
    "warp_error",
    "warp_errors",
    "temporal_consistency",
    "structure_fidelity",
    "video_metrics",
]

# Occlusion test constants of Lai et al. (ECCV 2018), after Ruder et al. (GCPR 2016).
_FB_REL = 0.01   # |F + B~|^2 > _FB_REL * (|F|^2 + |B~|^2) + _FB_ABS  -> occluded
_FB_ABS = 0.5
_MB_REL = 0.01   # |grad F_u|^2 + |grad F_v|^2 > _MB_REL * |F|^2 + _MB_ABS -> motion boundary
_MB_ABS = 0.002


# --------------------------------------------------------------------------- inputs


def _as_frames(video, name: str = "video") -> np.ndarray:
    """Return the frames of ``video`` as an ``(F, H, W, 3)`` array, not copied.

    ``video``: a :class:`~videdit.io.Video`, an array ``(F, H, W, 3)`` (``uint8`` in
    [0, 255], or float in [0, 1]) or a path (``str`` / ``os.PathLike``) read with
    :func:`videdit.io.read_video`. The dtype is kept (``uint8`` or float).
    """
    if isinstance(video, (str, os.PathLike)):
        from .io import read_video  # lazy: the reader pulls in decoding machinery

        video = read_video(video)
    frames = getattr(video, "frames", video)
    if not isinstance(frames, np.ndarray):
        raise UsageError(f"{name}: expected a Video, an (F, H, W, 3) array or a path, got {type(video).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise UsageError(f"{name}: frames must be (F, H, W, 3) RGB, got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise UsageError(f"{name}: frames must be uint8 in [0, 255] or float in [0, 1], got {frames.dtype}")
    if frames.size:
        lo, hi = float(np.min(frames)), float(np.max(frames))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise UsageError(f"{name}: float frames contain NaN or infinity")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise UsageError(
                f"{name}: float frames must be in [0, 1], got [{lo:.4g}, {hi:.4g}] (pass uint8 for 0-255 values)"
            )
    return frames


@dataclass
class _Frames:
    """A video to compare, read one frame at a time: ``count`` frames of ``height x width``.

    Iterable more than once (a file is decoded again each time, one chunk in memory),
    so a long video is measured in bounded memory.
    """

    count: int
    height: int
    width: int
    frames: Callable[[], Iterator[np.ndarray]]
    label: str = "video"  # what errors name: the file, or the argument's name

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()


def _frames(video, name: str = "video") -> _Frames:
    """``video`` as :class:`_Frames`: a path or :class:`~videdit.io.VideoStream` is streamed in
    chunks; a Video or array goes through :func:`_as_frames` (not copied)."""
    if isinstance(video, _Frames):
        return video
    if isinstance(video, (str, os.PathLike)):
        from .io import iter_video  # lazy: the reader pulls in decoding machinery

        video = iter_video(video)
    from .io import VideoStream

    if isinstance(video, VideoStream):
        stream = video
        w, h = stream.size
        return _Frames(len(stream), h, w, lambda: (f for chunk in stream for f in chunk), stream.info.path)
    arr = _as_frames(video, name)
    return _Frames(len(arr), arr.shape[1], arr.shape[2], lambda: iter(arr), name)


def _frame01(frame: np.ndarray) -> np.ndarray:
    """One ``(H, W, 3)`` frame as float32 in [0, 1]."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) * np.float32(1 / 255)
    return np.clip(frame, 0.0, 1.0).astype(np.float32, copy=False)


def _gray_u8(frame: np.ndarray) -> np.ndarray:
    """One ``(H, W, 3)`` RGB frame as ``(H, W) uint8`` luma (what DIS flow wants)."""
    import cv2

    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _resize_to(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize one frame to ``(h, w)`` with area interpolation (no-op if it already is)."""
    if frame.shape[:2] == (h, w):
        return frame
    import cv2

    return cv2.resize(np.ascontiguousarray(frame), (w, h), interpolation=cv2.INTER_AREA)


def _align(src: _Frames, out: _Frames, min_frames: int, what: str) -> tuple[int, list[str]]:
    """Frames to compare (the shorter length) and notes on what had to be reconciled."""
    n = min(src.count, out.count)
    notes = []
    if src.count != out.count:
        notes.append(f"frame counts differ (source {src.count}, output {out.count}): compared the first {n}")
    if (src.height, src.width) != (out.height, out.width):
        notes.append(
            f"output size {out.width}x{out.height} differs from source {src.width}x{src.height}:"
            " output resized to the source size"
        )
    if n < min_frames:
        raise UsageError(
            f"{what} needs at least {min_frames} frame(s) in both videos,"
            f" got source {src.count}, output {out.count}"
        )
    return n, notes


# --------------------------------------------------------------------------- flow


@dataclass(frozen=True)
class PairFlow:
    """Source flow for one frame pair ``(t, t + 1)`` and where it can be trusted.

    ``flow``: ``(H, W, 2) float32``, forward flow ``t -> t + 1`` in pixels
    (``[..., 0]`` horizontal, ``[..., 1]`` vertical): frame ``t`` at ``x`` shows
    what frame ``t + 1`` shows at ``x + flow(x)``.
    ``valid``: ``(H, W) bool``, True where the pixel is neither occluded nor on a
    motion boundary and ``x + flow(x)`` lies inside the frame (within half a pixel
    of the outermost pixel centres).
    """

    flow: np.ndarray
    valid: np.ndarray

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps ``(x + u, y + v)``, each ``(H, W) float32``."""
        h, w = self.valid.shape
        map_x = self.flow[..., 0] + np.arange(w, dtype=np.float32)[None, :]
        map_y = self.flow[..., 1] + np.arange(h, dtype=np.float32)[:, None]
        return map_x, map_y


#: Smallest frame side DIS flow takes (OpenCV asserts on smaller input).
MIN_FLOW_SIDE = 12


def _check_flow_size(width: int, height: int, what: str) -> None:
    """UsageError naming ``what`` if ``width x height`` frames are too small for optical flow."""
    if min(width, height) < MIN_FLOW_SIDE:
        raise UsageError(f"{what}: frames of {width}x{height} are too small for optical flow (at least "
                         f"{MIN_FLOW_SIDE} px a side); give a larger --size")


def _dis_flow(dis, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense flow ``first -> second`` (``(H, W) uint8`` each) as ``(H, W, 2) float32``.

    The single place flow is estimated (tests count calls to it).
    """
    return dis.calc(first, second, None)


def _pair_flow(dis, gray0: np.ndarray, gray1: np.ndarray) -> PairFlow:
    """Forward flow of one pair plus the occlusion / motion-boundary test of Lai et al."""
    import cv2

    fw = _dis_flow(dis, gray0, gray1)  # F: t -> t+1
    bw = _dis_flow(dis, gray1, gray0)  # B: t+1 -> t
    h, w = gray0.shape
    pair = PairFlow(fw, np.ones((h, w), bool))
    map_x, map_y = pair.maps()

    # B~(x) = B(x + F(x)): the backward flow seen from frame t.
    bw_w = cv2.remap(bw, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fw_mag = np.sum(fw * fw, axis=-1)
    fb = fw + bw_w
    occluded = np.sum(fb * fb, axis=-1) > _FB_REL * (fw_mag + np.sum(bw_w * bw_w, axis=-1)) + _FB_ABS

    # Motion boundaries: forward differences of each flow component (0 on the last row/column).
    grad = np.zeros((h, w), np.float32)
    dx = fw[:, 1:, :] - fw[:, :-1, :]
    dy = fw[1:, :, :] - fw[:-1, :, :]
    grad[:, :-1] += np.sum(dx * dx, axis=-1)
    grad[:-1, :] += np.sum(dy * dy, axis=-1)
    boundary = grad > _MB_REL * fw_mag + _MB_ABS

    # Inside = within the frame's pixel area (a sample within half a pixel of the
    # outermost pixel centres reads that pixel, which BORDER_REPLICATE gives exactly).
    inside = (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)
    return PairFlow(fw, inside & ~occluded & ~boundary)


def source_flows(source, n_frames: int | None = None) -> Iterator[PairFlow]:
    """Yield the :class:`PairFlow` of each consecutive pair of ``source`` frames.

    ``source``: Video, ``(F, H, W, 3)`` array (``uint8`` [0, 255] or float [0, 1]) or
    path. Flow is DIS (``cv2.DISOPTICAL_FLOW_PRESET_MEDIUM``) on the luma, both
    directions, so each pair costs two flow estimates. Pairs are produced lazily:
    only one pair's flow is in memory at a time. ``n_frames`` limits the frames used.
    """
    import cv2

    frames = _frames(source, "source")
    _check_flow_size(frames.width, frames.height, frames.label)
    n = frames.count if n_frames is None else min(n_frames, frames.count)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = (_gray_u8(f) for _, f in zip(range(n), frames))
    prev = next(grays, None)
    for nxt in grays:
        yield _pair_flow(dis, prev, nxt)
        prev = nxt


# --------------------------------------------------------------------------- warp error


@dataclass
class WarpErrorResult:
    """Details of :func:`warp_error`.

    ``value``: the warping error (mean of ``per_frame`` over pairs that had any
    valid pixel; NaN if none had). ``per_frame``: ``(n - 1,) float64``, the error of
    each pair ``(t, t + 1)``, NaN for a pair with no valid pixel. ``mask_fraction``:
    fraction of pixels, over all pairs, that the error was averaged over (1.0 =
    no pixel excluded as occluded / motion boundary / out of frame). ``frames``:
    frames compared. ``notes``: what had to be reconciled (frame count, size).
    """

    value: float
    per_frame: np.ndarray
    mask_fraction: float
    frames: int = 0
    notes: tuple[str, ...] = ()


def _pair_error(frame_t: np.ndarray, frame_t1: np.ndarray, pair: PairFlow, maps) -> float:
    """Mean squared difference between ``frame_t`` and ``frame_t1`` warped onto it.

    Frames: ``(H, W, 3) float32`` in [0, 1]. Averaged over valid pixels and the
    three channels; NaN when no pixel is valid.
    """
    import cv2

    if not pair.valid.any():
        return math.nan
    warped = cv2.remap(frame_t1, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = (warped[pair.valid] - frame_t[pair.valid]).astype(np.float64)
    return float(np.mean(diff * diff))


def _warp_errors(flows, outputs: Sequence[_Frames], n: int, notes=(), on_pair=None) -> list[WarpErrorResult]:
    """Warping error of each video in ``outputs`` under precomputed source ``flows``.

    ``flows``: iterable of the ``n - 1`` :class:`PairFlow` of the source (consumed
    once). ``outputs``: frames ``uint8`` or float [0, 1], resized to the flow's size
    when they differ, read once in step with the flows (one frame of each held).
    Each pair's flow is used for every output before the next pair is estimated;
    ``on_pair()`` is called after each pair.
    """
    per = np.full((len(outputs), max(n - 1, 0)), np.nan)
    n_valid = 0
    n_total = 0
    streams = [iter(o) for o in outputs]

    def read(frames, h, w):
        f = next(frames, None)
        return None if f is None else _frame01(_resize_to(f, h, w))

    pairs, prev = 0, None
    for t, pair in enumerate(flows):
        h, w = pair.valid.shape
        if prev is None:
            prev = [read(s, h, w) for s in streams]
        cur = [read(s, h, w) for s in streams]
        if any(f is None for f in (*prev, *cur)):
            break  # a damaged file decoded fewer frames than it declares (the reader warned)
        maps = pair.maps()
        n_valid += int(pair.valid.sum())
        n_total += pair.valid.size
        for k in range(len(streams)):
            per[k, t] = _pair_error(prev[k], cur[k], pair, maps)
        pairs, prev = t + 1, cur
        if on_pair is not None:
            on_pair()
    if pairs < n - 1:
        notes = [*notes, f"only {pairs + 1} of {n} frames could be decoded: compared those"]
        per = per[:, :pairs]
    frac = n_valid / n_total if n_total else math.nan
    results = []
    for k in range(len(outputs)):
        row = per[k]
        value = float(np.mean(row[np.isfinite(row)])) if np.isfinite(row).any() else math.nan
        results.append(WarpErrorResult(value, row, frac, min(n, pairs + 1), tuple(notes)))
    return results


def warp_error(source, output, *, return_details: bool = False) -> float | WarpErrorResult:
    """Flow warping error of ``output`` along the motion of ``source`` (Lai et al., ECCV 2018).

    ``source``, ``output``: Video, ``(F, H, W, 3)`` RGB arrays (``uint8`` in
    [0, 255] or float in [0, 1]) or paths. For each ``t`` in ``0 .. F-2``:

    1. forward flow ``F`` (``t -> t+1``) and backward flow ``B`` (``t+1 -> t``) are
       estimated on the *source* luma (OpenCV DIS, medium preset);
    2. a pixel is dropped when occluded, ``|F + B~|^2 > 0.01 (|F|^2 + |B~|^2) + 0.5``
       with ``B~(x) = B(x + F(x))``, when on a motion boundary,
       ``|grad F_u|^2 + |grad F_v|^2 > 0.01 |F|^2 + 0.002``, or when ``x + F(x)``
       leaves the frame;
    3. output frame ``t+1`` is warped onto ``t`` (bilinear, sampled at
       ``x + F(x)``) and ``E_t`` is the mean squared difference, values in [0, 1],
       over kept pixels and the 3 channels.

    The result is the mean of ``E_t`` over ``t``: 0 for a perfectly consistent
    output, about ``2 * s**2`` for independent per-frame noise of std ``s``.
    (Averaging over channels, not summing them as some implementations do, keeps
    that scale; a summed score is 3x this one.)

    An output of a different size is resized to the source's (area interpolation).
    If frame counts differ the first ``min`` frames are compared and the details'
    ``notes`` say so. Raises :class:`UsageError` with fewer than 2 frames to compare.

    Returns the float, or a :class:`WarpErrorResult` when ``return_details``.
    """
    res = warp_errors(source, [output])[0]
    return res if return_details else res.value


def warp_errors(source, outputs, what: str = "warp error", *, on_pair=None) -> list[WarpErrorResult]:
    """:func:`warp_error` of each of several ``outputs`` of one ``source``, with its details, the
    source flow (DIS both ways per frame pair, the expensive part) estimated once for all of them.
    Every output is compared over the frames all of them and the source have; ``on_pair()`` is
    called after each frame pair (progress)."""
    src = _frames(source, "source")
    outs = [_frames(o, "output") for o in outputs]
    aligned = [_align(src, o, 2, what) for o in outs]
    n = min(k for k, _ in aligned)
    notes = list(dict.fromkeys(note for _, ns in aligned for note in ns))
    return _warp_errors(source_flows(src, n), outs, n, notes, on_pair)


def temporal_consistency(source, output, *, on_pair=None) -> dict:
    """Warping error of ``output``, of ``source`` itself (the floor), and their ratio.

    ``source``, ``output``: as for :func:`warp_error`. The source flow is
    estimated once and used for both numbers. Returns a dict:

    * ``output``: ``warp_error(source, output)``;
    * ``floor``: ``warp_error(source, source)`` — the source's own score under its
      own flow, i.e. what flow estimation, interpolation, lighting and noise
      leave in a real video. An output is not guaranteed to stay above it (a
      blurred or frozen output can score lower), so read it as a reference point;
    * ``ratio``: ``output / floor`` — about 1 means "as temporally consistent as
      the input", larger means added flicker. ``None`` when ``floor`` is 0 (a
      perfectly static or perfectly flow-predicted source) or NaN;
    * ``mask_fraction``, ``frames``, ``notes``: as in :class:`WarpErrorResult`.

    ``on_pair()`` is called after each frame pair (progress).
    """
    import itertools

    src = _frames(source, "source")
    # One decode of the source serves its flow and its own (floor) error: the two read in step,
    # so the tee holds a frame or two.
    for_flow, for_floor = itertools.tee(src)
    flow_src, floor = (_Frames(src.count, src.height, src.width, lambda it=it: it, src.label)
                       for it in (for_flow, for_floor))
    res_out, res_src = warp_errors(flow_src, [output, floor], "temporal consistency", on_pair=on_pair)
    floor = res_src.value
    ratio = res_out.value / floor if (math.isfinite(floor) and floor > 0) else None
    return {
        "output": res_out.value,
        "floor": floor,
        "ratio": ratio,
        "mask_fraction": res_out.mask_fraction,
        "frames": res_out.frames,
        "notes": list(res_out.notes),
    }


# --------------------------------------------------------------------------- structure


def _edges(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Canny edge map ``(H, W) bool`` of one RGB frame's luma (values in [0, 1])."""
    import cv2
    from skimage.feature import canny

    gray = cv2.cvtColor(_frame01(frame), cv2.COLOR_RGB2GRAY)
    return canny(gray, sigma=sigma)


def _edge_f1(e_src: np.ndarray, e_out: np.ndarray, tolerance: float) -> float:
    """F1 of two ``(H, W) bool`` edge maps matched within ``tolerance`` pixels."""
    from scipy.ndimage import distance_transform_edt

    n_src, n_out = int(e_src.sum()), int(e_out.sum())
    if n_src == 0 and n_out == 0:
        return 1.0
    if n_src == 0 or n_out == 0:
        return 0.0
    # Distance from every pixel to the nearest edge pixel of each map.
    d_src = distance_transform_edt(~e_src)
    d_out = distance_transform_edt(~e_out)
    precision = float(np.mean(d_src[e_out] <= tolerance))
    recall = float(np.mean(d_out[e_src] <= tolerance))
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _number(value, name: str, low: float, strict: bool) -> float:
    """``value`` as a finite float above ``low`` (``>= low`` unless ``strict``), else UsageError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x) or x < low or (strict and x == low):
        rel = ">" if strict else ">="
        raise UsageError(f"structure fidelity: {name} must be a number {rel} {low:g}, got {value!r}")
    return x


def structure_fidelity(source, output, *, tolerance: float = 2, sigma: float = 2.0, on_frame=None) -> float:
    """Edge-map F1 between ``source`` and ``output``, averaged over frames, in [0, 1].

    ``source``, ``output``: Video, ``(F, H, W, 3)`` RGB arrays (``uint8`` in
    [0, 255] or float in [0, 1]) or paths. Each frame's luma goes through
    ``skimage.feature.canny`` with the same ``sigma`` (and scikit-image's default
    thresholds). Precision is the fraction of output edge pixels within
    ``tolerance`` pixels (Euclidean) of a source edge pixel, recall the fraction
    of source edge pixels within ``tolerance`` of an output edge pixel; a frame's
    F1 is ``2PR / (P + R)``, 1 when neither frame has an edge and 0 when exactly
    one has none. 1.0 means the edit kept every edge (to within ``tolerance``)
    and added none.

    An output of a different size is resized to the source's (area
    interpolation); with different frame counts the first ``min`` frames are
    compared. Raises :class:`UsageError` for an empty video or a bad
    ``tolerance`` (< 0) / ``sigma`` (<= 0). ``on_frame()`` is called after each frame (progress).
    """
    tolerance = _number(tolerance, "tolerance", 0.0, strict=False)
    sigma = _number(sigma, "sigma", 0.0, strict=True)
    src = _frames(source, "source")
    out = _frames(output, "output")
    n, _ = _align(src, out, 1, "structure fidelity")
    scores = []
    for _, s, o in zip(range(n), src, out):  # range first: no frame is read past the n-th
        scores.append(_edge_f1(_edges(s, sigma), _edges(_resize_to(o, src.height, src.width), sigma), tolerance))
        if on_frame is not None:
            on_frame()
    return float(np.mean(scores))


# --------------------------------------------------------------------------- all


def _json_float(x) -> float | None:
    """A plain float, or ``None`` for NaN / infinity (which JSON cannot carry)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def video_metrics(source, output, *, tolerance: float = 2, sigma: float = 2.0) -> dict:
    """Every metric of ``output`` against ``source``, as a JSON-ready dict.

    ``source``, ``output``: Video, ``(F, H, W, 3)`` RGB arrays (``uint8`` in
    [0, 255] or float in [0, 1]), paths or :class:`~videdit.io.VideoStream`
    (``iter_video``: frame selection and size). Files are decoded chunk by chunk,
    twice each (flow pass, edge pass), so memory does not grow with their length. Keys:

    * ``frames``: frames compared; ``source_size`` / ``output_size``: ``[W, H]``;
    * ``warp_error``, ``warp_error_floor``, ``warp_error_ratio``,
      ``mask_fraction``: see :func:`temporal_consistency`;
    * ``structure_fidelity``: see :func:`structure_fidelity` (with ``tolerance``
      and ``sigma``, also reported as ``structure_tolerance`` / ``structure_sigma``);
    * ``notes``: list of one-line strings on what had to be reconciled.

    Values are plain ``float`` / ``int`` / ``str``; a NaN or infinite value, or a
    ratio with a zero floor, is ``None``. Needs at least 2 frames in each video.
    """
    from .progress import progress

    _number(tolerance, "tolerance", 0.0, strict=False)  # bad values fail before the long flow pass
    _number(sigma, "sigma", 0.0, strict=True)
    src = _frames(source, "source")
    out = _frames(output, "output")
    n = min(src.count, out.count)
    with progress(total=2 * n - 1, desc="metrics (flow, then edges)", unit="frame") as bar:
        tc = temporal_consistency(src, out, on_pair=lambda: bar.update(1))
        sf = structure_fidelity(src, out, tolerance=tolerance, sigma=sigma, on_frame=lambda: bar.update(1))
    return {
        "frames": int(tc["frames"]),
        "source_size": [src.width, src.height],
        "output_size": [out.width, out.height],
        "warp_error": _json_float(tc["output"]),
        "warp_error_floor": _json_float(tc["floor"]),
        "warp_error_ratio": _json_float(tc["ratio"]),
        "mask_fraction": _json_float(tc["mask_fraction"]),
        "structure_fidelity": _json_float(sf),
        "structure_tolerance": float(tolerance),
        "structure_sigma": float(sigma),
        "notes": [str(s) for s in tc["notes"]],
    }
