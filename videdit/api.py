"""The Python API for diffusion tasks: load a pipeline once, restyle or generate many times.

    pipe = videdit.load_pipeline("sd15-depth")            # or a .toml recipe, or a diffusers dir
    video = pipe.restyle("clip.mp4", "a watercolor city")  # -> Video
    pipe.restyle("clip.mp4", "...", output="out.mp4")     # streams to disk, returns a summary
    for chunk in pipe.restyle_stream("clip.mp4", "..."):  # (n, H, W, 3) uint8 as they are made
        ...

``videdit.restyle(...)`` and ``videdit.generate(...)`` are one-shot versions.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from contextlib import nullcontext
from typing import Iterator

import numpy as np

from .errors import UsageError
from .io import AudioSource, Video, VideoWriter, iter_video
from .io.write import Outputs
from .options import DiffusionOptions, ReadOptions
from .progress import progress

__all__ = ["Pipeline", "load_pipeline", "restyle", "generate", "DEFAULT_RESTYLE", "DEFAULT_GENERATE"]

DEFAULT_RESTYLE = "mini"  # the built-in model; works offline with no downloads
DEFAULT_GENERATE = "mini-t2v"  # the built-in text-to-video model; offline too
log = logging.getLogger("videdit")
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_READ_KEYS = ("start", "end", "stride", "max_frames", "max_side")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise UsageError(f"--device {name}: unknown; choose one of: auto, cpu, cuda, cuda:N, mps")
    return name


class Pipeline:
    """A recipe's models, loaded once and reused across calls (see module docstring)."""

    def __init__(self, components):
        self.components = components
        self.recipe = components.recipe

    @classmethod
    def load(cls, pipeline=None, *, kind: str = "restyle", device: str = "auto", dtype: str = "fp32",
             allow_pickle: bool = False, vae_tiling: bool = False, offload: bool = False) -> "Pipeline":
        import torch

        from .core.components import apply_memory_options, load_components
        from .core.recipes import load_recipe

        if kind not in (None, "restyle", "text2video"):
            raise UsageError(f"kind: '{kind}' unknown; choose one of: restyle, text2video")
        recipe = load_recipe(pipeline or (DEFAULT_RESTYLE if kind == "restyle" else DEFAULT_GENERATE))
        # A text2video model also restyles (video-to-video, SDEdit); a restyle model cannot generate.
        if kind is not None and recipe.kind != kind and not (kind == "restyle" and recipe.kind == "text2video"):
            command = "generate" if recipe.kind == "text2video" else "restyle"
            raise UsageError(f"pipeline '{recipe.name}' is a {recipe.kind} recipe, not {kind}; "
                             f"use `videdit {command}` with it, or choose a {kind} recipe")
        if dtype not in _DTYPES:
            raise UsageError(f"--dtype: '{dtype}' unknown; choose one of: {', '.join(_DTYPES)}")
        dev = _device(device)
        if dev == "cpu" and dtype == "fp16":
            raise UsageError("--dtype fp16 is not supported on the CPU; use fp32 or bf16")
        if offload and not dev.startswith("cuda"):
            raise UsageError("--offload needs a CUDA device (it moves models between CPU and GPU memory)")
        comps = load_components(recipe, device=dev, dtype=getattr(torch, _DTYPES[dtype]), allow_pickle=allow_pickle)
        apply_memory_options(comps, vae_tiling=vae_tiling, offload=offload)
        return cls(comps)

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of ``prompt`` outside the model's declared vocabulary (``tokenizer/known_words.json``).

        Small models trained on a closed vocabulary (videdit-mini) ship that file; for
        models without it (open-vocabulary CLIP) this returns ``[]``.
        """
        import json
        import re

        path = os.path.join(self.recipe.base, "tokenizer", "known_words.json")
        try:
            with open(path) as f:
                known = set(json.load(f))
        except (OSError, ValueError):
            return []
        words = re.findall(r"[a-z]+(?:'[a-z]+)?", prompt.lower())
        return list(dict.fromkeys(w for w in words if w not in known))

    def _warn_unknown(self, prompt: str) -> None:
        unknown = self.unknown_words(prompt)
        if unknown:
            log.warning("pipeline '%s' does not know the word(s) %s; the prompt still runs, but they will have "
                        "little or no effect", self.recipe.name, ", ".join(repr(w) for w in unknown))

    @property
    def size_multiple(self) -> int:
        """Frame sides must be multiples of this: the VAE factor for an image UNet (diffusers' UNet2D
        upsamples to its skip connections' sizes, so any latent size works, and a 16:9 clip keeps its
        shape: 512x288, not 512x256); times the UNet's downsampling for a UNet3D, which needs it."""
        c = self.components
        if self.recipe.kind != "text2video":
            return c.vae_factor
        return c.vae_factor * 2 ** (len(c.unet.config.block_out_channels) - 1)

    def options(self, prompt: str, **kw) -> DiffusionOptions:
        return self._resolve(prompt, kw, (*_READ_KEYS, "output", "preview", "watermark", "prompt_in_credentials"))

    def _resolve(self, prompt: str, kw: dict, also: tuple[str, ...]) -> DiffusionOptions:
        """The run's options from the caller's keywords (``also``: the other ones it takes), filled from the
        recipe (and, for a text2video recipe, :data:`T2V_DEFAULTS`); UsageError for what cannot apply."""
        opts = DiffusionOptions.from_keywords(also, prompt=prompt, **self._call_options(kw))
        if self.recipe.kind == "text2video":
            from .core.t2v import resolve_options

            opts = resolve_options(self.components, opts)
        else:
            opts = opts.resolved(self.recipe.defaults)
        if kw.get("window") is not None and opts.consistency != "window":
            raise UsageError(f"--window applies to --consistency window; this run uses {opts.consistency}")
        return opts

    def _call_options(self, kw: dict) -> dict:
        """``kw`` without load-time options: a loaded pipeline's device and dtype are fixed, so a different
        one asked for at call time is a UsageError instead of being ignored."""
        c = self.components
        dtype = str(c.dtype).removeprefix("torch.")
        differs = {"device": lambda v: v != "auto" and _device(v) != str(c.device),
                   "dtype": lambda v: _DTYPES.get(v, v) != dtype}
        for key, test in differs.items():
            if kw.get(key) is not None and test(kw[key]):
                raise UsageError(f"{key}: '{kw[key]}' is chosen when the pipeline is loaded (load_pipeline(..., "
                                 f"{key}='{kw[key]}')); this one runs on {c.device} in {dtype}")
        return {k: v for k, v in kw.items() if k not in differs}


    # -- restyle ------------------------------------------------------------------------
    def _restyle_setup(self, video, prompt, kw):
        from .core.restyle import prepare

        if self.recipe.kind != "restyle":  # only restyle() takes a text2video recipe (video-to-video)
            raise UsageError(f"pipeline '{self.recipe.name}' is a {self.recipe.kind} recipe: its frames are "
                             "denoised together, so they cannot stream; use restyle() (video-to-video)")
        read_kw = {k: kw.pop(k) for k in _READ_KEYS if k in kw}
        read_fps = kw.pop("fps", None)
        opts = self.options(prompt, **kw)
        if opts.size is None and read_kw.get("max_side") is None:
            read_kw["max_side"] = int(self.recipe.default("max_side", 512))
        prep = prepare(self.components, opts)  # fails fast on bad prompt/options, before decoding
        ropts = ReadOptions(size=opts.size, fps=read_fps, multiple=self.size_multiple,
                            chunk=max(1, opts.chunk - opts.overlap), **read_kw)
        chunks, total, fps, info, start = _open_source(video, ropts, read_fps, self.recipe)
        self._warn_unknown(opts.prompt)
        return prep, chunks, total, fps, info, start

    def restyle_stream(self, video, prompt: str = "", **kw) -> Iterator[np.ndarray]:
        """Yield restyled ``(n, H, W, 3) uint8`` chunks as they are made (see :meth:`restyle`; it writes
        nothing, so ``output``/``preview`` are :meth:`restyle`'s)."""
        writes = [k for k in ("output", "preview", "watermark", "prompt_in_credentials") if k in kw]
        if writes:
            raise UsageError(f"restyle_stream yields frames and writes nothing, so it takes no '{writes[0]}'; "
                             "use restyle(..., output=...) to write a file")
        from .core.restyle import restyle_windows
        from .io import prefetch

        prep, chunks, total, *_ = self._restyle_setup(video, prompt, kw)
        yield from restyle_windows(self.components, prep, prefetch(chunks) if not isinstance(chunks, list) else chunks)

    def restyle(self, video, prompt: str = "", *, output: str | os.PathLike | None = None,
                preview: str | os.PathLike | None = None, watermark: bool = True,
                prompt_in_credentials: bool = True, **kw):
        """Restyle ``video`` (a path or a :class:`Video`) with ``prompt`` (and/or ``ref_image=``).

        Keyword options are :class:`~videdit.options.DiffusionOptions` fields (strength,
        steps, guidance, seed, consistency, structure, structure_scale, structure_detail,
        chunk, overlap, ...) and frame selection (start, end, stride, fps, max_frames,
        max_side; ``size`` is a DiffusionOptions field). Without ``output`` returns a
        :class:`Video`; with it, streams to that file (audio of the range kept) and
        returns a summary dict. Written files carry Content Credentials and an
        invisible watermark (:mod:`videdit.provenance`); ``watermark=False`` (research
        use) is recorded in the credentials, ``prompt_in_credentials=False`` withholds
        the prompt.
        """
        from .core.chunks import window_count
        from .core.restyle import restyle_windows
        from .core.sampling import denoise_steps
        from .io import prefetch

        if self.recipe.kind == "text2video":
            return self._video_to_video(video, prompt, output=output, preview=preview, watermark=watermark,
                                        prompt_in_credentials=prompt_in_credentials, **kw)
        prep, chunks, total, fps, info, start = self._restyle_setup(video, prompt, kw)
        src = prefetch(chunks) if not isinstance(chunks, list) else chunks
        pending: deque = deque()  # source frames not yet matched by output (at most a window)

        def tee(it):
            for c in it:
                pending.extend(c)
                yield c

        out_frames, done = [], 0
        o = prep.opts
        outs = self._outputs(output, preview, o, fps, info, start, total, watermark, prompt_in_credentials)
        steps = denoise_steps(o.steps, o.strength)
        n_windows = window_count(total, o.chunk, o.overlap)
        with outs, progress(total=n_windows * steps, desc=f"restyle {self.recipe.name} ({total} frames, "
                            f"{n_windows} windows)", unit="step") as bar:
            for chunk in restyle_windows(self.components, prep, tee(src), on_step=lambda i, x: bar.update(1)):
                source = np.stack([pending.popleft() for _ in range(len(chunk))])
                if output is not None:
                    outs.write(source, chunk)
                else:
                    out_frames.append(chunk)
                done += len(chunk)
        if output is None:
            return Video(np.concatenate(out_frames), fps, source=info, start=start)
        return {"output": outs.paths[0], "preview": outs.preview, "frames": done, "fps": fps,
                "pipeline": self.recipe.name}

    def _outputs(self, output, preview, opts, fps, info, start, frames, watermark, prompt_in_credentials):
        """Where a restyle writes: ``output`` (and ``preview``) with credentials, the mark and the audio of
        the ``frames`` read from ``start`` of ``info``'s file; a no-op context without ``output``. The
        source and ``opts``' reference image are inputs the outputs must not replace."""
        if output is None:
            return nullcontext()
        source = info.path if info is not None else None
        audio = AudioSource(source, start, frames / fps) if info is not None and info.has_audio else None
        mark = _provenance(self.recipe.name, opts.prompt, source, watermark, prompt_in_credentials)
        inputs = [p for p in (source, opts.ref_image_path) if p]
        return Outputs(output, preview, fps, audio=audio, protect=inputs, provenance=mark)

    def _video_to_video(self, video, prompt, *, output, preview, watermark, prompt_in_credentials, **kw):
        """:meth:`restyle` with a text2video (UNet3D) recipe: SDEdit (Meng et al. 2022), the clip noised to
        ``strength`` and denoised under the prompt, as ``zeroscope-v2v`` is meant to be used.

        The clip is read at the recipe's ``size`` unless ``size``/``max_side`` say otherwise and encoded
        as it is read. All frames are denoised together, so UNet memory grows with them: a file is read
        up to the recipe's ``frames`` unless ``max_frames`` says otherwise, or ``chunk`` is given; then a
        clip of any length is co-denoised in windows of ``chunk`` frames (:mod:`videdit.core.t2v`) and
        UNet memory stays flat. Only the latents are held (and the source frames if a ``preview`` needs them).
        """
        from .core.sampling import denoise_steps
        from .core.t2v import iter_decoded, video_to_video_frames

        read_kw = {k: kw.pop(k) for k in _READ_KEYS if k in kw}
        read_fps = kw.pop("fps", None)
        also = (*_READ_KEYS, "fps", "output", "preview", "watermark", "prompt_in_credentials")
        opts = self._resolve(prompt, kw, also)
        size = opts.size if read_kw.get("max_side") is None else None
        capped = read_kw.get("max_frames") is None and not isinstance(video, Video) and opts.chunk is None
        if capped:
            read_kw["max_frames"] = opts.frames + 1  # one more tells whether the clip is longer
        ropts = ReadOptions(size=size, fps=read_fps, multiple=self.size_multiple, **read_kw)
        chunks, total, fps, info, start = _open_source(video, ropts, read_fps, self.recipe)
        if capped and total > opts.frames:
            chunks, total = _first(chunks, opts.frames), opts.frames
            log.warning("%s: restyling its first %d frames, the clip length of pipeline '%s' (all frames are "
                        "denoised together); --max-frames N for more, or --chunk %d to denoise any length in "
                        "windows", info.path, opts.frames, self.recipe.name, opts.frames)
        self._warn_unknown(opts.prompt)
        outs = self._outputs(output, preview, opts, fps, info, start, total, watermark, prompt_in_credentials)
        kept: list | None = [] if preview is not None else None
        windows = _t2v_windows(total, opts)
        with outs, progress(total=denoise_steps(opts.steps, opts.strength), unit="step",
                            desc=f"video-to-video {self.recipe.name} ({total} frames{windows})") as bar:
            latents = video_to_video_frames(self.components, opts, _keeping(chunks, kept), output="latent",
                                            on_step=lambda i, x: bar.update(1))
            decoded = iter_decoded(self.components, latents, chunk=opts.decode_chunk_size)
            if output is None:
                return Video(np.concatenate(list(decoded)), fps, source=info, start=start)
            source = itertools.chain.from_iterable(kept) if kept is not None else None  # frames, no copy
            done = 0
            for out in decoded:
                outs.write(np.stack(list(itertools.islice(source, len(out)))) if source else None, out)
                done += len(out)
        return {"output": outs.paths[0], "preview": outs.preview, "frames": done, "fps": fps,
                "pipeline": self.recipe.name}

    # -- generate -----------------------------------------------------------------------
    def generate(self, prompt: str, *, output: str | os.PathLike | None = None, watermark: bool = True,
                 prompt_in_credentials: bool = True, **kw):
        """Text-to-video with a UNet3D recipe: ``frames`` frames of ``size`` at ``fps``.

        Keyword options are :class:`~videdit.options.DiffusionOptions` fields (frames,
        size, fps, steps, guidance, seed, negative_prompt, consistency, noise_share,
        chunk, overlap, ...). ``chunk=N`` co-denoises more than N frames in overlapping
        windows of N (flat memory; :mod:`videdit.core.t2v`); by default all frames are
        denoised together. Without ``output`` returns a :class:`Video`; with it writes
        the file (decoded and written a few frames at a time) and returns a summary.
        """
        from .core.t2v import T2V_DEFAULTS, generate_frames, iter_decoded

        if self.recipe.kind != "text2video":
            raise UsageError(f"pipeline '{self.recipe.name}' is a {self.recipe.kind} recipe; "
                             "use `videdit restyle` with it, or choose a text2video recipe")
        also = ("output", "watermark", "prompt_in_credentials")
        if kw.get("strength") is not None:
            raise UsageError("strength: generate starts from noise; strength is for video-to-video (restyle a "
                             "clip with a text2video recipe)")
        opts = self._resolve(prompt, kw, also)
        self._warn_unknown(opts.prompt)
        if opts.size is not None:  # else the UNet's own sample size
            _warn_large(self.recipe, *opts.size, knobs="--size")
        clip = int(self.recipe.default("frames", T2V_DEFAULTS["frames"]))
        if opts.chunk is None and opts.frames > clip:
            log.warning("pipeline '%s' was trained on %d-frame clips; all %d frames are denoised together, so "
                        "memory grows with them: --chunk %d denoises them in windows with flat memory",
                        self.recipe.name, clip, opts.frames, clip)
        mark = _provenance(self.recipe.name, opts.prompt, None, watermark, prompt_in_credentials)
        ref = [opts.ref_image_path] if opts.ref_image_path else []
        writer = VideoWriter(output, opts.fps, protect=ref, provenance=mark) if output is not None else None  # fails early
        try:
            with progress(total=opts.steps, unit="step",
                          desc=f"generate {self.recipe.name} ({opts.frames} frames{_t2v_windows(opts.frames, opts)})") as bar:
                latents = generate_frames(self.components, opts, output="latent", on_step=lambda i, x: bar.update(1))
            decoded = iter_decoded(self.components, latents, chunk=opts.decode_chunk_size)
            if writer is None:
                return Video(np.concatenate(list(decoded)), float(opts.fps))
            for frames in decoded:  # a long clip is never whole in memory as pixels
                writer.write(frames)
            path = writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return {"output": path, "frames": writer.frames_written, "fps": float(opts.fps), "pipeline": self.recipe.name,
                "size": [int(frames.shape[2]), int(frames.shape[1])]}


