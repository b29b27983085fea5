"""Procedural *videos* for videdit-mini-t2v: one shape moving over a background, with a caption.

A clip is one shape (circle, square, triangle, star, ring, blob) in a named colour
over a flat, gradient or noisy background in another colour, doing one thing:
moving left / right / up / down, growing, shrinking, rotating or bouncing.
Captions come from a small grammar ("a red circle moving left on a blue
background"); :data:`MOTION_WORDS` are the words it adds to the still-image
grammar of :mod:`videdit.mini.data`. Everything is generated from a seed.

Positions are in pixels of an ``S x S`` frame; a translating shape moves
``speed`` px per frame and starts where it stays inside the frame for
``span`` frames (more than are rendered), so a model trained on short clips
sees objects that keep going rather than ones that stop at the border.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from . import data

__all__ = ["DIRECTIONS", "MOTIONS", "MOTION_WORDS", "T2V_WORDS", "Clip", "random_clip", "render_clip",
           "clip_caption", "direction_prompt", "mirrored_caption", "motion_sample"]

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
MOTIONS = (*DIRECTIONS, "growing", "shrinking", "rotating", "bouncing")
MOTION_WORDS = ("moving", "left", "right", "up", "down", "growing", "shrinking", "rotating", "bouncing")
T2V_WORDS = sorted(set(data.WORDS) | set(MOTION_WORDS))
_T2V_BACKGROUNDS = ("flat", "flat", "gradient", "noise")  # flat twice: the eval's case, and the common one
SPAN = 16  # frames a translating shape has room for (more than training clips render)
# Translating shapes speed up: their speed ramps from (1 - EASE) to (1 + EASE) times the mean over
# SPAN frames. Why: at constant speed every clip played backwards is another clip of the data
# (a "left" clip reversed is a "right" clip), so a model that has not yet read the direction word
# is best off symmetric in time -- and then it cannot learn which way "left" goes, since it cannot
# tell forwards from backwards (``python -m videdit.mini.probe direction``). An accelerating clip
# played backwards decelerates, which the data never does: the arrow of time is in the pixels.
EASE = 0.6


@dataclass
class Clip:
    """One procedural clip: ``shape`` (a :func:`data.random_scene`-style dict at frame 0), what it does."""

    size: int
    background: str
    bg_params: dict
    shape: dict
    motion: str
    speed: float      # px per frame (translations, bouncing), or radius growth factor per frame
    colour: str       # named colour of the shape
    bg_colour: str    # named colour (or neutral) of the background
    rgb: tuple
    bg_rgb: tuple


def random_clip(rng: np.random.Generator, size: int = 128, motion: str | None = None, span: int = SPAN,
                colour: str | None = None) -> Clip:
    """A random clip; ``motion``/``colour`` force those choices (eval captions)."""
    motion = motion or MOTIONS[rng.integers(len(MOTIONS))]
    kinds = data.SHAPES if motion != "rotating" else ("square", "triangle", "star")
    kind = kinds[rng.integers(len(kinds))]
    r = float(rng.uniform(0.11, 0.17)) * size
    speed = 0.0
    cx, cy = rng.uniform(r + 2, size - r - 2, 2)
    if motion in DIRECTIONS:
        speed = float(rng.uniform(2.5, 4.0)) * size / 128
        dx, dy = DIRECTIONS[motion]
        travel = speed * (span - 1)
        lo, hi = r + 2, size - r - 2
        # start on the side it moves away from, with room to keep going for `span` frames
        cx = rng.uniform(lo, max(lo, hi - travel)) if dx > 0 else rng.uniform(min(hi, lo + travel), hi) if dx < 0 else cx
        cy = rng.uniform(lo, max(lo, hi - travel)) if dy > 0 else rng.uniform(min(hi, lo + travel), hi) if dy < 0 else cy
    elif motion in ("growing", "shrinking"):
        speed = float(rng.uniform(0.03, 0.05))
        r = r * (0.7 if motion == "growing" else 1.3)
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
    elif motion == "bouncing":
        speed = float(rng.uniform(0.25, 0.4))  # radians of the bounce phase per frame
    elif motion == "rotating":
        speed = float(rng.uniform(0.12, 0.2)) * (1 if rng.random() < 0.5 else -1)
    colour = colour or list(data.COLOURS)[rng.integers(len(data.COLOURS))]
    pool = [c for c in data.COLOURS if c != colour] + list(data.NEUTRALS)
    bg_colour = pool[rng.integers(len(pool))]
    rgb = data._named(rng, colour, None)
    bg = data._named(rng, bg_colour, None)
    if bg_colour in data.COLOURS:  # muted backgrounds, as in the still data
        bg = data._hsv(data.COLOURS[bg_colour] + rng.uniform(-8, 8), rng.uniform(0.45, 0.8), rng.uniform(0.35, 0.7))
    bgk = _T2V_BACKGROUNDS[rng.integers(len(_T2V_BACKGROUNDS))]
    params = {"angle": float(rng.uniform(0, np.pi)), "period": 16, "noise_seed": int(rng.integers(1 << 30)),
              "noise_scale": 16}
    shape = {"kind": kind, "cx": float(cx), "cy": float(cy), "r": r, "angle": float(rng.uniform(0, 2 * np.pi)),
             "seed": int(rng.integers(1 << 30))}
    return Clip(size, bgk, params, shape, motion, speed, colour, bg_colour, rgb, bg)


def _at(clip: Clip, f: int) -> dict:
    """The shape's parameters at frame ``f``."""
    s = dict(clip.shape)
    if clip.motion in DIRECTIONS:
        dx, dy = DIRECTIONS[clip.motion]
        travelled = clip.speed * ((1 - EASE) * f + EASE * f * f / (SPAN - 1))  # = speed * f at f = SPAN - 1
        s["cx"] += dx * travelled
        s["cy"] += dy * travelled
    elif clip.motion == "growing":
        s["r"] *= (1 + clip.speed) ** f
    elif clip.motion == "shrinking":
        s["r"] *= (1 - clip.speed) ** f
    elif clip.motion == "rotating":
        s["angle"] += clip.speed * f
    elif clip.motion == "bouncing":  # |sin| hops off the floor under the start position
        s["cy"] -= abs(np.sin(clip.speed * f)) * 0.25 * clip.size
    return s


