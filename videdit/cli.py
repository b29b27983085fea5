"""The ``videdit`` command line: one file, one subcommand per task.

Every user error ends as one line on stderr (``videdit: error: ...``) and the
exit code of its class (see :mod:`videdit.errors`); ``--debug`` adds the
traceback. Heavy libraries are imported by the subcommands that need them, so
``videdit info`` starts fast.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from . import __version__
from .errors import EXIT_INTERNAL, UsageError, VideditError
from .options import ReadOptions

log = logging.getLogger("videdit")


def read_options(size: str = "Resize to WIDTHxHEIGHT (rounded to a multiple of 8).",
                 max_side: str = "Scale down so the longer side is at most N (aspect kept)."):
    """Attach the shared frame-selection and size options to a command (``size``, ``max_side``: their help)."""
    opts = [
        click.option("--start", help="First frame: seconds (2.5) or frame number (48f)."),
        click.option("--end", help="End (exclusive): seconds or frame number (96f)."),
        click.option("--stride", type=int, default=1, show_default=True, help="Keep every n-th frame."),
        click.option("--fps", type=float, help="Resample to this frame rate (default: keep the source's); an "
                     "image-sequence directory plays at it, one image a frame (default 24)."),
        click.option("--max-frames", type=int, help="Stop after this many frames."),
        click.option("--size", help=size),
        click.option("--max-side", type=int, help=max_side),
    ]

    def attach(f):
        for opt in reversed(opts):
            f = opt(f)
        return f
    return attach


def _read_options(kw: dict) -> ReadOptions:
    keys = ("start", "end", "stride", "fps", "max_frames", "size", "max_side")
    return ReadOptions(**{k: kw.pop(k) for k in keys})


def _frames(n: int) -> str:
    return f"{n} frame{'' if n == 1 else 's'}"


def _emit(data: dict, as_json: bool, lines) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_jsonable))
    else:
        for line in lines:
            click.echo(line)


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class _OneLine(logging.Formatter):
    def format(self, record):
        return f"videdit: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


def _log_to_stderr(level: int) -> None:
    """Send the library's log to stderr as one line per message (replacing an earlier CLI handler)."""
    for h in [h for h in log.handlers if getattr(h, "_videdit_cli", False)]:
        log.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler._videdit_cli = True
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="videdit")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx, debug, quiet):
    """Edit video with diffusion models: restyle clips, extract structure, measure consistency."""
    ctx.obj = {"debug": debug}
    _log_to_stderr(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    if quiet:
        _quiet(ctx, None, True)


def _quiet(ctx, param, value):
    if value:
        import os

        os.environ["VIDEDIT_PROGRESS"] = "0"
        if log.level != logging.DEBUG:  # --debug wins over -q
            log.setLevel(logging.ERROR)


def _debug(ctx, param, value):
    if value:
        log.setLevel(logging.DEBUG)


@cli.command()
@click.argument("video", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(video, as_json):
    """Show size, frame rate, frame count, duration, rotation and audio of VIDEO."""
    from .io import probe

    i = probe(video)
    d = i.as_dict()
    _emit(d, as_json, [
        f"{i.path}",
        f"  size      {i.width}x{i.height}" + (f" (rotated {i.rotation} deg)" if i.rotation else ""),
        f"  frames    {i.frame_count} at {i.fps:.3f} fps" + (" (variable frame rate)" if i.vfr else ""),
        f"  duration  {i.duration:.3f} s",
        f"  video     {i.video_codec} {i.pix_fmt} in {i.container.split(',')[0]}",
        f"  audio     {i.audio_codec or 'none'}" + (f", {i.audio_duration:.3f} s" if i.audio_duration else ""),
        *([f"  damage    {i.damage}"] if i.damage else []),
    ])


@cli.command()
@click.argument("video", type=click.Path(dir_okay=True), required=False)
@click.option("-o", "--output", type=click.Path(), help="Output video (mp4, webm, mkv, mov, gif, or dir/ for PNGs).")
@click.option("--signal", default="canny", show_default=True, help="Structure signal (see --list).")
@click.option("--list", "list_", is_flag=True, help="List the structure signals and whether they are available.")
@click.option("--structure-detail", "detail", type=int, default=0, show_default=True,
              help="0 = full detail .. 7 = coarsest (Gen-1 structure fidelity).")
@click.option("--preview", type=click.Path(), help="Also write a side-by-side source | structure video.")
@click.option("--low", type=int, help="canny: low threshold (0-255).")
@click.option("--high", type=int, help="canny: high threshold (0-255).")
@click.option("--model", help="Model for depth/softedge-hed/...: hub id or local directory.")
@click.option("--preset", default="veryfast", show_default=True,
              type=click.Choice(["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"]),
              help="x264 preset of the written maps (they are intermediate artifacts).")
@read_options()
def structure(video, output, signal, list_, detail, preview, low, high, model, preset, **kw):
    """Extract per-frame structure (edges, depth...) of VIDEO into a video."""
    from .structure import list_signals

    if list_:
        for s in list_signals():
            state = "available" if s.available else f"unavailable: {s.reason}"
            click.echo(f"{s.name:18s} {s.description} [{state}]")
        return
    if not video or not output:
        raise UsageError("structure needs VIDEO and -o OUTPUT (or --list)")
    from .tasks import structure_video

    params = {k: v for k, v in {"low": low, "high": high, "model": model}.items() if v is not None}
    s = structure_video(video, output, signal=signal, detail=detail, preview=preview,
                        options=_read_options(kw), preset=preset, **params)
    click.echo(f"wrote {s['output']} ({_frames(s['frames'])}, {s['fps']:.3f} fps"
               + (", audio kept" if s["audio"] else "") + ")"
               + (f" and {s['preview']}" if s["preview"] else ""))


@cli.command()
@click.argument("source", type=click.Path(dir_okay=True))
@click.argument("output", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@read_options()
def metrics(source, output, as_json, **kw):
    """Temporal consistency (flow warping error) and structure fidelity of OUTPUT against SOURCE."""
    from .io import iter_video
    from .metrics import video_metrics

    src = iter_video(source, _read_options(kw))  # streamed: memory does not grow with the length
    # The output at its own size: the metrics compare it at the source's and report both.
    out = iter_video(output, ReadOptions(max_frames=src.opts.max_frames))
    m = video_metrics(src, out)
    _emit(m, as_json, [f"{k:24s} {v:.6g}" if isinstance(v, float) else f"{k:24s} {v}" for k, v in m.items()])


def diffusion_options(f):
    """Options shared by restyle and generate."""
    opts = [
        click.option("--prompt", "-p", default="", help="What the video should look like."),
        click.option("--negative-prompt", help="What it should not look like."),
        click.option("--pipeline", help="Recipe name (see `videdit pipelines`), a .toml recipe, or a diffusers dir. Default: the built-in videdit-mini for restyle, videdit-mini-t2v (mini-t2v) for generate."),
        click.option("--steps", type=int, help="Denoising steps (recipe default)."),
        click.option("--guidance", type=float, help="Classifier-free guidance scale (recipe default)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same output."),
        click.option("--consistency", type=click.Choice(["none", "first", "sparse-causal", "full", "window"]),
                     help="Cross-frame attention (recipe default; sparse-causal for restyle)."),
        click.option("--shared-noise/--independent-noise", default=None,
                     help="One initial noise for every frame (less flicker; Text2Video-Zero) or one per frame: "
                          "--noise-share 1 or 0 (default: the recipe's share)."),
        click.option("--noise-share", type=float, default=None,
                     help="Fraction (0-1) of the initial noise common to all frames, the rest per frame "
                          "(PYoCo's mixed noise; recipe default)."),
        click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps."),
        click.option("--allow-pickle", is_flag=True, help="Allow pickled (.bin/.ckpt) weights: they can run code."),
        click.option("--vae-tiling", is_flag=True, help="Decode large frames tile by tile (less memory)."),
        click.option("--offload", is_flag=True, help="CUDA: keep models in CPU memory, move each to the GPU to run."),
        click.option("--no-watermark", is_flag=True,
                     help="Research use: no invisible watermark (the Content Credentials record it)."),
        click.option("--no-prompt-in-credentials", is_flag=True, help="Keep the prompt out of the Content Credentials."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _pop_diffusion(kw: dict) -> tuple[dict, dict]:
    load = {k: kw.pop(k) for k in ("pipeline", "dtype", "device", "allow_pickle", "vae_tiling", "offload")}
    load["marks"] = {"watermark": not kw.pop("no_watermark"),
                     "prompt_in_credentials": not kw.pop("no_prompt_in_credentials")}
    return load, {k: v for k, v in kw.items() if v is not None}


def _load_pipeline(load: dict, kind: str):
    from .api import load_pipeline

    return load_pipeline(load["pipeline"], kind=kind, device=load["device"], dtype=load["dtype"],
                         allow_pickle=load["allow_pickle"], vae_tiling=load["vae_tiling"], offload=load["offload"])


@cli.command()
@click.argument("video", type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(), required=True,
              help="Output video (mp4, m4v, mov, mkv, webm, gif, or dir/ for PNG frames).")
@diffusion_options
@click.option("--ref-image", type=click.Path(dir_okay=True), help="Reference image for content/style (IP-Adapter).")
@click.option("--structure", help="Structure signals to use, comma-separated (default: the recipe's).")
@click.option("--structure-scale", help="ControlNet scale(s), comma-separated.")
@click.option("--structure-detail", type=int, help="0 = follow the source exactly .. 7 = loosely.")
@click.option("--strength", type=float, help="How far from the source: (0, 1]; 1 ignores its colours.")
@click.option("--window", type=int, help="Neighbours per side for --consistency window.")
@click.option("--chunk", type=int, help="Frames per window (memory bound; for a text2video recipe, windows are "
              "co-denoised and off unless given).")
@click.option("--overlap", type=int, help="Frames shared by consecutive windows (blended).")
@click.option("--preview", type=click.Path(), help="Also write a side-by-side source | output video.")
@read_options(size="Process at WIDTHxHEIGHT (rounded to the model's multiple).",
              max_side="Process with the longer side at most N (default: the recipe's).")
def restyle(video, output, **kw):
    """Repaint VIDEO following its structure, with a text prompt and/or a reference image.

    With a text2video recipe (zeroscope-v2v, modelscope-t2v, mini-t2v) it is video-to-video
    (SDEdit): the clip, up to the recipe's frame count (any length with --chunk) and at its size,
    is noised to --strength and denoised under the prompt."""
    load, opts = _pop_diffusion(kw)
    preview = opts.pop("preview", None)
    if "structure" in opts:
        opts["structure"] = tuple(s.strip() for s in opts["structure"].split(",") if s.strip())
    # Validate options before loading models: a typo should not cost a model load.
    from .options import DiffusionOptions

    DiffusionOptions(**{k: v for k, v in opts.items() if k in DiffusionOptions.__dataclass_fields__})
    pipe = _load_pipeline(load, "restyle")
    s = pipe.restyle(video, opts.pop("prompt", ""), output=output, preview=preview, **load["marks"], **opts)
    click.echo(f"wrote {s['output']} ({_frames(s['frames'])}, {s['fps']:.3f} fps, pipeline {s['pipeline']})"
               + (f" and {s['preview']}" if s["preview"] else ""))


@cli.command()
@click.option("-o", "--output", type=click.Path(), required=True,
              help="Output video (mp4, m4v, mov, mkv, webm, gif, or dir/ for PNG frames).")
@diffusion_options
@click.option("--frames", type=int, help="Number of frames (recipe default).")
@click.option("--size", help="WIDTHxHEIGHT (recipe default; a multiple of the model's factor).")
@click.option("--fps", type=float, help="Frame rate of the written video (recipe default).")
@click.option("--chunk", type=int, help="Denoise in overlapping windows of this many frames, so memory stays flat "
              "however many --frames (use the model's clip length, 16; default: all frames in one pass).")
@click.option("--overlap", type=int, help="Frames shared by neighbouring windows (default: half a window).")
def generate(output, **kw):
    """Generate a video from a text prompt alone (UNet3D, the ModelScope text-to-video design).

    With --chunk N, more frames than N are co-denoised in overlapping windows of N frames
    (Gen-L-Video, with FreeNoise's noise rescheduling), so memory stays flat however long the clip."""
    from .options import DiffusionOptions

    load, opts = _pop_diffusion(kw)
    DiffusionOptions(**opts)  # validate before loading models
    pipe = _load_pipeline(load, "text2video")
    s = pipe.generate(opts.pop("prompt", ""), output=output, **load["marks"], **opts)
    click.echo(f"wrote {s['output']} ({_frames(s['frames'])}, {s['size'][0]}x{s['size'][1]}, {s['fps']:.3f} fps, "
               f"pipeline {s['pipeline']})")


@cli.command()
def pipelines():
    """List the recipes and whether their weights are present on this machine."""
    from .core.recipes import list_recipes
    from .core.weights import recipe_status

    for r in list_recipes():
        ok, why = recipe_status(r)
        click.echo(f"{r.name:22s} {r.kind:10s} {'ready' if ok else 'weights missing: ' + why}")
        if r.description:
            click.echo(f"{'':22s} {r.description}")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so every open output is aborted as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated


def main(argv=None) -> int:
    """Run the CLI; returns the exit code instead of raising SystemExit."""
    import signal
    import threading

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    saved = (list(log.handlers), log.level, log.propagate)
    # A killed run (a scheduler's SIGTERM, `timeout`) must not leave partial files behind either.
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _main(argv, debug)
    finally:  # in-process callers (tests, editors embedding the CLI) get their logging and handler back
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
        if main_thread:  # None: a handler not set from Python; the default is the best we can restore
            signal.signal(signal.SIGTERM, signal.SIG_DFL if old_term is None else old_term)


def _main(argv: list, debug: bool) -> int:
    import traceback

    def trace():  # --debug adds the traceback; the exit code stays the error's own
        if debug:
            traceback.print_exc(file=sys.stderr)

    try:
        cli.main(args=argv, prog_name="videdit", standalone_mode=False)
        return 0
    except VideditError as err:
        trace()
        click.echo(f"videdit: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except click.ClickException as err:  # bad flags / missing arguments: one line, exit 2
        trace()
        hint = f" (see 'videdit {err.ctx.command_path.split(' ', 1)[1]} --help')" if getattr(err, "ctx", None) and " " in err.ctx.command_path else " (see 'videdit --help')"
        click.echo(f"videdit: error: {err.format_message()}{hint}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("videdit: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("videdit: interrupted", err=True)
        return 130
    except _Terminated:
        click.echo("videdit: terminated", err=True)
        return 143
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug: say so in one line, traceback only with --debug
        trace()
        click.echo(f"videdit: internal error: {type(err).__name__}: {' '.join(str(err).split())} "
                   "(rerun with --debug for the traceback)", err=True)
        return EXIT_INTERNAL


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


@cli.command()
@click.argument("video", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--max-frames", type=int, default=240, show_default=True, help="Frames scanned for the watermark.")
def verify(video, as_json, max_frames):
    """Report VIDEO's Content Credentials (C2PA) and videdit watermark; exit 0 whatever the verdict.

    VIDEO may be an image-sequence directory (a PNG-sequence output): the watermark is checked there."""
    from .provenance.report import verify as verify_video

    report = verify_video(video, max_frames=max_frames)
    _emit(report.as_dict(), as_json, report.lines())


# --debug and -q also work after the subcommand (`videdit restyle ... -q`), where people type them;
# `main` reads --debug from anywhere in argv for the traceback.
for _command in cli.commands.values():
    _command.params += [
        click.Option(["--debug"], is_flag=True, expose_value=False, callback=_debug, help="As `videdit --debug`."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_quiet, help="As `videdit -q`."),
    ]
