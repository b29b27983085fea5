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
  ``UNet2DConditionModel`` are trained jointly with the epsilon objective
  (min-SNR weighting, 10 % caption dropout for classifier-free guidance, EMA).
- ``controlnet``: ``ControlNetModel.from_unet`` copies, trained with everything
  else frozen: one on ``get_extractor("canny")`` of the renders (the signal the
  recipe feeds it at inference), one on the depth-by-construction map.

Every stage is seeded and resumable: a checkpoint in ``<work>/<stage>.pt`` (``--work``,
default ``.mini-train/``) is
written every ``--save-every`` steps and at the end; rerunning continues from it
until the stage's step budget or ``--minutes`` (wall time of this run) is used.
The loss is logged (``<work>/<stage>.log``, and stdout). Unless ``--no-export``,
the components are written afterwards, fp16 safetensors, into ``--out`` (default
``pipelines/videdit-mini/``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data

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


def unet_config() -> dict:
    cfg = {}
    if (SD15 / "unet").is_dir():
        from diffusers import UNet2DConditionModel

        cfg = {k: v for k, v in dict(UNet2DConditionModel.load_config(SD15 / "unet")).items() if not k.startswith("_")}
    cfg.update(block_out_channels=list(UNET_CH), down_block_types=["DownBlock2D", "CrossAttnDownBlock2D",
                                                                   "CrossAttnDownBlock2D"],
               up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], layers_per_block=1,
               cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=32, sample_size=SIZE // 8,
               in_channels=LATENT_CH, out_channels=LATENT_CH)
    return cfg


def text_config(vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                          projection_dim=TEXT_DIM, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
                          hidden_act="quick_gelu")


def scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


# ---------------------------------------------------------------- helpers
class Log:
    def __init__(self, work: Path, stage: str):
        work.mkdir(parents=True, exist_ok=True)
        self.f = open(work / f"{stage}.log", "a")
        self.stage = stage

    def __call__(self, msg):
        line = f"[{time.strftime('%H:%M:%S')}] {self.stage}: {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def save_ckpt(work: Path, stage: str, state: dict):
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f"{stage}.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, work / f"{stage}.pt")


def load_ckpt(work: Path, stage: str):
    """Our own resumable training state (it holds a numpy Generator, so it is a pickle:
    only ever read from the work directory this module wrote)."""
    p = work / f"{stage}.pt"
    return torch.load(p, map_location="cpu", weights_only=False) if p.is_file() else None


class Steps:
    """The loop body every stage shares: optimiser step with gradient clipping, a
    running loss, a log line every ``log_every`` steps and a checkpoint every
    ``args.save_every`` steps (``state()`` gives the stage's part of it)."""

    def __init__(self, args, log, stage: str, opt, params, step: int, state, minutes: float, log_every: int = 25):
        self.args, self.log, self.stage, self.opt, self.params = args, log, stage, opt, list(params)
        self.step, self.state, self.minutes, self.log_every = step, state, minutes, log_every
        self.t0, self.loss = time.time(), None

    def running(self, total: int) -> bool:
        return self.step < total and time.time() - self.t0 < self.minutes * 60

    def set_lr(self, total: int, base: float, warm: int = 100):
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, total, base, warm=warm, t0=self.t0, minutes=self.minutes)

    def update(self, loss: torch.Tensor, note: str = "") -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.step += 1
        self.loss = loss.item() if self.loss is None else 0.98 * self.loss + 0.02 * loss.item()
        if self.step % self.log_every == 0:
            self.log(f"step {self.step} loss {self.loss:.4f}{note} {(time.time() - self.t0) / 60:.1f} min")
        if self.step % self.args.save_every == 0:
            self.save()

    def save(self) -> None:
        save_ckpt(self.args.work, self.stage, {**self.state(), "step": self.step, "loss": self.loss})


def ema_update(ema, params, step, decay=0.999):
    """``ema`` <- exponential moving average of ``params`` (modules or parameter lists), warm-up decay."""
    d = min(decay, (1 + step) / (10 + step))
    ema, params = (x.parameters() if isinstance(x, torch.nn.Module) else x for x in (ema, params))
    with torch.no_grad():
        for e, p in zip(ema, params):
            e.mul_(d).add_(p.detach(), alpha=1 - d)


