"""Stage ``t2v`` of ``python -m videdit.mini.train``: videdit-mini-t2v, a small ModelScope-design UNet3D.

The model is ModelScope's ``UNet3DConditionModel`` (Wang et al. 2023) shrunk to
videdit-mini's sizes: the same blocks as the mini UNet (32, 64, 128 channels,
attention at 8x8 and 4x4 latents), each followed by a temporal convolution and
a temporal attention layer, plus the input temporal transformer.

Initialisation, the inflation recipe of video LDMs (Blattmann et al. 2023,
"Align your Latents"; AnimateDiff, Guo et al. 2023): every spatial weight is
copied from the trained mini image UNet (the 2-D and 3-D blocks name their
spatial layers alike), the temporal convolutions start as identities (diffusers
zero-initialises their last layer) and we zero the output projection of every
temporal transformer, so step 0 *is* the image model run per frame; training then
only has to learn motion and the new words. The text encoder is the mini one with
its vocabulary extended by :data:`~videdit.mini.motion.MOTION_WORDS` (rows of the
words it already knew are copied) and is fine-tuned jointly. The VAE is the
mini VAE, frozen and shared (the export links to it).

Data: a pool of procedural clips (:mod:`videdit.mini.motion`) rendered once and
encoded with the VAE; the epsilon objective with min-SNR weighting and 10 %
caption dropout, as the image stage, with PYoCo's mixed noise (a ``--t2v-noise-share``
fraction of each clip's noise variance common to all its frames; the recipe samples
with the same ``noise_share``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..core.conditioning import vae_encode
from . import motion
from .loop import (Steps, autocast, batched, cached_pool, diffusion_loss, ema_update, process_map, step_draws, to_tensor,
                   tokenize)
from .train import OUT, ROOT, init_from_export, joint_training, load_vae, scheduler

OUT_T2V = ROOT / "pipelines" / "videdit-mini-t2v"
MODELSCOPE = ROOT / "tests" / "hub_configs" / "ali-vilab--text-to-video-ms-1.7b"
SHARED = ("vae",)  # linked to videdit-mini's, not copied


def temporal_or_text_attention(name: str) -> bool:
    """UNet3D submodules that make motion or read the caption: temporal convolutions and attention, and
    the spatial layers' text cross-attention (``attn2``; in the temporal transformers it is self-attention)."""
    return any(part in ("temp_convs", "temp_attentions", "transformer_in") for part in name.split(".")) \
        or name.endswith("attn2")


def unet3d_config(image_unet_config: dict) -> dict:
    """ModelScope's UNet3D config with the mini image UNet's sizes (its 3-D block types)."""
    cfg = {}
    if (MODELSCOPE / "unet").is_dir():
        from diffusers import UNet3DConditionModel

        cfg = {k: v for k, v in dict(UNet3DConditionModel.load_config(MODELSCOPE / "unet")).items()
               if not k.startswith("_")}
    kind3d = {"DownBlock2D": "DownBlock3D", "CrossAttnDownBlock2D": "CrossAttnDownBlock3D",
              "UpBlock2D": "UpBlock3D", "CrossAttnUpBlock2D": "CrossAttnUpBlock3D"}
    c = image_unet_config
    # UNet3D reads attention_head_dim as the size of a head (UNet2D, the same key, as the
    # number of heads: diffusers issue 2011) and takes one value for all levels: 16 gives the
    # image model's 4 heads at 64 channels, and 8 heads of 16 (for 4 of 32) at 128 channels.
    heads = c["attention_head_dim"] if isinstance(c["attention_head_dim"], int) else c["attention_head_dim"][0]
    cfg.update(block_out_channels=list(c["block_out_channels"]), layers_per_block=c["layers_per_block"],
               down_block_types=[kind3d[k] for k in c["down_block_types"]],
               up_block_types=[kind3d[k] for k in c["up_block_types"]],
               cross_attention_dim=c["cross_attention_dim"], attention_head_dim=c["block_out_channels"][1] // heads,
               norm_num_groups=c["norm_num_groups"], sample_size=c["sample_size"], in_channels=c["in_channels"],
               out_channels=c["out_channels"])
    return cfg