def render_clip(clip: Clip, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames (F, S, S, 3) uint8, masks (F, S, S) bool)`` of the shape."""
    c2 = tuple(int(np.clip(c * 0.7 + 20, 0, 255)) for c in clip.bg_rgb)
    scene = data.Scene(clip.size, clip.background, clip.bg_params, [])
    bg = data._background(scene, clip.bg_rgb, c2)
    col = np.array(clip.rgb, np.float32)
    out = np.empty((frames, clip.size, clip.size, 3), np.uint8)
    masks = np.empty((frames, clip.size, clip.size), bool)
    for f in range(frames):
        a = data._shape_mask(_at(clip, f), clip.size).astype(np.float32)[..., None] / 255.0
        out[f] = np.clip(bg * (1 - a) + col * a, 0, 255).round()
        masks[f] = a[..., 0] > 0.5
    return out, masks


def _article(text: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def clip_caption(rng: np.random.Generator, clip: Clip) -> str:
    """A caption from the grammar: colour, shape, motion, and often the background."""
    what = f"{clip.colour} {clip.shape['kind']}"
    act = f"moving {clip.motion}" if clip.motion in DIRECTIONS else clip.motion
    bgw = data._BG_WORDS[clip.background]
    options = [f"a {what} {act} on a {clip.bg_colour} background", f"a {what} {act}",
               f"a {what} {act} on a {bgw} {clip.bg_colour} background", f"a {what} {act} over {clip.bg_colour}"]
    return _article(options[rng.integers(len(options))])


def direction_prompt(colour: str, shape: str, direction: str, background: str) -> str:
    """The eval form of a direction caption."""
    return _article(f"a {colour} {shape} moving {direction} on a {background} background")


_MIRROR = {"left": "right", "right": "left"}
_REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up", "growing": "shrinking",
            "shrinking": "growing"}


def mirrored_caption(caption: str, hflip: bool = False, reverse: bool = False) -> str:
    """The caption of a clip mirrored left-right (``hflip``) and/or played backwards (``reverse``).

    Mirroring swaps left and right; playing backwards swaps every direction and growing with
    shrinking. Rotating and bouncing stay what they are (their sense is not in the caption)."""
    words = caption.split(" ")
    for table, on in ((_MIRROR, hflip), (_REVERSE, reverse)):
        if on:
            words = [table.get(w, w) for w in words]
    return " ".join(words)


def motion_sample(seed: int, frames: int = 8, size: int = 128):
    """One training clip: ``(frames (F, S, S, 3) uint8, caption)``."""
    rng = np.random.default_rng(seed)
    clip = random_clip(rng, size)
    video, _ = render_clip(clip, frames)
    return video, clip_caption(rng, clip)
