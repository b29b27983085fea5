"""The training plumbing every videdit-mini stage shares: logging, checkpoints, the step loop,
EMA, learning-rate schedule, cached training pools rendered by worker processes, the device
(CPU or CUDA, bf16 autocast) and the weighted diffusion loss. The stages are in ``train``,
``train_t2v`` and ``train_ip``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch


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


def load_ckpt(work: Path, stage: str, device="cpu"):
    """Our own resumable training state (it holds a numpy Generator, so it is a pickle:
    only ever read from the work directory this module wrote)."""
    p = work / f"{stage}.pt"
    return torch.load(p, map_location=device, weights_only=False) if p.is_file() else None


class Steps:
    """The loop body every stage shares: optimiser step with gradient clipping, a
    running loss, a log line every ``log_every`` steps and a checkpoint every
    ``args.save_every`` steps (``state()`` gives the stage's part of it)."""

    def __init__(self, args, log, stage: str, opt, params, step: int, state, minutes: float, log_every: int = 25):
        self.args, self.log, self.stage, self.opt, self.params = args, log, stage, opt, list(params)
        self.step, self.state, self.minutes, self.log_every = step, state, minutes, log_every
        self.t0, self._loss = time.time(), None
        if getattr(args, "until", None):  # a wall-clock deadline (epoch seconds) wins over --minutes
            self.minutes = max(0.0, min(minutes or 1e9, (args.until - self.t0) / 60))

    @property
    def loss(self) -> float | None:
        """Running (EMA) loss; read only when logged, so the GPU is not synchronised every step."""
        return None if self._loss is None else float(self._loss)

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
        d = loss.detach().float()
        self._loss = d if self._loss is None else 0.98 * self._loss + 0.02 * d
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
    ema, params = list(ema), [p.detach() for p in params]
    with torch.no_grad():  # one fused kernel per list, not two per tensor
        torch._foreach_mul_(ema, d)
        torch._foreach_add_(ema, params, alpha=1 - d)


def lr_at(step, total, base, warm=100, t0=None, minutes=None):
    """Warm-up then cosine to 10 %; progress is steps done or wall time used, whichever is further."""
    if step < warm:
        return base * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    if t0 is not None and minutes:
        frac = max(frac, (time.time() - t0) / (minutes * 60))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def tokenize(tok, captions):
    return tok(list(captions), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def cached_pool(path: Path, build, key: dict | None = None) -> dict:
    """The arrays saved at ``path`` (npz), or ``build()``'s, saved there first (pools render once).

    ``key`` (the options the pool is made from) is stored with it; a saved pool made with
    other options is rebuilt rather than silently reused."""
    tag = json.dumps(key or {}, sort_keys=True)
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        saved = str(z["_key"]) if "_key" in z.files else json.dumps({})
        if saved == tag or key is None:
            return {k: z[k] for k in z.files if k != "_key"}
    pool = build()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, _key=np.array(tag), **pool)
    os.replace(tmp, path)
    return pool


class process_map:
    """``with process_map(workers) as pmap: pmap(fn, items)`` -- ``fn`` over ``items``, in order, in
    ``workers`` processes (1: in this one). Spawned, not forked: a fork of a process whose OpenCV or
    torch thread pools have run can deadlock in the child (seen here: ``cv2.setNumThreads`` hung)."""

    def __init__(self, workers: int):
        self.workers, self.pool = workers, None

    def __enter__(self):
        if self.workers > 1:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(self.workers, initializer=_worker_init)
        return self

    def __call__(self, fn, items, chunksize: int = 8):
        return self.pool.imap(fn, items, chunksize) if self.pool else map(fn, items)

    def __exit__(self, *exc):
        if self.pool:
            self.pool.terminate()


def _worker_init():
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def batched(it, n: int):
    """Lists of ``n`` consecutive items of ``it`` (the last may be shorter)."""
    chunk = []
    for x in it:
        chunk.append(x)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def setup_device(args) -> torch.device:
    """``args.dev`` from ``--device``; on CUDA, TF32 and cuDNN autotuning (the models are small and fixed-shape)."""
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.dev = dev
    args.amp = args.amp if args.amp is not None else dev.type == "cuda"
    return dev


def autocast(args):
    """bf16 autocast where ``--amp`` is on (default on CUDA); the loss is computed in float32."""
    return torch.autocast(args.dev.type, dtype=torch.bfloat16, enabled=bool(args.amp))


def adamw(params, args, lr: float, weight_decay: float = 1e-2):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=args.dev.type == "cuda")