def inflate(image_unet):
    """A UNet3D whose spatial layers are ``image_unet``'s and whose temporal layers are identities."""
    from diffusers import UNet3DConditionModel
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    unet = UNet3DConditionModel(**unet3d_config(dict(image_unet.config)))
    target = unet.state_dict()
    # The 3-D blocks' spatial transformers project with Linear layers where the mini image
    # UNet has 1x1 convolutions (use_linear_projection=False): the same matrices.
    state = {k: v.reshape(target[k].shape) if k in target and v.dim() == 4 and target[k].dim() == 2 else v
             for k, v in image_unet.state_dict().items()}
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"image UNet weights with no 3-D counterpart: {unexpected[:5]}")
    with torch.no_grad():
        for m in unet.modules():
            if isinstance(m, TransformerTemporalModel):
                m.proj_out.weight.zero_(), m.proj_out.bias.zero_()
    return unet


def extend_text(old_dir: Path, work: Path):
    """Tokenizer with the motion words, and the mini text encoder with its embedding rows remapped."""
    from transformers import CLIPTextModel, CLIPTokenizer

    from .tokenizer import build_tokenizer
    from .train import text_config

    old_tok = CLIPTokenizer.from_pretrained(str(old_dir / "tokenizer"))
    old_te = CLIPTextModel.from_pretrained(old_dir / "text_encoder").float()
    tok = build_tokenizer(work / "t2v-tokenizer", motion.T2V_WORDS)
    vocab = json.loads((work / "t2v-tokenizer" / "vocab.json").read_text())
    torch.manual_seed(0)
    te = CLIPTextModel(text_config(max(vocab.values()) + 1, vocab["<|startoftext|>"], vocab["<|endoftext|>"]))
    state = {k: v for k, v in old_te.state_dict().items() if "token_embedding" not in k}
    te.load_state_dict(state, strict=False)
    old_vocab, old_emb = old_tok.get_vocab(), old_te.get_input_embeddings().weight
    emb = te.get_input_embeddings().weight
    with torch.no_grad():
        for token, i in vocab.items():
            if token in old_vocab:
                emb[i] = old_emb[old_vocab[token]]
    return tok, te


def make_clip_pool(args, log) -> dict:
    return cached_pool(args.work / "t2v-pool.npz", lambda: _render_clips(args, log, load_vae(args.base)),
                       {"seed": args.seed, "clips": args.t2v_pool, "frames": args.t2v_frames, "ease": motion.EASE})


def _render_clip(item):
    seed, frames = item
    return motion.motion_sample(seed, frames)


def _render_clips(args, log, vae) -> dict:
    log(f"rendering clip pool: {args.t2v_pool} clips x {args.t2v_frames} frames ({args.workers} workers)")
    lat, caps = [], []
    items = [(args.seed * 100_000 + 50_000 + i, args.t2v_frames) for i in range(args.t2v_pool)]
    with process_map(args.workers) as pmap, torch.no_grad():
        vae.to(args.dev)
        for chunk in batched(pmap(_render_clip, items), 16):
            video = np.concatenate([v for v, _ in chunk])
            z = vae_encode(vae, to_tensor(video).to(args.dev), chunk=len(video))
            lat.append(z.half().cpu().numpy().reshape(len(chunk), args.t2v_frames, *z.shape[1:]))
            caps += [c for _, c in chunk]
            if len(caps) % 2000 < len(chunk):
                log(f"pool {len(caps)}/{args.t2v_pool}")
    return {"latents": np.concatenate(lat), "captions": np.array(caps)}  # (N, F, C, h, w)


def augmented_ids(tok, captions) -> torch.Tensor:
    """``(4, N, L)`` token ids of each caption as it reads for the clip mirrored left-right (bit 0)
    and/or played backwards (bit 1): see :func:`motion.mirrored_caption`."""
    return torch.stack([tokenize(tok, [motion.mirrored_caption(c, hflip=bool(v & 1), reverse=bool(v & 2))
                                       for c in captions]) for v in range(4)])