def lr_at(step, total, base, warm=100, t0=None, minutes=None):
    """Warm-up then cosine to 10 %; progress is steps done or wall time used, whichever is further."""
    if step < warm:
        return base * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    if t0 is not None and minutes:
        frac = max(frac, (time.time() - t0) / (minutes * 60))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


# ---------------------------------------------------------------- stage 1: VAE
def vae_batch(rng, batch, crop=64):
    n_photo = batch // 4
    imgs = [data.sample(int(rng.integers(1 << 31)), SIZE, palettes=1)[0][0] for _ in range(batch - n_photo)]
    imgs = np.concatenate([np.stack(imgs), data.photo_crops(rng, n_photo, SIZE)])
    y, x = rng.integers(0, SIZE - crop + 1, 2)
    return to_tensor(imgs[:, y:y + crop, x:x + crop])


def train_vae(args, log):
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**vae_config())
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    step, rng = 0, np.random.default_rng(args.seed)
    ck = load_ckpt(args.work, "vae")
    if ck:
        vae.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")
    log(f"params {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M")
    loop = Steps(args, log, "vae", opt, vae.parameters(), step,
                 lambda: {"model": vae.state_dict(), "opt": opt.state_dict(), "rng": rng}, args.minutes)
    vae.train()
    while loop.running(args.vae_steps):
        loop.set_lr(args.vae_steps, args.vae_lr)
        x = vae_batch(rng, args.vae_batch)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - x).abs().mean()
        loop.update(l1 + F.mse_loss(rec, x) + 1e-6 * post.kl().mean(), f" (l1 {l1.item():.4f})")
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
    scale = float(1.0 / lat.std())
    vae.register_to_config(scaling_factor=scale)
    log(f"done at step {step}, loss {ema_loss or float('nan'):.4f}, held-out PSNR {psnr:.2f} dB, scaling_factor {scale:.4f}")
    vae.save_pretrained(args.work / "vae")
    return {"steps": step, "loss": ema_loss, "psnr": psnr, "scaling_factor": scale}


