"""Option dataclasses: frozen, validated once in ``__post_init__``.

Every option a user can get wrong is checked here and nowhere else, so the error
text (naming the option and the valid range or choices) is the same from the CLI
and from Python.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass

from .errors import InputError, UsageError

__all__ = ["TimePoint", "ReadOptions", "parse_time", "parse_size"]


@dataclass(frozen=True)
class TimePoint:
    """A position in a video: ``value`` seconds, or ``value`` frames if ``frames``."""

    value: float
    frames: bool = False

    def seconds(self, fps: float) -> float:
        return self.value / fps if self.frames else self.value

    def __str__(self) -> str:  # as the user wrote it: 48f, 2.5s
        return f"{self.value:g}{'f' if self.frames else 's'}"


def parse_time(spec, name: str = "time") -> TimePoint | None:
    """Parse ``2.5`` / ``"2.5"`` / ``"2.5s"`` (seconds) or ``"48f"`` (frames)."""
    if spec is None or isinstance(spec, TimePoint):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value, frames = float(spec), False
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([sf]?)\s*", str(spec))
        if not m:
            raise UsageError(f"--{name}: '{spec}' is not a time; use seconds (2.5, 2.5s) or frames (48f)")
        value, frames = float(m.group(1)), m.group(2) == "f"
        if frames and not value.is_integer():
            raise UsageError(f"--{name}: '{spec}': a frame number must be whole")
    if value < 0:
        raise UsageError(f"--{name}: must not be negative (got {spec})")
    return TimePoint(value, frames)


def parse_size(spec, name: str = "size") -> tuple[int, int] | None:
    """Parse ``"512x288"`` or ``(512, 288)`` into ``(width, height)``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", spec)
        if not m:
            raise UsageError(f"--{name}: '{spec}' is not a size; use WIDTHxHEIGHT, e.g. 512x288")
        spec = (int(m.group(1)), int(m.group(2)))
    try:
        w, h = (int(v) for v in spec)
    except (TypeError, ValueError):
        raise UsageError(f"--{name}: '{spec}' is not a size; use WIDTHxHEIGHT") from None
    if w <= 0 or h <= 0 or w > 8192 or h > 8192:
        raise UsageError(f"--{name}: {w}x{h} is out of range (1..8192 each side)")
    return w, h


