"""Text-to-video and video-to-video with a video diffusion UNet (``UNet3DConditionModel``).

The ModelScope text-to-video design (Wang et al. 2023, "ModelScope Text-to-Video
Technical Report"): a Stable-Diffusion-style latent UNet whose every block
interleaves spatial layers (2D convolution, spatial self-attention, text
cross-attention), run on all frames as a batch, with temporal layers (1D
temporal convolution, temporal self-attention) that mix information across
frames. The same architecture, fine-tuned, is Zeroscope. Frames come out
consistent by construction, so cross-frame attention is off by default here.

- :func:`generate_frames`: text-to-video from noise (``strength`` is ignored);
- :func:`video_to_video_frames`: SDEdit (Meng et al. 2022) on a video: its VAE
  latents are noised to the ``strength`` fraction of the schedule and denoised
  under the prompt (what diffusers' ``VideoToVideoSDPipeline`` does, e.g. for
  Zeroscope's 576w upscaling pass).

Both run *our* sampling loop (``sampling.py``) over :func:`video_model`, and
match diffusers' (deprecated) ``TextToVideoSDPipeline`` / ``VideoToVideoSDPipeline``
to float precision given the same initial latents (``tests/test_t2v.py``).

Long clips. By default all frames are denoised together, so the UNet's memory
grows with the clip (its temporal attention with its square). With
``opts.chunk`` set, a longer clip is co-denoised in windows of ``chunk`` frames
overlapping by ``opts.overlap`` (:func:`~videdit.core.chunks.co_denoise`,
Gen-L-Video), every window starting from a reordering of the same initial noise
(:func:`~videdit.core.chunks.rescheduled_frames`, FreeNoise): UNet memory is then
that of one window whatever the length, and only the small latents
``(F, C, h, w)`` of the whole clip are held. Set ``chunk`` to the model's training
clip length (16 for ModelScope and videdit-mini-t2v). Windows are not the
default because with videdit-mini-t2v they did not beat one joint pass on
48-frame clips (the model card has the numbers). Frames are encoded and decoded
``opts.decode_chunk_size`` at a time either way.

Layout. Our latents are frame-major ``(F, C, h, w)``; with classifier-free
guidance the UNet batch is ``(branches * F, C, h, w)`` in branch-major order
``[uncond f0..fF-1, cond f0..fF-1]``. UNet3D takes ``(B, C, F, h, w)`` and
flattens it internally to ``(B * F, C, h, w)`` with index ``b * F + f`` — the
same order, so cross-frame processors (``attention.py``) see the batch they
expect. Scheduler steps are elementwise, so stepping our ``(F, C, h, w)``
latents is the same math as diffusers stepping ``(B*F, C, h, w)``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import UsageError
from ..options import DiffusionOptions
from .attention import FrameContext, cross_frame_attention
from .chunks import co_denoise, rescheduled_frames
from .components import Components
from .conditioning import PromptEmbeds, encode_prompt, frames_to_tensor, vae_decode, vae_encode
from .sampling import classifier_free, frame_noise, fresh_scheduler, make_timesteps, noised_start, sample, \
    step_kwargs

__all__ = ["T2V_DEFAULTS", "OUTPUTS", "resolve_options", "prompt_embeds", "video_model", "generate_latents",
           "window_plan", "decode_latents", "iter_decoded", "encode_clip", "generate_frames", "video_to_video_frames"]

#: Defaults of text-to-video runs, below a recipe's ``[defaults]`` and above the
#: options' built-ins: ModelScope's pipeline defaults (guidance 9, 16 frames at
#: 8 fps; strength 0.6 as ``VideoToVideoSDPipeline``), and no cross-frame
#: attention (the temporal layers already tie frames together).
T2V_DEFAULTS = {"consistency": "none", "steps": 25, "guidance": 9.0, "frames": 16, "fps": 8.0, "strength": 0.6}

#: ``output=`` choices: ``uint8`` frames, ``float`` frames in [0, 1], or final ``latent`` s.
OUTPUTS = ("uint8", "float", "latent")


def resolve_options(comps: Components, opts: DiffusionOptions) -> DiffusionOptions:
    """``opts`` with ``None`` fields from the recipe's defaults, then :data:`T2V_DEFAULTS`, then built-ins.

    ``chunk`` stays None (one joint pass over all frames) unless the user or the
    recipe sets it; ``overlap`` then defaults to half of it.
    Idempotent: an already resolved ``opts`` comes back unchanged.
    """
    defaults = {**T2V_DEFAULTS, **comps.recipe.defaults}
    defaults.setdefault("chunk", None)
    chunk = opts.chunk or defaults["chunk"]
    if opts.overlap is not None and not chunk:
        raise UsageError("--overlap applies to windows: give --chunk too (the frames per window)")
    defaults.setdefault("overlap", chunk // 2 if chunk else None)
    return opts.resolved(defaults)


def window_plan(opts: DiffusionOptions, frames: int) -> tuple[int, int]:
    """``(size, overlap)`` of the co-denoising windows over ``frames`` frames: all of them by default."""
    return (opts.chunk, opts.overlap) if opts.chunk else (frames, 0)


def _check(comps: Components, opts: DiffusionOptions, output: str) -> None:
    if not comps.is_3d:
        raise UsageError(f"pipeline '{comps.recipe.name}' has a {type(comps.unet).__name__}, not a "
                         "UNet3DConditionModel: use a text2video recipe (e.g. modelscope-t2v)")
    if not opts.prompt.strip():
        raise UsageError("give a --prompt (it is empty)")
    if opts.has_ref_image:
        raise UsageError(f"pipeline '{comps.recipe.name}' (text2video) has no IP-Adapter, so --ref-image "
                         "cannot be used")
    if opts.structure:
        raise UsageError(f"pipeline '{comps.recipe.name}' (text2video) has no ControlNets, so --structure "
                         "cannot be used")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def prompt_embeds(comps: Components, opts: DiffusionOptions) -> PromptEmbeds:
    """CLIP embeddings of the prompt (and of the negative prompt when ``opts.guidance > 1``).

    ``cond``/``uncond``: ``(1, 77, D)`` in ``comps.dtype`` (D = 1024 for ModelScope's
    OpenCLIP-H text tower).
    """
    return encode_prompt(comps.tokenizer, comps.text_encoder, opts.prompt, opts.negative_prompt,
                         guidance=opts.guidance, device=comps.device, dtype=comps.dtype)


def video_model(comps: Components, embeds: PromptEmbeds, frames: int,
                ctx: FrameContext | None = None) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """``eps = model(x, t, i)`` of the UNet3D, in our frame-major layout.

    ``x``: ``(b * frames, C, h, w)`` latents, ``b`` = 1 or ``embeds.branches``
    (branch-major: ``[uncond frames..., cond frames...]`` when ``b = 2``); ``t``: the
    scalar timestep. Returns ``eps`` of ``x``'s shape. Internally ``x`` becomes the
    UNet3D's ``(b, C, frames, h, w)`` and the text embeddings ``(b, tokens, D)``
    (the UNet repeats them per frame). ``ctx.frames`` is set before every call for
    cross-frame processors, if any are installed.
    """
    unet = comps.unet
    text_all = embeds.batch(1)  # (branches, tokens, D)

    def model(x, t, i):
        if ctx is not None:
            ctx.frames = frames
        n, c, h, w = x.shape
        if n % frames:
            raise RuntimeError(f"batch {n} is not a multiple of {frames} frames")
        b = n // frames
        text = text_all if b == text_all.shape[0] else embeds.cond.expand(b, -1, -1)
        video = x.reshape(b, frames, c, h, w).permute(0, 2, 1, 3, 4).contiguous()  # (b, C, F, h, w)
        eps = unet(video, t, encoder_hidden_states=text, return_dict=False)[0]
        return eps.permute(0, 2, 1, 3, 4).reshape(n, -1, h, w)

    return model


def _latent_size(comps: Components, opts: DiffusionOptions) -> tuple[int, int]:
    """``(h, w)`` latent size of ``opts.size`` (``(width, height)``), default the UNet's ``sample_size``."""
    f = comps.vae_factor
    if opts.size is None:
        s = comps.unet.config.sample_size
        return (s, s) if isinstance(s, int) else tuple(s)
    width, height = opts.size
    if width % f or height % f:
        raise UsageError(f"--size {width}x{height}: width and height must be multiples of {f} for "
                         f"pipeline '{comps.recipe.name}'")
    return height // f, width // f


