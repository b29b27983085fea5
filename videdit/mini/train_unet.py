"""videdit-mini's image stages: text encoder + UNet (``--stage text-unet``) and the ControlNets.

Run through ``python -m videdit.mini.train`` (see its module doc for the stages and flags); the pool,
configs, resume and export live there. Here:

- :func:`train_text_unet`: caption + UNet trained together, optionally with the edge ControlNet in the
  same steps (``--joint-cn``), on camera moves under the engine's cross-frame attention
  (``--cross-frame``, :func:`camera_frames`), and from a frozen teacher (``--teacher-distill``,
  :func:`step_target`);
- :func:`train_controlnet`: an edge or depth ControlNet against the frozen UNet.

Tensors: latents ``(B, C, h, w)`` float32 (the VAE's scaled latents, unit std), edge maps
``(B, H, W)`` uint8 in {0, 255} at 8x the latent size, timesteps ``(B,)`` int64 in [0, 1000).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.conditioning import vae_encode
from .loop import (Steps, adamw, autocast, diffusion_loss, ema_update, load_ckpt, predicted_x0, prediction_target,
                   step_draws, tokenize, weighted_mse)
from .train import (SIZE, build_text, has_top_attention, init_from_export, joint_training, load_vae, make_pool,
                    pool_seed, scheduler, train_only, unet_config)


def camera_frames(x: torch.Tensor, shifts: torch.Tensor, zooms: torch.Tensor, frames: int,
                  times: torch.Tensor | None = None) -> torch.Tensor:
    """Clips of a moving camera made from still images, to train for cross-frame attention.

    ``x``: ``(n, [C,] H, W)`` float or uint8 (uint8, e.g. edge maps, is resampled nearest and
    stays uint8; float bilinearly); ``shifts``: ``(n, 2)`` float, the content's motion per frame
    in pixels (dy, dx); ``zooms``: ``(n,)`` float, its scale factor per frame about the centre
    (> 1 zooms in); ``times``: ``(n, frames)`` float, when each frame is taken (default ``0, 1, ..``).
    Returns ``(n * frames, [C,] H, W)``, clip by clip (the engine's frame order): frame ``k`` of clip
    ``i`` is ``x[i]`` moved by ``T * shifts[i]`` and scaled by ``zooms[i] ** T``, ``T = times[i, k]``,
    the border mirrored where the camera sees past the still. A frame at time 0 is ``x`` itself.
    """
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    n, c, h, w = x.shape
    k = (torch.arange(frames, device=x.device, dtype=torch.float32)[None] if times is None
         else times.to(x.device, torch.float32))  # (1 or n, F)
    scale = zooms.float()[:, None] ** k  # (n, F)
    # affine_grid maps output to input coordinates in [-1, 1]: input = output / scale - motion
    theta = torch.zeros(n, frames, 2, 3, device=x.device)
    theta[..., 0, 0] = theta[..., 1, 1] = 1 / scale
    theta[..., 0, 2] = -2 * k * shifts[:, None, 1].float() / w
    theta[..., 1, 2] = -2 * k * shifts[:, None, 0].float() / h
    grid = F.affine_grid(theta.view(-1, 2, 3), [n * frames, c, h, w], align_corners=False)
    src = x.float().repeat_interleave(frames, 0)
    out = F.grid_sample(src, grid, mode="nearest" if x.dtype == torch.uint8 else "bilinear",
                        padding_mode="reflection", align_corners=False)
    out = out.round().to(torch.uint8) if x.dtype == torch.uint8 else out.to(x.dtype)
    return out[:, 0] if squeeze else out


def camera_draws(n: int, g: torch.Generator, speed: float = 1.0, span: int = 2):
    """The camera of ``n`` 3-frame clips: ``(shifts (n, 2), zooms (n,), times (n, 3) or None)`` for
    :func:`camera_frames`, on ``g``'s device.

    At ``speed`` 1, up to 2 latent pixels (16 px) of motion per frame either way and zooms of +-10 %
    per frame, a quarter of the clips panning only; ``speed`` scales the motion and the log-zoom (the
    sample clips move 0.06-0.16 latent pixels (0.5-1.3 px) and zoom 0.4-1.2 % per frame). ``span`` > 2: the frames
    are taken at 0, j - 1 and j, j drawn from 2..span, as the engine's anchor is often far back.
    """
    dev = g.device
    shifts = (torch.rand(n, 2, generator=g, device=dev) * 4 - 2) * speed
    zooms = torch.exp((torch.rand(n, generator=g, device=dev) * 2 - 1) * (math.log(1.1) * speed))
    still = torch.rand(n, generator=g, device=dev) < 0.25
    zooms = torch.where(still, torch.ones_like(zooms), zooms)
    times = None
    if span > 2:
        j = torch.randint(2, span + 1, (n,), generator=g, device=dev).float()
        times = torch.stack([torch.zeros_like(j), j - 1, j], 1)
    return shifts, zooms, times


def pool_stills(args, idx: torch.Tensor, flip: bool) -> np.ndarray:
    """The pool's images ``idx`` rendered again (the pool keeps latents only): ``(n, H, W, 3) uint8``."""
    from . import data

    imgs = np.stack([data.sample(pool_seed(args, i // args.palettes), SIZE, args.palettes, only=i % args.palettes)[0]
                     for i in idx.tolist()])
    return np.ascontiguousarray(imgs[:, :, ::-1]) if flip else imgs


@torch.no_grad()
def rendered_camera(vae, images: np.ndarray, shifts: torch.Tensor, zooms: torch.Tensor, frames: int,
                    times: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera moves as the engine meets them (``--camera-pixels``): stills moved in *pixels*, then
    VAE-encoded and edge-detected frame by frame.

    Moving latents and edge maps directly (:func:`camera_frames`) gives clips cleaner than real ones:
    on a real pan every frame is encoded on its own, and canny aliases differently on every frame (the
    sample pans' canny maps flicker 100-150x as much as the frames, ``python -m videdit.mini.probe
    maps``); the ControlNet passes that flicker on, whatever the attention does.
    ``images``: ``(n, H, W, 3) uint8`` stills; ``shifts``: ``(n, 2)`` float, motion per frame in *latent*
    pixels (as the latent-space moves, so one camera serves both); ``zooms``, ``times`` as
    :func:`camera_frames`. Returns latents ``(n * frames, C, h, w)`` float32 (the VAE's mode, scaled) and
    canny maps ``(n * frames, H, W) uint8``, clip by clip.
    """
    from ..structure import get_extractor

    dev = shifts.device
    x = torch.from_numpy(images).to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1
    moved = camera_frames(x, shifts * 2 ** (len(vae.config.block_out_channels) - 1), zooms, frames, times)
    u8 = ((moved + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    edges = torch.from_numpy(get_extractor("canny")(u8.permute(0, 2, 3, 1).cpu().numpy())[..., 0]).to(dev)
    return vae_encode(vae, u8.float() / 127.5 - 1, chunk=len(u8)), edges  # the engine's own encode


def train_only_self_attention(models) -> None:
    """Freeze every parameter of ``models`` but those of the spatial self-attention layers (``attn1``).

    Cross-frame attention changes only where a frame's keys and values come from, so a fine-tune
    for it need not touch the convolutions and the text cross-attention, which carry structure and
    colour (Tune-A-Video, Wu et al. 2023, likewise trains only attention projections)."""
    train_only(models, lambda name: name.endswith("attn1"))


def controlnet_to_train(args, log, unet, name: str = "controlnet-edges"):
    """The ControlNet ``name`` to train: the exported one of ``--init-from``, else a copy of ``unet``."""
    from diffusers import ControlNetModel

    if args.init_from:  # fine-tune an exported ControlNet (fp16 on disk)
        log(f"{name} initialised from {args.init_from / name}")
        return ControlNetModel.from_pretrained(args.init_from / name).float()
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 64))


def edge_cond(edges: torch.Tensor) -> torch.Tensor:
    """``(B, H, W) uint8`` canny maps -> the ControlNet's ``(B, 3, H, W)`` float input in [0, 1]."""
    return edges.float()[:, None].expand(-1, 3, -1, -1) / 255.0


def train_text_unet(args, log):
    """Text encoder + UNet; with ``--joint-cn P`` the edge ControlNet trains in the same steps.

    Jointly, each sample goes through the ControlNet with probability ``P`` (its residuals
    masked to zero otherwise), so the UNet learns to use the residuals while staying a
    plain text-to-image model for the rest (the t2v and IP-Adapter stages use it alone).
    Trained separately, a ControlNet must adapt to a fixed UNet; here both meet halfway.

    With ``--cross-frame P`` a fraction P of the steps trains on 3-frame camera moves made from
    the pool's stills (:func:`camera_frames`: one caption, one noise and one timestep per clip,
    as the restyle engine's shared noise) with the engine's sparse-causal attention installed,
    so the UNet learns to take appearance from the anchor and previous frames (Tune-A-Video,
    Wu et al. 2023, fine-tunes the same attention on the one clip it edits)."""
    from diffusers import UNet2DConditionModel

    from ..core.attention import FrameContext, cross_frame_attention

    pool = make_pool(args, log)
    torch.manual_seed(args.seed + 1)
    tok, te = build_text(args.work)
    unet = UNet2DConditionModel(**unet_config(args.top_attention or has_top_attention(args.init_from)))
    if args.init_from:  # fine-tune exported weights instead of starting from scratch
        init_from_export(log, args.init_from, tok, te, unet)
    cn = controlnet_to_train(args, log, unet).to(args.dev) if args.joint_cn else None
    teacher = None
    if args.teacher_distill:  # frozen copies with plain attention: the targets come from them
        teacher = [copy.deepcopy(m).to(args.dev).eval().requires_grad_(False) if m is not None else None
                   for m in (unet, te, cn)]
    if args.train_only == "self-attention":
        train_only_self_attention([unet, te] + ([cn] if cn is not None else []))
    pairs, params, opt, step, rng, state = joint_training(args, log, "text-unet", unet, te, args.unet_lr,
                                                          args.seed + 1, extra=cn)
    sched = scheduler(args.objective)
    log(f"params unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M, "
        f"text {sum(p.numel() for p in te.parameters()) / 1e6:.2f} M, objective {args.objective}"
        + (f", controlnet trained jointly on {args.joint_cn:.0%} of samples" if cn is not None else "")
        + (f", {args.cross_frame:.0%} of steps on 3-frame camera moves" if args.cross_frame else "")
        + (f" (anchor up to {args.cross_frame_span} frames back)" if args.cross_frame and args.cross_frame_span > 2
           else "")
        + (", made in pixels" if args.cross_frame and args.camera_pixels else "")
        + (f", camera speed {args.camera_speed:g}" if args.cross_frame and args.camera_speed != 1 else "")
        + (f", training {sum(p.numel() for p in params) / 1e6:.2f} M parameters" if args.train_only != "all" else "")
        + ((", targets from the frozen initial model" + (" on single images" if args.teacher_distill == "images"
                                                            else "")) if teacher else ""))
    dev = args.dev
    lat_all = torch.from_numpy(pool["latents"]).to(dev)  # float16, made float32 per batch
    edges_all = torch.from_numpy(pool["edges"]).to(dev) if cn is not None else None
    ids_all = tokenize(tok, pool["captions"]).to(dev)
    empty = tokenize(tok, [""])[0].to(dev)
    unet.train(), te.train()
    if cn is not None:
        cn.train()
    nets = [unet] + ([cn] if cn is not None else [])
    vae = load_vae(args.work).to(dev) if args.camera_pixels else None
    loop = Steps(args, log, "text-unet", opt, params, step, state, args.minutes, log_every=50)
    # Installed once: single-image steps run the same processors with one frame per clip, which
    # is plain self-attention (a frame's only key/value source is itself); only ctx.frames changes.
    mode = "sparse-causal" if args.cross_frame else "none"
    with cross_frame_attention(nets, mode, FrameContext(1)) as ctx:
        while loop.running(args.unet_steps):
            loop.set_lr(args.unet_steps, args.unet_lr)
            frames = 3 if args.cross_frame and rng.random() < args.cross_frame else 1
            n = max(1, args.batch // frames)
            g, idx, drop = step_draws(args, rng, len(lat_all), n, 0.1)  # caption dropout, for CFG
            x0 = lat_all[idx].float()
            flip = rng.random() < 0.5
            if flip:
                x0 = x0.flip(-1)
            ids = torch.where(drop[:, None], empty, ids_all[idx])
            noise = torch.randn(x0.shape, generator=g, device=dev)
            t = torch.randint(0, 1000, (n,), generator=g, device=dev)
            on = (torch.rand(n, generator=g, device=dev) < args.joint_cn).float()[:, None, None, None]
            edges = None if cn is None else (edges_all[idx].flip(-1) if flip else edges_all[idx])
            if frames > 1:
                shifts, zooms, times = camera_draws(n, g, args.camera_speed, args.cross_frame_span)
                if vae is not None:
                    x0, moved_edges = rendered_camera(vae, pool_stills(args, idx, flip), shifts, zooms, frames, times)
                    edges = None if edges is None else moved_edges
                else:
                    edges = None if edges is None else camera_frames(edges, shifts * (edges.shape[-1] // x0.shape[-1]),
                                                                     zooms, frames, times)
                    x0 = camera_frames(x0, shifts, zooms, frames, times)
                ids, noise, t, on = (v.repeat_interleave(frames, 0) for v in (ids, noise, t, on))
            xt = sched.add_noise(x0, noise, t)
            ctx.frames = frames
            with autocast(args):
                pred = controlled_prediction(unet, te, cn, xt, t, ids, edges, on)
            camera = (shifts, zooms, times) if frames > 1 else ()
            target = step_target(sched, x0, noise, xt, t, ids, edges, on, frames, camera, teacher, args.teacher_distill)
            loss = weighted_mse(sched, t, pred, target, args.unet_weighting)
            if frames > 1 and args.consistency_loss:
                # Temporal consistency: later frames' predicted clean latents should be the anchor's,
                # moved by the same camera (the anchor's held fixed, so frames follow it, not it them).
                x0p = predicted_x0(sched, xt, t, pred).view(n, frames, *pred.shape[1:])
                moved = camera_frames(x0p[:, 0].detach(), shifts, zooms, frames, times).view_as(x0p)
                loss = loss + args.consistency_loss * ((x0p[:, 1:] - moved[:, 1:]) ** 2).mean()
            loop.update(loss)
            for ema, m in pairs:
                ema_update(ema, m, loop.step - 1)
    loop.save()
    step, ema_loss = loop.step, loop.loss
    for (ema, _), name in zip(pairs, ("unet", "text_encoder", "controlnet-edges")):
        ema.save_pretrained(args.work / name)
    sched.save_pretrained(args.work / "scheduler")
    log(f"done at step {step}, loss {ema_loss or float('nan'):.4f}")
    return {"steps": step, "loss": ema_loss}


def step_target(sched, x0, noise, xt, t, ids, edges, on, frames: int, camera=(), teacher=None,
                distill: str | None = None) -> torch.Tensor:
    """A text-unet step's target, in the scheduler's prediction space: the data's (``x0``, ``noise``:
    ``(B, C, h, w)``, ``xt`` made from them), or, with a ``teacher`` (``distill`` ``"all"``, or ``"images"``
    for single images only, so camera moves learn consistency from the data while the teacher holds
    colour and structure on the rest), :func:`teacher_target`'s. ``camera``: ``(shifts, zooms, times)``."""
    if teacher is None or (frames > 1 and distill == "images"):
        return prediction_target(sched, x0, noise, t)
    return teacher_target(sched, teacher, xt, t, ids, edges, on, frames, *camera)


@torch.no_grad()
def teacher_target(sched, teacher, xt, t, ids, edges, on, frames: int, shifts=None, zooms=None,
                   times=None) -> torch.Tensor:
    """Distillation targets (in the scheduler's prediction space) from the frozen initial model.

    ``teacher``: ``(unet, text_encoder, controlnet or None)`` with plain attention. ``xt``:
    ``(n * frames, C, h, w)`` noisy latents, clip by clip; ``ids``, ``t``, ``on`` per frame as the
    student gets them; ``edges``: ``(n * frames, H, W) uint8`` or None. Single images
    (``frames == 1``): the teacher's own prediction, a target without the data's sampling noise
    (as the IP-Adapter stage's distillation). Camera moves: the teacher sees only each clip's
    anchor frame; its predicted clean latent, moved by the clip's camera (``shifts``, ``zooms``,
    ``times``, as :func:`camera_frames`), is every frame's clean target, expressed as the prediction that
    gives it from that frame's own ``xt``: later frames should paint what the anchor paints,
    which only cross-frame attention can tell them (the anchor's target is the teacher's own).
    """
    sel = slice(None, None, frames)  # anchors
    x, tt = xt[sel], t[sel]
    pred = controlled_prediction(*teacher, x, tt, ids[sel], None if edges is None else edges[sel], on[sel]).float()
    if frames == 1:
        return pred
    moved = camera_frames(predicted_x0(sched, x, tt, pred), shifts, zooms, frames, times)
    ac = sched.alphas_cumprod.to(t.device)[t].view(-1, 1, 1, 1)
    noise = (xt - ac.sqrt() * moved) / (1 - ac).sqrt().clamp(min=1e-4)  # the noise that makes xt from moved
    return prediction_target(sched, moved, noise, t)


def controlled_prediction(unet, te, cn, xt, t, ids, edges, on) -> torch.Tensor:
    """The UNet's prediction for ``xt`` ``(B, C, h, w)`` at ``t`` ``(B,)`` under captions ``ids``, with the
    edge ControlNet ``cn`` (or None) on ``edges`` ``(B, H, W) uint8``, its residuals scaled per sample by
    ``on`` ``(B, 1, 1, 1)`` (0: the sample trains the UNet as a plain text-to-image model)."""
    emb = te(ids)[0]
    res = {}
    if cn is not None:
        down, mid = cn(xt, t, encoder_hidden_states=emb, controlnet_cond=edge_cond(edges), return_dict=False)
        res = {"down_block_additional_residuals": [d * on for d in down], "mid_block_additional_residual": mid * on}
    return unet(xt, t, encoder_hidden_states=emb, **res).sample


def train_controlnet(args, log, kind: str):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    name = f"controlnet-{kind}"
    pool = make_pool(args, log)
    dev = args.dev
    unet = UNet2DConditionModel.from_pretrained(args.work / "unet").float().eval().requires_grad_(False).to(dev)
    te = CLIPTextModel.from_pretrained(args.work / "text_encoder").float().eval().requires_grad_(False).to(dev)
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(args.work / "tokenizer"))
    torch.manual_seed(args.seed + 2)
    cn = controlnet_to_train(args, log, unet, name).to(dev)
    opt = adamw(cn.parameters(), args, args.cn_lr)
    sched = scheduler(args.objective)
    step, rng = 0, np.random.default_rng(args.seed + (3 if kind == "edges" else 4))
    ck = load_ckpt(args.work, name, dev)
    if ck:
        cn.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"])
        step, rng = ck["step"], ck["rng"]
        log(f"resumed at step {step}")
    log(f"params {sum(p.numel() for p in cn.parameters()) / 1e6:.2f} M, objective {args.objective}")
    lat_all = torch.from_numpy(pool["latents"]).to(dev)
    maps = torch.from_numpy(pool["edges"] if kind == "edges" else pool["depth"]).to(dev)
    with torch.no_grad():
        caps = list(pool["captions"])
        emb_all = torch.cat([te(tokenize(tok, caps[i:i + 256]).to(dev))[0] for i in range(0, len(caps), 256)])
        emb_empty = te(tokenize(tok, [""]).to(dev))[0]
    cn.train()
    total = args.cn_steps if kind == "edges" else args.depth_steps
    minutes = args.minutes if kind == "edges" else args.depth_minutes
    loop = Steps(args, log, name, opt, cn.parameters(), step,
                 lambda: {"model": cn.state_dict(), "opt": opt.state_dict(), "rng": rng}, minutes)
    while loop.running(total):
        loop.set_lr(total, args.cn_lr, warm=20)
        g, idx, drop = step_draws(args, rng, len(lat_all), args.batch, 0.1)
        x0 = lat_all[idx].float()
        c = edge_cond(maps[idx])
        emb = torch.where(drop[:, None, None], emb_empty, emb_all[idx])
        noise = torch.randn(x0.shape, generator=g, device=dev)
        # structure is decided at high noise (and that is where restyling starts): favour it
        t = torch.randint(args.cn_tmin, 1000, (args.batch,), generator=g, device=dev)
        xt = sched.add_noise(x0, noise, t)
        with autocast(args):
            down, mid = cn(xt, t, encoder_hidden_states=emb, controlnet_cond=c, return_dict=False)
            eps = unet(xt, t, encoder_hidden_states=emb, down_block_additional_residuals=down,
                       mid_block_additional_residual=mid).sample
        loop.update(diffusion_loss(sched, t, eps, x0, noise))
    loop.save()
    step, ema_loss = loop.step, loop.loss
    cn.save_pretrained(args.work / name)
    log(f"done at step {step}, loss {ema_loss or float('nan'):.4f}")
    return {"steps": step, "loss": ema_loss}
