"""Acceptance numbers of videdit-mini-t2v on held-out captions (part of ``python -m videdit.mini.eval``).

Each held-out caption names a colour, a shape, a direction and a background
("a red circle moving left on a blue background"); the four directions take
turns. A clip is generated through ``load_pipeline("mini-t2v")`` (the ordinary
text2video recipe path) and measured without knowing what was asked:

- the *object* in a frame is the largest connected region that differs from the
  frame's background colour (the median of its border pixels) by more than
  :data:`DIFF` in RGB;
- **presence**: the object covers at least :data:`MIN_AREA` pixels in every frame, and
  it is the same object throughout: between consecutive frames its area changes by
  less than 2x and its centroid jumps less than :data:`MAX_JUMP` of the frame side
  (a model that paints unrelated blobs frame by frame fails this);
- **colour**: the dominant named hue over the object in all frames
  (:func:`videdit.mini.eval.dominant_colour`) is the named colour;
- **motion**: the centroid's displacement from the first quarter of the frames
  to the last is along the named direction, at least :data:`MIN_TRAVEL` pixels,
  and larger than the displacement across it.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import data, motion

__all__ = ["HELD_OUT_T2V", "held_out_captions", "object_masks", "judge_clip", "eval_t2v", "t2v_sheet"]

HELD_OUT_T2V = 91_000_000
DIFF = 60.0        # RGB distance from the background colour that counts as object
MIN_AREA = 60      # px at 128x128 (the smallest training shape covers ~300)
MIN_TRAVEL = 4.0   # px of centroid travel along the named direction
WAYS = ("named", "opposite", "other axis", "too little")  # where a clip's object went, against its caption
MAX_JUMP = 0.2     # of the frame side: the largest centroid step between frames of one object


def held_out_captions(n: int, seed: int = HELD_OUT_T2V) -> list[dict]:
    """``n`` direction captions: dicts with prompt, colour, shape, direction, background."""
    out = []
    dirs = list(motion.DIRECTIONS)
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        colour = list(data.COLOURS)[rng.integers(len(data.COLOURS))]
        shape = data.SHAPES[rng.integers(len(data.SHAPES))]
        pool = [c for c in data.COLOURS if c != colour] + list(data.NEUTRALS)
        bg = pool[rng.integers(len(pool))]
        d = dirs[i % len(dirs)]
        out.append({"prompt": motion.direction_prompt(colour, shape, d, bg), "colour": colour, "shape": shape,
                    "direction": d, "background": bg, "seed": seed + i})
    return out


def object_masks(frames: np.ndarray) -> np.ndarray:
    """``(F, H, W, 3) uint8`` -> ``(F, H, W) bool``: per frame, the largest region unlike the background."""
    out = np.zeros(frames.shape[:3], bool)
    for f, im in enumerate(frames):
        x = im.astype(np.float32)
        border = np.concatenate([x[:2].reshape(-1, 3), x[-2:].reshape(-1, 3), x[:, :2].reshape(-1, 3),
                                 x[:, -2:].reshape(-1, 3)])
        diff = np.linalg.norm(x - np.median(border, axis=0), axis=-1) > DIFF
        diff = cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(diff, connectivity=8)
        if n > 1:
            out[f] = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return out


def judge_clip(frames: np.ndarray, want: dict) -> dict:
    """Presence, colour and motion verdicts for one generated clip (see the module docstring)."""
    from .eval import dominant_colour

    masks = object_masks(frames)
    areas = masks.sum((1, 2))
    ok = areas >= MIN_AREA
    cent = np.array([[np.mean(np.nonzero(m)[1]), np.mean(np.nonzero(m)[0])] for m in masks[ok]]).reshape(-1, 2)
    present = bool(ok.all())
    if present:
        jumps = np.linalg.norm(np.diff(cent, axis=0), axis=1) / max(frames.shape[1:3])
        ratios = areas[1:] / areas[:-1]
        present = bool((jumps < MAX_JUMP).all() and (ratios < 2).all() and (ratios > 0.5).all())
    named = [c for c in (dominant_colour(f, m) for f, m in zip(frames[ok], masks[ok])) if c]
    colour = max(sorted(set(named)), key=named.count) if named else None
    travel = (0.0, 0.0)
    if len(cent) >= 4:
        q = len(cent) // 4
        travel = tuple(float(v) for v in cent[-q:].mean(0) - cent[:q].mean(0))
    ux, uy = motion.DIRECTIONS[want["direction"]]
    along = travel[0] * ux + travel[1] * uy
    across = abs(travel[0] * uy - travel[1] * ux)
    moved = bool(along >= MIN_TRAVEL and along > across)
    # Which way it went instead, to tell a model that ignores the word (the other axis half the time)
    # from one that reads it backwards (the opposite way).
    way = ("named" if moved else "opposite" if -along >= MIN_TRAVEL and -along > across
           else "other axis" if across >= MIN_TRAVEL and across >= abs(along) else "too little")
    return {"prompt": want["prompt"], "present": present, "colour": colour, "colour_ok": colour == want["colour"],
            "travel": [round(travel[0], 1), round(travel[1], 1)], "direction_ok": moved, "way": way,
            "min_area": int(areas.min())}


def eval_t2v(pipe, n: int, frames: int = 16, seed: int = HELD_OUT_T2V, **opts) -> dict:
    """Generate ``n`` held-out clips and judge them; returns the rates, per-clip rows and the clips."""
    rows, clips = [], []
    for want in held_out_captions(n, seed):
        video = pipe.generate(want["prompt"], frames=frames, seed=want["seed"], **opts).frames
        rows.append(judge_clip(video, want))
        clips.append(video)
    rate = {k: float(np.mean([r[k] for r in rows])) for k in ("direction_ok", "colour_ok", "present")}
    ways = {w: sum(r["way"] == w for r in rows) for w in WAYS}
    return {"clips": n, "frames": frames, **rate, "ways": ways, "rows": rows, "videos": clips}


def t2v_sheet(videos: list, rows: list, path, n_clips: int = 4, n_frames: int = 8, scale: int = 1) -> None:
    """A PNG: one row per clip (``n_frames`` frames evenly spread), a caption strip above each row."""
    from pathlib import Path

    pad, cap = 4, 16
    h, w = videos[0].shape[1] * scale, videos[0].shape[2] * scale
    sheet = np.full((n_clips * (h + cap + pad) + pad, n_frames * (w + pad) + pad, 3), 255, np.uint8)
    for r, (video, row) in enumerate(zip(videos[:n_clips], rows)):
        y = pad + r * (h + cap + pad)
        cv2.putText(sheet, row["prompt"], (pad, y + cap - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for j, i in enumerate(np.linspace(0, len(video) - 1, n_frames).round().astype(int)):
            x = pad + j * (w + pad)
            sheet[y + cap:y + cap + h, x:x + w] = cv2.resize(video[i], (w, h), interpolation=cv2.INTER_NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