def load_vae(work: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(work / "vae").eval().requires_grad_(False)


# ---------------------------------------------------------------- pool for stages 2-3
def make_pool(args, log):
    return cached_pool(args.work / "pool.npz", lambda: _render_pool(args, log))


def _render_pool(args, log) -> dict:
    from ..structure import get_extractor

    log(f"rendering pool: {args.pool} scenes x {args.palettes} palettes")
    vae = load_vae(args.work)
    canny = get_extractor("canny")
    imgs, depths, caps, edges = [], [], [], []
    for i in range(args.pool):
        for img, depth, mask, cap in data.sample(args.seed * 100_000 + i, SIZE, args.palettes):
            imgs.append(img), depths.append(depth), caps.append(cap)
    imgs = np.stack(imgs)
    edges = canny(imgs)[..., 0]
    lat = []
    with torch.no_grad():
        for j in range(0, len(imgs), 64):
            lat.append(vae.encode(to_tensor(imgs[j:j + 64])).latent_dist.mode() * vae.config.scaling_factor)
    lat = torch.cat(lat).half().numpy()
    log(f"pool: {len(imgs)} images encoded, latent std {lat.astype(np.float32).std():.3f}")
    return {"latents": lat, "edges": edges, "depth": np.stack(depths), "captions": np.array(caps)}


def tokenize(tok, captions):
    return tok(list(captions), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


# ---------------------------------------------------------------- stage 2: text encoder + UNet
def build_text(work: Path):
    from transformers import CLIPTextModel

    from .tokenizer import build_tokenizer

    tok = build_tokenizer(work / "tokenizer", data.WORDS)
    vocab = json.loads((work / "tokenizer" / "vocab.json").read_text())
    te = CLIPTextModel(text_config(max(vocab.values()) + 1, vocab["<|startoftext|>"], vocab["<|endoftext|>"]))
    return tok, te


def cached_pool(path: Path, build) -> dict:
    """The arrays saved at ``path`` (npz), or ``build()``'s, saved there first (pools render once)."""
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return {k: z[k] for k in z.files}
    pool = build()
    np.savez(path, **pool)
    return pool


def joint_training(args, log, stage: str, unet, te, lr: float, seed: int):
    """UNet + text encoder trained together: EMA copies, AdamW, and resume from ``<work>/<stage>.pt``.

    Returns ``(ema_u, ema_t, params, opt, step, rng, state)``; ``state()`` is the checkpoint body."""
    ema_u, ema_t = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(te).requires_grad_(False)
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    step, rng = 0, np.random.default_rng(seed)
    ck = load_ckpt(args.work, stage)
    if ck:
        unet.load_state_dict(ck["unet"]), te.load_state_dict(ck["te"]), opt.load_state_dict(ck["opt"])
        ema_u.load_state_dict(ck["ema_u"]), ema_t.load_state_dict(ck["ema_t"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")

    def state():
        return {"unet": unet.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(),
                "ema_u": ema_u.state_dict(), "ema_t": ema_t.state_dict(), "rng": rng}

    return ema_u, ema_t, params, opt, step, rng, state


WEIGHTINGS = ("min-snr", "x0")


def eps_loss(sched, t: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor, weighting: str = "min-snr"):
    """Weighted epsilon MSE over a batch (any shape with batch first).

    ``min-snr``: weight min(SNR, 5) / SNR (Hang et al. 2023, "Efficient Diffusion Training
    via Min-SNR Weighting"). ``x0``: weight max(1, 1/SNR), capped at 50: since the eps error
    is sqrt(SNR) times the x0 error, this weighs the *x0* error by max(SNR, 1) (truncated
    SNR, Salimans & Ho 2022), so high-noise steps -- where layout, motion and colour are
    decided and eps-MSE barely sees them -- count as much as the rest.
    """
    ac = sched.alphas_cumprod[t]
    snr = ac / (1 - ac)
    if weighting == "min-snr":
        w = torch.clamp(snr, max=5.0) / snr
    elif weighting == "x0":
        w = torch.clamp(1.0 / snr, min=1.0, max=50.0)
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return (w * ((eps - noise) ** 2).flatten(1).mean(1)).mean()


def train_text_unet(args, log):
    from diffusers import UNet2DConditionModel

    pool = make_pool(args, log)
    torch.manual_seed(args.seed + 1)
    tok, te = build_text(args.work)
    unet = UNet2DConditionModel(**unet_config())
    ema_u, ema_t, params, opt, step, rng, state = joint_training(args, log, "text-unet", unet, te, args.unet_lr,
                                                                 args.seed + 1)
    sched = scheduler()
    log(f"params unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M, "
        f"text {sum(p.numel() for p in te.parameters()) / 1e6:.2f} M")
    lat_all = torch.from_numpy(pool["latents"].astype(np.float32))
    ids_all = tokenize(tok, pool["captions"])
    empty = tokenize(tok, [""])[0]
    unet.train(), te.train()
    loop = Steps(args, log, "text-unet", opt, params, step, state, args.minutes, log_every=50)
    while loop.running(args.unet_steps):
        loop.set_lr(args.unet_steps, args.unet_lr)
        idx = torch.from_numpy(rng.integers(0, len(lat_all), args.batch))
        x0 = lat_all[idx]
        if rng.random() < 0.5:
            x0 = x0.flip(-1)
        ids = ids_all[idx].clone()
        drop = torch.from_numpy(rng.random(args.batch) < 0.1)
        ids[drop] = empty
        g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (args.batch,), generator=g)
        xt = sched.add_noise(x0, noise, t)
        cond = te(ids)[0]
        eps = unet(xt, t, encoder_hidden_states=cond).sample
        loop.update(eps_loss(sched, t, eps, noise, args.unet_weighting))
        ema_update(ema_u, unet, loop.step - 1), ema_update(ema_t, te, loop.step - 1)
    loop.save()
    step, ema_loss = loop.step, loop.loss
    ema_u.save_pretrained(args.work / "unet")
    ema_t.save_pretrained(args.work / "text_encoder")
    log(f"done at step {step}, loss {ema_loss or float('nan'):.4f}")
    return {"steps": step, "loss": ema_loss}


# ---------------------------------------------------------------- stage 3: ControlNets
def train_controlnet(args, log, kind: str):
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    name = f"controlnet-{kind}"
    pool = make_pool(args, log)
    unet = UNet2DConditionModel.from_pretrained(args.work / "unet").eval().requires_grad_(False)
    te = CLIPTextModel.from_pretrained(args.work / "text_encoder").eval().requires_grad_(False)
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(args.work / "tokenizer"))
    torch.manual_seed(args.seed + 2)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 64))
    opt = torch.optim.AdamW(cn.parameters(), lr=args.cn_lr, weight_decay=1e-2)
    sched = scheduler()
    step, rng = 0, np.random.default_rng(args.seed + (3 if kind == "edges" else 4))
    ck = load_ckpt(args.work, name)
    if ck:
        cn.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")
    log(f"params {sum(p.numel() for p in cn.parameters()) / 1e6:.2f} M")
    lat_all = torch.from_numpy(pool["latents"].astype(np.float32))
    maps = pool["edges"] if kind == "edges" else pool["depth"]
    with torch.no_grad():
        caps = list(pool["captions"])
        emb_all = torch.cat([te(tokenize(tok, caps[i:i + 256]))[0] for i in range(0, len(caps), 256)])
        emb_empty = te(tokenize(tok, [""]))[0]
    cn.train()
    total = args.cn_steps if kind == "edges" else args.depth_steps
    minutes = args.minutes if kind == "edges" else args.depth_minutes
    loop = Steps(args, log, name, opt, cn.parameters(), step,
                 lambda: {"model": cn.state_dict(), "opt": opt.state_dict(), "rng": rng}, minutes)
    while loop.running(total):
        loop.set_lr(total, args.cn_lr, warm=20)
        idx = rng.integers(0, len(lat_all), args.batch)
        x0 = lat_all[idx]
        c = torch.from_numpy(maps[idx]).float()[:, None].expand(-1, 3, -1, -1) / 255.0
        emb = emb_all[idx].clone()
        drop = torch.from_numpy(rng.random(args.batch) < 0.1)
        emb[drop] = emb_empty
        g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        noise = torch.randn(x0.shape, generator=g)
        # structure is decided at high noise (and that is where restyling starts): favour it
        t = torch.randint(args.cn_tmin, 1000, (args.batch,), generator=g)
        xt = sched.add_noise(x0, noise, t)
        down, mid = cn(xt, t, encoder_hidden_states=emb, controlnet_cond=c, return_dict=False)
        eps = unet(xt, t, encoder_hidden_states=emb, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample
        loop.update(eps_loss(sched, t, eps, noise))
    loop.save()
    step, ema_loss = loop.step, loop.loss
    cn.save_pretrained(args.work / name)
    log(f"done at step {step}, loss {ema_loss or float('nan'):.4f}")
    return {"steps": step, "loss": ema_loss}


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
    scheduler().save_pretrained(out / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "safety_checker": [None, None],
             "requires_safety_checker": False, "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*.safetensors"))
    log(f"exported to {out} ({size / 1e6:.1f} MB of safetensors)")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m videdit.mini.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", default="all", choices=["vae", "text-unet", "controlnet", "controlnet-edges",
                                                       "controlnet-depth", "t2v", "ip-adapter", "all", "export"])
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
    ap.add_argument("--unet-weighting", choices=WEIGHTINGS, default="min-snr",
                    help="loss weighting of the text-unet stage")
    ap.add_argument("--t2v-weighting", choices=WEIGHTINGS, default="x0", help="loss weighting of the t2v stage")
    ap.add_argument("--ip-weighting", choices=WEIGHTINGS, default="x0", help="loss weighting of the ip-adapter stage")
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
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--work", type=Path, default=WORK, help="checkpoints, logs and trained parts (default .mini-train/)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the components are exported")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.base = args.base or args.out
    defaults = {"vae": 14, "text-unet": 28, "controlnet-edges": 11, "controlnet-depth": 3, "t2v": 45,
                "ip-adapter": 30}
    stages = {"all": ["vae", "text-unet", "controlnet-edges", "controlnet-depth", "export", "t2v",
                      "ip-adapter"],
              "controlnet": ["controlnet-edges", "controlnet-depth"]}.get(args.stage, [args.stage])
    results = {}
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
            results[st] = train_text_unet(a, log)
        elif st == "t2v":
            from .train_t2v import train_t2v

            results[st] = train_t2v(a, log)
        elif st == "ip-adapter":
            from .train_ip import train_ip_adapter

            results[st] = train_ip_adapter(a, log)
        else:
            results[st] = train_controlnet(a, log, st.split("-")[1])
        results[st]["wall_min"] = round((time.time() - t) / 60, 2)
        log(json.dumps(results[st]))
    hist = args.work / "results.json"
    old = json.loads(hist.read_text()) if hist.is_file() else {}
    old.update(results)
    args.work.mkdir(parents=True, exist_ok=True)
    hist.write_text(json.dumps(old, indent=2))
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
