"""Stage ``ip-adapter`` of ``python -m videdit.mini.train``: content from a reference image for videdit-mini.

IP-Adapter (Ye et al. 2023, "IP-Adapter: Text Compatible Image Prompt Adapter"):
an image encoder's embedding is projected to 4 extra context tokens, which every
cross-attention layer of the frozen UNet attends to through its own new key/value
projections (decoupled cross-attention), added to the text attention. Here:

- the image encoder is a ``CLIPVisionModelWithProjection`` with h94/IP-Adapter's
  ViT-H config shrunk (64 px input, 8 px patches, width 64, 2 layers), trained from
  scratch together with the adapter; the projection is diffusers' ``ImageProjection``;
- the new ``to_k_ip`` / ``to_v_ip`` start as copies of each layer's text ``to_k`` /
  ``to_v``, as the paper initialises them;
- data: a scene under a palette is the target, and the *reference* is a different
  scene under the same palette, so the only thing the reference can tell the model
  is the palette (Gen-1's "content from an image" at this model's scale). Captions
  are dropped half of the time so the image alone must carry the palette.
- ``--ip-distill`` (the default; ``--no-ip-distill`` keeps the loss above): instead of
  the noisy diffusion target, the adapter (given the reference and an empty caption)
  learns to reproduce the frozen UNet's prediction given the target's *caption*
  (adapter off): the reference must do what its palette's words do. The teacher's
  output has no sampling noise in it, so the few bits of palette information are not
  buried in the diffusion loss's variance (the plain objective left the adapter
  without a measurable effect; see the card).

The result is written in h94/IP-Adapter's layout (``ip-adapter/ip-adapter_mini.safetensors``
with ``image_proj.*`` / ``ip_adapter.<id>.to_{k,v}_ip.weight`` keys, and
``ip-adapter/image_encoder/``), which diffusers' ``load_ip_adapter`` reads: the
``mini-ipadapter`` recipe loads it through the same path as ``sd15-depth-ipadapter``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..core.conditioning import vae_encode
from . import data
from .loop import (Steps, adamw, autocast, batched, cached_pool, diffusion_loss, ema_update, load_ckpt, process_map,
                   step_draws, to_tensor, tokenize, weighted_mse)
from .train import OUT, ROOT, load_vae, scheduler

H94 = ROOT / "tests" / "hub_configs" / "h94--IP-Adapter" / "models" / "image_encoder"
SUBFOLDER, WEIGHT_NAME = "ip-adapter", "ip-adapter_mini.safetensors"
REF_SIZE = 64


def image_encoder_config():
    """h94/IP-Adapter's ViT-H/14 image-encoder config, shrunk to the mini model's scale."""
    from transformers import CLIPVisionConfig

    cfg = CLIPVisionConfig.from_pretrained(H94) if H94.is_dir() else CLIPVisionConfig()
    for key, value in dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                           image_size=REF_SIZE, patch_size=8, projection_dim=64).items():
        setattr(cfg, key, value)
    return cfg


@lru_cache(maxsize=1)
def processor():
    """The image preprocessing diffusers' ``load_ip_adapter`` pairs with an encoder of this size."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size=REF_SIZE, crop_size=REF_SIZE)


def same_palette(rng, palette: data.Palette, scene: data.Scene) -> data.Palette:
    """``palette``'s colours assigned to another scene's shapes (cycled)."""
    n = len(palette.shapes)
    order = rng.permutation(len(scene.shapes))
    shapes = [palette.shapes[k % n] for k in order]
    words = [palette.shape_words[k % n] for k in order]
    return data.Palette(palette.bg, shapes, palette.style, words, palette.bg_word)


def pair(seed: int, size: int = 128):
    """``(target image, reference image, caption)``: two scenes under one palette."""
    rng = np.random.default_rng(seed)
    a, b = data.random_scene(rng, size), data.random_scene(rng, size)
    pal = data.random_palette(rng, a)
    target = data.render(a, pal)[0]
    ref = data.render(b, same_palette(rng, pal, b))[0]
    return target, ref, data.caption(rng, a, pal)


def initial_adapter(unet, cfg) -> dict:
    """An h94-format state dict: random ``image_proj``, ``to_{k,v}_ip`` copied from each ``attn2``."""
    from diffusers.models.embeddings import ImageProjection

    proj = ImageProjection(image_embed_dim=cfg.projection_dim, cross_attention_dim=unet.config.cross_attention_dim,
                           num_image_text_embeds=4)
    sd = {"image_proj": {k.replace("image_embeds", "proj"): v for k, v in proj.state_dict().items()},
          "ip_adapter": {}}
    key_id = 1
    modules = dict(unet.named_modules())
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attn = modules[name[:-len(".processor")]]
            sd["ip_adapter"][f"{key_id}.to_k_ip.weight"] = attn.to_k.weight.detach().clone()
            sd["ip_adapter"][f"{key_id}.to_v_ip.weight"] = attn.to_v.weight.detach().clone()
            key_id += 2
    return sd