def _t2v_windows(frames: int, opts: DiffusionOptions) -> str:
    """Progress-bar note on how a UNet3D run splits ``frames`` frames (empty for one window)."""
    from .core.chunks import window_count
    from .core.t2v import window_plan

    n = window_count(frames, *window_plan(opts, frames))
    return f", {n} windows of {opts.chunk}" if n > 1 else ""


def _first(chunks, n: int):
    """The first ``n`` frames of a chunk stream, in its chunks."""
    for c in chunks:
        yield c[:n]
        n -= len(c)
        if n <= 0:
            return


def _keeping(chunks, kept: list | None):
    """``chunks`` as they pass, appended to ``kept`` if it is a list."""
    for c in chunks:
        if kept is not None:
            kept.append(c)
        yield c


def _warn_large(recipe, width: int, height: int, knobs: str = "--size or --max-side") -> None:
    """Warn when frames have far more pixels than ``recipe``'s model works at: time grows with the pixels,
    attention's with their square, and memory with them, so a typo (8192x8192) ends in a kill, not an error."""
    w0, h0 = recipe.default("size") or [int(recipe.default("max_side", 512))] * 2
    ratio = width * height / (w0 * h0)
    if ratio > 4:
        log.warning("pipeline '%s' works at about %dx%d; %dx%d has %.0fx its pixels, so expect a far longer run "
                    "and far more memory (%s lower it; --vae-tiling bounds the decoder's)",
                    recipe.name, w0, h0, width, height, ratio, knobs)


