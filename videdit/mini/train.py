"""Train videdit-mini from scratch on procedural data, stage by stage, on a CPU.

    python -m videdit.mini.train --stage all            # vae, then text-unet, then controlnet
    python -m videdit.mini.train --stage vae --minutes 8
    python -m videdit.mini.train --stage text-unet --minutes 30
    python -m videdit.mini.train --stage controlnet --minutes 12

Stages:

- ``vae``: an ``AutoencoderKL`` (SD 1.5's config, shrunk: 4 levels, factor 8, 8
  latent channels, no mid-block attention) on 64 px crops of procedural scenes and
  of scikit-image's photos; L1 + MSE + a tiny KL. Afterwards its latent
  ``scaling_factor`` is set to 1/std of the latents, as SD's 0.18215 was.
- ``text-unet``: a fixed pool of procedural scenes (each under several palettes) is
  rendered once and encoded with the frozen VAE; a ``CLIPTextModel`` and a
  ``UNet2DConditionModel`` are trained jointly (min-SNR weighting, 10 % caption
  dropout for classifier-free guidance, EMA); the objective is v from scratch (the first
  sessions' weights used epsilon; see :func:`default_objective`); options: ``--objective``,
  ``--joint-cn P`` (the edge ControlNet in the same steps), ``--top-attention`` (attention at
  the first level as well) and ``--cross-frame P`` (a fraction of steps on 3-frame camera
  moves, pans and zooms, under the engine's sparse-causal attention; ``--camera-pixels``: made
  in pixels and encoded frame by frame, as the engine sees a real pan; ``--camera-speed``: their pace).
- ``controlnet``: ``ControlNetModel.from_unet`` copies, trained with everything
  else frozen: one on ``get_extractor("canny")`` of the renders (the signal the
  recipe feeds it at inference), one on the depth-by-construction map.

The stages' code: here the VAE; ``train_unet`` text-unet and the ControlNets; ``train_t2v``
the UNet3D (``--stage t2v``); ``train_ip`` the IP-Adapter (``--stage ip-adapter``).

Every stage is seeded and resumable: a checkpoint in ``<work>/<stage>.pt`` (``--work``, default
``.mini-train/``) is written every ``--save-every`` steps and at the end; rerunning continues from it
until the stage's step budget or ``--minutes`` (wall time of this run) is used. The loss is logged
(``<work>/<stage>.log``, and stdout). Unless ``--no-export``, the components are written afterwards,
fp16 safetensors, into ``--out`` (default ``pipelines/videdit-mini/``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.conditioning import vae_encode
from . import data
from .loop import (OBJECTIVES, WEIGHTINGS, Log, Steps, adamw, batched, cached_pool, load_ckpt, process_map, setup_device,
                   to_tensor)

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mini-train"
OUT = ROOT / "pipelines" / "videdit-mini"
SD15 = ROOT / "tests" / "hub_configs" / "runwayml--stable-diffusion-v1-5"
SIZE = 128
TEXT_DIM = 64
LATENT_CH = 8
UNET_CH = (32, 64, 128)


# ---------------------------------------------------------------- model configs
def vae_config() -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=LATENT_CH,
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                block_out_channels=[16, 32, 64, 64], layers_per_block=1, norm_num_groups=8, act_fn="silu",
                sample_size=SIZE, scaling_factor=1.0, mid_block_add_attention=False)


def unet_config(top_attention: bool = False) -> dict:
    """The image UNet: SD 1.5's config shrunk. ``top_attention`` puts transformer blocks at the
    first level (16x16 latents) too, as SD 1.5 has them at every level but the last: the
    cross-frame attention of the restyle engine acts only where self-attention exists."""
    cfg = {}
    if (SD15 / "unet").is_dir():
        from diffusers import UNet2DConditionModel

        cfg = {k: v for k, v in dict(UNet2DConditionModel.load_config(SD15 / "unet")).items() if not k.startswith("_")}
    top = "CrossAttn" if top_attention else ""
    cfg.update(block_out_channels=list(UNET_CH), down_block_types=[f"{top}DownBlock2D", "CrossAttnDownBlock2D",
                                                                   "CrossAttnDownBlock2D"],
               up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", f"{top}UpBlock2D"], layers_per_block=1,
               cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=32, sample_size=SIZE // 8,
               in_channels=LATENT_CH, out_channels=LATENT_CH)
    return cfg


def text_config(vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                          projection_dim=TEXT_DIM, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
                          hidden_act="quick_gelu")


def scheduler(objective: str = "eps"):
    """SD 1.5's DDIM schedule with the model's objective: ``eps`` (SD 1.5's), or ``v``: velocity
    prediction on the same betas rescaled to zero terminal SNR, sampled with trailing timesteps
    (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"). SD's
    schedule leaves ~7 % of the signal at t = 999, so a model learns to read the global colour
    and layout off that leak instead of off the prompt, and at inference, from pure noise, it
    paints a mean colour: the "black background" the mini model ignored."""
    from diffusers import DDIMScheduler

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    v = objective == "v"
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=0 if v else 1,
                         prediction_type="v_prediction" if v else "epsilon", rescale_betas_zero_snr=v,
                         timestep_spacing="trailing" if v else "leading")


def objective_of(model_dir: Path | None) -> str | None:
    """The objective of an exported model (its scheduler config), None when it has none."""
    cfg = Path(model_dir) / "scheduler" / "scheduler_config.json" if model_dir else None
    if not cfg or not cfg.is_file():
        return None
    return "v" if json.loads(cfg.read_text()).get("prediction_type") == "v_prediction" else "eps"


# ---------------------------------------------------------------- stage 1: VAE
def vae_batch(rng, batch, crop=64):
    n_photo = batch // 4
    imgs = [data.sample(int(rng.integers(1 << 31)), SIZE, palettes=1)[0][0] for _ in range(batch - n_photo)]
    imgs = np.concatenate([np.stack(imgs), data.photo_crops(rng, n_photo, SIZE)])
    y, x = rng.integers(0, SIZE - crop + 1, 2)
    return to_tensor(imgs[:, y:y + crop, x:x + crop])


def train_vae(args, log):
    """The autoencoder; with ``--init-from DIR --vae-decoder-only``, a fine-tune of the exported
    VAE's decoder alone: the encoder, and so every latent the UNets were trained on, and the
    scaling factor stay exactly as they are, so the other components need no retraining."""
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    decoder_only = args.vae_decoder_only
    if decoder_only and not args.init_from:
        raise SystemExit("--vae-decoder-only fine-tunes an exported VAE: give --init-from DIR")
    if args.init_from:
        vae = AutoencoderKL.from_pretrained(args.init_from / "vae").float()
        log(f"initialised from {args.init_from / 'vae'}" + (" (decoder only)" if decoder_only else ""))
    else:
        vae = AutoencoderKL(**vae_config())
    if decoder_only:
        vae.encoder.requires_grad_(False), vae.quant_conv.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.vae_lr, weight_decay=0.0)
    step, rng = 0, np.random.default_rng(args.seed)
    ck = load_ckpt(args.work, "vae")
    if ck:
        vae.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")
    log(f"params {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M ({sum(p.numel() for p in params) / 1e6:.2f} M trained)")
    loop = Steps(args, log, "vae", opt, params, step,
                 lambda: {"model": vae.state_dict(), "opt": opt.state_dict(), "rng": rng}, args.minutes)
    vae.train()
    if decoder_only:
        vae.encoder.eval()
    while loop.running(args.vae_steps):
        loop.set_lr(args.vae_steps, args.vae_lr)
        x = vae_batch(rng, args.vae_batch)
        with torch.set_grad_enabled(not decoder_only):
            post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - x).abs().mean()
        kl = 0.0 if decoder_only else 1e-6 * post.kl().mean()
        loop.update(l1 + F.mse_loss(rec, x) + kl, f" (l1 {l1.item():.4f})")
    loop.save()
    step, ema_loss = loop.step, loop.loss
    vae.eval()
    # latent scale: 1/std over a held-out batch of scenes and photos
    with torch.no_grad():
        r2 = np.random.default_rng(args.seed + 999)
        imgs = np.concatenate([np.stack([data.sample(int(r2.integers(1 << 31)), SIZE, 1)[0][0] for _ in range(48)]),
                               data.photo_crops(r2, 16, SIZE)])
        lat = vae.encode(to_tensor(imgs)).latent_dist.mode()
        rec = vae.decode(lat).sample
        psnr = -10 * torch.log10(F.mse_loss(rec.clamp(-1, 1), to_tensor(imgs)) / 4).item()
    scale = vae.config.scaling_factor if decoder_only else float(1.0 / lat.std())
    vae.register_to_config(scaling_factor=scale)
    log(f"done at step {step}, loss {ema_loss or float('nan'):.4f}, held-out PSNR {psnr:.2f} dB, scaling_factor {scale:.4f}")
    vae.save_pretrained(args.work / "vae")
    return {"steps": step, "loss": ema_loss, "psnr": psnr, "scaling_factor": scale}


def default_objective(args) -> str:
    """The objective when ``--objective`` is not given: a fine-tune keeps its model's, a stage that
    trains against a UNet (ControlNet, IP-Adapter) or inflates one (t2v) takes that UNet's, a stage
    resumed in a work folder takes what that folder was trained with; from scratch, ``v`` (the fifth
    session's finding: SD 1.5's eps schedule lets the model ignore colour words, see :func:`scheduler`)."""
    trained = args.work if (args.work / "scheduler").is_dir() else None
    src = {"text-unet": args.init_from or trained, "t2v": args.init_from or args.base,
           "all": trained, "vae": trained}.get(args.stage, trained or args.base)
    return objective_of(src) or "v"


def load_vae(work: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(work / "vae").float().eval().requires_grad_(False)


# ---------------------------------------------------------------- pool for stages 2-3
def make_pool(args, log):
    return cached_pool(args.work / "pool.npz", lambda: _render_pool(args, log),
                       {"seed": args.seed, "pool": args.pool, "palettes": args.palettes})


def _render_scene(item):
    """Pool worker: one scene under ``palettes`` palettes, with its canny edges (what the recipe feeds)."""
    from ..structure import get_extractor

    seed, palettes = item
    out = data.sample(seed, SIZE, palettes)
    imgs = np.stack([o[0] for o in out])
    return imgs, np.stack([o[1] for o in out]), [o[3] for o in out], get_extractor("canny")(imgs)[..., 0]


def pool_seed(args, scene: int) -> int:
    """The data seed of the pool's scene number ``scene`` (all its palettes come from it)."""
    return args.seed * 100_000 + scene


def _render_pool(args, log) -> dict:
    log(f"rendering pool: {args.pool} scenes x {args.palettes} palettes ({args.workers} workers)")
    vae = load_vae(args.work)
    lat, depths, caps, edges = [], [], [], []
    items = [(pool_seed(args, i), args.palettes) for i in range(args.pool)]
    with process_map(args.workers) as pmap, torch.no_grad():
        vae.to(args.dev)
        for chunk in batched(pmap(_render_scene, items), max(1, 256 // args.palettes)):
            imgs = np.concatenate([c[0] for c in chunk])
            z = vae_encode(vae, to_tensor(imgs).to(args.dev), chunk=len(imgs))
            lat.append(z.half().cpu().numpy())
            for c in chunk:
                depths.append(c[1]), caps.extend(c[2]), edges.append(c[3])
    lat = np.concatenate(lat)
    log(f"pool: {len(lat)} images encoded, latent std {lat.astype(np.float32).std():.3f}")
    return {"latents": lat, "edges": np.concatenate(edges), "depth": np.concatenate(depths),
            "captions": np.array(caps)}


def init_from_export(log, src: Path, tok, te, unet) -> None:
    """Load an exported text encoder and UNet (fp16 on disk) from ``src`` into ``te`` and ``unet``
    (float32) to fine-tune them; the export's tokenizer must be ``tok``."""
    from transformers import CLIPTokenizer

    if CLIPTokenizer.from_pretrained(str(src / "tokenizer")).get_vocab() != tok.get_vocab():
        raise SystemExit(f"{src}: its tokenizer differs from the one this stage builds; cannot fine-tune")
    te.load_state_dict(type(te).from_pretrained(src / "text_encoder").float().state_dict())
    load_unet_weights(log, src / "unet", unet)


def load_unet_weights(log, unet_dir: Path, unet) -> None:
    """Load an exported UNet's weights into ``unet``, which may have more attention blocks than
    it (``--top-attention``): those start as the identity (zero output projection), so the
    fine-tune starts from exactly the exported model. Weights that fit otherwise: SystemExit."""
    missing, unexpected = unet.load_state_dict(type(unet).from_pretrained(unet_dir).float().state_dict(),
                                               strict=False)
    added = sorted({k.split(".attentions.")[0] + ".attentions" for k in missing if ".attentions." in k})
    if unexpected or any(".attentions." not in k for k in missing):
        raise SystemExit(f"{unet_dir}: its weights do not fit this stage's UNet "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name in added:
        for block in unet.get_submodule(name):
            torch.nn.init.zeros_(block.proj_out.weight), torch.nn.init.zeros_(block.proj_out.bias)
    log(f"initialised from {unet_dir.parent}"
        + (f"; new attention blocks (identity at start): {', '.join(added)}" if added else ""))


def has_top_attention(model_dir: Path | None) -> bool:
    """Whether the exported UNet in ``model_dir`` has attention at its first level."""
    if model_dir is None or not (model_dir / "unet" / "config.json").is_file():
        return False
    return json.loads((model_dir / "unet" / "config.json").read_text())["down_block_types"][0].startswith("CrossAttn")


# ------------------------------------------- shared by the UNet stages (train_unet.py, train_t2v.py)
def build_text(work: Path):
    from transformers import CLIPTextModel

    from .tokenizer import build_tokenizer

    tok = build_tokenizer(work / "tokenizer", data.WORDS)
    vocab = json.loads((work / "tokenizer" / "vocab.json").read_text())
    te = CLIPTextModel(text_config(max(vocab.values()) + 1, vocab["<|startoftext|>"], vocab["<|endoftext|>"]))
    return tok, te


def joint_training(args, log, stage: str, unet, te, lr: float, seed: int, extra=None):
    """UNet + text encoder (+ ``extra``, a model trained in the same steps) trained together: EMA
    copies, AdamW, and resume from ``<work>/<stage>.pt``.

    Returns ``(pairs, params, opt, step, rng, state)``: ``pairs`` = ``[(ema, model), ...]`` in
    the order unet, text encoder[, extra]; ``state()`` is the checkpoint body."""
    models = [unet, te] + ([extra] if extra is not None else [])
    for m in models:
        m.to(args.dev)
    pairs = [(copy.deepcopy(m).requires_grad_(False), m) for m in models]
    params = [p for m in models for p in m.parameters() if p.requires_grad]
    opt = adamw(params, args, lr)
    step, rng = 0, np.random.default_rng(seed)
    keys = (("unet", "ema_u"), ("te", "ema_t"), ("x", "ema_x"))  # checkpoint names, in the order of pairs
    ck = load_ckpt(args.work, stage, args.dev)
    if ck:
        for (key, ema_key), (ema, m) in zip(keys, pairs):
            m.load_state_dict(ck[key]), ema.load_state_dict(ck[ema_key])
        opt.load_state_dict(ck["opt"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")

    def state():
        body = {"opt": opt.state_dict(), "rng": rng}
        for (key, ema_key), (ema, m) in zip(keys, pairs):
            body[key], body[ema_key] = m.state_dict(), ema.state_dict()
        return body

    return pairs, params, opt, step, rng, state


def train_only(models, keep) -> None:
    """Freeze every parameter of ``models`` but those of the submodules whose name ``keep(name)`` accepts."""
    for m in models:
        m.requires_grad_(False)
        for name, sub in m.named_modules():
            if keep(name):
                sub.requires_grad_(True)


# ---------------------------------------------------------------- export
def export(log, work: Path = WORK, out: Path = OUT):
    """Write every trained component found in .mini-train/ as fp16 safetensors into ``out``."""
    import shutil

    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    out.mkdir(parents=True, exist_ok=True)
    if (work / "tokenizer").is_dir():
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
        shutil.copytree(work / "tokenizer", out / "tokenizer")
    parts = [("vae", AutoencoderKL), ("unet", UNet2DConditionModel), ("text_encoder", CLIPTextModel),
             ("controlnet-edges", ControlNetModel), ("controlnet-depth", ControlNetModel)]
    for name, cls in parts:
        if (work / name).is_dir():
            m = cls.from_pretrained(work / name).half()
            shutil.rmtree(out / name, ignore_errors=True)
            m.save_pretrained(out / name, safe_serialization=True)
    if (work / "scheduler").is_dir():  # the objective the UNet was trained with (text-unet stage)
        shutil.rmtree(out / "scheduler", ignore_errors=True)
        shutil.copytree(work / "scheduler", out / "scheduler")
    elif not (out / "scheduler").is_dir():
        scheduler().save_pretrained(out / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "safety_checker": [None, None],
             "requires_safety_checker": False, "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*.safetensors"))
    log(f"exported to {out} ({size / 1e6:.1f} MB of safetensors)")


SOUP_PARTS = ("unet", "text_encoder", "controlnet-edges")


def soup(log, out: Path, other: Path, weight: float, parts=SOUP_PARTS) -> None:
    """A model soup (Wortsman et al. 2022): each of ``parts`` of the export in ``out`` becomes
    ``(1 - weight) * out + weight * other``, parameter by parameter, in place. Two fine-tunes of one
    model share a loss basin, so the average keeps part of what each learnt (here: the shipped
    weights' colour and structure, a cross-frame fine-tune's consistency). Architectures must match."""
    from safetensors.torch import load_file, save_file

    if not 0.0 <= weight <= 1.0:
        raise SystemExit(f"--soup-weight must be in [0, 1], got {weight}")
    for part in parts:
        files = sorted((out / part).glob("*.safetensors"))
        if not files or [f.name for f in files] != sorted(f.name for f in (other / part).glob("*.safetensors")):
            raise SystemExit(f"{out / part} and {other / part}: not the same safetensors files")
        for f in files:
            a, b = load_file(f), load_file(other / part / f.name)
            if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
                raise SystemExit(f"{f} and {other / part / f.name}: different parameters; cannot average")
            mixed = {k: ((1 - weight) * a[k].float() + weight * b[k].float()).to(a[k].dtype) for k in a}
            save_file(mixed, f, metadata={"format": "pt"})
    log(f"souped {', '.join(parts)} of {out}: {1 - weight:g} x its own + {weight:g} x {other}")


def _prepare(args, log, stage: str) -> None:
    if stage in ("text-unet", "controlnet-edges", "controlnet-depth"):
        make_pool(args, log)
    elif stage == "t2v":
        from .train_t2v import make_clip_pool

        make_clip_pool(args, log)
    elif stage == "ip-adapter":
        from .train_ip import make_pair_pool

        make_pair_pool(args, log)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m videdit.mini.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", default="all", choices=["vae", "text-unet", "controlnet", "controlnet-edges",
                                                       "controlnet-depth", "t2v", "ip-adapter", "all", "export",
                                                       "soup"])
    ap.add_argument("--minutes", type=float, default=None, help="wall-time budget of this run, per stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pool", type=int, default=2500, help="scenes in the stage 2-3 pool")
    ap.add_argument("--palettes", type=int, default=4, help="palettes per pool scene")
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-steps", type=int, default=4000)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-decoder-only", action="store_true",
                    help="with --init-from: fine-tune only the exported VAE's decoder (latents unchanged)")
    ap.add_argument("--unet-steps", type=int, default=8000)
    ap.add_argument("--unet-lr", type=float, default=5e-4)
    ap.add_argument("--cn-steps", type=int, default=3000)
    ap.add_argument("--cn-lr", type=float, default=1e-3)
    ap.add_argument("--cn-tmin", type=int, default=200, help="ControlNets train on timesteps [tmin, 1000)")
    ap.add_argument("--depth-steps", type=int, default=3000)
    ap.add_argument("--depth-minutes", type=float, default=None)
    ap.add_argument("--t2v-steps", type=int, default=6000)
    ap.add_argument("--t2v-lr", type=float, default=3e-4)
    ap.add_argument("--t2v-batch", type=int, default=4, help="clips per t2v step")
    ap.add_argument("--t2v-frames", type=int, default=8, help="frames per training clip")
    ap.add_argument("--t2v-pool", type=int, default=2000, help="clips in the t2v pool")
    ap.add_argument("--t2v-augment", choices=["none", "mirror", "mirror-reverse"], default="mirror",
                    help="also train on the pool's clips mirrored left-right (and played backwards), captions to "
                    "match; playing backwards makes the data symmetric in time (see motion.EASE)")
    ap.add_argument("--objective", choices=OBJECTIVES, default=None,
                    help="what the UNets predict: eps (SD 1.5's) or v with a zero-terminal-SNR schedule; "
                    "default: that of the model fine-tuned or trained against (--init-from, the work folder, "
                    "--base), else v")
    ap.add_argument("--joint-cn", type=float, default=0.0,
                    help="text-unet stage: also train the edge ControlNet, applied to this fraction of samples")
    ap.add_argument("--top-attention", action="store_true",
                    help="text-unet stage: give the UNet attention at its first level too (with --init-from: "
                    "new blocks start as the identity); an export that has it keeps it")
    ap.add_argument("--cross-frame", type=float, default=0.0,
                    help="text-unet stage: fraction of steps on 3-frame camera moves (pans, zooms) with "
                    "sparse-causal attention")
    ap.add_argument("--consistency-loss", type=float, default=0.0,
                    help="text-unet stage: weight of a loss tying each camera-move frame's predicted clean "
                    "latent to the anchor frame's, moved by the same camera")
    ap.add_argument("--cross-frame-span", type=int, default=2,
                    help="text-unet stage: camera-move clips are frames 0, j - 1 and j of the move, j drawn from "
                    "2..SPAN, so the anchor (frame 0) can be far from the frame that attends to it, as in the "
                    "engine, where every window attends to the clip's first frame (2: frames 0, 1, 2)")
    ap.add_argument("--camera-speed", type=float, default=1.0, help="text-unet stage: scale of the camera moves' "
                    "motion and log-zoom per frame (1: up to 16 px, +-10 %%; the sample clips: about a tenth)")
    ap.add_argument("--camera-pixels", action="store_true", help="text-unet stage: make camera moves in pixels, "
                    "each frame VAE-encoded and edge-detected on its own (the engine's conditions)")
    ap.add_argument("--teacher-distill", nargs="?", const="all", choices=["all", "images"], default=None,
                    help="text-unet stage, with --init-from: targets from the frozen initial model instead of "
                    "the data (its prediction on single images; on camera moves, its anchor frame's clean "
                    "latent moved by the camera, for every frame); 'images': single images only, camera "
                    "moves keep the data's targets")
    ap.add_argument("--train-only", choices=["all", "self-attention"], default="all",
                    help="text-unet stage: which parameters train (self-attention: the attn1 layers of the "
                    "UNet and ControlNet, everything else frozen)")
    ap.add_argument("--unet-weighting", choices=WEIGHTINGS, default="min-snr",
                    help="loss weighting of the text-unet stage")
    ap.add_argument("--t2v-weighting", choices=WEIGHTINGS, default="x0", help="loss weighting of the t2v stage")
    ap.add_argument("--ip-weighting", choices=WEIGHTINGS, default="x0", help="loss weighting of the ip-adapter stage")
    ap.add_argument("--t2v-text-aux", type=float, default=0.0,
                    help="weight of an auxiliary loss that makes the text encoder tell the caption's motion "
                    "(left, right, ..., rotating) apart: a linear head on its mean hidden state, dropped after training")
    ap.add_argument("--t2v-train", choices=["all", "temporal-text"], default="all",
                    help="t2v stage: which UNet3D parameters train (temporal-text: the temporal layers and the "
                    "text cross-attention, as AnimateDiff keeps the image model; the text encoder always trains)")
    ap.add_argument("--t2v-positions", action="store_true",
                    help="t2v stage: sinusoidal frame positions in the temporal attention (AnimateDiff's; "
                    "core.attention.TemporalPositionProcessor); the recipe must then say temporal_positions")
    ap.add_argument("--t2v-noise-share", type=float, default=0.5,
                    help="fraction of a clip's noise variance common to its frames (PYoCo's mixed noise)")
    ap.add_argument("--base", type=Path, default=None,
                    help="the trained image model the t2v stage inflates and the ip-adapter stage "
                    "adapts (default: --out)")
    ap.add_argument("--t2v-out", type=Path, default=None, help="where the t2v model is exported "
                    "(default: beside --out, its name + '-t2v': pipelines/videdit-mini-t2v/)")
    ap.add_argument("--ip-steps", type=int, default=6000)
    ap.add_argument("--ip-lr", type=float, default=5e-4)
    ap.add_argument("--ip-pool", type=int, default=4000, help="(target, reference) pairs in the IP-Adapter pool")
    ap.add_argument("--ip-distill", action=argparse.BooleanOptionalAction, default=True,
                    help="ip-adapter stage: learn to reproduce the caption-conditioned UNet from the reference "
                    "alone (--no-ip-distill: the plain diffusion loss, with captions dropped half of the time)")
    ap.add_argument("--ip-self-share", type=float, default=0.5,
                    help="fraction of IP-Adapter references that are the target's own patches, shuffled")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--device", default="cpu", help="torch device of the stages after the VAE (cpu, cuda)")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: on for CUDA)")
    ap.add_argument("--workers", type=int, default=1, help="processes rendering the training pools")
    ap.add_argument("--init-from", type=Path, default=None, help="fine-tune the stage's exported weights in this "
                    "directory (a videdit-mini or -t2v export) instead of starting from scratch")
    ap.add_argument("--prepare", action="store_true", help="only render and cache the stages' training pools")
    ap.add_argument("--until", type=float, default=None, help="wall-clock deadline (epoch seconds) of each stage")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--work", type=Path, default=WORK, help="checkpoints, logs and trained parts (default .mini-train/)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the components are exported")
    ap.add_argument("--soup-with", type=Path, default=None, help="--stage soup: the export whose UNet, text "
                    "encoder and edge ControlNet are averaged into --out's")
    ap.add_argument("--soup-weight", type=float, default=0.5, help="--stage soup: the weight of --soup-with")
    args = ap.parse_args(argv)
    if args.cross_frame_span < 2:
        raise SystemExit(f"--cross-frame-span must be >= 2 (got {args.cross_frame_span})")
    if not args.camera_speed > 0:  # nan too
        raise SystemExit(f"--camera-speed must be > 0 (got {args.camera_speed})")
    if args.teacher_distill and not args.init_from:
        raise SystemExit("--teacher-distill learns from the model it starts from: give --init-from DIR")
    if args.consistency_loss and not args.cross_frame:
        raise SystemExit("--consistency-loss acts on camera-move steps: give --cross-frame P > 0 too")
    if args.stage == "soup":
        if args.soup_with is None:
            raise SystemExit("--stage soup needs --soup-with DIR (an export of the same model)")
        # a t2v export has no ControlNet: soup the parts it has
        return soup(Log(args.work, "export"), args.out, args.soup_with, args.soup_weight,
                    [p for p in SOUP_PARTS if (args.out / p).is_dir()])
    torch.set_num_threads(args.threads)
    setup_device(args)
    args.base = args.base or args.out
    args.objective = args.objective or default_objective(args)
    defaults = {"vae": 14, "text-unet": 28, "controlnet-edges": 11, "controlnet-depth": 3, "t2v": 45,
                "ip-adapter": 30}
    stages = {"all": ["vae", "text-unet", "controlnet-edges", "controlnet-depth", "export", "t2v",
                      "ip-adapter"],
              "controlnet": ["controlnet-edges", "controlnet-depth"]}.get(args.stage, [args.stage])
    results = {}
    if args.prepare:  # render and cache the stages' pools, train nothing
        for st in stages:
            _prepare(args, Log(args.work, st), st)
        return
    for st in stages:
        if st == "export":  # the image model first: the t2v stage inflates the exported one
            if not args.no_export:
                export(Log(args.work, "export"), args.work, args.out)
            continue
        log = Log(args.work, st)
        a = copy.copy(args)
        a.minutes = args.minutes if args.minutes is not None else defaults[st]
        a.depth_minutes = args.depth_minutes if args.depth_minutes is not None else a.minutes
        t = time.time()
        if st == "vae":
            results[st] = train_vae(a, log)
        elif st == "text-unet":
            from .train_unet import train_text_unet

            results[st] = train_text_unet(a, log)
        elif st == "t2v":
            from .train_t2v import train_t2v

            results[st] = train_t2v(a, log)
        elif st == "ip-adapter":
            from .train_ip import train_ip_adapter

            results[st] = train_ip_adapter(a, log)
        else:
            from .train_unet import train_controlnet

            results[st] = train_controlnet(a, log, st.split("-")[1])
        results[st]["wall_min"] = round((time.time() - t) / 60, 2)
        log(json.dumps(results[st]))
    hist = args.work / "results.json"
    try:  # stages may run side by side (videdit.mini.gpu): never read a half-written file
        old = json.loads(hist.read_text()) if hist.is_file() else {}
    except ValueError:
        old = {}
    old.update(results)
    args.work.mkdir(parents=True, exist_ok=True)
    tmp = hist.with_name(f"results.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(old, indent=2))
    os.replace(tmp, hist)
    if args.no_export:
        return
    if "t2v" in stages:
        from .train_t2v import OUT_T2V, export_t2v

        out_t2v = args.t2v_out or (OUT_T2V if args.out == OUT else args.out.with_name(args.out.name + "-t2v"))
        export_t2v(Log(args.work, "export"), args.work, out_t2v, args.out)
    if "ip-adapter" in stages:
        from .train_ip import export_ip

        export_ip(Log(args.work, "export"), args.work, args.out)
    if not set(stages) & {"t2v", "ip-adapter", "export"}:
        export(Log(args.work, "export"), args.work, args.out)


if __name__ == "__main__":
    main()
