"""Diagnostic probes of the mini models behind the model cards' "why" paragraphs.

    python -m videdit.mini.probe temporal [--t2v DIR]        # do the temporal layers use coherence?
    python -m videdit.mini.probe direction [--t2v DIR]       # does the t2v UNet read the direction word?
    python -m videdit.mini.probe adapter [--base DIR]        # does the IP-Adapter carry the palette?
    python -m videdit.mini.probe structure [--pipeline P] [--guidance G]   # the structure test's case
    python -m videdit.mini.probe colour [--base DIR]         # which named colours survive the VAE?
    python -m videdit.mini.probe maps [--clips A,B]          # how much do the control maps flicker?
    python -m videdit.mini.probe seams [--t2v DIR]           # do co-denoised windows show their borders?

- ``temporal``: the t2v UNet's noise-prediction error on 6 fresh training-distribution clips vs on
  the same frames drawn from different clips (same noise, same captions), at t = 900, 600, 300.
  A model that uses temporal coherence denoises real clips better.
- ``direction``: how far reversing the direction word (and, for scale, changing the colour word)
  moves the text encoder's output; the t2v UNet's prediction error on 24 fresh clips moving left/right/up/down (6
  each) with their own caption, with the opposite direction in the caption, and on the clip played
  backwards under its own caption, at t = 900, 700, 500, 300. A model that reads the direction word
  predicts the true pairing better than either swap. Then how much the UNet's output changes when the
  noisy clip is played backwards (output played back), against a left-right mirror and a frame
  shuffle: a model that cannot tell the direction of time cannot learn a direction word.
- ``adapter``: the image UNet's noise-prediction error on 64 fresh (target, reference) pairs with
  the adapter given the pair's reference, a zero embedding, another pair's reference, and the
  caption with a zero embedding, at t = 999, 800, 500, 200.
- ``structure``: edge F1 of a restyle of the first 4 frames of ``samples/shapes.mp4`` for the
  prompts of the structure test and two more (``tests/test_mini.py``).
- ``colour``: each named colour as a flat square through the VAE (encode, decode) and the
  decoder's best rendering of it (a latent optimised for it), as hues.
- ``maps``: the warp error of the canny maps the recipe feeds its ControlNet, and of canny taken at 4x
  the size and area-averaged down, against the clip's own.
- ``seams``: 40-frame clips of 4 captions generated in windows of 16 overlapping by 8: the mean frame
  difference at the frames where the set of windows changes, over the clip's median frame difference
  (1 = no seam), with the pyramid fusion weights and with equal weights; and one joint pass for scale.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from ..core.conditioning import vae_encode
from .eval import clip_path
from .train import OUT, objective_of, scheduler
from .train_t2v import OUT_T2V

PROMPTS = ("red shapes on a black background", "blue shapes on a black background",
           "green shapes on a white background")


def _pred_mse(model, sched, x0, noise, t, **kw) -> float:
    """Unweighted MSE of the model's prediction (noise or velocity, as ``sched`` says)."""
    from .loop import prediction_target

    with torch.no_grad():
        pred = model(sched.add_noise(x0, noise, t), t, **kw).sample
    return float(((pred - prediction_target(sched, x0, noise, t)) ** 2).mean())


def _mixed_noise(shape, seed: int) -> torch.Tensor:
    """``(B, C, F, h, w)`` noise with half its variance common to the frames (the recipe's noise_share 0.5)."""
    g = torch.Generator().manual_seed(seed)
    return (math.sqrt(0.5) * torch.randn((shape[0], shape[1], 1, *shape[3:]), generator=g)
            + math.sqrt(0.5) * torch.randn(shape, generator=g))


def _scheduler(model_dir: Path):
    return scheduler(objective_of(model_dir) or "eps")


def t2v_recipe(ref):
    """A text2video recipe from a ``.toml`` file, or ``mini-t2v``'s settings on a model directory."""
    from dataclasses import replace

    from ..core.recipes import load_recipe

    ref = Path(ref)
    return load_recipe(ref) if ref.suffix == ".toml" else replace(load_recipe("mini-t2v"), base=str(ref.resolve()))


