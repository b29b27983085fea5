"""Acceptance numbers of videdit-mini on held-out seeds: ``python -m videdit.mini.eval``.

1. Prompt adherence: held-out procedural scenes (seeds never used in training),
   each restyled with ``"<colour> shapes on a black background"`` for a colour
   none of its shapes has; the output's dominant hue over the painted regions
   (the shapes' masks, known by construction) must name that colour
   (nearest of the 8 named hues).
2. Structure fidelity: edge F1 (``videdit.metrics.structure_fidelity``) between
   each source scene and its output; and on the sample clips.
3. Temporal consistency on the sample clips: ``warp_error`` with
   ``consistency="sparse-causal"`` vs ``"none"``, and the source's own floor.

Everything runs through ``load_pipeline("mini")`` (the ordinary recipe path).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from . import data

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = 90_000_000  # training uses seeds < 10^7 (pool) and random 31-bit draws for the VAE only
SAMPLE_PROMPTS = {"pan-astronaut": "neon pink and cyan shapes on a black background",
                  "zoom-coffee": "pastel green and purple shapes on a blue background",
                  "shapes": "red and yellow shapes on a black background"}
# Validation clips (samples/make_samples.py --validation) get prompts of the same kind (two shape colours,
# a background), other colours: the seventh session found that "a neon scene" did not predict the samples.
VALIDATION_PROMPTS = {"val-pan-chelsea": "neon yellow and blue shapes on a black background",
                      "val-zoom-rocket": "pastel pink and green shapes on a purple background",
                      "val-shapes": "orange and cyan shapes on a white background"}


def dominant_colour(image: np.ndarray, mask: np.ndarray, min_sat: float = 0.2) -> str | None:
    """The named colour most pixels of ``image[mask]`` are nearest to (by hue), ignoring greyish pixels."""
    m = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    h, s, v = hsv[..., 0] * 360 / 256, hsv[..., 1] / 255, hsv[..., 2] / 255
    keep = m & (s > min_sat) & (v > 0.15)
    if keep.sum() < max(10, 0.05 * m.sum()):
        return None
    names = list(data.COLOURS)
    centres = np.array([data.COLOURS[n] for n in names])
    d = np.abs(h[keep][:, None] - centres[None])
    d = np.minimum(d, 360 - d)
    counts = np.bincount(d.argmin(1), minlength=len(names))
    return names[int(counts.argmax())]


def held_out_scenes(n: int, seed: int = HELD_OUT):
    """``n`` (image, mask, target colour) triples: a scene under a random palette and a colour it lacks."""
    out = []
    names = list(data.COLOURS)
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        scene = data.random_scene(rng, 128)
        pal = data.random_palette(rng, scene)
        img, _, mask = data.render(scene, pal)
        choices = [c for c in names if c not in pal.shape_words]
        target = choices[(i * 5 + int(rng.integers(len(choices)))) % len(choices)]
        out.append((img, mask, target))
    return out


def eval_scenes(pipe, n: int, seed: int = HELD_OUT, **opts) -> dict:
    from ..io import Video
    from ..metrics import structure_fidelity

    scenes = held_out_scenes(n, seed)
    hits, f1s, rows = 0, [], []
    by_colour: dict = {}
    for k, (_, _, target) in enumerate(scenes):
        by_colour.setdefault(target, []).append(k)
    outputs = {}
    for colour, ks in by_colour.items():
        frames = np.stack([scenes[k][0] for k in ks])
        out = pipe.restyle(Video(frames, 24.0), data.colour_prompt(colour), consistency="none",
                           chunk=len(ks), overlap=0, **opts).frames
        for k, o in zip(ks, out):
            outputs[k] = o
    for k, (img, mask, target) in enumerate(scenes):
        o = outputs[k]
        got = dominant_colour(o, mask)
        hits += got == target
        f1 = structure_fidelity(img[None], o[None])
        f1s.append(f1)
        rows.append({"target": target, "got": got, "edge_f1": round(f1, 3)})
    return {"scenes": n, "colour_match": hits / n, "edge_f1_mean": float(np.mean(f1s)),
            "edge_f1_median": float(np.median(f1s)), "rows": rows, "outputs": outputs, "inputs": scenes}


def _key(mode: str) -> str:
    """A consistency mode as it appears in result keys: ``sparse-causal`` -> ``sparse_causal``."""
    return mode.replace("-", "_")


def clip_path(name: str) -> Path:
    """A sample clip's name (``shapes``) or an .mp4 path (a validation clip) -> the file."""
    return Path(name) if name.endswith(".mp4") else ROOT / "samples" / f"{name}.mp4"


