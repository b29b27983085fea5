"""Make the sample clips in samples/ (deterministic; run with `make samples`).

- pan-astronaut.mp4: a slow pan and zoom over scikit-image's `astronaut` photo
  (NASA, public domain), 320x192, 24 fps, 3 s, with a two-tone audio track.
- zoom-coffee.mp4: a zoom into scikit-image's `coffee` photo (Rachel Michetti,
  CC0), 256x192, 24 fps, 2 s, with audio.
- shapes.mp4: procedural coloured shapes moving over a gradient, 256x256,
  24 fps, 2 s, with audio.

Each stays well under 1 MB. Audio is a soft sine chord so passthrough is audible.
"""

from __future__ import annotations

import os
import sys
import tempfile
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from videdit.io import AudioSource, write_video  # noqa: E402


def _tone_wav(path: str, seconds: float, freqs=(220.0, 330.0), rate: int = 44100) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sig = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    sig *= np.minimum(1.0, np.minimum(t, seconds - t) * 8)  # fade in/out: no clicks
    data = (sig * 0.3 * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def _camera(image: np.ndarray, frames: int, out_wh, box0, box1) -> np.ndarray:
    """Crop boxes (x, y, w, h) interpolated from box0 to box1 (smoothstep), resized to out_wh."""
    import cv2

    out = []
    for i in range(frames):
        s = i / max(1, frames - 1)
        s = s * s * (3 - 2 * s)
        x, y, w, h = (a + (b - a) * s for a, b in zip(box0, box1))
        # Sub-pixel crop through an affine map: smooth motion, no integer jitter.
        m = np.array([[w / out_wh[0], 0, x], [0, h / out_wh[1], y]], dtype=np.float64)
        out.append(cv2.warpAffine(image, m, out_wh, flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def _shapes(frames: int, size: int = 256, seed: int = 3) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = np.stack([40 + 60 * xx, 60 + 80 * yy, 120 + 60 * (1 - xx)], -1)
    shapes = [(rng.uniform(40, 216, 2), rng.uniform(-2.5, 2.5, 2), rng.integers(60, 255, 3), k)
              for k in range(4)]
    out = []
    for i in range(frames):
        img = np.ascontiguousarray(bg.astype(np.uint8))
        for pos, vel, col, k in shapes:
            cx, cy = (pos + vel * i).astype(int)
            colour = tuple(int(c) for c in col)
            if k % 2 == 0:
                cv2.circle(img, (cx, cy), 26, colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (cx - 22, cy - 22), (cx + 22, cy + 22), colour, -1, cv2.LINE_AA)
        out.append(img)
    return np.stack(out)


def main(out_dir: str = HERE) -> None:
    from skimage import data

    fps = 24
    clips = {
        "pan-astronaut.mp4": _camera(data.astronaut(), 72, (320, 192), (20, 40, 400, 240), (120, 120, 300, 180)),
        "zoom-coffee.mp4": _camera(data.coffee(), 48, (256, 192), (0, 0, 533, 400), (150, 80, 300, 225)),
        "shapes.mp4": _shapes(48),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in clips.items():
            seconds = len(frames) / fps
            wav = os.path.join(tmp, name + ".wav")
            _tone_wav(wav, seconds)
            path = write_video(frames, os.path.join(out_dir, name), fps=fps,
                               audio=AudioSource(wav, 0.0, seconds), crf=23)
            print(f"{path}: {len(frames)} frames, {os.path.getsize(path) / 1e3:.0f} kB")


def validation(out_dir: str) -> None:
    """Three other clips of the same kinds (a pan, a zoom, moving shapes), for choosing model and
    recipe settings on something other than the acceptance clips: ``python samples/make_samples.py
    --validation DIR``, then ``python -m videdit.mini.eval --clips DIR/val-pan-chelsea.mp4,...``."""
    from skimage import data

    os.makedirs(out_dir, exist_ok=True)
    clips = {"val-pan-chelsea.mp4": _camera(data.chelsea(), 72, (320, 192), (0, 20, 300, 180), (140, 80, 300, 180)),
             "val-zoom-rocket.mp4": _camera(data.rocket(), 48, (256, 192), (0, 0, 640, 427), (200, 100, 320, 213)),
             "val-shapes.mp4": _shapes(48, seed=11)}
    for name, frames in clips.items():
        print(write_video(frames, os.path.join(out_dir, name), fps=24, crf=23, audio=False))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--validation"]:
        validation(*sys.argv[2:3])
    else:
        main(*sys.argv[1:])