def motion_labels(captions) -> torch.Tensor:
    """``(N,)`` int64: the index in :data:`motion.MOTIONS` of the motion each caption names."""
    table = {m: i for i, m in enumerate(motion.MOTIONS)}
    return torch.tensor([next(table[w] for w in c.split(" ") if w in table) for c in captions])


def text_motion_loss(head, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Auxiliary loss on the text encoder: a linear ``head`` must tell the caption's motion from its
    hidden states ``(n, L, D)`` averaged over positions; ``labels`` ``(n,)`` as :func:`motion_labels`.

    Why: the shipped text encoder barely separates the direction words (its output at the word's own
    position moves 4.9 % between "left" and "right", against 74.6 % between two colours, ``probe
    direction``; the new words' embeddings never grew from their initial scale), so the UNet has
    nothing to read, and a UNet that does not read them sends them no gradient. The head (thrown away
    after training) gives the text encoder a reason of its own to keep the motions apart. Returns
    (loss, accuracy): ``hidden`` ``(n, L, D)`` float, ``labels`` ``(n,)`` int64."""
    if not len(labels):
        return hidden.new_zeros(()), float("nan")
    logits = head(hidden.float().mean(1))
    return (torch.nn.functional.cross_entropy(logits, labels),
            float((logits.argmax(1) == labels).float().mean()))


def train_t2v(args, log):
    from diffusers import UNet2DConditionModel

    base = args.base
    pool = make_clip_pool(args, log)
    torch.manual_seed(args.seed + 5)
    tok, te = extend_text(base, args.work)
    if args.init_from:  # fine-tune an exported videdit-mini-t2v, in its own architecture (the image
        # model it was inflated from may have changed since, e.g. grown attention blocks)
        from diffusers import UNet3DConditionModel

        unet = UNet3DConditionModel.from_config(UNet3DConditionModel.load_config(args.init_from / "unet"))
        init_from_export(log, args.init_from, tok, te, unet)
    else:
        unet = inflate(UNet2DConditionModel.from_pretrained(base / "unet").float())
    if args.t2v_positions:  # weight-free: the export is a plain UNet3D, its recipe installs the same
        from ..core.attention import install_temporal_positions

        install_temporal_positions(unet)
        log("temporal attention with sinusoidal frame positions")
    if args.t2v_train == "temporal-text":  # the spatial layers keep the image model's shapes and colours
        from .train import train_only

        train_only([unet], temporal_or_text_attention)
        log(f"training {sum(p.numel() for p in unet.parameters() if p.requires_grad) / 1e6:.2f} M of the UNet3D's "
            "parameters: temporal layers and text cross-attention")
    head = torch.nn.Linear(te.config.hidden_size, len(motion.MOTIONS)) if args.t2v_text_aux else None
    pairs, params, opt, step, rng, state = joint_training(args, log, "t2v", unet, te, args.t2v_lr, args.seed + 5,
                                                          extra=head)
    (ema_u, _), (ema_t, _) = pairs[:2]
    sched = scheduler(args.objective)
    log(f"params unet3d {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M, objective {args.objective}")
    dev = args.dev
    lat_all = torch.from_numpy(pool["latents"]).to(dev)  # (N, F, C, h, w) float16
    # Mirrored and time-reversed clips are clips of the grammar too (left <-> right, ...): 4x the data,
    # and every direction word is seen with every start position.
    ids_all = (augmented_ids(tok, pool["captions"]) if args.t2v_augment != "none"
               else tokenize(tok, pool["captions"])[None]).to(dev)
    empty = tokenize(tok, [""])[0].to(dev)
    if head is not None:  # the motion each (augmented) caption names, in the layout of ids_all
        caps = [motion.mirrored_caption(c, hflip=bool(v & 1), reverse=bool(v & 2)) for v in range(len(ids_all))
                for c in pool["captions"]]
        labels_all = motion_labels(caps).reshape(len(ids_all), -1).to(dev)
        accs: list[float] = []
    unet.train(), te.train()
    loop = Steps(args, log, "t2v", opt, params, step, state, args.minutes, log_every=25)
    b = args.t2v_batch
    while loop.running(args.t2v_steps):
        loop.set_lr(args.t2v_steps, args.t2v_lr, warm=50)
        g, idx, drop = step_draws(args, rng, len(lat_all), b, 0.1)
        x0 = lat_all[idx].float().permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
        var = torch.randint(0, 2 if args.t2v_augment == "mirror" else len(ids_all), (b,), generator=g, device=dev)
        if args.t2v_augment != "none":
            x0 = torch.where((var & 1).bool()[:, None, None, None, None], x0.flip(-1), x0)
            x0 = torch.where((var & 2).bool()[:, None, None, None, None], x0.flip(2), x0)
        ids = torch.where(drop[:, None], empty, ids_all[var, idx])
        # PYoCo's mixed noise prior (Ge et al. 2023): part of every clip's noise is common to its
        # frames, the same share the recipe samples with (noise_share), so frames start correlated.
        share = args.t2v_noise_share
        noise = (math.sqrt(share) * torch.randn((b, x0.shape[1], 1, *x0.shape[3:]), generator=g, device=dev)
                 + math.sqrt(1 - share) * torch.randn(x0.shape, generator=g, device=dev))
        t = torch.randint(0, 1000, (b,), generator=g, device=dev)
        xt = sched.add_noise(x0, noise, t)
        with autocast(args):
            hidden = te(ids)[0]
            eps = unet(xt, t, encoder_hidden_states=hidden).sample
            loss, note = diffusion_loss(sched, t, eps, x0, noise, args.t2v_weighting), ""
            if head is not None:
                aux, acc = text_motion_loss(head, hidden[~drop], labels_all[var, idx][~drop])
                loss = loss + args.t2v_text_aux * aux
                accs = (accs + [acc])[-loop.log_every:]
                note = f" text motion accuracy {np.nanmean(accs):.2f}"
        loop.update(loss, note)
        ema_update(ema_u, unet, loop.step - 1, decay=0.998), ema_update(ema_t, te, loop.step - 1, decay=0.998)
    loop.save()
    ema_u.save_pretrained(args.work / "t2v-unet")
    ema_t.save_pretrained(args.work / "t2v-text_encoder")
    sched.save_pretrained(args.work / "t2v-scheduler")
    log(f"done at step {loop.step}, loss {loop.loss or float('nan'):.4f}")
    return {"steps": loop.step, "loss": loop.loss}


def export_t2v(log, work: Path, out: Path = OUT_T2V, image_model: Path = OUT):
    """Write ``pipelines/videdit-mini-t2v/``: own UNet3D, tokenizer and text encoder (fp16 safetensors);
    the VAE is a relative link to ``image_model``'s (shared, not copied); the scheduler config is its
    own (the objective it was trained with)."""
    import shutil

    from diffusers import UNet3DConditionModel
    from transformers import CLIPTextModel

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    shutil.copytree(work / "t2v-tokenizer", out / "tokenizer")
    for name, cls in (("unet", UNet3DConditionModel), ("text_encoder", CLIPTextModel)):
        m = cls.from_pretrained(work / f"t2v-{name}").half()
        shutil.rmtree(out / name, ignore_errors=True)
        m.save_pretrained(out / name, safe_serialization=True)
    if (out / "scheduler").is_symlink():  # linked to the image model's before its objective could differ
        (out / "scheduler").unlink()
    shutil.rmtree(out / "scheduler", ignore_errors=True)
    if (work / "t2v-scheduler").is_dir():
        shutil.copytree(work / "t2v-scheduler", out / "scheduler")
    else:
        shutil.copytree(image_model / "scheduler", out / "scheduler")
    for name in SHARED:
        link = out / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        os.symlink(os.path.relpath(image_model / name, out), link)
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1",
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*.safetensors") if not any(p.is_symlink() for p in f.parents))
    log(f"exported to {out} ({size / 1e6:.1f} MB of own safetensors; vae linked)")
