"""Read video frames: decord first, PyAV as the fallback, always in bounded chunks.

decord is fast at random access and batch decode, but it cannot represent
variable frame rate, raises two unrelated exception types (``RuntimeError`` and
``decord._ffi.base.DECORDError``), and on a damaged file may fail half-way. So
the plan of *which* frames to read is made once from the probe's timestamps
(:func:`plan_frames`), and either backend executes it; if decord fails mid-way
the rest of the plan is finished with PyAV.

Which backend: ``read_video`` (the whole selection in memory anyway) uses decord
first. Streaming (``iter_video``) uses PyAV first, because decord's threaded
decoder reads ahead into a frame queue of its own whenever the consumer is
slower than decoding (always, under a diffusion model): measured here, a
640x360 clip's RSS rose by ~240 MB before levelling off, and the queue scales
with frame size. PyAV decodes one frame at a time, so memory stays flat.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import InputError, UsageError
from ..options import ReadOptions
from .probe import VideoInfo, open_container, probe, sequence_images
from .video import Video

__all__ = ["FramePlan", "plan_frames", "VideoStream", "iter_video", "read_video", "prefetch"]

log = logging.getLogger("videdit")


@dataclass(frozen=True)
class FramePlan:
    """Which source frames make the output, and how they are timed.

    ``indices``: ``(N,) int64`` source frame numbers (may repeat when ``fps``
    raises the rate). ``fps``: output rate. ``start``: seconds into the source of
    the first output instant (for cutting audio). ``size``: output ``(W, H)``.
    """

    indices: np.ndarray
    fps: float
    start: float
    size: tuple[int, int]

    @property
    def duration(self) -> float:
        return len(self.indices) / self.fps


def _index_at(ts: np.ndarray, seconds: float) -> int:
    """First frame shown at or after ``seconds`` (1 µs tolerance for rounding)."""
    return int(np.searchsorted(ts, seconds - 1e-6, side="left"))


def _dominant_rate(info: VideoInfo) -> float:
    diffs = np.diff(info.timestamps)
    diffs = diffs[diffs > 1e-6]
    if len(diffs) == 0:
        return round(info.fps, 3)
    return round(min(120.0, 1.0 / float(np.median(diffs))), 3)


def plan_frames(info: VideoInfo, opts: ReadOptions) -> FramePlan:
    """Turn read options into a frame plan for ``info``; raises UsageError on a bad range."""
    ts, n = info.timestamps, info.frame_count
    if opts.start is None:
        i0 = 0
    elif opts.start.frames:
        i0 = int(opts.start.value)
    else:
        i0 = _index_at(ts, opts.start.value)
    if i0 >= n:
        raise UsageError(f"--start is past the end of {info.path} ({n} frames, {info.duration:.3f} s)")
    if opts.end is None:
        i1 = n
    elif opts.end.frames:
        i1 = min(int(opts.end.value), n)
    else:
        i1 = min(_index_at(ts, opts.end.value), n)
    if i1 <= i0:
        raise UsageError(f"--end selects no frames of {info.path} (start frame {i0}, end frame {i1})")

    t0 = float(ts[i0]) if opts.start is None or opts.start.frames else max(float(ts[i0]), opts.start.value)
    t_end = float(ts[i1]) if i1 < n else info.duration
    if opts.fps is not None or info.vfr:
        # Resample in time: each output instant shows the source frame on screen
        # then, so the timing of variable-rate input survives on a constant grid.
        # Variable rate goes to its dominant (median-interval) rate, capped at 120:
        # frames of the fast parts are kept, slow parts repeat frames.
        fps = opts.fps if opts.fps is not None else _dominant_rate(info)
        count = max(1, int(np.floor((t_end - t0) * fps + 1e-6)))
        times = t0 + np.arange(count) / fps
        idx = np.searchsorted(ts, times + 1e-6, side="right") - 1
        idx = np.clip(idx, i0, i1 - 1)
    else:
        fps = info.fps
        idx = np.arange(i0, i1)
        t0 = float(ts[i0])
    if opts.stride > 1:
        idx, fps = idx[:: opts.stride], fps / opts.stride
    if opts.max_frames is not None:
        idx = idx[: opts.max_frames]
    return FramePlan(idx.astype(np.int64), float(fps), t0, opts.target_size(info.width, info.height))


def _decord_errors() -> tuple:
    try:
        from decord._ffi.base import DECORDError
    except ImportError:  # pragma: no cover - decord layout changed
        return (RuntimeError,)
    return (RuntimeError, DECORDError)


class _AVDecoder:
    """Sequential PyAV decode that can start anywhere (seek to the key frame before)."""

    def __init__(self, info: VideoInfo):
        self.info = info
        self.container = open_container(info.path, fps=info.fps)  # a sequence at the rate it was probed at
        # Decoded size before rotation; a frame of another size (a stream that changes
        # resolution, an odd image in a sequence) is scaled to it, or chunks could not stack.
        quarter = info.rotation in (90, 270)
        self.size = (info.height, info.width) if quarter else (info.width, info.height)
        self.warned_size = False
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"

    def frames_from(self, first: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, (H, W, 3) uint8)`` for source frames ``first, first+1, ...``."""
        info, ts = self.info, self.info.timestamps
        if first > 0 and self.stream.time_base:
            target = (ts[first] + info.start_pts) / float(self.stream.time_base)
            self.container.seek(int(target), stream=self.stream, backward=True)
        else:
            self.container.seek(0, stream=self.stream, backward=True)
        counter, bad, last = None, 0, first - 1
        for frame in self._decode_tolerant():
            if frame is None:
                if not bad:  # now: the caller may stop reading before the stream ends
                    log.warning("%s: damaged data skipped while decoding (after frame %d); frames near it may be "
                                "missing, repeated or garbled", info.path, max(last, 0))
                bad += 1
                continue
            if frame.time is not None:
                t = frame.time - info.start_pts
                i = int(np.clip(np.searchsorted(ts, t - 0.5 / info.fps), 0, info.frame_count - 1))
            else:
                counter = 0 if counter is None else counter + 1
                i = counter
            if i < first:
                continue
            img = self._rgb(frame, i)
            if info.rotation:
                img = np.ascontiguousarray(np.rot90(img, k=info.rotation // 90))
            last = i
            yield i, img

    def _rgb(self, frame, i: int) -> np.ndarray:
        """``(H, W, 3) uint8`` of a decoded frame, at the stream's first size."""
        w, h = self.size
        if (frame.width, frame.height) == (w, h):
            return frame.to_ndarray(format="rgb24")
        if not self.warned_size:
            where = f"frame {i}"
            if os.path.isdir(self.info.path):
                names = sequence_images(self.info.path)
                where = os.path.basename(names[i]) if i < len(names) else where
            log.warning("%s: %s is %dx%d, not %dx%d like the first frame; scaling it and any other such frame "
                        "to match", self.info.path, where, frame.width, frame.height, w, h)
        self.warned_size = True
        return frame.to_ndarray(format="rgb24", width=w, height=h)

    def _decode_tolerant(self):
        """Decode packet by packet; a damaged packet yields ``None`` instead of ending the stream."""
        import av

        for packet in self.container.demux(self.stream):
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                yield None
            if packet.size == 0:  # demux ends with an empty packet that flushed the decoder
                return

    def close(self):
        self.container.close()


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if frames.shape[2] == w and frames.shape[1] == h:
        return frames
    import cv2

    shrink = w * h < frames.shape[1] * frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


class VideoStream:
    """An open video, read lazily in chunks of ``opts.chunk`` frames.

    Iterating yields ``(n, H, W, 3) uint8`` RGB arrays with ``n <= chunk``; memory
    holds one chunk at a time. ``info`` is the source's metadata, ``plan`` the frame
    selection, ``fps``/``start``/``size`` the output timing and size.
    """

    def __init__(self, path: str | os.PathLike, opts: ReadOptions | None = None, *, backend: str = "auto",
                 streaming: bool = True):
        if backend not in ("auto", "decord", "av"):
            raise UsageError(f"backend '{backend}' unknown; choose one of: auto, decord, av")
        if backend == "auto" and streaming:
            backend = "av"  # bounded memory: see the module docstring
        self.opts = opts or ReadOptions()
        self.info = probe(path, sequence_fps=self.opts.fps)
        if self.info.damage:
            log.warning("%s: %s; reading what is there", self.info.path, self.info.damage)
        self.plan = plan_frames(self.info, self.opts)
        self.backend = backend
        self.frames_read = 0

    @property
    def fps(self) -> float:
        return self.plan.fps

    @property
    def start(self) -> float:
        return self.plan.start

    @property
    def size(self) -> tuple[int, int]:
        return self.plan.size

    def __len__(self) -> int:
        return len(self.plan.indices)

    def _open_decord(self):
        if self.backend == "av" or (self.backend == "auto" and self.info.vfr):
            return None
        if os.path.isdir(self.info.path):  # an image sequence: decord reads only files
            if self.backend == "decord":
                raise InputError(f"{self.info.path}: decord cannot read an image-sequence directory; use the "
                                 "default backend")
            return None
        try:
            import decord

            # decord's bundled FFmpeg logs every damaged macroblock to stderr; our
            # own warnings say what matters in one line.
            decord.logging.set_level(decord.logging.DEBUG if log.isEnabledFor(logging.DEBUG) else decord.logging.QUIET)
            vr = decord.VideoReader(self.info.path, ctx=decord.cpu(0), num_threads=0)
        except ImportError:
            return None
        except _decord_errors() as err:
            if self.backend == "decord":
                raise InputError(f"{self.info.path}: decord cannot open it ({str(err).splitlines()[0]})") from None
            return None
        if len(vr) != self.info.frame_count:
            log.debug("decord counts %d frames, probe %d: using PyAV", len(vr), self.info.frame_count)
            return None
        return vr

    def __iter__(self) -> Iterator[np.ndarray]:
        idx, chunk = self.plan.indices, self.opts.chunk
        vr = self._open_decord()
        pos = 0
        if vr is not None:
            errors = _decord_errors()
            try:
                while pos < len(idx):
                    batch = idx[pos: pos + chunk]
                    frames = vr.get_batch(list(map(int, batch))).asnumpy()
                    pos += len(batch)
                    self.frames_read = pos
                    yield _resize(frames, self.size)
            except errors as err:
                log.warning("%s: decord failed at frame %d; continuing with PyAV", self.info.path, int(idx[pos]))
                log.debug("decord error: %s", err)
            finally:
                del vr
            if pos >= len(idx):
                return
        yield from self._iter_av(pos)

    def _iter_av(self, pos: int) -> Iterator[np.ndarray]:
        idx, chunk = self.plan.indices, self.opts.chunk
        dec = _AVDecoder(self.info)
        buf: list[np.ndarray] = []
        try:
            last = None
            for i, img in dec.frames_from(int(idx[pos])):
                # Emit every planned slot this frame covers (repeats when upsampling;
                # also fills slots of frames the decoder skipped as undecodable).
                while pos < len(idx) and idx[pos] <= i:
                    buf.append(img)
                    pos += 1
                    if len(buf) == chunk:
                        self.frames_read = pos
                        yield _resize(np.stack(buf), self.size)
                        buf = []
                last = i
                if pos >= len(idx):
                    break
        finally:
            dec.close()
        if buf:
            self.frames_read = pos
            yield _resize(np.stack(buf), self.size)
        if pos < len(idx):
            if pos == 0:
                raise InputError(f"{self.info.path}: no frame could be decoded (damaged file)")
            log.warning("%s: file is damaged or truncated; read %d of %d frames (last decodable frame %s)",
                        self.info.path, pos, len(idx), last)


def iter_video(path: str | os.PathLike, options: ReadOptions | None = None, **kw) -> VideoStream:
    """Open ``path`` for streaming; iterate the result for ``(n, H, W, 3) uint8`` chunks.

    Keyword arguments are :class:`~videdit.options.ReadOptions` fields
    (``start``, ``end``, ``stride``, ``fps``, ``max_frames``, ``size``, ``max_side``,
    ``multiple``, ``chunk``) or ``backend`` (``auto``/``decord``/``av``).
    """
    backend = kw.pop("backend", "auto")
    streaming = kw.pop("_streaming", True)
    if options is not None and kw:
        raise UsageError("give either options= or keyword read options, not both")
    return VideoStream(path, options or ReadOptions.from_keywords(("backend",), **kw), backend=backend,
                       streaming=streaming)


def read_video(path: str | os.PathLike, options: ReadOptions | None = None, **kw) -> Video:
    """Read a whole (selected part of a) video into memory as a :class:`Video`.

    For long files prefer :func:`iter_video`, which holds one chunk at a time.
    """
    stream = iter_video(path, options, _streaming=False, **kw)
    chunks = list(stream)
    if not chunks:
        raise InputError(f"{stream.info.path}: no frames selected")
    return Video(np.concatenate(chunks), stream.fps, source=stream.info, start=stream.start)


def prefetch(chunks, depth: int = 1):
    """Iterate ``chunks`` on a background thread, at most ``depth`` chunks ahead.

    Decoding (PyAV releases the GIL) then overlaps the caller's per-chunk work;
    memory grows by ``depth`` chunks, not with the clip. Exceptions are re-raised
    in the caller's thread, at the chunk where they happened.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def run():
        try:
            for c in chunks:
                while not stop.is_set():
                    try:
                        q.put(("ok", c), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("ok", done))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            q.put(("err", err))

    t = threading.Thread(target=run, name="videdit-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "err":
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=5)
