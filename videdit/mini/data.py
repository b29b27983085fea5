"""Procedural training data for videdit-mini: layered shapes, palettes, captions, depth by construction.

Everything is generated from a seed (nothing is stored in the repo). A *scene* is a
background texture plus a stack of shapes (its geometry); a *palette* assigns
colours to it. The same scene rendered under several palettes gives training pairs
that differ only in colour, which is what lets a colour prompt recolour a frame
whose structure is fixed. Depth is known by construction from the layer order
(background far, later layers nearer).

Captions come from a small grammar (:data:`WORDS` lists every word it can emit).
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["COLOURS", "STYLES", "SHAPES", "BACKGROUNDS", "WORDS", "Scene", "Palette", "random_scene",
           "random_palette", "render", "caption", "sample", "photo_crops", "hue_name", "colour_prompt"]

# Named chromatic colours: hue in degrees (HSV), the reference for the hue check.
COLOURS = {"red": 0.0, "orange": 30.0, "yellow": 58.0, "green": 120.0, "cyan": 185.0, "blue": 225.0,
           "purple": 275.0, "pink": 320.0}
# Achromatic / other named colours (used for backgrounds and styles, not in the hue check).
NEUTRALS = {"white": (0.0, 0.0, 0.95), "black": (0.0, 0.0, 0.06), "gray": (0.0, 0.0, 0.5),
            "brown": (28.0, 0.65, 0.45)}
STYLES = ("pastel", "neon", "monochrome", "sepia", "dark", "bright")
SHAPES = ("circle", "square", "triangle", "star", "ring", "blob")
BACKGROUNDS = ("flat", "gradient", "stripes", "checker", "noise")
_BG_WORDS = {"flat": "plain", "gradient": "gradient", "stripes": "striped", "checker": "checkered",
             "noise": "noisy"}
WORDS = sorted(set(COLOURS) | set(NEUTRALS) | set(STYLES) | {s + "s" for s in SHAPES} | set(SHAPES)
               | set(_BG_WORDS.values()) | {"a", "an", "and", "on", "of", "with", "scene", "shapes", "background",
                                            "colors", "colours", "image", "picture", "photo", "video", "style",
                                            "the", "in", "over"})


def hue_name(hue_deg: float) -> str:
    """The named colour whose hue is nearest ``hue_deg`` (circular)."""
    return min(COLOURS, key=lambda n: min(abs(hue_deg - COLOURS[n]), 360 - abs(hue_deg - COLOURS[n])))


@dataclass
class Scene:
    """Geometry only: background kind and parameters, and shapes back to front."""

    size: int
    background: str
    bg_params: dict
    shapes: list  # dicts: kind, cx, cy, r, angle, extra


@dataclass
class Palette:
    """Colours for a scene: ``bg`` (two RGB colours for textures), one RGB per shape; words for the caption."""

    bg: tuple
    shapes: list
    style: str | None
    shape_words: list  # colour word per shape ('' when unnamed)
    bg_word: str | None


def random_scene(rng: np.random.Generator, size: int = 128) -> Scene:
    bg = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    params = {"angle": float(rng.uniform(0, np.pi)), "period": int(rng.integers(8, 28)),
              "noise_seed": int(rng.integers(1 << 30)), "noise_scale": int(rng.choice([4, 8, 16]))}
    shapes = []
    for _ in range(int(rng.integers(2, 7))):
        r = float(rng.uniform(0.08, 0.28)) * size
        shapes.append({"kind": SHAPES[rng.integers(len(SHAPES))], "cx": float(rng.uniform(0.1, 0.9) * size),
                       "cy": float(rng.uniform(0.1, 0.9) * size), "r": r, "angle": float(rng.uniform(0, 2 * np.pi)),
                       "seed": int(rng.integers(1 << 30))})
    return Scene(size, bg, params, shapes)


def _hsv(h, s, v):
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb((h % 360) / 360.0, s, v))


def _named(rng, name, style):
    """RGB of a named colour under a style, with a little jitter."""
    if name in NEUTRALS:
        h, s, v = NEUTRALS[name]
    else:
        h, s, v = COLOURS[name] + rng.uniform(-8, 8), rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)
    if style == "pastel" and name in COLOURS:
        s, v = rng.uniform(0.3, 0.45), rng.uniform(0.9, 1.0)
    elif style == "neon" and name in COLOURS:
        s, v = 1.0, 1.0
    elif style == "dark" and name in COLOURS:
        v = rng.uniform(0.45, 0.6)
    return _hsv(h, s, v)


def random_palette(rng: np.random.Generator, scene: Scene, force: str | None = None) -> Palette:
    """A colouring of ``scene``. ``force`` makes every shape that named colour (eval prompts)."""
    n = len(scene.shapes)
    style = None
    u = rng.random()
    if force is None and u < 0.08:
        style = "monochrome"
    elif force is None and u < 0.14:
        style = "sepia"
    elif u < 0.45:
        style = ["pastel", "neon", "dark", "bright"][rng.integers(4)]
    names = list(COLOURS)
    if style in ("monochrome", "sepia"):
        base = (30.0, 0.45) if style == "sepia" else (0.0, 0.0)
        vals = rng.uniform(0.15, 0.95, size=n + 2)
        shapes = [_hsv(base[0], base[1], v) for v in vals[:n]]
        bg = (_hsv(base[0], base[1], vals[n]), _hsv(base[0], base[1], vals[n + 1]))
        return Palette(bg, shapes, style, [""] * n, None)
    if force is not None:
        k = [force]
    else:
        k = list(rng.choice(names, size=int(rng.integers(1, 3)), replace=False))
    shape_words = [k[i % len(k)] for i in range(n)]
    if len(k) == 2:
        rng.shuffle(shape_words)
    shapes = [_named(rng, w, style) for w in shape_words]
    # background: a colour not among the shapes', or a neutral; dark style -> black, neon -> black/dark
    if style in ("neon", "dark"):
        bg_word = "black"
    elif style == "bright":
        bg_word = "white"
    else:
        pool = [c for c in names if c not in k] + list(NEUTRALS)
        bg_word = pool[rng.integers(len(pool))]
    c1 = _named(rng, bg_word, None)
    if bg_word in COLOURS:
        h = COLOURS[bg_word]
        c1 = _hsv(h + rng.uniform(-8, 8), rng.uniform(0.45, 0.8), rng.uniform(0.35, 0.7))
    c2 = tuple(int(np.clip(c * rng.uniform(0.55, 0.8) + rng.uniform(0, 30), 0, 255)) for c in c1)
    if bg_word == "black":
        c2 = tuple(min(255, c + int(rng.integers(15, 40))) for c in c1)
    return Palette((c1, c2), shapes, style, shape_words, bg_word)


def _shape_mask(shape: dict, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cx, cy, r, a = shape["cx"], shape["cy"], shape["r"], shape["angle"]
    kind = shape["kind"]
    if kind == "circle":
        cv2.circle(m, (int(cx), int(cy)), int(r), 255, -1, cv2.LINE_AA)
    elif kind == "ring":
        cv2.circle(m, (int(cx), int(cy)), int(r), 255, max(2, int(r * 0.35)), cv2.LINE_AA)
    else:
        if kind == "square":
            ang = a + np.arange(4) * np.pi / 2 + np.pi / 4
            rad = np.full(4, r)
        elif kind == "triangle":
            ang = a + np.arange(3) * 2 * np.pi / 3
            rad = np.full(3, r)
        elif kind == "star":
            ang = a + np.arange(10) * np.pi / 5
            rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        else:  # blob
            g = np.random.default_rng(shape["seed"])
            ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
            rad = r * g.uniform(0.65, 1.15, 14)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        pts = np.round(pts * 16).astype(np.int32)
        if kind == "blob":
            pts = cv2.approxPolyDP(pts, 1, True)
            hull = pts.reshape(-1, 2)
            cv2.fillPoly(m, [hull], 255, cv2.LINE_AA, shift=4)
            m = cv2.GaussianBlur(m, (0, 0), max(1.0, r / 8))
            m = np.where(m > 127, 255, 0).astype(np.uint8)
            m = cv2.GaussianBlur(m, (3, 3), 0.7)
        else:
            cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, shift=4)
    return m


def _background(scene: Scene, c1, c2) -> np.ndarray:
    s, p = scene.size, scene.bg_params
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    u = np.cos(p["angle"]) * xx + np.sin(p["angle"]) * yy
    kind = scene.background
    if kind == "flat":
        t = np.zeros((s, s), np.float32)
    elif kind == "gradient":
        t = (u - u.min()) / max(1e-6, u.max() - u.min())
    elif kind == "stripes":
        t = (np.floor(u * s / p["period"]) % 2).astype(np.float32)
    elif kind == "checker":
        t = ((np.floor(xx * s / p["period"]) + np.floor(yy * s / p["period"])) % 2).astype(np.float32)
    else:
        g = np.random.default_rng(p["noise_seed"])
        k = p["noise_scale"]
        small = g.random((s // k + 1, s // k + 1)).astype(np.float32)
        t = cv2.resize(small, (s, s), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    c1, c2 = np.array(c1, np.float32), np.array(c2, np.float32)
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def render(scene: Scene, palette: Palette) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image (S,S,3) uint8, depth (S,S) uint8, shape mask (S,S) bool)``.

    Depth: 0 for the background, then equal steps per layer up to 255 for the front
    shape (near = bright, the convention of the depth ControlNets).
    """
    img = _background(scene, *palette.bg)
    depth = np.zeros((scene.size, scene.size), np.float32)
    n = len(scene.shapes)
    for i, (sh, col) in enumerate(zip(scene.shapes, palette.shapes)):
        a = _shape_mask(sh, scene.size).astype(np.float32)[..., None] / 255.0
        img = img * (1 - a) + np.array(col, np.float32) * a
        depth = np.where(a[..., 0] > 0.5, 60 + 195 * (i + 1) / n, depth)
    mask = depth > 0
    return np.clip(img, 0, 255).round().astype(np.uint8), depth.astype(np.uint8), mask