def generator(args, seed: int) -> torch.Generator:
    return torch.Generator(device=args.dev).manual_seed(seed)


def step_draws(args, rng: np.random.Generator, pool_size: int, batch: int, drop: float):
    """A step's ``(g, idx, dropped)``: a device generator seeded from ``rng``, ``batch`` pool indices
    and a caption-dropout mask (probability ``drop``). Every per-step draw comes from the device: a
    host->device copy would make the CPU wait for the GPU each step instead of queueing the next one."""
    g = generator(args, int(rng.integers(1 << 31)))
    idx = torch.randint(0, pool_size, (batch,), generator=g, device=args.dev)
    return g, idx, torch.rand(batch, generator=g, device=args.dev) < drop


WEIGHTINGS = ("min-snr", "x0")
OBJECTIVES = ("eps", "v")


def prediction_target(sched, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What a model under ``sched`` learns to predict: the noise, or the velocity
    ``sqrt(a) noise - sqrt(1 - a) x0`` for ``v_prediction`` (Salimans & Ho 2022)."""
    return sched.get_velocity(x0, noise, t) if sched.config.prediction_type == "v_prediction" else noise


def predicted_x0(sched, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The clean latent a prediction implies: ``sqrt(a) xt - sqrt(1 - a) v`` for ``v_prediction``,
    ``(xt - sqrt(1 - a) eps) / sqrt(a)`` for epsilon. ``xt``, ``pred``: ``(B, ...)``; ``t``: ``(B,)``."""
    ac = sched.alphas_cumprod.to(t.device)[t].view(-1, *[1] * (xt.ndim - 1))
    if sched.config.prediction_type == "v_prediction":
        return ac.sqrt() * xt - (1 - ac).sqrt() * pred.float()
    return (xt - (1 - ac).sqrt() * pred.float()) / ac.sqrt().clamp(min=1e-4)


def diffusion_loss(sched, t: torch.Tensor, pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
                   weighting: str = "min-snr") -> torch.Tensor:
    """Weighted MSE of the model's prediction over a batch (any shape with batch first).

    The target follows ``sched.config.prediction_type``: the noise (``epsilon``) or the
    velocity ``sqrt(a) noise - sqrt(1 - a) x0`` (``v_prediction``, Salimans & Ho 2022). Both
    weightings are defined on the *x0* error, which the prediction error is ``k`` times
    (``k`` = SNR for eps, SNR + 1 for v):

    ``min-snr``: x0 weight min(k, 5) (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting"); for eps that is their min(SNR, 5) / SNR on the eps error. ``x0``:
    x0 weight max(SNR, 1) (truncated SNR, Salimans & Ho 2022), capped at 50 on the
    prediction error, so high-noise steps -- where layout, motion and colour are decided
    and the eps error barely sees them -- count as much as the rest. With v and a
    zero-terminal-SNR schedule both stay finite at SNR = 0, where eps cannot be used.
    """
    return weighted_mse(sched, t, pred, prediction_target(sched, x0, noise, t), weighting)


def weighted_mse(sched, t: torch.Tensor, pred: torch.Tensor, target: torch.Tensor,
                 weighting: str = "min-snr") -> torch.Tensor:
    """MSE of ``pred`` against ``target`` (both in the scheduler's prediction space), weighted
    per sample as :func:`diffusion_loss` describes."""
    ac = sched.alphas_cumprod.to(t.device)[t]
    snr = ac / (1 - ac)
    v = sched.config.prediction_type == "v_prediction"
    k = snr + 1 if v else snr
    if weighting == "min-snr":
        w = torch.clamp(k, max=5.0) / k
    elif weighting == "x0":
        w = torch.clamp(torch.clamp(snr, min=1.0) / k, max=50.0)
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return (w * ((pred.float() - target) ** 2).flatten(1).mean(1)).mean()