def adapter_state(unet) -> dict:
    """The UNet's loaded adapter back in h94's flat key layout (the inverse of diffusers' loader)."""
    proj = unet.encoder_hid_proj.image_projection_layers[0]
    out = {f"image_proj.{k.replace('image_embeds', 'proj')}": v for k, v in proj.state_dict().items()}
    key_id = 1
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            out[f"ip_adapter.{key_id}.to_k_ip.weight"] = proc.to_k_ip[0].weight
            out[f"ip_adapter.{key_id}.to_v_ip.weight"] = proc.to_v_ip[0].weight
            key_id += 2
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def make_pair_pool(args, log) -> dict:
    return cached_pool(args.work / "ip-pool.npz", lambda: _render_pairs(args, log, load_vae(args.base)),
                       {"seed": args.seed, "pairs": args.ip_pool, "self_refs": True})


def shuffled_patches(image: np.ndarray, rng: np.random.Generator, grid: int = 4) -> np.ndarray:
    """``image`` cut into ``grid x grid`` patches, shuffled and randomly flipped: the same colours in the
    same proportions, none of the layout."""
    h, w = image.shape[0] // grid, image.shape[1] // grid
    patches = [image[i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(grid) for j in range(grid)]
    patches = [p[::-1] if rng.random() < 0.5 else p for p in patches]
    patches = [p[:, ::-1] if rng.random() < 0.5 else p for p in patches]
    order = rng.permutation(len(patches))
    rows = [np.concatenate([patches[k] for k in order[r * grid:(r + 1) * grid]], axis=1) for r in range(grid)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def _render_pair(seed: int):
    """Pool worker: target, its reference (another scene, same palette), its own patches shuffled
    (an exact-palette reference), caption. References are preprocessed ``(3, 64, 64)`` float16."""
    target, ref, cap = pair(seed)
    own = shuffled_patches(target, np.random.default_rng(seed + 1))
    prep = processor()
    return (target, prep(ref, return_tensors="np").pixel_values[0].astype(np.float16),
            prep(own, return_tensors="np").pixel_values[0].astype(np.float16), cap)


def _render_pairs(args, log, vae) -> dict:
    log(f"rendering reference pool: {args.ip_pool} pairs ({args.workers} workers)")
    lat, refs, own, caps = [], [], [], []
    seeds = [args.seed * 100_000 + 70_000 + i for i in range(args.ip_pool)]
    with process_map(args.workers) as pmap, torch.no_grad():
        vae.to(args.dev)
        for items in batched(pmap(_render_pair, seeds), 256):
            targets = to_tensor(np.stack([it[0] for it in items])).to(args.dev)
            lat.append(vae_encode(vae, targets, chunk=len(targets)).half().cpu().numpy())
            refs.append(np.stack([it[1] for it in items])), own.append(np.stack([it[2] for it in items]))
            caps += [it[3] for it in items]
    return {"latents": np.concatenate(lat), "refs": np.concatenate(refs), "self_refs": np.concatenate(own),
            "captions": np.array(caps)}


def train_ip_adapter(args, log):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    base = args.base
    pool = make_pair_pool(args, log)
    dev = args.dev
    unet = UNet2DConditionModel.from_pretrained(base / "unet").float().eval().requires_grad_(False)
    te = CLIPTextModel.from_pretrained(base / "text_encoder").float().eval().requires_grad_(False).to(dev)
    tok = CLIPTokenizer.from_pretrained(str(base / "tokenizer"))
    torch.manual_seed(args.seed + 6)
    cfg = image_encoder_config()
    if args.init_from:  # fine-tune an exported adapter (h94 layout, fp16 on disk)
        from safetensors.torch import load_file

        src = args.init_from / SUBFOLDER
        flat = load_file(str(src / WEIGHT_NAME))
        start = {part: {k[len(part) + 1:]: v.float() for k, v in flat.items() if k.startswith(part + ".")}
                 for part in ("image_proj", "ip_adapter")}
        enc = CLIPVisionModelWithProjection.from_pretrained(src / "image_encoder").float()
        log(f"initialised from {src}")
    else:
        enc = CLIPVisionModelWithProjection(cfg).float()  # h94's config says float16
        start = initial_adapter(unet, cfg)
    unet._load_ip_adapter_weights([start])
    unet.to(dev, torch.float32)
    enc.to(dev)
    adapter = [p for n, p in unet.named_parameters() if "encoder_hid_proj" in n or "_ip." in n]
    for p in adapter:
        p.requires_grad_(True)
    params = list(enc.parameters()) + adapter
    ema = copy.deepcopy(params)
    opt = adamw(params, args, args.ip_lr)
    sched = scheduler(args.objective)
    step, rng = 0, np.random.default_rng(args.seed + 6)
    ck = load_ckpt(args.work, "ip-adapter", dev)
    if ck:
        for p, v in zip(params, ck["params"]):
            p.data.copy_(v)
        for e, v in zip(ema, ck["ema"]):
            e.data.copy_(v)
        opt.load_state_dict(ck["opt"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")
    log(f"params image encoder {sum(p.numel() for p in enc.parameters()) / 1e6:.2f} M, "
        f"adapter {sum(p.numel() for p in adapter) / 1e6:.2f} M")
    lat_all = torch.from_numpy(pool["latents"]).to(dev)  # float16, made float32 per batch
    refs_all = torch.from_numpy(pool["refs"]).to(dev)
    own_all = torch.from_numpy(pool["self_refs"]).to(dev)
    with torch.no_grad():
        caps = list(pool["captions"])
        emb_all = torch.cat([te(tokenize(tok, caps[i:i + 256]).to(dev))[0] for i in range(0, len(caps), 256)])
        emb_empty = te(tokenize(tok, [""]).to(dev))[0]
    enc.train()
    proj_dim = enc.config.projection_dim
    if args.ip_distill:
        log("objective: distillation from the caption-conditioned UNet (image alone, no caption)")
    loop = Steps(args, log, "ip-adapter", opt, params, step,
                 lambda: {"params": [p.detach() for p in params], "ema": [e.detach() for e in ema],
                          "opt": opt.state_dict(), "rng": rng}, args.minutes)
    while loop.running(args.ip_steps):
        loop.set_lr(args.ip_steps, args.ip_lr, warm=50)
        g, idx, drop = step_draws(args, rng, len(lat_all), args.batch, 0.5)
        x0 = lat_all[idx].float()
        noise = torch.randn(x0.shape, generator=g, device=dev)
        t = torch.randint(0, 1000, (args.batch,), generator=g, device=dev)
        keep = (torch.rand(args.batch, generator=g, device=dev) >= 0.05).float()[:, None]
        xt = sched.add_noise(x0, noise, t)
        if args.ip_distill:  # the teacher: the frozen UNet given the target's caption, adapter off
            with torch.no_grad(), autocast(args), ip_scale(unet, 0.0):
                text = torch.where(keep[:, :, None] > 0, emb_all[idx], emb_empty)  # no image: no caption
                teacher = unet(xt, t, encoder_hidden_states=text,
                               added_cond_kwargs={"image_embeds": [torch.zeros(args.batch, 1, proj_dim, device=dev)]}
                               ).sample.float()
            emb = emb_empty.expand(args.batch, -1, -1)  # the student: the reference alone
        else:
            emb = torch.where(drop[:, None, None], emb_empty, emb_all[idx])
        with autocast(args):
            # a share of the references are the target's own shuffled patches (its exact palette)
            own = (torch.rand(args.batch, generator=g, device=dev) < args.ip_self_share)[:, None, None, None]
            image = enc(torch.where(own, own_all[idx], refs_all[idx]).float()).image_embeds
            # the adapter's own "no image" is a zero embedding (what the engine feeds without --ref-image)
            image = image * keep
            pred = unet(xt, t, encoder_hidden_states=emb, added_cond_kwargs={"image_embeds": [image[:, None]]}).sample
        if args.ip_distill:
            loop.update(weighted_mse(sched, t, pred, teacher, args.ip_weighting))
        else:
            loop.update(diffusion_loss(sched, t, pred, x0, noise, args.ip_weighting))
        ema_update(ema, params, loop.step - 1, decay=0.998)
    loop.save()
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    save_adapter(unet, enc, args.work / "ip-adapter")
    log(f"done at step {loop.step}, loss {loop.loss or float('nan'):.4f}")
    return {"steps": loop.step, "loss": loop.loss}


@contextmanager
def ip_scale(unet, scale: float):
    """Temporarily set every IP-Adapter attention processor of ``unet`` to ``scale`` (0: the plain UNet)."""
    procs = [p for p in unet.attn_processors.values() if hasattr(p, "scale") and hasattr(p, "to_k_ip")]
    saved = [p.scale for p in procs]
    for p in procs:
        p.scale = [scale] * len(p.scale)
    try:
        yield
    finally:
        for p, s in zip(procs, saved):
            p.scale = s


def save_adapter(unet, enc, out: Path, half: bool = False) -> None:
    """``out/ip-adapter_mini.safetensors`` + ``out/image_encoder/`` (h94/IP-Adapter's ``models/`` layout)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = adapter_state(unet)
    save_file({k: v.half() if half else v for k, v in state.items()}, str(out / WEIGHT_NAME))
    (enc.half() if half else enc).save_pretrained(out / "image_encoder", safe_serialization=True)


def export_ip(log, work: Path, out: Path = OUT) -> None:
    """Copy the trained adapter into ``out/ip-adapter/`` as fp16 safetensors."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import CLIPVisionModelWithProjection

    src, dst = work / "ip-adapter", out / SUBFOLDER
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    save_file({k: v.half() for k, v in load_file(str(src / WEIGHT_NAME)).items()}, str(dst / WEIGHT_NAME))
    CLIPVisionModelWithProjection.from_pretrained(src / "image_encoder").half().save_pretrained(
        dst / "image_encoder", safe_serialization=True)
    log(f"exported IP-Adapter to {dst}")