def _t2v_unet(recipe):
    """The recipe's UNet3D in float32, with the frame positions its recipe names."""
    from diffusers import UNet3DConditionModel

    unet = UNet3DConditionModel.from_pretrained(Path(recipe.base) / "unet").float().eval()
    if recipe.temporal_positions:
        from ..core.attention import install_temporal_positions

        install_temporal_positions(unet, recipe.temporal_positions)
    return unet


def temporal(ref, clips: int = 6, frames: int = 16) -> None:
    """``ref``: a t2v model directory (run with ``mini-t2v``'s settings) or a ``.toml`` recipe."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    from . import motion
    from .loop import to_tensor, tokenize

    recipe = t2v_recipe(ref)
    t2v = Path(recipe.base)
    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(t2v / "vae").float()
    items = [motion.motion_sample(777000 + i, frames) for i in range(clips)]
    with torch.no_grad():
        z = torch.stack([vae_encode(vae, to_tensor(v), chunk=len(v)) for v, _ in items])
    real = z.permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
    pick = torch.randint(0, clips, (clips, frames))
    mixed = torch.stack([torch.stack([real[pick[b, f], :, f] for f in range(frames)], 1) for b in range(clips)])
    unet = _t2v_unet(recipe)
    te = CLIPTextModel.from_pretrained(t2v / "text_encoder").float()
    tok = CLIPTokenizer.from_pretrained(str(t2v / "tokenizer"))
    with torch.no_grad():
        emb = te(tokenize(tok, [c for _, c in items]))[0]
    sched = _scheduler(t2v)
    print(f"{t2v}: {sched.config.prediction_type} MSE, real clips vs frames drawn from different clips ({clips} clips x {frames} frames)")
    for tval in (900, 600, 300):
        noise = _mixed_noise(real.shape, tval)
        t = torch.full((clips,), tval)
        print(f"  t = {tval}: real {_pred_mse(unet, sched, real, noise, t, encoder_hidden_states=emb):.4f}, "
              f"mixed {_pred_mse(unet, sched, mixed, noise, t, encoder_hidden_states=emb):.4f}")


def direction(ref, per_direction: int = 6, frames: int = 16) -> None:
    """``ref``: a t2v model directory (run with ``mini-t2v``'s settings) or a ``.toml`` recipe."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    from . import motion
    from .loop import to_tensor, tokenize

    recipe = t2v_recipe(ref)
    t2v = Path(recipe.base)
    torch.manual_seed(0)
    clips, captions, kinds = [], [], []
    for i, d in enumerate(motion.DIRECTIONS):
        for j in range(per_direction):
            rng = np.random.default_rng(888000 + 100 * i + j)
            clip = motion.random_clip(rng, motion=d)
            kinds.append(clip)
            clips.append(motion.render_clip(clip, frames)[0])
            captions.append(motion.clip_caption(rng, clip))
    opposite = [motion.mirrored_caption(c, reverse=True) for c in captions]
    vae = AutoencoderKL.from_pretrained(t2v / "vae").float()
    with torch.no_grad():
        z = torch.stack([vae_encode(vae, to_tensor(v), chunk=len(v)) for v in clips])
    real = z.permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
    unet = _t2v_unet(recipe)
    te = CLIPTextModel.from_pretrained(t2v / "text_encoder").float()
    tok = CLIPTokenizer.from_pretrained(str(t2v / "tokenizer"))
    names = list(motion.data.COLOURS)
    recoloured = [c.replace(f" {k.colour} ", f" {names[(names.index(k.colour) + 1) % len(names)]} ", 1)
                  for c, k in zip(captions, kinds)]
    ids = {k: tokenize(tok, c) for k, c in (("own", captions), ("swapped", opposite), ("other", recoloured))}
    with torch.no_grad():
        own, swapped, other = (te(ids[k])[0] for k in ("own", "swapped", "other"))
    sched = _scheduler(t2v)
    n = len(clips)

    def rel(a):  # how far the text encoder moves a caption's output, relative to its size
        return float(((a - own).norm(dim=(1, 2)) / own.norm(dim=(1, 2))).mean())

    def at_word(a, key):  # the same, at the changed word's own position only
        rows, cols = torch.nonzero(ids["own"] != ids[key], as_tuple=True)
        return float(((a[rows, cols] - own[rows, cols]).norm(dim=-1) / own[rows, cols].norm(dim=-1)).mean())

    def embedding_norm(words):  # mean norm of the words' input embeddings
        emb = te.get_input_embeddings().weight.detach()
        return float(torch.stack([emb[tok.convert_tokens_to_ids(w + "</w>")].norm() for w in words]).mean())

    print(f"{t2v}: text encoder output moved by {rel(swapped):.1%} by reversing the direction word, "
          f"{rel(other):.1%} by changing the object's colour; at the changed word itself "
          f"{at_word(swapped, 'swapped'):.1%} and {at_word(other, 'other'):.1%}; input embedding norm of "
          f"the direction words {embedding_norm(motion.DIRECTIONS):.2f}, of the colour words {embedding_norm(names):.2f}")
    print(f"{sched.config.prediction_type} MSE on {n} clips x {frames} frames moving left/right/up/down")
    for tval in (900, 700, 500, 300):
        noise = _mixed_noise(real.shape, tval)
        t = torch.full((n,), tval)
        row = {"own caption": _pred_mse(unet, sched, real, noise, t, encoder_hidden_states=own),
               "opposite direction in caption": _pred_mse(unet, sched, real, noise, t, encoder_hidden_states=swapped),
               "clip played backwards": _pred_mse(unet, sched, real.flip(2), noise, t, encoder_hidden_states=own)}
        print(f"  t = {tval}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
    # Can the UNet tell the direction of time at all? If f(reversed clip), reversed back, is f(clip),
    # it cannot, and no caption can teach it which way "left" goes. Mirroring and shuffling the
    # frames give the scale of a change the model does see.
    print("output change when the noisy clip is transformed and the output transformed back (relative):")
    perm = torch.randperm(frames, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for tval in (900, 500):
            t = torch.full((n,), tval)
            xt = sched.add_noise(real, _mixed_noise(real.shape, tval), t)
            out = unet(xt, t, encoder_hidden_states=own).sample
            rows = {"time reversed": unet(xt.flip(2), t, encoder_hidden_states=own).sample.flip(2),
                    "mirrored left-right": unet(xt.flip(-1), t, encoder_hidden_states=own).sample.flip(-1),
                    "frames shuffled": unet(xt[:, :, perm], t, encoder_hidden_states=own).sample[:, :, perm.argsort()]}
            print(f"  t = {tval}: " + ", ".join(f"{k} {float((v - out).norm() / out.norm()):.3f}"
                                                for k, v in rows.items()))
    _sampled_direction(recipe)


def _mean_place(frames: np.ndarray) -> list[float]:
    """Mean centroid ``[x, y]`` (px) of the eval tracker's object over the frames where it is found."""
    from .eval_t2v import object_masks

    cents = [np.argwhere(m).mean(0)[::-1] for m in object_masks(frames) if m.any()]
    return [round(float(v), 1) for v in np.mean(cents, 0)] if cents else [float("nan")] * 2


def _sampled_direction(recipe, seeds: int = 3) -> None:
    """Sample the t2v ``recipe`` under one caption, its direction
    reversed and its colour changed, from the same seeds: how much of the clip each word decides, and
    where the object goes (centroid travel, px, from the eval's tracker); then the same caption with
    all initial noise common to the frames (``noise_share`` 1), where nothing in the noise can move."""
    from ..api import Pipeline
    from .eval_t2v import judge_clip

    pipe = Pipeline.load(recipe, kind="text2video")
    prompts = {"own": "a red circle moving left on a blue background",
               "direction reversed": "a red circle moving right on a blue background",
               "colour changed": "a green circle moving left on a blue background"}
    print("sampled clips (16 frames), mean |difference| to the own caption's clip in grey levels; centroid travel; "
          "where the object is on average (x, y in px of 128)")
    for s in range(seeds):
        clips = {k: pipe.generate(p, frames=16, seed=77 + s).frames for k, p in prompts.items()}
        clips["own, noise common to all frames"] = pipe.generate(prompts["own"], frames=16, seed=77 + s,
                                                                 noise_share=1.0).frames
        cells = [f"{k} {np.abs(v.astype(int) - clips['own']).mean():.1f} "
                 f"{judge_clip(v, {'prompt': '', 'direction': 'left', 'colour': 'red'})['travel']} "
                 f"at {_mean_place(v)}" for k, v in clips.items()]
        print(f"  seed {77 + s}: " + "; ".join(cells))


def adapter(base: Path, pairs: int = 64) -> None:
    from diffusers import StableDiffusionPipeline
    from diffusers.models import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from .loop import to_tensor, tokenize
    from .train_ip import SUBFOLDER, WEIGHT_NAME, _render_pair

    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(base / "vae").float()
    te = CLIPTextModel.from_pretrained(base / "text_encoder").float()
    tok = CLIPTokenizer.from_pretrained(str(base / "tokenizer"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok,
                                   unet=UNet2DConditionModel.from_pretrained(base / "unet").float(),
                                   scheduler=_scheduler(base), safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    pipe.load_ip_adapter(str(base), subfolder=SUBFOLDER, weight_name=WEIGHT_NAME, image_encoder_folder="image_encoder")
    unet, enc = pipe.unet.float(), pipe.image_encoder.float()
    items = [_render_pair(123456789 + i) for i in range(pairs)]
    with torch.no_grad():
        x0 = vae_encode(vae, to_tensor(np.stack([it[0] for it in items])), chunk=len(items))
        img = enc(torch.from_numpy(np.stack([it[1] for it in items])).float()).image_embeds
        empty = te(tokenize(tok, [""]))[0].expand(pairs, -1, -1)
        caption = te(tokenize(tok, [it[3] for it in items]))[0]
    cases = {"reference": (empty, img), "no reference": (empty, torch.zeros_like(img)),
             "another pair's reference": (empty, img.roll(1, 0)), "caption only": (caption, torch.zeros_like(img))}
    sched = pipe.scheduler
    print(f"{base}: {sched.config.prediction_type} MSE of the UNet with its IP-Adapter on {pairs} fresh pairs")
    for tval in (999, 800, 500, 200):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(tval))
        t = torch.full((pairs,), tval)
        row = {name: _pred_mse(unet, sched, x0, noise, t, encoder_hidden_states=e,
                              added_cond_kwargs={"image_embeds": [i[:, None]]}) for name, (e, i) in cases.items()}
        print(f"  t = {tval}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))


def structure(pipeline: str, guidance: float | None) -> None:
    import cv2

    from ..api import load_pipeline
    from ..io import read_video
    from ..metrics import structure_fidelity

    pipe = load_pipeline(pipeline, device="cpu")
    path = str(clip_path("shapes"))
    src = read_video(path, max_frames=4).frames
    opts = {} if guidance is None else {"guidance": guidance}
    print(f"{pipeline} (guidance {guidance or 'recipe'}): edge F1 of 4 frames of shapes.mp4")
    for prompt in PROMPTS:
        out = pipe.restyle(path, prompt, max_frames=4, **opts).frames
        s = np.stack([cv2.resize(f, (out.shape[2], out.shape[1]), interpolation=cv2.INTER_AREA) for f in src])
        print(f"  {prompt!r}: {structure_fidelity(s, out):.3f}")


def maps(clips: list[str], side: int = 128, fine: int = 4) -> None:
    """How much the control maps flicker: the warp error (along the source's motion) of the recipe's
    canny maps, taken on the ``side``-px frames the engine reads, and of canny on the source read at
    ``fine`` x that size, area-averaged down (anti-aliased), beside the source's own floor."""
    import cv2

    from ..io import read_video
    from ..metrics import warp_errors
    from ..structure import get_extractor

    canny = get_extractor("canny", low=100, high=200)
    print(f"warp error of canny maps, {side} px (fine: canny at {fine * side} px, area-averaged down)")
    for clip in clips:
        path = str(clip_path(clip))
        small = read_video(path, max_side=side).frames
        h, w = small.shape[1:3]
        big = canny(read_video(path, max_side=fine * side).frames)
        down = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in big])
        coarse, fine_, floor = (r.value for r in warp_errors(small, [canny(small), down, small]))
        print(f"  {Path(path).stem}: canny {coarse:.5f}, fine {fine_:.5f}, source {floor:.5f}")


def colour(base: Path, steps: int = 150) -> None:
    """Each named colour (saturation 0.85, value 0.9) as a flat square through the VAE: the hue that
    comes back, and the hue of the decoder's best output for it (a latent optimised by Adam from the
    encoder's), which tells a decoder that cannot draw a colour from an encoder/decoder pair that
    disagree about it."""
    import colorsys

    from diffusers import AutoencoderKL

    from . import data
    from .loop import to_tensor

    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(base / "vae").float().requires_grad_(False)

    def hue(x: torch.Tensor) -> float:  # mean colour of the square's centre, (1, 3, 128, 128) in [-1, 1]
        rgb = ((x[0, :, 48:80, 48:80].mean((1, 2)) + 1) / 2).clamp(0, 1).tolist()
        return colorsys.rgb_to_hsv(*rgb)[0] * 360

    print(f"{base / 'vae'}: hue (degrees) of a flat square, in -> round trip -> decoder's best")
    for name, h in data.COLOURS.items():
        img = np.zeros((1, 128, 128, 3), np.uint8)
        img[0, 32:96, 32:96] = np.array(colorsys.hsv_to_rgb(h / 360, 0.85, 0.9)) * 255
        x = to_tensor(img)
        z = vae.encode(x).latent_dist.mode().clone().requires_grad_(True)
        with torch.no_grad():
            trip = hue(vae.decode(z).sample)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(steps):
            loss = ((vae.decode(z).sample - x) ** 2).mean()
            opt.zero_grad(), loss.backward(), opt.step()
        with torch.no_grad():
            best = hue(vae.decode(z).sample)
        print(f"  {name}: {h:.0f} -> {trip:.1f} -> {best:.1f}")


def seams(ref, frames: int = 40, window: int = 16, overlap: int = 8) -> None:
    from contextlib import nullcontext
    from unittest import mock

    from ..api import Pipeline
    from ..core import chunks

    pipe = Pipeline.load(t2v_recipe(ref), kind="text2video", device="cpu")
    prompts = ("a red circle moving right on a blue background", "a yellow star moving up on a purple background",
               "a green square growing on a dark background", "a pink triangle moving left on a white background")
    plan = chunks.spans(frames, window, overlap)
    borders = sorted({a for a, _ in plan[1:]} | {b for _, b in plan[:-1]})  # frame b - 1 -> b changes windows
    win = {"chunk": window, "overlap": overlap}
    for name, equal, kw in (("pyramid weights", False, win), ("equal weights", True, win), ("one joint pass", False, {})):
        ratios = []
        for k, prompt in enumerate(prompts):
            with mock.patch.object(chunks, "fusion_weights", torch.ones) if equal else nullcontext():
                video = pipe.generate(prompt, frames=frames, seed=10 + k, **kw).frames.astype(np.float32)
            d = np.abs(np.diff(video, axis=0)).mean((1, 2, 3))
            ratios.append(float(d[[b - 1 for b in borders]].mean() / np.median(d)))
        print(f"{name}: border / median frame difference {np.mean(ratios):.2f} (per caption "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m videdit.mini.probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", choices=["temporal", "direction", "adapter", "structure", "colour", "maps", "seams"])
    ap.add_argument("--clips", default="pan-astronaut,zoom-coffee,shapes", help="maps: sample names or .mp4 paths")
    ap.add_argument("--t2v", type=Path, default=OUT_T2V,
                    help="the t2v model directory, or a .toml recipe that runs it")
    ap.add_argument("--base", type=Path, default=OUT, help="an image model with an ip-adapter/ folder")
    ap.add_argument("--pipeline", default="mini")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe == "temporal":
        temporal(args.t2v)
    elif args.probe == "direction":
        direction(args.t2v)
    elif args.probe == "adapter":
        adapter(args.base)
    elif args.probe == "colour":
        colour(args.base)
    elif args.probe == "maps":
        maps([c for c in args.clips.split(",") if c])
    elif args.probe == "seams":
        seams(args.t2v)
    else:
        structure(args.pipeline, args.guidance)


if __name__ == "__main__":
    main()