def _join(words):
    words = [w for w in dict.fromkeys(words) if w]
    if len(words) <= 1:
        return "".join(words)
    return " and ".join(words)


def caption(rng: np.random.Generator, scene: Scene, palette: Palette) -> str:
    """A caption from the grammar describing ``palette`` on ``scene``."""
    bgw = _BG_WORDS[scene.background]
    style = palette.style
    cols = _join(palette.shape_words)
    if style in ("monochrome", "sepia"):
        return [f"a {style} scene", f"{style} shapes", f"a {style} image of shapes",
                f"{style} shapes on a {bgw} background"][rng.integers(4)]
    bg = palette.bg_word
    kinds = [s["kind"] + "s" for s in scene.shapes]
    kind = max(sorted(set(kinds)), key=kinds.count)  # sorted: ties must not depend on str hashing
    pre = f"{style} " if style else ""
    options = [f"{pre}{cols} shapes on a {bg} background",
               f"{pre}{cols} shapes on a {bgw} {bg} background",
               f"a {pre}{cols} scene",
               f"{pre}{cols} {kind} on a {bg} background",
               f"{pre}{cols} shapes",
               f"a {pre}{cols} and {bg} scene" if bg not in palette.shape_words else f"a {pre}{cols} scene"]
    text = options[rng.integers(len(options))].replace("  ", " ").strip()
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def colour_prompt(colour: str, background: str = "black") -> str:
    """The eval/demo prompt form for one named colour."""
    return f"{colour} shapes on a {background} background"