def _open_source(video, ropts: ReadOptions, read_fps=None, recipe=None):
    """``(chunks, frames, fps, info, start)`` of a path (streamed) or a decoded :class:`Video` under ``ropts``;
    warns if ``recipe``'s model would work at far more pixels than its own size (:func:`_warn_large`)."""
    if isinstance(video, Video):
        # Frame selection is the reader's job: with frames already decoded it would be ignored.
        chosen = [k for k in ("start", "end", "max_frames") if getattr(ropts, k) is not None]
        chosen += (["stride"] if ropts.stride != 1 else []) + (["fps"] if read_fps is not None else [])
        if chosen:
            raise UsageError(f"{', '.join(chosen)}: frame selection applies when reading a file; "
                             "for a Video, slice video.frames (or read it with these options)")
        frames = video.frames
        w, h = ropts.target_size(video.width, video.height)
        if (w, h) != (video.width, video.height):
            from .io.read import _resize

            frames = _resize(frames, (w, h))
        chunks = [frames[i:i + ropts.chunk] for i in range(0, len(frames), ropts.chunk)]
        if recipe is not None:
            _warn_large(recipe, w, h)
        return chunks, len(frames), video.fps, video.source, video.start
    if not isinstance(video, (str, os.PathLike)):
        raise UsageError(f"video: give a file path or a videdit.Video, not {type(video).__name__} "
                         "(wrap decoded frames as videdit.Video(frames, fps))")
    stream = iter_video(video, ropts)  # probes the input: a bad file fails here
    if recipe is not None:
        _warn_large(recipe, *stream.size)
    return stream, len(stream), stream.fps, stream.info, stream.start