@torch.no_grad()
def generate_latents(comps: Components, opts: DiffusionOptions, ctx: FrameContext | None = None, *,
                     clean: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                     embeds: PromptEmbeds | None = None,
                     on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Final latents ``(F, C, h, w)`` (``comps.dtype``, scaled as the UNet sees them).

    Text-to-video when ``clean`` is None: ``F = opts.frames``, ``(h, w)`` from
    ``opts.size`` over the VAE factor, all ``opts.steps`` steps from pure noise.
    Video-to-video (SDEdit) when ``clean`` is given: ``clean`` ``(F, C, h, w)`` VAE
    latents (scaled by the VAE's ``scaling_factor``) are noised to the first of
    the last ``int(steps * strength)`` timesteps and denoised from there
    (``strength = 1`` starts from pure noise, as the restyle engine does; diffusers
    would still noise ``clean`` to the first timestep).

    ``noise``: ``(F, C, h, w)`` initial noise; default :func:`frame_noise` of
    ``opts.seed`` per frame number, ``opts.noise_share`` of it common to all frames.
    ``embeds``: precomputed prompt embeddings (default: encoded here).
    Cross-frame attention ``opts.consistency`` is installed on the UNet's spatial
    self-attention for the call (``ctx``: its :class:`FrameContext`, made if None);
    temporal attention is never touched. More than ``opts.chunk`` frames (when set)
    are co-denoised in windows (module docstring). ``on_step(i, x)`` is called after step ``i``.
    """
    opts = resolve_options(comps, opts)
    dev, dtype = comps.device, comps.dtype
    channels = comps.unet.config.in_channels
    if clean is not None:
        if clean.ndim != 4 or clean.shape[1] != channels:
            raise ValueError(f"clean latents must be (F, {channels}, h, w), got {tuple(clean.shape)}")
        n, (h, w) = clean.shape[0], clean.shape[-2:]
        clean = clean.to(dev, dtype)
    else:
        n, (h, w) = opts.frames, _latent_size(comps, opts)
    if noise is None:
        window, overlap = window_plan(opts, n)
        noise = frame_noise(opts.seed, rescheduled_frames(n, window, overlap, opts.seed), (channels, h, w),
                            share=opts.initial_noise_share,
                            dtype=dtype, device=dev)
    elif tuple(noise.shape) != (n, channels, h, w):
        raise ValueError(f"noise must be {(n, channels, h, w)}, got {tuple(noise.shape)}")
    noise = noise.to(dev, dtype)
    strength = 1.0 if clean is None else opts.strength
    scheduler = fresh_scheduler(comps.scheduler)
    timesteps = make_timesteps(scheduler, opts.steps, strength, device=dev)
    if len(timesteps) == 0:
        raise UsageError(f"--strength {opts.strength} with --steps {opts.steps} runs no denoising step")
    x = noised_start(scheduler, clean, noise, timesteps, clean is None or strength >= 1.0)
    if embeds is None:
        embeds = prompt_embeds(comps, opts)
    ctx = ctx or FrameContext(frames=n)
    model = co_denoise(lambda k: classifier_free(video_model(comps, embeds, k, ctx), opts.guidance), n,
                       *window_plan(opts, n))
    g = torch.Generator("cpu").manual_seed(opts.seed + 1)
    with cross_frame_attention([comps.unet], opts.consistency, ctx, window=opts.window):
        return sample(model, scheduler, x, timesteps, extra=step_kwargs(scheduler, g, opts.eta), on_step=on_step)


@torch.no_grad()
def decode_latents(comps: Components, latents: torch.Tensor, *, chunk: int = 8, output: str = "uint8"):
    """Latents ``(F, C, h, w)`` -> frames ``(F, H, W, 3)``, ``H, W = h, w`` times the VAE factor.

    ``output="uint8"``: ``np.uint8`` in [0, 255]; ``"float"``: ``np.float32`` in
    [0, 1] before quantisation (diffusers' ``output_type="np"`` values);
    ``"latent"``: ``latents`` unchanged. ``chunk`` frames are decoded at a time.
    """
    if output == "latent":
        return latents
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return np.concatenate(list(iter_decoded(comps, latents, chunk=chunk, output=output)))


def iter_decoded(comps: Components, latents: torch.Tensor, *, chunk: int = 8,
                 output: str = "uint8") -> Iterator[np.ndarray]:
    """:func:`decode_latents` ``chunk`` frames at a time: yields ``(n, H, W, 3)`` arrays in frame order,
    so a long clip can be written without all its frames in memory."""
    for a in range(0, len(latents), chunk):
        images = ((vae_decode(comps.vae, latents[a:a + chunk], chunk=chunk) / 2 + 0.5).clamp(0, 1))
        frames = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
        yield frames if output == "float" else (frames * 255).round().astype(np.uint8)


def encode_clip(comps: Components, chunks: Iterable[np.ndarray], *, chunk: int = 8) -> torch.Tensor:
    """VAE latents ``(F, C, H/8, W/8)`` (posterior mean, scaled) of ``(n, H, W, 3) uint8`` frame chunks.

    Encoded ``chunk`` frames at a time as the chunks arrive, so a long clip is never
    whole in memory as pixels. ``H, W`` must be multiples of the VAE factor.
    """
    f, out = comps.vae_factor, []
    for frames in chunks:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if frames.shape[1] % f or frames.shape[2] % f:
            raise UsageError(f"frame size {frames.shape[2]}x{frames.shape[1]}: width and height must be "
                             f"multiples of {f} for pipeline '{comps.recipe.name}'")
        out.append(vae_encode(comps.vae, frames_to_tensor(frames, comps.device, comps.dtype), chunk=chunk))
    if not out:
        raise ValueError("no frames to encode")
    return torch.cat(out)


def generate_frames(comps: Components, opts: DiffusionOptions, *, noise: torch.Tensor | None = None,
                    output: str = "uint8", on_step: Callable[[int, torch.Tensor], None] | None = None):
    """Text-to-video: ``opts.frames`` frames ``(F, H, W, 3)`` of ``opts.size`` (``(W, H)``) for ``opts.prompt``.

    ``opts`` is resolved against the recipe's defaults and :data:`T2V_DEFAULTS`
    here (pass it resolved or not). ``output``: ``"uint8"`` (default), ``"float"``
    ([0, 1] float32) or ``"latent"`` (``(F, C, h, w)`` tensor); see
    :func:`decode_latents`. ``noise`` overrides the seeded initial noise.
    """
    opts = resolve_options(comps, opts)
    _check(comps, opts, output)
    latents = generate_latents(comps, opts, noise=noise, on_step=on_step)
    return decode_latents(comps, latents, chunk=opts.decode_chunk_size, output=output)


def video_to_video_frames(comps: Components, opts: DiffusionOptions, frames, *,
                          clean: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                          output: str = "uint8", on_step: Callable[[int, torch.Tensor], None] | None = None):
    """SDEdit a clip: ``frames`` ``(F, H, W, 3) uint8`` -> ``(F, H, W, 3)`` repainted under ``opts.prompt``.

    ``frames`` may also be an iterable of such chunks (a stream): they are encoded
    as they come (:func:`encode_clip`). ``H, W`` must be multiples of the VAE factor
    (8); resize when reading. ``opts.strength`` in (0, 1] is how much is repainted
    (0.6 by default). The clip is encoded with the VAE posterior mean,
    ``opts.decode_chunk_size`` frames at a time; ``clean`` (``(F, C, H/8, W/8)``,
    scaled) skips that and ``noise`` overrides the seeded noise (e.g. to reproduce
    diffusers' draws). ``output`` as in :func:`generate_frames`. Clips longer than
    ``opts.chunk`` frames (when set) are co-denoised in windows (module docstring).
    """
    opts = resolve_options(comps, opts)
    _check(comps, opts, output)
    if clean is None:
        clean = encode_clip(comps, [frames] if isinstance(frames, np.ndarray) else frames,
                            chunk=opts.decode_chunk_size)
    else:
        frames, f = np.asarray(frames), comps.vae_factor
        if frames.ndim != 4 or (clean.shape[0], *clean.shape[-2:]) != (len(frames), frames.shape[1] // f, frames.shape[2] // f):
            raise ValueError(f"clean latents {tuple(clean.shape)} do not match frames {frames.shape}")
    latents = generate_latents(comps, opts, clean=clean, noise=noise, on_step=on_step)
    return decode_latents(comps, latents, chunk=opts.decode_chunk_size, output=output)