def sample(seed: int, size: int = 128, palettes: int = 4, only: int | None = None):
    """One scene under ``palettes`` palettes: list of ``(image, depth, mask, caption)``; with ``only``,
    just that palette's tuple (the others are still drawn, so it is the same, but not rendered)."""
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, size)
    out = []
    for p in range(palettes):
        pal = random_palette(rng, scene)
        text = caption(rng, scene, pal)  # render draws nothing from rng: the order does not matter
        if only is None or p == only:
            out.append((*render(scene, pal), text))
    return out[0] if only is not None else out


_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat", "camera")


def photo_crops(rng: np.random.Generator, n: int, size: int = 128) -> np.ndarray:
    """``n`` random crops (random scale, flips) of scikit-image's bundled photos, ``(n, S, S, 3) uint8``."""
    photos = _photos()
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        im = photos[rng.integers(len(photos))]
        h, w = im.shape[:2]
        side = int(rng.uniform(0.2, 1.0) * min(h, w))
        side = max(side, size // 2)
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = cv2.resize(im[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = crop
    return out


_CACHE: list = []


def _photos() -> list:
    from skimage import data

    if _CACHE:
        return _CACHE
    photos = _CACHE
    for name in _PHOTOS:
        try:
            im = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo that needs a download is skipped
            continue
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, 2)
        photos.append(np.ascontiguousarray(im[..., :3]))
    return photos
