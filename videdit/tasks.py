"""Whole-file tasks that stream a video through a per-chunk transform.

Each task is a free function (the CLI is a thin layer over these): it opens the
input, plans the frames once, and pushes chunk after chunk through the transform
into one or more atomic writers, so memory does not grow with the clip length.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .errors import UsageError
from .io import AudioSource, iter_video, prefetch
from .io.write import Outputs
from .options import ReadOptions
from .progress import progress

__all__ = ["map_video", "structure_video"]


def map_video(src: str | os.PathLike, transform: Callable[[np.ndarray], np.ndarray],
              output: str | os.PathLike, *, options: ReadOptions | None = None,
              preview: str | os.PathLike | None = None, audio: bool = True,
              desc: str = "processing", preset: str | None = None) -> dict:
    """Stream ``src`` through ``transform`` into ``output`` (and a side-by-side ``preview``).

    ``transform`` maps ``(n, H, W, 3) uint8`` to ``(n, H', W', 3)`` or gray
    ``(n, H', W') uint8`` chunk by chunk. ``preset`` is the x264 preset of the outputs (ffmpeg's default when None). Audio of the selected range is carried into both outputs. If anything
    fails, no output is left behind. Returns a summary dict.
    """
    stream = iter_video(src, options)
    protect = [stream.info.path]
    sound = AudioSource(stream.info.path, stream.start, len(stream) / stream.fps) if audio and stream.info.has_audio else None
    with Outputs(output, preview, stream.fps, audio=sound, protect=protect, preset=preset) as outs:
        with progress(total=len(stream), desc=desc, unit="frame") as bar:
            for chunk in prefetch(stream):
                outs.write(chunk, transform(chunk))
                bar.update(len(chunk))
    return {"input": stream.info.path, "output": outs.paths[0], "preview": outs.preview,
            "frames": outs.frames_written, "fps": stream.fps, "size": list(stream.size),
            "audio": outs.audio_kept}


def structure_video(src: str | os.PathLike, output: str | os.PathLike, *, signal: str = "canny",
                    detail: int = 0, preview: str | os.PathLike | None = None,
                    options: ReadOptions | None = None, preset: str = "veryfast", **params) -> dict:
    """Write the structure signal (edges, depth...) of ``src`` as a video.

    ``params`` go to the extractor (e.g. ``low``/``high`` for canny, ``model`` for
    depth), except :class:`~videdit.options.ReadOptions` fields (``start``, ``max_frames``...),
    which select the frames as ``options`` does. ``detail`` 0..7 coarsens the map (Gen-1's
    structure fidelity levels).
    """
    from .structure import check_detail, coarsen, get_extractor

    read_kw = {k: params.pop(k) for k in list(params) if k in ReadOptions.__dataclass_fields__}
    if read_kw and options is not None:
        raise UsageError(f"give either options= or read options ({', '.join(read_kw)}), not both")
    options = ReadOptions.from_keywords(**read_kw) if read_kw else options
    extractor = get_extractor(signal, **params)
    check_detail(detail)  # before decoding anything

    def transform(chunk):
        maps = coarsen(extractor(chunk), detail)
        return maps[..., 0] if extractor.gray else maps

    # Structure maps are intermediate artifacts (control inputs, previews): x264's
    # "veryfast" encodes them ~4x faster than the default at the same crf, with no
    # visible loss on binary/soft edge maps (see BENCHMARKS.md).
    summary = map_video(src, transform, output, options=options, preview=preview,
                        desc=f"structure ({signal})", preset=preset)
    summary.update(signal=signal, detail=detail)
    return summary
