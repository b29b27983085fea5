"""videdit: edit video with diffusion models.

Public API (imports are lazy, so ``import videdit`` is cheap)::

    videdit.read_video(path, **read_options) -> Video
    videdit.iter_video(path, **read_options) -> VideoStream (iterate for chunks)
    videdit.write_video(video, path) -> str
    videdit.probe(path) -> VideoInfo
    videdit.extract_structure(frames_or_chunks, signal="canny", detail=0, **params)
    videdit.warp_error(source, output) -> float
    videdit.structure_fidelity(source, output) -> float
    videdit.restyle(video, prompt, pipeline="mini", **options) -> Video (or a summary with output=)
    videdit.generate(prompt, pipeline="mini-t2v", **options) -> Video (or a summary with output=)
    videdit.load_pipeline(pipeline) -> Pipeline (load once; .restyle / .restyle_stream / .generate)
    videdit.verify(path) -> VerifyReport (Content Credentials + watermark)
"""

from __future__ import annotations

import importlib

from .errors import InputError, MissingWeightsError, OutputError, UsageError, VideditError

__version__ = "0.1.0"

_LAZY = {
    "Video": ".io", "VideoInfo": ".io", "VideoStream": ".io", "probe": ".io", "read_video": ".io",
    "iter_video": ".io", "write_video": ".io", "VideoWriter": ".io", "AudioSource": ".io",
    "ReadOptions": ".options",
    "extract_structure": ".structure", "list_signals": ".structure", "get_extractor": ".structure",
    "warp_error": ".metrics", "structure_fidelity": ".metrics", "temporal_consistency": ".metrics",
    "video_metrics": ".metrics",
    "structure_video": ".tasks", "map_video": ".tasks",
    "verify": ".provenance.report",
    "restyle": ".api", "generate": ".api", "load_pipeline": ".api", "Pipeline": ".api",
}

__all__ = ["VideditError", "UsageError", "InputError", "MissingWeightsError", "OutputError",
           "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'videdit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
