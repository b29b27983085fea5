"""Probe a video file with PyAV: size, rotation, fps, per-frame timestamps, audio.

Probing demuxes packets but decodes only the first frame, so it is cheap even on
long files, and it rejects bad input (missing, empty, not a video, audio-only,
absurd declared size) with a one-line :class:`~videdit.errors.InputError` before any
decoder allocates frame buffers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..errors import InputError, UsageError

__all__ = ["VideoInfo", "probe", "as_path", "check_input_path", "open_container", "sequence_images", "MAX_PIXELS"]

# 8192 x 8192: above 8K UHD (7680 x 4320). A larger declared size is either a
# broken header or a file no frame-by-frame diffusion tool should decode.
MAX_PIXELS = 8192 * 8192

# Relative spread of frame intervals above which a stream counts as variable
# frame rate. Timestamps in mp4 are integers in the stream time base, so a
# constant-rate stream shows a tiny jitter from rounding; 5% leaves room for it.
_VFR_TOLERANCE = 0.05


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds, as a viewer would show it (sizes after rotation).

    ``timestamps`` is ``(frame_count,) float64`` seconds from the first frame's
    presentation time (so ``timestamps[0] == 0``); ``start_pts`` is that first
    time in the container's clock, needed to cut the matching audio.
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int = 0
    has_audio: bool = False
    audio_codec: str | None = None
    audio_duration: float | None = None
    video_codec: str = ""
    pix_fmt: str = ""
    container: str = ""
    vfr: bool = False
    damage: str | None = None
    start_pts: float = 0.0
    timestamps: np.ndarray = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready view (no timestamps array)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "timestamps"}
        out["fps"] = round(float(self.fps), 6)
        out["duration"] = round(float(self.duration), 6)
        if self.audio_duration is not None:
            out["audio_duration"] = round(float(self.audio_duration), 6)
        return out


#: Image files a directory input is read from, as a frame sequence.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: Frame rate of an image sequence when none is given (it has none of its own); ``--fps`` sets it instead.
SEQUENCE_FPS = 24.0


def sequence_images(directory: str) -> list[str]:
    """The frame files of an image-sequence directory, in name order: those with its most common image
    extension (a stray thumbnail of another type is left out). InputError if it holds no images."""
    names = [f for f in os.listdir(directory) if f.lower().endswith(IMAGE_EXTS) and not f.startswith(".")]
    if not names:
        raise InputError(f"{directory}: is a directory without images ({', '.join(IMAGE_EXTS)}), not a video file")
    exts = [os.path.splitext(f)[1] for f in names]
    ext = max(sorted(set(exts)), key=exts.count)
    return sorted(os.path.join(directory, f) for f, e in zip(names, exts) if e == ext)


def open_container(path: str, *, fps: float | None = None):
    """``av.open`` of a video file, or of an image-sequence directory (FFmpeg's image2 demuxer over its
    images in name order, one image a frame at ``fps``, default :data:`SEQUENCE_FPS`; a file ignores
    ``fps``)."""
    import glob

    import av

    if os.path.isdir(path):
        first = sequence_images(path)[0]
        pattern = os.path.join(glob.escape(path), "*" + glob.escape(os.path.splitext(first)[1]))
        rate = Fraction(fps or SEQUENCE_FPS).limit_denominator(1001)
        return av.open(pattern, format="image2", options={"pattern_type": "glob", "framerate": str(rate)})
    return av.open(path, metadata_errors="ignore")


def as_path(path) -> str:
    """``path`` (str, bytes or PathLike) as str; UsageError naming what it is otherwise."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        hint = " (it is decoded already: pass it to restyle, or write it with write_video)" \
            if type(path).__name__ == "Video" else ""
        raise UsageError(f"expected a video file or image-sequence path, got {type(path).__name__}{hint}")
    return os.fspath(path)


def check_input_path(path: str | os.PathLike) -> str:
    """Return ``path`` as str if it names a non-empty regular file or an image-sequence directory,
    else raise InputError (UsageError for something that is not a path at all)."""
    p = as_path(path)
    if not os.path.exists(p):
        raise InputError(f"{p}: no such file")
    if os.path.isdir(p):
        sequence_images(p)
        return p
    if not os.path.isfile(p):
        raise InputError(f"{p}: not a regular file")
    if os.path.getsize(p) == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    return p


def _av_error_text(err: Exception) -> str:
    # PyAV messages look like "[Errno 1094995529] Invalid data found when processing
    # input: 'x.mp4'"; keep only the human part.
    text = getattr(err, "strerror", None) or str(err)
    return str(text).split(": '")[0].strip() or type(err).__name__