class _Keywords:
    """``from_keywords``: the options dataclasses built from a caller's keywords."""

    @classmethod
    def from_keywords(cls, also: tuple[str, ...] = (), **kw):
        """``cls(**kw)``, but an unknown keyword is a UsageError naming the nearest option.

        ``also``: the other keywords the caller accepts (listed in the message).
        """
        unknown = [k for k in kw if k not in cls.__dataclass_fields__]
        if unknown and unknown[0] in also:  # a known option that reached a call that has no use for it
            raise UsageError(f"option '{unknown[0]}' does not apply to this call")
        if unknown:
            valid = sorted({*cls.__dataclass_fields__, *also} - {"prompt"})
            near = difflib.get_close_matches(unknown[0], valid, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise UsageError(f"unknown option '{unknown[0]}'{hint}; the options are: {', '.join(valid)}")
        return cls(**kw)


@dataclass(frozen=True)
class ReadOptions(_Keywords):
    """How to read a video: which frames, at what rate, at what size.

    ``start``/``end`` are seconds or frames (see :func:`parse_time`); ``end`` is
    exclusive. ``stride`` keeps every n-th selected frame. ``fps`` resamples in time
    by picking, for each output instant, the source frame shown then (works for
    variable-frame-rate input too). ``size`` forces ``(width, height)``;
    ``max_side`` scales down keeping the aspect ratio; either way the result is
    rounded to a multiple of ``multiple`` (8 for latent models, 64 for some).
    ``chunk`` is how many frames :func:`~videdit.io.iter_video` yields at a time.
    """

    start: TimePoint | None = None
    end: TimePoint | None = None
    stride: int = 1
    fps: float | None = None
    max_frames: int | None = None
    size: tuple[int, int] | None = None
    max_side: int | None = None
    multiple: int = 8
    chunk: int = 16

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "start", parse_time(self.start, "start"))
        set_(self, "end", parse_time(self.end, "end"))
        set_(self, "size", parse_size(self.size))
        for name, lo in (("stride", 1), ("max_frames", 1), ("max_side", 8), ("multiple", 1), ("chunk", 1)):
            v = getattr(self, name)
            if v is None and name in ("max_frames", "max_side"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise UsageError(f"--{name.replace('_', '-')}: must be a whole number >= {lo} (got {v!r})")
        if self.fps is not None:
            try:
                fps = float(self.fps)
            except (TypeError, ValueError):
                raise UsageError(f"--fps: '{self.fps}' is not a number") from None
            if not 0 < fps <= 240:
                raise UsageError(f"--fps: must be in (0, 240] (got {self.fps})")
            set_(self, "fps", fps)
        if self.size is not None and self.max_side is not None:
            raise UsageError("--size and --max-side exclude each other; give one")
        if (self.start is not None and self.end is not None and self.start.frames == self.end.frames
                and self.end.value <= self.start.value):
            raise UsageError(f"--end ({self.end}) must come after --start ({self.start})")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output ``(width, height)`` for a ``width x height`` source.

        Without ``size``/``max_side`` the source size is kept as is (no rounding):
        resizing is only done when asked for.
        """
        m = self.multiple
        if self.size is not None:
            w, h = self.size
        elif self.max_side is not None:
            scale = min(1.0, self.max_side / max(width, height))
            w, h = width * scale, height * scale
        else:
            return width, height
        # Rounding to a multiple may overshoot max_side by < m/2; floor in that case.
        rw, rh = max(m, int(round(w / m)) * m), max(m, int(round(h / m)) * m)
        if self.max_side is not None and max(rw, rh) > self.max_side:
            rw, rh = max(m, int(w // m) * m), max(m, int(h // m) * m)
        return rw, rh


DTYPES = ("fp32", "fp16", "bf16")
CONSISTENCY = ("none", "first", "sparse-causal", "full", "window")


@dataclass(frozen=True)
class DiffusionOptions(_Keywords):
    """Options of a restyle or generate run; ``None`` means "the recipe's default".

    Validated here once; :meth:`resolved` fills the ``None`` fields from a recipe's
    ``[defaults]`` and then from built-in defaults, and validates again.
    """

    prompt: str = ""
    negative_prompt: str | None = None
    ref_image: str | None = None
    strength: float | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    consistency: str | None = None
    window: int | None = None
    structure: tuple[str, ...] | None = None
    structure_scale: tuple[float, ...] | None = None
    structure_detail: int | None = None
    chunk: int | None = None
    overlap: int | None = None
    shared_noise: bool | None = None
    noise_share: float | None = None
    decode_chunk_size: int | None = None
    frames: int | None = None
    size: tuple[int, int] | None = None
    fps: float | None = None
    dtype: str = "fp32"
    device: str = "auto"
    eta: float | None = None

    BUILTIN = {"strength": 0.8, "steps": 20, "guidance": 7.5, "consistency": "sparse-causal", "window": 2,
               "structure_detail": 0, "chunk": 8, "overlap": 2, "noise_share": 0.0,
               "decode_chunk_size": 8, "frames": 16, "fps": 8.0, "eta": 0.0}

    def __post_init__(self):
        set_ = object.__setattr__
        if not isinstance(self.prompt, str):
            raise UsageError(f"--prompt must be text (got {type(self.prompt).__name__})")
        if isinstance(self.structure, str):
            set_(self, "structure", tuple(s.strip() for s in self.structure.split(",") if s.strip()))
        if isinstance(self.structure_scale, (int, float)):
            set_(self, "structure_scale", (float(self.structure_scale),))
        elif isinstance(self.structure_scale, str):
            try:
                set_(self, "structure_scale", tuple(float(v) for v in self.structure_scale.split(",")))
            except ValueError:
                raise UsageError(f"--structure-scale: '{self.structure_scale}' is not a number list") from None
        if self.structure is not None:
            if not self.structure:
                raise UsageError("--structure: names no signal; give one or more, comma-separated (see the recipe's)")
            twice = sorted({s for s in self.structure if self.structure.count(s) > 1})
            if twice:
                raise UsageError(f"--structure: '{twice[0]}' is named twice")
        if self.structure_scale is not None:
            bad = [v for v in self.structure_scale if not 0.0 <= v <= 20.0]  # NaN fails both comparisons
            if bad or not self.structure_scale:
                raise UsageError(f"--structure-scale: each scale must be in [0, 20] (got {bad[0] if bad else 'none'})")
        set_(self, "size", parse_size(self.size))
        if isinstance(self.ref_image, os.PathLike):
            set_(self, "ref_image", os.fspath(self.ref_image))
        if self.ref_image is not None and not isinstance(self.ref_image, str):
            import numpy as np

            img = self.ref_image
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
                got = f"{img.shape} {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
                raise UsageError(f"--ref-image: give a path or an (H, W, 3) uint8 RGB array, not {got}")
        if isinstance(self.ref_image, str) and self.ref_image:  # before any model loads
            if os.path.isdir(self.ref_image):
                raise InputError(f"{self.ref_image}: is a directory, not a reference image")
            if not os.path.isfile(self.ref_image):
                raise InputError(f"{self.ref_image}: reference image not found")
        checks = [("strength", 0.0, 1.0, False), ("guidance", 0.0, 50.0, True), ("eta", 0.0, 1.0, True),
                  ("noise_share", 0.0, 1.0, True)]
        for name, lo, hi, lo_ok in checks:
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi or (lo_ok and v == lo)):
                rng = f"{'[' if lo_ok else '('}{lo}, {hi}]"
                raise UsageError(f"--{name.replace('_', '-')}: must be in {rng} (got {v})")
        for name, lo, hi in [("steps", 1, 1000), ("window", 1, 64), ("structure_detail", 0, 7), ("chunk", 1, 256),
                             ("overlap", 0, 64), ("decode_chunk_size", 1, 256), ("frames", 1, 4096)]:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
                raise UsageError(f"--{name.replace('_', '-')}: must be a whole number in [{lo}, {hi}] (got {v!r})")
        if self.chunk is not None and self.overlap is not None and self.overlap >= self.chunk:
            raise UsageError(f"--overlap ({self.overlap}) must be smaller than --chunk ({self.chunk})")
        if self.consistency is not None and self.consistency not in CONSISTENCY:
            raise UsageError(f"--consistency: '{self.consistency}' unknown; choose one of: {', '.join(CONSISTENCY)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype: '{self.dtype}' unknown; choose one of: {', '.join(DTYPES)}")
        if self.fps is not None and not 0 < float(self.fps) <= 240:
            raise UsageError(f"--fps: must be in (0, 240] (got {self.fps})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            # torch.Generator.manual_seed takes a signed 64-bit integer
            raise UsageError(f"--seed: must be a whole number in [0, 2^63 - 1] (got {self.seed!r})")
        if self.shared_noise is not None:  # the flag is a name for noise_share 1 or 0
            want = 1.0 if self.shared_noise else 0.0
            if self.noise_share is not None and float(self.noise_share) != want:
                flag = "--shared-noise" if self.shared_noise else "--independent-noise"
                raise UsageError(f"{flag} means --noise-share {want:g}, not {self.noise_share}; give one of them")
            set_(self, "noise_share", want)

    @property
    def has_ref_image(self) -> bool:
        """True if a reference image was given (a non-empty path or an array)."""
        return self.ref_image is not None and not (isinstance(self.ref_image, str) and not self.ref_image)

    @property
    def ref_image_path(self) -> str | None:
        """The reference image's file (an input outputs must not replace), or None (none, or an array)."""
        return self.ref_image if isinstance(self.ref_image, str) and self.ref_image else None

    @property
    def initial_noise_share(self) -> float:
        """Fraction of the initial noise common to all frames (``shared_noise`` has set ``noise_share``)."""
        return float(self.noise_share or 0.0)

    def resolved(self, defaults: dict | None = None) -> "DiffusionOptions":
        """A copy with every ``None`` field taken from ``defaults`` (a recipe's), then built-ins."""
        from dataclasses import replace

        defaults = dict(defaults or {})
        if defaults.get("shared_noise") is not None:  # a recipe's flag is a name for its share, as the user's is
            defaults.setdefault("noise_share", 1.0 if defaults["shared_noise"] else 0.0)
        defaults.pop("shared_noise", None)
        fill = {}
        for name in self.__dataclass_fields__:
            if getattr(self, name) is None:
                if name in defaults:
                    fill[name] = defaults[name]
                elif name in self.BUILTIN:
                    fill[name] = self.BUILTIN[name]
        if not self.negative_prompt and defaults.get("negative_prompt"):
            fill["negative_prompt"] = defaults["negative_prompt"]
        if "size" in fill and isinstance(fill["size"], list):
            fill["size"] = tuple(fill["size"])
        return replace(self, **fill)