def eval_clip(pipe, name: str, prompt: str, max_frames: int | None, modes=("sparse-causal",), **opts) -> dict:
    """Restyle a clip under ``none`` and each cross-frame mode of ``modes`` (sparse-causal, the acceptance
    mode, always): warp errors ``warp_<mode>`` and ``ratio_<mode>`` against none (``consistency_ratio``
    is sparse-causal's), the source's floor, and the sparse-causal output's edge F1."""
    from ..io import read_video
    from ..metrics import structure_fidelity, warp_errors

    path = clip_path(name)
    res = {"clip": name, "prompt": prompt}
    outs = {}
    for mode in dict.fromkeys(("sparse-causal", *modes, "none")):
        t = time.time()
        outs[mode] = pipe.restyle(str(path), prompt, consistency=mode, max_frames=max_frames, **opts).frames
        res[f"seconds_{mode}"] = round(time.time() - t, 1)
    out = outs["sparse-causal"]
    src = read_video(str(path), max_frames=max_frames).frames
    src = np.stack([cv2.resize(f, (out.shape[2], out.shape[1]), interpolation=cv2.INTER_AREA) for f in src])
    *errors, floor = (r.value for r in warp_errors(src, [*outs.values(), src]))  # one flow for all
    warp = dict(zip(outs, errors))
    for m in outs:
        res[f"warp_{_key(m)}"] = warp[m]
        if m != "none":
            res[f"ratio_{_key(m)}"] = warp[m] / max(warp["none"], 1e-12)
    res.update(warp_source_floor=floor, consistency_ratio=res["ratio_sparse_causal"],
               edge_f1=structure_fidelity(src, out), frames=len(out), size=f"{out.shape[2]}x{out.shape[1]}")
    res["_frames"] = (src, out)
    return res


HELD_OUT_IP = 92_000_000
SHEET_TRIALS = 6  # reference trials kept for --ip-sheet