def _rotation_of(frame) -> int:
    # PyAV reports the display-matrix rotation in degrees counter-clockwise.
    rot = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    return rot if rot in (0, 90, 180, 270) else 0


def probe(path: str | os.PathLike, *, sequence_fps: float | None = None) -> VideoInfo:
    """Read the metadata of a video file, or of an image-sequence directory played at ``sequence_fps``
    (default :data:`SEQUENCE_FPS`: the images carry no rate, so the caller's ``--fps`` is theirs).

    Raises :class:`InputError` (one line naming the file) for a missing, empty,
    unreadable, audio-only, undecodable or absurdly large file.
    """
    import av  # lazy: PyAV is a heavy import

    p = check_input_path(path)
    try:
        container = open_container(p, fps=sequence_fps)
    except av.error.FFmpegError as err:
        raise InputError(f"{p}: not a readable video ({_av_error_text(err)})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{p}: cannot open ({err})") from None
    try:
        return _probe_container(p, container)
    finally:
        container.close()


def _probe_container(p: str, container) -> VideoInfo:
    import av

    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise InputError(f"{p}: no video stream (file holds {', '.join(kinds)})")
    vs = container.streams.video[0]
    w, h = int(vs.codec_context.width or 0), int(vs.codec_context.height or 0)
    if w <= 0 or h <= 0:
        raise InputError(f"{p}: video stream declares no frame size")
    if w * h > MAX_PIXELS:
        raise InputError(f"{p}: declared frame size {w}x{h} exceeds the limit of {MAX_PIXELS} pixels")

    audio = container.streams.audio[0] if container.streams.audio else None
    tb = float(vs.time_base) if vs.time_base else 0.0

    # Demux (no decode) to get every frame's presentation time; packets come in
    # decode order, so sort. Packets with no pts (rare, raw streams) get a
    # synthetic time from the nominal rate below.
    pts, npkt = [], 0
    try:
        for pkt in container.demux(vs):
            if pkt.size == 0:
                continue
            npkt += 1
            if pkt.pts is not None:
                pts.append(pkt.pts)
    except av.error.FFmpegError:
        pass  # damaged tail: keep what was demuxed; reading will warn
    if npkt == 0:
        raise InputError(f"{p}: video stream holds no frames")

    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    nominal_fps = float(rate) if rate else 0.0
    if len(pts) == npkt and tb > 0:
        ts = np.sort(np.asarray(pts, dtype=np.float64)) * tb
        start = float(ts[0])
        ts = ts - start
    else:
        start = 0.0
        ts = np.arange(npkt, dtype=np.float64) / (nominal_fps or 25.0)

    # Mean rate from the timestamps is robust to bad header rates; the last frame's
    # display time is one mean interval.
    if npkt > 1 and ts[-1] > 0:
        interval = ts[-1] / (npkt - 1)
        diffs = np.diff(ts)
        fps = 1.0 / interval
        vfr = bool(np.std(diffs) > _VFR_TOLERANCE * interval
                   or np.max(np.abs(diffs - interval)) > 0.5 * interval)
        if not vfr and nominal_fps and abs(fps - nominal_fps) < 0.01 * nominal_fps:
            fps = nominal_fps  # millisecond time bases (mkv, webm) blur the exact rate
        # The last frame is shown for one typical interval.
        last = float(np.median(diffs))
    else:
        fps = nominal_fps or 25.0
        vfr, last = False, 1.0 / fps
    duration = float(ts[-1] + last)

    # Rotation lives in side data of decoded frames; decode exactly one. This also
    # proves the stream is decodable at all.
    rotation = 0
    try:
        container.seek(0)
        frame = next(container.decode(video=0), None)
    except (av.error.FFmpegError, StopIteration):
        frame = None
    if frame is None:
        raise InputError(f"{p}: no decodable video frame (damaged or unsupported codec)")
    rotation = _rotation_of(frame)
    if rotation in (90, 270):
        w, h = h, w

    # A file cut short keeps its header (moov at the start): it declares more frames
    # than its data holds. Readable, but the user must hear about it.
    damage = None
    declared = int(vs.frames or 0)
    if declared > npkt:
        damage = f"truncated: holds {npkt} of the {declared} frames its header declares"

    audio_duration = None
    if audio is not None and audio.duration and audio.time_base:
        audio_duration = float(audio.duration * audio.time_base)

    return VideoInfo(
        path=p,
        width=w,
        height=h,
        fps=float(fps),
        frame_count=npkt,
        duration=duration,
        rotation=rotation,
        has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        audio_duration=audio_duration,
        video_codec=vs.codec_context.name,
        pix_fmt=str(vs.codec_context.pix_fmt or ""),
        container=container.format.name,
        vfr=vfr,
        damage=damage,
        start_pts=start,
        timestamps=ts,
    )
