"""Write video with the ffmpeg binary shipped by imageio-ffmpeg, streamed and atomic.

Frames are piped to ffmpeg chunk by chunk (memory holds one chunk), into a
temporary file beside the target that is renamed over it only when ffmpeg
succeeded: an interrupted or failed run never leaves a half-written output, and
the input file can never be the target. The source's audio is carried over,
cut to the same time range as the frames (``-ss START -t DUR`` on a second input).

With ``provenance=`` (a :class:`videdit.provenance.Provenance`) each chunk is
watermarked before it is piped, and the finished temporary file is C2PA-signed
before the rename, so a signing failure leaves nothing behind either.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import OutputError, UsageError
from .video import Video

__all__ = ["AudioSource", "VideoWriter", "Outputs", "side_by_side", "write_video", "ffmpeg_exe", "FORMATS"]

log = logging.getLogger("videdit")

# extension -> (video codec args, audio codec or None when the format has no audio)
FORMATS = {
    ".mp4": ({"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 18, "movflags": "+faststart"}, "aac"),
    ".m4v": ({"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 18}, "aac"),
    ".mov": ({"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 18}, "aac"),
    ".mkv": ({"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 18}, "aac"),
    ".webm": ({"vcodec": "libvpx-vp9", "pix_fmt": "yuv420p", "crf": 32, "b:v": 0, "row-mt": 1}, "libopus"),
    ".gif": ({}, None),
    "png-dir": ({"vcodec": "png"}, None),
}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (no system ffmpeg needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class AudioSource:
    """Audio to carry into the output: ``duration`` seconds of ``path`` from ``start``."""

    path: str
    start: float
    duration: float

    @classmethod
    def for_video(cls, video: Video) -> "AudioSource | None":
        src = video.source
        if src is None or not src.has_audio:
            return None
        return cls(src.path, video.start, video.duration)


def _format_of(path: str) -> str:
    if path.endswith(os.sep) or os.path.isdir(path):
        return "png-dir"
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        valid = ", ".join(sorted(k for k in FORMATS if k.startswith("."))) + ", or a directory/ for PNG frames"
        raise UsageError(f"{path}: unknown output format '{ext or '(none)'}'; use {valid}")
    return ext


def _inside(path: str, directory: str) -> bool:
    """True if ``path`` is ``directory`` or lies under it (links resolved)."""
    outer = os.path.realpath(directory)
    return os.path.commonpath([os.path.realpath(path), outer]) == outer


#: Names of the frames a PNG-sequence output holds (``000001.png``...).
_FRAME_NAME = re.compile(r"\d{6}\.png")
#: Empty file that marks a directory as videdit's PNG output: a rerun may replace such a directory only.
_FRAMES_MARK = ".videdit-frames"


def _check_frame_directory(path: str, inputs) -> None:
    """OutputError unless ``path`` is a new or empty directory, or one holding only frames of an earlier
    videdit PNG output, and no input (``inputs``: paths) lies inside it.

    The finished sequence replaces the whole directory, so anything else in it would be lost: a folder of
    the user's own frames looks the same as ours (ffmpeg's ``%06d.png``), hence the mark.
    """
    for p in inputs:
        if _inside(p, path):
            raise OutputError(f"{path}: holds the input {p}; PNG frames go to a new or empty directory")
    if _inside(os.getcwd(), path):
        raise OutputError(f"{path}: is the current directory or holds it; PNG frames go to a new or empty directory")
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise OutputError(f"{path}: is a file, not a directory for PNG frames; choose another output path")
    names = sorted(os.listdir(path))
    ours = _FRAMES_MARK in names and all(_FRAME_NAME.fullmatch(n) for n in names if n != _FRAMES_MARK)
    if names and not ours:
        raise OutputError(f"{path}: directory holds files a PNG sequence would replace (such as {names[0]}; "
                          f"{len(names)} in all); choose a new or empty directory")


def _check_not_inside(path: str, other: str) -> None:
    """OutputError if ``other`` is a PNG-sequence output and ``path`` lies in it (it would be swept away)."""
    if _format_of(other) == "png-dir" and _inside(path, other):
        raise OutputError(f"{path}: is inside {other}, the PNG-sequence output, which is replaced as a whole; "
                          "write it elsewhere")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class VideoWriter:
    """Streaming, atomic video writer.

    ``write(frames)`` takes ``(n, H, W, 3) uint8`` RGB (or ``(n, H, W)`` gray) chunks
    of one fixed size; ``close()`` finishes the file and moves it into place;
    ``abort()`` (also called on an exception inside ``with``) deletes the partial
    output. ``protect`` lists paths the target must not be (the inputs).
    ``provenance`` (a :class:`videdit.provenance.Provenance`) adds the watermark and
    the signed Content Credentials (see :mod:`videdit.provenance`).
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, audio: AudioSource | None = None,
                 protect=(), crf: int | None = None, preset: str | None = None, provenance=None):
        self.path = os.fspath(path).rstrip(os.sep) if os.fspath(path) != os.sep else os.sep
        self.fmt = _format_of(os.fspath(path))
        if self.fmt == "png-dir" and os.path.islink(self.path):
            # The directory is swapped at the end: swap the one the link names, keep the link.
            self.path = os.path.realpath(self.path)
        if not fps or fps <= 0:
            raise UsageError(f"{self.path}: output fps must be > 0 (got {fps})")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio = audio if FORMATS[self.fmt][1] else None
        self.crf, self.preset = crf, preset
        inputs = [os.fspath(p) for p in [*protect, *([audio.path] if audio else [])] if p]
        for p in inputs:
            if os.path.exists(self.path) and _same_file(self.path, p):
                raise OutputError(f"{self.path}: refusing to overwrite the input file; choose another output path")
        if self.fmt != "png-dir" and os.path.isdir(self.path):
            raise OutputError(f"{self.path}: is a directory; give a file name such as {self.path}/out.mp4")
        if self.fmt == "png-dir":
            _check_frame_directory(self.path, inputs)
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{self.path}: cannot create directory {parent} ({err.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise OutputError(f"{self.path}: directory {parent} is not writable")
        try:  # os.access says yes to root, and to /proc or a read-only mount: try it before the run
            probe = os.path.join(parent, f".videdit-probe-{uuid.uuid4().hex[:8]}")
            os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.remove(probe)
        except OSError as err:
            raise OutputError(f"{self.path}: cannot write in {parent} ({err.strerror})") from None
        if audio is not None and self.audio is None:  # warned only once the target is known to be usable
            log.warning("%s: format %s holds no audio; the source's audio is not carried over", self.path, self.fmt)
        base = os.path.basename(self.path)
        stem, ext = os.path.splitext(base)
        self.tmp = os.path.join(parent, f".{stem}.videdit-{uuid.uuid4().hex[:8]}{'' if self.fmt == 'png-dir' else ext}")
        self.proc = None
        self.shape = None
        self.frames_written = 0
        self._log = None
        self.provenance = provenance
        if provenance is not None:
            from ..provenance.credentials import MIME, signing_material

            if self.fmt in MIME:
                signing_material()  # a missing or unreadable key fails now, not after the whole run
        self._marker = None  # WatermarkEmbedder, made at the first chunk (needs the frame size)
        # Piping runs on a thread (bounded to two chunks) so encoding overlaps the
        # caller's decode and model work instead of blocking it.
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._pump: threading.Thread | None = None
        self._pipe_error: BaseException | None = None

    # -- ffmpeg process --------------------------------------------------------------
    def _command(self, width: int, height: int, gray: bool) -> list[str]:
        import ffmpeg  # ffmpeg-python: builds the command line

        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray" if gray else "rgb24",
                             s=f"{width}x{height}", framerate=str(self.fps)).video
        codec, acodec = FORMATS[self.fmt]
        codec = dict(codec)
        if self.crf is not None and "crf" in codec:
            codec["crf"] = self.crf
        if self.preset is not None and codec.get("vcodec") == "libx264":
            codec["preset"] = self.preset
        target = self.tmp
        if self.fmt == "gif":
            split = video.split()
            video = ffmpeg.filter([split[0], split[1].filter("palettegen")], "paletteuse")
        elif self.fmt == "png-dir":
            os.makedirs(self.tmp)
            target = os.path.join(self.tmp, "%06d.png")
        elif codec.get("pix_fmt") == "yuv420p" and (width % 2 or height % 2):
            # 4:2:0 chroma needs even sizes: pad by one black row/column.
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
        streams = [video]
        kwargs = dict(codec)
        if self.audio is not None:
            streams.append(ffmpeg.input(self.audio.path, ss=f"{self.audio.start:.6f}",
                                        t=f"{self.audio.duration:.6f}").audio)
            kwargs.update(acodec=acodec, t=f"{self.audio.duration:.6f}")
        out = ffmpeg.output(*streams, target, **kwargs).global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        return out.overwrite_output().compile(cmd=ffmpeg_exe())

    def _start(self, frames: np.ndarray):
        gray = frames.ndim == 3
        h, w = frames.shape[1:3]
        if w < 2 or h < 2:
            raise OutputError(f"{self.path}: frame size {w}x{h} is too small to encode")
        self.shape = frames.shape[1:]
        self._log = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self._command(w, h, gray), stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as err:
            raise OutputError(f"{self.path}: cannot start ffmpeg ({err})") from None
        self._pump = threading.Thread(target=self._pump_frames, name="videdit-writer", daemon=True)
        self._pump.start()

    def _pump_frames(self):
        stdin = self.proc.stdin
        while True:
            data = self._queue.get()
            if data is None:
                break
            if self._pipe_error is not None:
                continue  # drain: the caller learns of the error at its next call
            try:
                stdin.write(data)
            except (BrokenPipeError, OSError, ValueError) as err:
                self._pipe_error = err
        try:
            stdin.close()
        except OSError:
            pass

    def _stop_pump(self):
        if self._pump is not None:
            self._queue.put(None)
            self._pump.join()
            self._pump = None

    def _fail(self):
        self._stop_pump()
        self.proc.wait()
        msg = self._ffmpeg_error()
        self.abort()
        raise OutputError(f"{self.path}: encoding failed ({msg})")

    def _ffmpeg_error(self) -> str:
        if self._log is None:
            return "unknown error"
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1] if lines else "ffmpeg failed"

    def write(self, frames: np.ndarray) -> None:
        """Append ``(n, H, W, 3)`` or ``(n, H, W)`` uint8 frames (a single frame without n also works)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if frames.ndim == 3 and frames.shape[-1] == 3 and (self.shape is None or len(self.shape) == 3):
            frames = frames[None]
        if frames.ndim == 2:
            frames = frames[None]
        if self.proc is None:
            self._start(frames)
        if frames.shape[1:] != self.shape:
            raise ValueError(f"frame shape changed from {self.shape} to {frames.shape[1:]}")
        if self.provenance is not None and self.provenance.watermark:
            if self._marker is None:
                from ..provenance.watermark import WatermarkEmbedder

                self._marker = WatermarkEmbedder(self.shape[0], self.shape[1], self.provenance.payload_id)
            frames = self._marker.apply(frames)
        if self._pipe_error is not None:
            self._fail()
        self._queue.put(np.ascontiguousarray(frames).tobytes())
        self.frames_written += len(frames)

    def close(self) -> str:
        """Finish encoding and move the file into place; returns the output path."""
        self.finish()
        return self.commit()

    def finish(self) -> None:
        """Finish the temporary file (encoding, credentials); the target is untouched until :meth:`commit`."""
        if self.proc is None:
            self.abort()
            raise OutputError(f"{self.path}: no frames to write")
        self._stop_pump()
        if self.proc.wait() != 0 or self._pipe_error is not None:
            self._fail()
        self._log.close()
        self._log = None
        try:
            if self.provenance is not None:
                self._sign()
            if self.fmt == "png-dir":
                open(os.path.join(self.tmp, _FRAMES_MARK), "w").close()
        except BaseException:
            self.abort()
            raise
        self.proc = None

    def commit(self) -> str:
        """Move the finished temporary file into place; returns the output path."""
        self._replace()
        return self.path

    def _sign(self):
        """Embed signed C2PA credentials into the temporary file (before the rename)."""
        from ..provenance.credentials import MIME, sign_file

        mime = MIME.get(self.fmt)
        if mime is None:  # webm/mkv/PNG frames: c2pa cannot embed a manifest there
            log.warning("%s: Content Credentials cannot be embedded in %s; only the watermark marks it "
                        "(write .mp4/.mov/.gif for signed credentials)", self.path, self.fmt)
            return
        signed = self.tmp + ".signed"
        try:
            sign_file(self.tmp, signed, self.provenance, mime, os.path.basename(self.path))
            os.replace(signed, self.tmp)
        finally:
            if os.path.exists(signed):
                os.remove(signed)

    def _replace(self):
        if self.fmt != "png-dir" or not os.path.exists(self.path):
            os.replace(self.tmp, self.path)
            return
        # A directory cannot be replaced atomically while it has files: swap it aside.
        old = self.tmp + ".old"
        os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial output; the target is left as it was."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop_pump()
        self.proc = None
        if os.path.isdir(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_video(video: Video | np.ndarray, path: str | os.PathLike, *, fps: float | None = None,
                audio: bool | AudioSource = True, protect=(), crf: int | None = None,
                chunk: int = 32, provenance=None) -> str:
    """Write a :class:`Video` (or ``(F, H, W, 3) uint8`` frames with ``fps``) to ``path``.

    The source's audio is carried over (cut to the frames' time range) when
    ``audio`` is True and the video came from a file with audio; pass an
    :class:`AudioSource` to take it from elsewhere, or False to drop it.
    ``provenance`` (a :class:`videdit.provenance.Provenance`) watermarks the frames
    and signs the file.
    Returns the path written.
    """
    if isinstance(video, Video):
        frames, rate = video.frames, fps or video.fps
        src = AudioSource.for_video(video) if audio is True else (audio or None)
        protect = [*protect, *([video.source.path] if video.source else [])]
    else:
        frames, rate = np.asarray(video), fps
        src = audio if isinstance(audio, AudioSource) else None
        if rate is None:
            raise UsageError("write_video: fps is required when writing a bare frame array")
    with VideoWriter(path, rate, audio=src, protect=protect, crf=crf, provenance=provenance) as writer:
        for i in range(0, len(frames), chunk):
            writer.write(frames[i: i + chunk])
    return writer.path


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``(n, H, W, 3)`` + ``(n, H', W', 3)`` (or gray ``(n, H', W')``) uint8 -> ``(n, H, W + W'', 3)``.

    ``right`` is resized to height ``H`` if needed (aspect kept)."""
    if right.ndim == 3:
        right = np.repeat(right[..., None], 3, axis=3)
    if right.shape[1] != left.shape[1]:
        import cv2

        h = left.shape[1]
        w = max(2, round(right.shape[2] * h / right.shape[1]))
        right = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in right])
    return np.concatenate([left, right], axis=2)