def colour_histogram(image: np.ndarray, bins: int = 6) -> np.ndarray:
    """``(H, W, 3) uint8`` -> its normalised RGB histogram, ``bins ** 3`` float32 summing to 1."""
    h = cv2.calcHist([np.ascontiguousarray(image)], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
    return h / max(1.0, h.sum())


def palette_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance between two images' colour histograms: 0 (same colours) .. 1 (disjoint)."""
    return 0.5 * float(np.abs(colour_histogram(a) - colour_histogram(b)).sum())


def reference_trials(n: int, seed: int = HELD_OUT_IP) -> list[tuple]:
    """``n`` held-out ``(source, reference, other reference)`` images: three scenes, three palettes."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        imgs = []
        for _ in range(3):
            scene = data.random_scene(rng, 128)
            imgs.append(data.render(scene, data.random_palette(rng, scene))[0])
        out.append(tuple(imgs))
    return out


def eval_reference(pipe, n: int, seed: int = HELD_OUT_IP, **opts) -> dict:
    """Gen-1-style content from an image: is the output's palette nearer the reference it was given
    than another random reference? Also the same count for the output without any reference
    (the rate the source's own colours give by chance)."""
    import tempfile

    from ..io import Video

    hits = base = 0
    rows, shown = [], []  # shown: the first trials' (source, reference, output) for --ip-sheet
    with tempfile.TemporaryDirectory() as tmp:
        for i, (src, ref, other) in enumerate(reference_trials(n, seed)):
            path = str(Path(tmp) / f"ref{i}.png")
            cv2.imwrite(path, cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
            video = Video(src[None], 24.0)
            out = pipe.restyle(video, "", ref_image=path, consistency="none", **opts).frames[0]
            plain = pipe.restyle(video, "shapes", consistency="none", **opts).frames[0]
            d = (palette_distance(out, ref), palette_distance(out, other))
            hits += d[0] < d[1]
            base += palette_distance(plain, ref) < palette_distance(plain, other)
            rows.append({"to_reference": round(d[0], 3), "to_other": round(d[1], 3)})
            if i < SHEET_TRIALS:
                shown.append((src, ref, out))
    return {"trials": n, "nearer_reference": hits / n, "without_reference": base / n, "rows": rows,
            "images": shown}


def contact_sheet(rows: list[np.ndarray], path: Path, n: int = 6, scale: int = 2):
    """A PNG of ``n`` evenly spaced columns from each of ``rows`` (``(F, H, W, 3) uint8`` each, one size),
    row above row: e.g. source frames over output frames."""
    idx = np.linspace(0, len(rows[-1]) - 1, n).round().astype(int)
    pad = 4
    h, w = rows[-1].shape[1] * scale, rows[-1].shape[2] * scale
    sheet = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for j, i in enumerate(idx):
        for r, frames in enumerate(rows):
            im = cv2.resize(frames[i], (w, h), interpolation=cv2.INTER_NEAREST)
            y, x = pad + r * (h + pad), pad + j * (w + pad)
            sheet[y:y + h, x:x + w] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def _seeds(text: str) -> list[int]:
    """``--clip-seed`` ``"S[,S...]"`` -> distinct whole numbers, in order."""
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds repeat in {text!r}")
    return seeds


def _modes(text: str) -> tuple[str, ...]:
    """``--modes`` ``"M[,M...]"`` -> cross-frame modes (not ``none``, the baseline every ratio is against)."""
    from ..core.attention import CONSISTENCY_MODES

    modes = tuple(dict.fromkeys(text.split(",")))
    bad = [m for m in modes if m not in CONSISTENCY_MODES[1:]]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(bad)}; "
                                         f"choose from {', '.join(CONSISTENCY_MODES[1:])}")
    return modes


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m videdit.mini.eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", default="mini")
    ap.add_argument("--scenes", type=int, default=50, help="held-out procedural scenes")
    ap.add_argument("--clips", default="pan-astronaut,zoom-coffee,shapes",
                    help="sample clip names, or .mp4 paths (validation clips: samples/make_samples.py --validation DIR); "
                    "'' for none")
    ap.add_argument("--max-frames", type=int, default=None, help="frames per sample clip (default all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strength", type=float, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--structure-scale", type=float, default=None, help="ControlNet conditioning scale")
    ap.add_argument("--structure-detail", type=int, default=None,
                    help="coarsen the control maps by this level, 0-7 (Gen-1's structure knob)")
    ap.add_argument("--shared-noise", action="store_true", default=None, help="one initial noise for every frame")
    ap.add_argument("--chunk", type=int, default=None, help="frames per window (restyle: the recipe's 8; text-to-video: "
                    "its clip length, 16); a clip's length or more: one window, no borders")
    ap.add_argument("--overlap", type=int, default=None, help="frames shared by neighbouring windows (restyle: the "
                    "recipe's 2; text-to-video: half a window)")
    ap.add_argument("--sheet", default=None, help="write a source/output contact sheet PNG of the first clip here")
    ap.add_argument("--scene-sheet", default=None, help="write a contact sheet of held-out scenes here")
    ap.add_argument("--t2v", type=int, default=0, help="held-out direction captions for videdit-mini-t2v")
    ap.add_argument("--t2v-pipeline", default="mini-t2v")
    ap.add_argument("--t2v-sheet", default=None, help="write a contact sheet of generated clips here")
    ap.add_argument("--t2v-frames", type=int, default=16, help="frames per generated clip")
    ap.add_argument("--noise-share", type=float, default=None, help="initial noise common to all frames (0-1)")
    ap.add_argument("--clip-seed", type=_seeds, default=None, metavar="S[,S...]",
                    help="seed(s) of the clips' restyles (default the engine's, 0): other draws of the warp ratios; "
                    "with several, each clip also gets its mean ratio (one draw moves by up to 0.4)")
    ap.add_argument("--modes", type=_modes, default=("sparse-causal",), metavar="M[,M...]",
                    help="cross-frame modes whose clip warp error is compared with none (sparse-causal, the "
                    "acceptance mode, always; e.g. first,full)")
    ap.add_argument("--ip", type=int, default=0, help="held-out reference-image trials for the IP-Adapter")
    ap.add_argument("--ip-pipeline", default="mini-ipadapter")
    ap.add_argument("--ip-sheet", default=None, help="write a contact sheet of the first reference trials here "
                    "(rows: source, reference, output)")
    ap.add_argument("--seed-offset", type=int, default=0,
                    help="shift every held-out seed range by this much: a validation set for choosing settings "
                    "(the acceptance numbers are the ones at 0)")
    ap.add_argument("--json", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args(argv)
    import torch

    from ..api import load_pipeline

    torch.set_num_threads(args.threads)
    opts = {k: getattr(args, k) for k in ("strength", "guidance", "steps", "shared_noise", "noise_share",
                                          "structure_scale", "structure_detail", "chunk", "overlap")
            if getattr(args, k) is not None}
    t0 = time.time()
    pipe = load_pipeline(args.pipeline, device="cpu")
    report: dict = {"pipeline": args.pipeline, "options": opts}
    if args.scenes:
        first = HELD_OUT + args.seed_offset
        sc = eval_scenes(pipe, args.scenes, seed=first, **opts)
        print(f"held-out procedural scenes: {sc['scenes']} (seeds {first}..{first + sc['scenes'] - 1})")
        print(f"  prompt adherence (dominant hue over the shapes = named colour): {sc['colour_match']:.0%} "
              f"[target >= 90%: {'MET' if sc['colour_match'] >= 0.9 else 'NOT MET'}]")
        print(f"  structure fidelity (edge F1 vs source): mean {sc['edge_f1_mean']:.3f}, median "
              f"{sc['edge_f1_median']:.3f} [target >= 0.6: {'MET' if sc['edge_f1_mean'] >= 0.6 else 'NOT MET'}]")
        if args.scene_sheet:
            k = min(8, sc["scenes"])
            contact_sheet([np.stack([sc["inputs"][i][0] for i in range(k)]),
                           np.stack([sc["outputs"][i] for i in range(k)])], Path(args.scene_sheet), n=k, scale=1)
        report["scenes"] = {k: v for k, v in sc.items() if k not in ("outputs", "inputs")}
    clips = [c for c in args.clips.split(",") if c]
    report["clips"] = []
    extra = [m for m in args.modes if m != "sparse-causal"]
    for c in clips:
        prompt = SAMPLE_PROMPTS.get(c) or VALIDATION_PROMPTS.get(Path(c).stem, "a neon scene")
        rows = []
        for seed in args.clip_seed or [None]:
            r = eval_clip(pipe, c, prompt, args.max_frames, args.modes, **opts,
                          **({"seed": seed} if seed is not None else {}))
            src, out = r.pop("_frames")
            if args.sheet and c == clips[0] and not rows:
                contact_sheet([src, out], Path(args.sheet))
            r["seed"] = seed
            print(f"sample {c} ({r['frames']} frames at {r['size']}, prompt '{r['prompt']}'"
                  + (f", seed {seed}" if seed is not None else "") + "):")
            print(f"  edge F1 vs source: {r['edge_f1']:.3f}")
            print(f"  warp error: sparse-causal {r['warp_sparse_causal']:.5f}, none {r['warp_none']:.5f}, "
                  f"source floor {r['warp_source_floor']:.5f}; ratio sparse-causal/none {r['consistency_ratio']:.2f} "
                  f"[target <= 0.5: {'MET' if r['consistency_ratio'] <= 0.5 else 'NOT MET'}]")
            for m in extra:
                print(f"  {m}: warp error {r['warp_' + _key(m)]:.5f}, "
                      f"ratio {m}/none {r['ratio_' + _key(m)]:.2f}")
            rows.append(r)
        if len(rows) > 1:
            keys = ("consistency_ratio", "warp_sparse_causal", "warp_none", "edge_f1",
                    *(f"{k}_{_key(m)}" for m in extra for k in ("warp", "ratio")))
            mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
            print(f"  mean over seeds {','.join(str(r['seed']) for r in rows)}: ratio {mean['consistency_ratio']:.2f}, "
                  f"warp error sparse-causal {mean['warp_sparse_causal']:.5f}, none {mean['warp_none']:.5f}, "
                  f"edge F1 {mean['edge_f1']:.3f}"
                  + "".join(f"; {m} ratio {mean['ratio_' + _key(m)]:.2f}" for m in extra))
            report.setdefault("clip_means", []).append({"clip": c, **mean})
        report["clips"] += rows
    if args.t2v:
        restyle_only = ("strength", "structure_scale", "structure_detail")
        report["t2v"] = _report_t2v(args, {k: v for k, v in opts.items() if k not in restyle_only})
    if args.ip:
        first = HELD_OUT_IP + args.seed_offset
        ip = eval_reference(load_pipeline(args.ip_pipeline, device="cpu"), args.ip, seed=first, **opts)
        shown = ip.pop("images")
        if args.ip_sheet:  # columns: trials; rows: source, reference, output
            contact_sheet([np.stack(r) for r in zip(*shown)], Path(args.ip_sheet), n=len(shown), scale=1)
        print(f"reference image ({args.ip_pipeline}, {ip['trials']} held-out trials, seeds {first}..):")
        print(f"  output palette nearer its reference than another: {ip['nearer_reference']:.0%} "
              f"[target >= 85%: {'MET' if ip['nearer_reference'] >= 0.85 else 'NOT MET'}]; "
              f"without a reference: {ip['without_reference']:.0%}")
        report["ip"] = ip
    print(f"eval wall time {time.time() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))


def _report_t2v(args, opts: dict) -> dict:
    from ..api import load_pipeline
    from .eval_t2v import HELD_OUT_T2V, eval_t2v, t2v_sheet

    t = time.time()
    first = HELD_OUT_T2V + args.seed_offset
    res = eval_t2v(load_pipeline(args.t2v_pipeline, kind="text2video", device="cpu"), args.t2v,
                   frames=args.t2v_frames, seed=first, **opts)
    videos = res.pop("videos")
    if args.t2v_sheet:
        t2v_sheet(videos, res["rows"], args.t2v_sheet)
    print(f"text-to-video ({args.t2v_pipeline}, {res['clips']} held-out captions x {res['frames']} frames, "
          f"seeds {first}..; {time.time() - t:.0f} s):")
    for key, name, goal in (("direction_ok", "object moves the named way", 0.8),
                            ("colour_ok", "object has the named colour", 0.9),
                            ("present", "object present in every frame", 0.9)):
        print(f"  {name}: {res[key]:.0%} [target >= {goal:.0%}: {'MET' if res[key] >= goal else 'NOT MET'}]")
    print("  clips whose object went " + ", ".join(f"{w} {k}" for w, k in res["ways"].items())
          + " (chance: named and opposite a quarter each, other axis a half)")
    return res


if __name__ == "__main__":
    main()