def _provenance(recipe: str, prompt: str, source: str | None, watermark: bool, include_prompt: bool):
    """Content Credentials + watermark description of a generated output (see videdit.provenance)."""
    from .provenance import Provenance

    return Provenance(action="edited" if source else "created", recipe=recipe, prompt=prompt or None,
                      include_prompt=include_prompt, source=source, watermark=watermark)


def load_pipeline(pipeline=None, *, kind: str = "restyle", device: str = "auto", dtype: str = "fp32",
                  allow_pickle: bool = False, vae_tiling: bool = False, offload: bool = False) -> Pipeline:
    """Load a recipe (name, ``.toml`` path or diffusers directory) once, to reuse across calls.

    ``vae_tiling`` decodes large frames tile by tile; ``offload`` (CUDA) keeps models
    in CPU memory and moves each to the GPU only while it runs."""
    return Pipeline.load(pipeline, kind=kind, device=device, dtype=dtype, allow_pickle=allow_pickle,
                         vae_tiling=vae_tiling, offload=offload)


def restyle(video, prompt: str = "", *, pipeline=None, device: str = "auto", dtype: str = "fp32", **kw):
    """One-shot :meth:`Pipeline.restyle`; ``pipeline`` may be a loaded :class:`Pipeline`."""
    return _loaded(pipeline, "restyle", device, dtype).restyle(video, prompt, **kw)


def generate(prompt: str, *, pipeline=None, device: str = "auto", dtype: str = "fp32", **kw):
    """One-shot :meth:`Pipeline.generate` (text-to-video); ``pipeline`` may be a loaded :class:`Pipeline`."""
    return _loaded(pipeline, "text2video", device, dtype).generate(prompt, **kw)


def _loaded(pipeline, kind: str, device: str, dtype: str) -> Pipeline:
    """``pipeline`` if already loaded (UsageError if ``device``/``dtype`` ask for others), else loaded."""
    if isinstance(pipeline, Pipeline):
        pipeline._call_options({"device": device, "dtype": dtype})
        return pipeline
    return load_pipeline(pipeline, kind=kind, device=device, dtype=dtype)
