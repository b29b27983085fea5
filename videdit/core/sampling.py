"""The sampling loop as small plain functions over a noise-prediction callable.

In the spirit of k-diffusion: a *model* here is any ``eps = model(x, t)`` over
latents ``x``; guidance, ControlNet residuals and cross-frame attention are
wrappers around that callable, and the loop itself is a dozen lines over a
diffusers scheduler. Nothing here knows whether frames come from a 2D UNet run on
stacked frames or a UNet3D.

Latents: ``(F, C, h, w)`` float (``h, w`` = frame size / VAE factor), in the
scheduler's scale (unit-variance noise at ``t = T`` times ``init_noise_sigma``).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import torch

__all__ = ["frame_noise", "denoise_steps", "make_timesteps", "noised_start", "classifier_free", "sample", "step_kwargs",
           "fresh_scheduler"]

Model = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def fresh_scheduler(scheduler):
    """A new scheduler with the same config: schedulers keep per-run state (step index)."""
    return type(scheduler).from_config(scheduler.config)


def frame_noise(seed: int, frames: Sequence[int], shape: tuple[int, int, int], *, share: float = 0.0,
                dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Gaussian noise ``(len(frames), C, h, w)`` that depends only on ``seed`` and the frame number.

    Frame ``i`` gets the same noise whatever chunk it is processed in, so chunked
    long videos and overlaps are consistent, and a seed gives bit-identical output
    on the same machine. ``share`` in [0, 1] is the fraction of the variance common
    to all frames: ``sqrt(share) * common + sqrt(1 - share) * own`` (the mixed noise
    prior of PYoCo, Ge et al. 2023, "Preserve Your Own Correlation"; unit variance
    whatever ``share``); 1 gives every frame the same noise (Text2Video-Zero).
    """
    def draw(stream: int) -> torch.Tensor:
        g = torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + stream)
        return torch.randn(shape, generator=g, dtype=torch.float32)

    if share >= 1.0:
        out = draw(1_000_002).expand(len(frames), *shape)
    else:
        out = torch.stack([draw(int(i)) for i in frames])
        if share > 0:
            out = math.sqrt(share) * draw(1_000_002) + math.sqrt(1.0 - share) * out
    return out.to(device=device, dtype=dtype)


def denoise_steps(steps: int, strength: float = 1.0) -> int:
    """Steps actually run for ``steps`` at ``strength``: ``int(steps * strength)``, as diffusers' img2img."""
    return min(int(steps * strength), steps)


def make_timesteps(scheduler, steps: int, strength: float = 1.0, device="cpu") -> torch.Tensor:
    """Set ``steps`` on ``scheduler`` and keep the last ``strength`` fraction (SDEdit, Meng et al. 2022).

    Matches diffusers' img2img ``get_timesteps``: ``int(steps * strength)`` steps
    are run, starting from the noise level of the first kept timestep.
    """
    scheduler.set_timesteps(steps, device=device)
    start = max(steps - denoise_steps(steps, strength), 0)
    timesteps = scheduler.timesteps[start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return timesteps


def noised_start(scheduler, clean: torch.Tensor | None, noise: torch.Tensor, timesteps: torch.Tensor,
                 full_denoise: bool) -> torch.Tensor:
    """Initial latents: pure noise (text-to-video, ``strength=1``) or clean latents noised to ``timesteps[0]``."""
    if full_denoise or clean is None:
        return noise * scheduler.init_noise_sigma
    t0 = timesteps[:1].repeat(clean.shape[0])
    return scheduler.add_noise(clean, noise, t0)


def classifier_free(model: Model, scale: float) -> Model:
    """Classifier-free guidance (Ho & Salimans 2022) around a model that takes both branches.

    ``model`` sees a doubled batch ``[x, x]`` and must condition its first half on
    the negative prompt and its second on the prompt. ``scale <= 1`` runs only the
    conditional branch.
    """
    if scale <= 1.0:
        return model

    def guided(x, t, i):
        uncond, cond = model(torch.cat([x, x]), t, i).chunk(2)
        return uncond + scale * (cond - uncond)

    return guided


def step_kwargs(scheduler, generator: torch.Generator | None = None, eta: float = 0.0) -> dict:
    """Extra ``scheduler.step`` arguments it accepts (``eta`` for DDIM, ``generator`` for ancestral ones)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kw = {}
    if "eta" in params:
        kw["eta"] = eta
    if "generator" in params and generator is not None:
        kw["generator"] = generator
    return kw


def sample(model: Model, scheduler, x: torch.Tensor, timesteps: torch.Tensor, *, extra: dict | None = None,
           on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run ``x`` down ``timesteps`` with ``model``'s noise predictions; returns the final latents."""
    extra = extra or {}
    for i, t in enumerate(timesteps):
        eps = model(scheduler.scale_model_input(x, t), t, i)
        x = scheduler.step(eps, t, x, **extra, return_dict=False)[0]
        if on_step is not None:
            on_step(i, x)
    return x