class Outputs:
    """The output video plus an optional side-by-side ``source | output`` preview, written together.

    A context manager: on an exception every file is aborted (nothing half-written
    is left); on success both are closed and moved into place. ``write(source,
    out)`` takes matching chunks. ``paths`` holds the written paths after exit.
    """

    def __init__(self, output, preview, fps: float, *, audio: AudioSource | None = None, protect=(),
                 preset: str | None = None, provenance=None):
        protect = list(protect)
        if preview is not None and _same_file(os.fspath(preview), os.fspath(output)):
            # Both are written to temporaries and moved into place at the end, so the
            # preview would silently replace the output.
            raise OutputError(f"{os.fspath(preview)}: the preview would overwrite the output; give --preview "
                              "another path")
        if preview is not None:
            _check_not_inside(os.fspath(preview), os.fspath(output))
            _check_not_inside(os.fspath(output), os.fspath(preview))
        kw = dict(audio=audio, preset=preset, provenance=provenance)
        self.writers = [VideoWriter(output, fps, protect=protect, **kw)]
        if preview is not None:  # it shows generated frames too: same credentials and mark
            self.writers.append(VideoWriter(preview, fps, protect=protect + [os.fspath(output)], **kw))
        self.paths: list[str] = []

    @property
    def frames_written(self) -> int:
        return self.writers[0].frames_written

    @property
    def audio_kept(self) -> bool:
        """True if the output carries the source's audio (False for GIF / PNG outputs, or no audio)."""
        return self.writers[0].audio is not None

    def write(self, source: np.ndarray, out: np.ndarray) -> None:
        self.writers[0].write(out)
        if len(self.writers) > 1:
            self.writers[1].write(side_by_side(source, out))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                for w in self.writers:  # every file finished before any target is touched
                    w.finish()
            except BaseException:
                for w in self.writers:
                    w.abort()
                raise
            self.paths = [w.commit() for w in self.writers]
            return False
        for w in self.writers:
            w.abort()
        return False

    @property
    def preview(self) -> str | None:
        return self.paths[1] if len(self.paths) > 1 else None
