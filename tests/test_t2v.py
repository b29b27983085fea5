"""Tests for videdit.core.t2v: the UNet3D (ModelScope) text-to-video / video-to-video engine.

CPU, offline, no pretrained weights. Equivalence tests build *tiny* random
models from the real ModelScope configs in tests/hub_configs (only size fields
shrunk) and compare our sampling loop with diffusers' deprecated
``TextToVideoSDPipeline`` / ``VideoToVideoSDPipeline``, used only as oracles.
One slow test runs the full-size ModelScope UNet3D (random weights) for one step.
"""

from __future__ import annotations

import gc
import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from videdit.core.attention import CrossFrameAttnProcessor, FrameContext, cross_frame_attention, \
    spatial_self_attention_names
from videdit.core.components import Components
from videdit.core.conditioning import PromptEmbeds, frames_to_tensor, vae_encode
from videdit.core.recipes import load_recipe
from videdit.core.sampling import frame_noise
from videdit.core.t2v import generate_frames, generate_latents, video_model, video_to_video_frames
from videdit.errors import UsageError
from videdit.options import DiffusionOptions

ROOT = Path(__file__).resolve().parent.parent
MS_DIR = Path(__file__).parent / "hub_configs" / "ali-vilab--text-to-video-ms-1.7b"
SD_TOKENIZER = Path(__file__).parent / "hub_configs" / "runwayml--stable-diffusion-v1-5" / "tokenizer"

FRAMES, SIZE = 3, 16  # tiny VAE factor 2 -> 8x8 latents
PROMPT = "a red fox running through snow"


# --------------------------------------------------------------------------- tiny models


def _tokenizer(tmp: Path):
    from transformers import CLIPTokenizer

    # ModelScope's tokenizer configs + SD 1.5's vocab/merges (the same CLIP BPE files).
    for f in (MS_DIR / "tokenizer").iterdir():
        shutil.copy(f, tmp / f.name)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(SD_TOKENIZER / name, tmp / name)
    return CLIPTokenizer.from_pretrained(str(tmp))


def _tiny_unet(cross_dim: int):
    from diffusers import UNet3DConditionModel

    cfg = dict(UNet3DConditionModel.load_config(str(MS_DIR / "unet")))
    cfg.update(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
               up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1, attention_head_dim=4,
               cross_attention_dim=cross_dim, norm_num_groups=8, sample_size=8)
    torch.manual_seed(0)
    return UNet3DConditionModel.from_config(cfg)


def _tiny_vae():
    from diffusers import AutoencoderKL

    cfg = dict(AutoencoderKL.load_config(str(MS_DIR / "vae")))
    cfg.update(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
               up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8, sample_size=SIZE)
    torch.manual_seed(1)
    return AutoencoderKL.from_config(cfg)


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig.from_pretrained(str(MS_DIR / "text_encoder"))
    cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size = 32, 2, 4, 37
    torch.manual_seed(2)
    return CLIPTextModel(cfg)


@pytest.fixture(scope="module")
def comps(tmp_path_factory) -> Components:
    from diffusers import DDIMScheduler

    tokenizer = _tokenizer(tmp_path_factory.mktemp("tok"))
    te = _tiny_text_encoder()
    unet = _tiny_unet(te.config.hidden_size)
    scheduler = DDIMScheduler.from_pretrained(str(MS_DIR), subfolder="scheduler")
    c = Components(load_recipe("modelscope-t2v"), tokenizer, te, _tiny_vae(), unet, scheduler)
    for m in c.modules():
        m.eval().requires_grad_(False)
    return c


def _opts(**kw) -> DiffusionOptions:
    base = dict(prompt=PROMPT, steps=3, guidance=7.5, seed=7, frames=FRAMES, size=(SIZE, SIZE),
                consistency="none", decode_chunk_size=8)
    base.update(kw)
    return DiffusionOptions(**base)


def _pipe(cls, c: Components):
    pipe = cls(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, scheduler=c.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _video(n=FRAMES, size=SIZE) -> np.ndarray:
    """A smooth moving gradient with a square: non-trivial VAE input."""
    y, x = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (x * 255 // (size - 1) + 20 * i) % 256
        out[i, ..., 1] = y * 255 // (size - 1)
        out[i, ..., 2] = 90
        out[i, 4:10, 3 + i:9 + i] = (250, 250, 30)
    return out


def _assert_informative(frames: np.ndarray):
    """Guard against a vacuous comparison: outputs must not be flat or saturated."""
    assert frames.std() > 0.01
    assert ((frames > 0.0) & (frames < 1.0)).mean() > 0.5


# --------------------------------------------------------------------------- equivalence with diffusers


def test_text_to_video_matches_diffusers_pipeline(comps):
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline

    opts = _opts()
    ours = generate_frames(comps, opts, output="float")  # (F, H, W, 3) float in [0, 1]
    assert ours.shape == (FRAMES, SIZE, SIZE, 3) and ours.dtype == np.float32
    _assert_informative(ours)

    # The pipeline gets the very noise our seed draws, in its (1, C, F, h, w) layout.
    noise = frame_noise(opts.seed, range(FRAMES), (4, SIZE // 2, SIZE // 2))
    latents = noise.permute(1, 0, 2, 3)[None]
    ref = _pipe(TextToVideoSDPipeline, comps)(PROMPT, num_frames=FRAMES, height=SIZE, width=SIZE,
                                              num_inference_steps=3, guidance_scale=7.5, latents=latents,
                                              output_type="np").frames[0]  # (F, H, W, 3)
    diff = float(np.abs(ours - ref).max())
    print(f"t2v max abs diff vs TextToVideoSDPipeline: {diff:.3g}")
    assert diff <= 1e-4

    # uint8 output is the same frames quantised; another seed gives another video.
    u8 = generate_frames(comps, opts)
    assert u8.dtype == np.uint8 and np.abs(u8.astype(int) - np.round(ref * 255)).max() <= 1
    other = generate_frames(comps, _opts(seed=8), output="float")
    assert np.abs(other - ours).max() > 1e-2


def test_video_to_video_matches_diffusers_pipeline(comps):
    from diffusers.pipelines.deprecated.text_to_video_synthesis import VideoToVideoSDPipeline
    from diffusers.utils.torch_utils import randn_tensor

    video = _video()
    opts = _opts(strength=0.6, steps=5)  # int(5 * 0.6) = 3 denoising steps
    # Reproduce the pipeline's random draws, in its order: VAE posterior sample, then noise.
    g = torch.Generator("cpu").manual_seed(11)
    clean = vae_encode(comps.vae, frames_to_tensor(video), chunk=FRAMES, generator=g, mode="sample")
    noise = randn_tensor(clean.shape, generator=g, dtype=clean.dtype)
    ours = video_to_video_frames(comps, opts, video, clean=clean, noise=noise, output="float")
    _assert_informative(ours)

    pixels = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0  # (F, 3, H, W) in [0, 1]
    ref = _pipe(VideoToVideoSDPipeline, comps)(PROMPT, video=pixels, strength=0.6, num_inference_steps=5,
                                               guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(11),
                                               output_type="np").frames[0]
    diff = float(np.abs(ours - ref).max())
    print(f"v2v max abs diff vs VideoToVideoSDPipeline: {diff:.3g}")
    assert diff <= 1e-4

    # The result depends on the input video (SDEdit keeps its content at strength < 1) ...
    other_clean = vae_encode(comps.vae, frames_to_tensor(255 - video), chunk=FRAMES)
    other = video_to_video_frames(comps, opts, 255 - video, clean=other_clean, noise=noise, output="float")
    assert np.abs(other - ours).max() > 1e-2
    # ... and the default path (posterior mean, seeded noise) runs and gives uint8 frames.
    out = video_to_video_frames(comps, opts, video)
    assert out.shape == video.shape and out.dtype == np.uint8


def test_latent_layout_roundtrip_through_video_model(comps):
    """video_model maps our (b*F, C, h, w) batch to UNet3D's (b, C, F, h, w) and back, per branch and frame."""
    embeds = PromptEmbeds(torch.randn(1, 77, 32), torch.randn(1, 77, 32))
    x = torch.randn(2 * FRAMES, 4, 8, 8)
    t = torch.tensor(500)
    eps = video_model(comps, embeds, FRAMES, None)(x, t, 0)
    video = x.view(2, FRAMES, 4, 8, 8).permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        ref = comps.unet(video, t, encoder_hidden_states=torch.cat([embeds.uncond, embeds.cond])).sample
    assert torch.allclose(eps, ref.permute(0, 2, 1, 3, 4).reshape(2 * FRAMES, 4, 8, 8), atol=1e-5)
    # frames are not independent (temporal layers): a change in frame 0 reaches frame 2
    x2 = x.clone()
    x2[0] += 1.0
    eps2 = video_model(comps, embeds, FRAMES, None)(x2, t, 0)
    assert (eps2[FRAMES - 1] - eps[FRAMES - 1]).abs().max() > 1e-6
    assert torch.equal(eps2[FRAMES:], eps[FRAMES:])  # the other branch is untouched


# --------------------------------------------------------------------------- cross-frame attention


def test_cross_frame_attention_only_on_spatial_self_attention(comps):
    unet = comps.unet
    before = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    spatial = spatial_self_attention_names(unet)
    assert spatial and all(".attentions." in n and n.endswith("attn1.processor") for n in spatial)
    temporal = [n for n in before if "temp_attentions" in n or n.startswith("transformer_in")]
    assert temporal and not set(temporal) & set(spatial)
    with cross_frame_attention([unet], "first", FrameContext(FRAMES)):
        during = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
        assert all(isinstance(unet.attn_processors[n], CrossFrameAttnProcessor) for n in spatial)
    for name, kind in during.items():
        if name not in spatial:  # temporal attention, transformer_in and text cross-attention unchanged
            assert kind == before[name] != "CrossFrameAttnProcessor", name
    assert {name: type(p).__name__ for name, p in unet.attn_processors.items()} == before  # restored

    plain = generate_latents(comps, _opts(consistency="none"))
    first = generate_latents(comps, _opts(consistency="first"))
    assert torch.isfinite(first).all() and (first - plain).abs().max() > 1e-4
    assert {name: type(p).__name__ for name, p in unet.attn_processors.items()} == before


def test_text2video_defaults_and_usage_errors(comps):
    # strength is ignored for text-to-video (always from pure noise); consistency defaults to none
    a = generate_latents(comps, _opts(strength=0.3))
    b = generate_latents(comps, _opts(strength=None, consistency=None))
    assert torch.equal(a, b)
    with pytest.raises(UsageError, match="multiples of 2"):
        generate_frames(comps, _opts(size=(15, 16)))
    with pytest.raises(UsageError, match="prompt"):
        generate_frames(comps, _opts(prompt="  "))
    with pytest.raises(UsageError, match="no denoising step"):
        video_to_video_frames(comps, _opts(strength=0.1, steps=5), _video())


# --------------------------------------------------------------------------- recipes


def test_recipes_parse():
    ms = load_recipe("modelscope-t2v")
    assert (ms.kind, ms.base, ms.scheduler) == ("text2video", "ali-vilab/text-to-video-ms-1.7b", "DDIMScheduler")
    assert ms.defaults["steps"] == 25 and ms.defaults["guidance"] == 9.0 and ms.defaults["frames"] == 16
    assert list(ms.defaults["size"]) == [256, 256] and ms.defaults["fps"] == 8
    zs = load_recipe("zeroscope-v2v")
    assert (zs.kind, zs.base) == ("text2video", "cerspense/zeroscope_v2_576w")
    assert zs.defaults["strength"] == 0.6 and list(zs.defaults["size"]) == [576, 320]
    opts = DiffusionOptions(prompt="x").resolved(zs.defaults)
    assert opts.size == (576, 320) and opts.steps == 25 and opts.guidance == 9.0


def test_local_diffusers_dir_loads_as_text2video(comps, tmp_path):
    """A saved UNet3D diffusers directory becomes a text2video recipe and loads through load_components."""
    from videdit.core.components import load_components

    root = tmp_path / "tiny-ms"
    for part in ("tokenizer", "text_encoder", "vae", "unet", "scheduler"):
        getattr(comps, part).save_pretrained(root / part)
    shutil.copy(MS_DIR / "model_index.json", root / "model_index.json")
    recipe = load_recipe(str(root))
    assert recipe.kind == "text2video"
    loaded = load_components(recipe)
    assert loaded.is_3d and type(loaded.scheduler).__name__ == "DDIMScheduler"
    a = generate_latents(loaded, _opts())
    b = generate_latents(comps, _opts())
    assert torch.allclose(a, b, atol=1e-5)


def test_cli_generate_writes_video_and_rejects_bad_input(comps, tmp_path, capfd, monkeypatch):
    """`videdit generate` end to end on a tiny UNet3D directory, and its one-line errors."""
    from videdit.cli import main
    from videdit.io import probe

    monkeypatch.setenv("VIDEDIT_PROGRESS", "0")
    root = tmp_path / "tiny-ms"
    for part in ("tokenizer", "text_encoder", "vae", "unet", "scheduler"):
        getattr(comps, part).save_pretrained(root / part)
    shutil.copy(MS_DIR / "model_index.json", root / "model_index.json")
    out = tmp_path / "out" / "g.mp4"
    rc = main(["generate", "--pipeline", str(root), "--prompt", "a red panda", "--frames", "4", "--size", "16x16",
               "--steps", "2", "--fps", "8", "-o", str(out)])
    assert rc == 0, capfd.readouterr().err
    info = probe(out)
    assert info.frame_count == 4 and info.fps == pytest.approx(8.0) and (info.width, info.height) == (16, 16)
    capfd.readouterr()
    for args, text in [(["--prompt", ""], "--prompt"), (["--prompt", "x", "--steps", "0"], "--steps"),
                       (["--prompt", "x", "--pipeline", "sd15-depth"], "is a restyle recipe")]:
        bad = tmp_path / "bad" / "b.mp4"
        rc = main(["generate", "--pipeline", str(root), "-o", str(bad), *args])
        lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and text in lines[0], lines
        assert not bad.exists()


def test_missing_weights_offline_names_hub_id(tmp_path):
    """With HF_HUB_OFFLINE=1 and an empty HF_HOME, loading fails with one MissingWeightsError line."""
    code = (
        "from videdit.core.recipes import load_recipe\n"
        "from videdit.core.components import load_components\n"
        "from videdit.errors import MissingWeightsError\n"
        "for name in ('modelscope-t2v', 'zeroscope-v2v'):\n"
        "    try:\n"
        "        load_components(load_recipe(name))\n"
        "    except MissingWeightsError as err:\n"
        "        print('ERR', err.exit_code, err)\n"
        "    else:\n"
        "        print('LOADED', name)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 2, out.stdout + out.stderr
    for line, hub_id in zip(lines, ("ali-vilab/text-to-video-ms-1.7b", "cerspense/zeroscope_v2_576w")):
        assert line.startswith("ERR 4 ") and hub_id in line and "HF_HUB_OFFLINE" in line, line


# --------------------------------------------------------------------------- full-size architecture


@pytest.fixture(scope="module")
def full_unet():
    """The real ModelScope UNet3D architecture (~1.4B params, fp32, random weights); freed after."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(0)
    start = time.perf_counter()
    unet = UNet3DConditionModel.from_config(UNet3DConditionModel.load_config(str(MS_DIR / "unet")))
    unet.eval().requires_grad_(False)
    print(f"full-size UNet3D built in {time.perf_counter() - start:.1f}s")
    yield unet
    del unet
    gc.collect()


@pytest.mark.slow
def test_full_size_modelscope_unet_one_step(full_unet, comps):
    n_params = sum(p.numel() for p in full_unet.parameters())
    assert 1.3e9 < n_params < 1.5e9  # the 1.7B checkpoint's UNet (the rest is CLIP-H + VAE)
    big = Components(comps.recipe, None, None, None, full_unet, comps.scheduler)
    assert big.is_3d
    torch.manual_seed(3)
    embeds = PromptEmbeds(torch.randn(1, 77, 1024), None)
    x = torch.randn(2, 4, 8, 8)  # 2 frames, 8x8 latent (64x64 pixels)
    ctx = FrameContext()
    start = time.perf_counter()
    with torch.no_grad():
        eps = video_model(big, embeds, 2, ctx)(x, torch.tensor(999), 0)
    print(f"full-size UNet3D step: {time.perf_counter() - start:.1f}s")
    assert eps.shape == x.shape and torch.isfinite(eps).all() and eps.abs().max() > 0
    assert ctx.frames == 2


def test_mixed_noise_shares_the_asked_fraction():
    """``noise_share``: unit variance per frame, correlation between frames = the share
    (PYoCo's mixed prior); 0 leaves the independent per-frame noise unchanged."""
    import numpy as np

    from videdit.options import DiffusionOptions
    from videdit.errors import UsageError

    plain = frame_noise(3, range(4), (4, 32, 32))
    assert torch.equal(frame_noise(3, range(4), (4, 32, 32), share=0.0), plain)
    for share in (0.25, 0.5, 0.9):
        mixed = frame_noise(3, range(4), (4, 32, 32), share=share).reshape(4, -1).numpy()
        assert abs(mixed.std() - 1) < 0.03
        corr = np.corrcoef(mixed)[np.triu_indices(4, 1)]
        assert np.allclose(corr, share, atol=0.05), corr
    # frame i's noise does not depend on which other frames are drawn (chunked runs agree)
    assert torch.equal(frame_noise(3, [2], (4, 32, 32), share=0.5)[0], frame_noise(3, range(4), (4, 32, 32), share=0.5)[2])
    with pytest.raises(UsageError, match="noise-share"):
        DiffusionOptions(noise_share=1.5)


def test_noise_flags_outrank_the_recipes_noise_share():
    """``--independent-noise`` on a recipe with ``noise_share = 1`` (both mini recipes set a share)
    gives independent noise; ``--shared-noise`` gives 1; an explicit share outranks a recipe's
    ``shared_noise``; a flag that contradicts an explicit share is refused."""
    from videdit.core.recipes import load_recipe
    from videdit.errors import UsageError
    from videdit.options import DiffusionOptions

    mini = load_recipe("mini").defaults
    assert mini["noise_share"] == 1.0  # the case this guards: a recipe share the flag must override
    assert DiffusionOptions().resolved(mini).initial_noise_share == 1.0
    assert DiffusionOptions(shared_noise=False).resolved(mini).initial_noise_share == 0.0
    assert DiffusionOptions(shared_noise=True).resolved({"noise_share": 0.5}).initial_noise_share == 1.0
    assert DiffusionOptions(noise_share=0.25).resolved({"shared_noise": True}).initial_noise_share == 0.25
    assert DiffusionOptions().resolved({"shared_noise": True}).initial_noise_share == 1.0
    assert DiffusionOptions().resolved({}).initial_noise_share == 0.0
    with pytest.raises(UsageError, match="--independent-noise means --noise-share 0"):
        DiffusionOptions(shared_noise=False, noise_share=0.5)


def test_temporal_positions_are_diffusers_sinusoidal_block_and_break_time_symmetry():
    """TemporalPositionProcessor on a plain temporal transformer gives exactly what diffusers builds
    with ``positional_embeddings="sinusoidal"`` (AnimateDiff's motion modules), independent oracle;
    plain temporal attention is symmetric in time (reversed frames in, reversed out), with positions
    it is not."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    from videdit.core.attention import TemporalPositionProcessor

    kw = dict(num_attention_heads=2, attention_head_dim=8, in_channels=16, norm_num_groups=4, cross_attention_dim=12)
    torch.manual_seed(0)
    plain = TransformerTemporalModel(**kw).eval()
    oracle = TransformerTemporalModel(**kw, positional_embeddings="sinusoidal", num_positional_embeddings=32).eval()
    missing, unexpected = oracle.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("pos_embed" in k for k in missing)
    frames = 6
    x = torch.randn(2 * frames, 16, 4, 4)  # (B*F, C, H, W): two clips

    def run(model, clip, proc):
        for block in model.transformer_blocks:
            block.attn1.set_processor(proc), block.attn2.set_processor(proc)
        with torch.no_grad():
            return model(clip, num_frames=frames, return_dict=False)[0]

    def reverse(t):  # play each clip backwards
        return t.view(2, frames, *t.shape[1:]).flip(1).reshape(t.shape)

    base = run(plain, x, AttnProcessor2_0())
    assert torch.allclose(reverse(run(plain, reverse(x), AttnProcessor2_0())), base, atol=1e-5)
    ours = run(plain, x, TemporalPositionProcessor())
    assert torch.allclose(ours, run(oracle, x, AttnProcessor2_0()), atol=1e-6)
    assert (ours - base).abs().max() > 0.05
    assert (reverse(run(plain, reverse(x), TemporalPositionProcessor())) - ours).norm() > 0.05 * (ours - x).norm()


def test_recipe_temporal_positions_install_on_load_and_bad_values_are_named(comps, tmp_path):
    """``[model] temporal_positions`` puts the processor on every temporal attention of the loaded UNet3D
    (and nowhere else), changes what it generates; unknown schemes and restyle recipes are refused."""
    from videdit.core.attention import TemporalPositionProcessor, temporal_attention_names
    from videdit.core.components import load_components

    root = tmp_path / "tiny-ms"
    for part in ("tokenizer", "text_encoder", "vae", "unet", "scheduler"):
        getattr(comps, part).save_pretrained(root / part)
    shutil.copy(MS_DIR / "model_index.json", root / "model_index.json")

    def recipe(extra, kind="text2video"):
        f = tmp_path / "r.toml"
        f.write_text(f'kind = "{kind}"\n[model]\nbase = "{root}"\n{extra}\n')
        return load_recipe(f)

    r = recipe('temporal_positions = "sinusoidal"')
    assert r.temporal_positions == "sinusoidal"
    loaded = load_components(r)
    procs = loaded.unet.attn_processors
    names = temporal_attention_names(loaded.unet)
    assert names and all(isinstance(procs[n], TemporalPositionProcessor) for n in names)
    assert not any(isinstance(p, TemporalPositionProcessor) for n, p in procs.items() if n not in names)
    plain = load_components(recipe(""))
    assert (generate_latents(loaded, _opts()) - generate_latents(plain, _opts())).abs().max() > 1e-3
    for extra, kind in (('temporal_positions = "rope"', "text2video"), ('temporal_positions = "sinusoidal"', "restyle")):
        with pytest.raises(UsageError, match="temporal_positions.*sinusoidal"):
            recipe(extra, kind)


def test_generate_names_the_nearest_option_for_a_misspelt_one(comps):
    from videdit.api import Pipeline

    with pytest.raises(UsageError, match=r"unknown option 'frame' \(did you mean 'frames'\?\)"):
        Pipeline(comps).generate("a red circle", frame=4)
    with pytest.raises(UsageError, match="strength: generate starts from noise"):  # it was silently ignored
        Pipeline(comps).generate("a red circle", strength=0.5, frames=1, steps=1, size=(SIZE, SIZE))


def test_generate_past_the_clip_length_names_the_windows(comps, caplog):
    import logging

    from videdit.api import Pipeline

    tiny = {"steps": 1, "size": (SIZE, SIZE), "guidance": 1.0}
    with caplog.at_level(logging.WARNING, logger="videdit"):
        Pipeline(comps).generate("a red circle", frames=16, **tiny)
        assert not caplog.records
        Pipeline(comps).generate("a red circle", frames=17, **tiny)
        assert "trained on 16-frame clips" in caplog.text and "--chunk 16" in caplog.text
        caplog.clear()
        got = Pipeline(comps).generate("a red circle", frames=17, chunk=16, **tiny)
        assert not caplog.records and len(got.frames) == 17


def test_restyle_with_a_text2video_recipe_is_video_to_video(comps, tmp_path, caplog):
    """`restyle` with a UNet3D recipe (zeroscope-v2v's use) runs the SDEdit path, file in, file out; past the
    recipe's clip length it stops with a warning, or with --chunk co-denoises the whole clip in windows."""
    import logging

    from videos import make_clip

    from videdit.api import Pipeline
    from videdit.io import Video, probe, read_video
    from videdit.provenance.report import verify

    pipe, video = Pipeline(comps), _video()
    kw = {"strength": 0.6, "steps": 5, "seed": 7, "size": f"{SIZE}x{SIZE}"}
    got = pipe.restyle(Video(video, 8.0), PROMPT, **kw)
    want = video_to_video_frames(comps, _opts(strength=0.6, steps=5, frames=None, guidance=None), video)
    assert np.array_equal(got.frames, want) and got.fps == 8.0

    clip = make_clip(tmp_path / "a.mp4", seconds=1)  # 24 frames with audio; the recipe's clip is 16
    with caplog.at_level(logging.WARNING, logger="videdit"):
        s = pipe.restyle(clip, PROMPT, output=str(tmp_path / "o.mp4"), **kw)
    assert s["frames"] == 16 and any("first 16 frames" in r.getMessage() and "--chunk 16" in r.getMessage()
                                     for r in caplog.records)
    info = probe(s["output"])
    assert info.frame_count == 16 and info.has_audio and (info.width, info.height) == (SIZE, SIZE)
    # With windows the whole clip is restyled, each UNet call on 16 frames; the preview gets the source.
    seen = []
    hook = comps.unet.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[2]))
    try:
        s = pipe.restyle(clip, PROMPT, output=str(tmp_path / "o.mp4"), preview=str(tmp_path / "p.mp4"),
                         chunk=16, **kw)
    finally:
        hook.remove()
    assert s["frames"] == 24 and seen == [16] * (2 * 3)  # 2 windows x 3 steps (0.6 of 5)
    assert probe(s["output"]).frame_count == 24 and probe(s["output"]).has_audio
    side = read_video(s["preview"]).frames
    assert side.shape == (24, SIZE, 2 * SIZE, 3)
    src = read_video(clip, size=f"{SIZE}x{SIZE}").frames
    left, right = (np.abs(half.astype(int) - src).mean() for half in (side[:, :, :SIZE], side[:, :, SIZE:]))
    assert left < 0.5 * right  # the left half is the source (16 px through yuv420 and the mark: not exact)
    rep = verify(s["output"])
    assert rep.credentials.claims["action"] == "c2pa.edited" and rep.credentials.claims["recipe"] == "modelscope-t2v"
    with pytest.raises(UsageError, match="cannot stream; use restyle"):
        next(pipe.restyle_stream(clip, PROMPT, **kw))


def test_a_text2video_recipe_loads_for_restyle(monkeypatch, tmp_path):
    from videdit.api import load_pipeline
    from videdit.errors import MissingWeightsError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(MissingWeightsError):  # past the kind check: only the weights are missing here
        load_pipeline("zeroscope-v2v", kind="restyle")
    with pytest.raises(UsageError, match="restyle recipe, not text2video"):
        load_pipeline("mini", kind="text2video")


# --------------------------------------------------------------------------- long clips: co-denoising


@pytest.mark.parametrize("n,size,overlap", [(5, 16, 8), (16, 16, 8), (17, 16, 8), (40, 16, 8), (41, 16, 12),
                                            (100, 7, 0), (9, 3, 2)])
def test_window_spans_cover_the_clip_at_the_trained_length(n, size, overlap):
    from videdit.core.chunks import spans, window_count, windows

    plan = spans(n, size, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == n
    assert all(b - a == min(size, n) for a, b in plan)  # every window is as long as the model's clip
    starts = [a for a, _ in plan]
    steps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(s == size - overlap for s in steps[:-1]) and all(0 < s <= size - overlap for s in steps)  # no gaps
    streamed = list(windows([np.zeros((n, 1, 1, 3), np.uint8)], size, overlap))
    assert len(plan) == window_count(n, size, overlap) == len(streamed)


def test_co_denoise_is_the_weighted_mean_of_the_windows_predictions():
    """Each frame's prediction is the mean of the windows holding it, weighted by the frame's place in each
    window; a short clip calls the model once on all its frames."""
    from videdit.core.chunks import co_denoise, fusion_weights, spans

    n, size, overlap = 11, 4, 2
    calls = []

    def model_for(k):
        def model(x, t, i):  # window-dependent answer: where the window starts, per frame
            calls.append(len(x))
            return torch.full_like(x, float(x[0, 0, 0, 0]))
        return model

    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 2, 1, 1).contiguous()
    got = co_denoise(model_for, n, size, overlap)(x, torch.tensor(1), 0)
    want = []
    for f in range(n):  # independent: loop over the windows holding frame f
        held = [(a, f - a) for a, b in spans(n, size, overlap) if a <= f < b]
        w = [float(fusion_weights(size)[j]) for _, j in held]
        want.append(sum(wi * a for wi, (a, _) in zip(w, held)) / sum(w))
    assert torch.allclose(got[:, 0, 0, 0], torch.tensor(want)) and torch.equal(got[:, 0], got[:, 1])
    assert calls == [size] * len(spans(n, size, overlap))
    calls.clear()
    co_denoise(model_for, 3, size, overlap)(x[:3], torch.tensor(1), 0)
    assert calls == [3]


def test_fusion_hands_windows_over_gradually():
    """Two windows that disagree (predictions 0 and 1): with the pyramid weights the 8 shared frames go from
    one to the other in steps of 1/9; plain averaging would jump by half the disagreement at each border."""
    from videdit.core.chunks import co_denoise

    def model_for(k):
        return lambda x, t, i: torch.full_like(x, 0.0 if x[0, 0, 0, 0] == 0 else 1.0)

    x = torch.arange(24, dtype=torch.float32)[:, None, None, None]
    fused = co_denoise(model_for, 24, 16, 8)(x, torch.tensor(1), 0)[:, 0, 0, 0]
    assert fused[0] == 0 and fused[-1] == 1
    assert torch.diff(fused).abs().max() <= 1 / 8


def test_long_text_to_video_runs_the_unet3d_on_windows_of_its_clip_length(comps):
    """More frames than ``chunk``: every UNet3D call sees ``chunk`` frames (the batch doubled by CFG), the
    windows overlap, and the result differs from one joint pass; up to ``chunk`` frames nothing changes."""
    from videdit.core.t2v import resolve_options

    seen = []
    hook = comps.unet.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[:3])))
    try:
        opts = _opts(frames=7, chunk=3, overlap=1, steps=2)
        windowed = generate_frames(comps, opts, output="latent")
        n_windows = len(seen) // 2
        assert n_windows == 3 and set(seen) == {(2, 4, 3)}  # (CFG branches, C, frames)
        seen.clear()
        joint = generate_frames(comps, _opts(frames=7, chunk=7, steps=2), output="latent")
        assert set(seen) == {(2, 4, 7)}
        assert windowed.shape == joint.shape and not torch.allclose(windowed, joint)
        seen.clear()
        short = generate_frames(comps, _opts(frames=3, chunk=3, overlap=1, steps=2), output="latent")
        assert torch.equal(short, generate_frames(comps, _opts(frames=3, chunk=16, steps=2), output="latent"))
    finally:
        hook.remove()
    # No windows unless asked for; the overlap defaults to half a window and needs one.
    r = resolve_options(comps, _opts(frames=64, chunk=None))
    assert (r.chunk, r.overlap) == (None, None)
    assert resolve_options(comps, _opts(frames=64, chunk=6)).overlap == 3
    with pytest.raises(UsageError, match=r"--overlap \(20\) must be smaller than --chunk \(16\)"):
        resolve_options(comps, _opts(frames=64, chunk=16, overlap=20))
    with pytest.raises(UsageError, match="give --chunk too"):
        resolve_options(comps, _opts(frames=64, overlap=4))


def test_windows_start_from_reordered_noise_of_the_first_window(comps):
    """FreeNoise's rescheduling: after the first window, each block of (chunk - overlap) frames takes the
    initial noise of the block a window earlier, shuffled; the run uses exactly that noise."""
    from videdit.core.chunks import rescheduled_frames

    order = rescheduled_frames(40, 16, 4, seed=7)
    assert order[:16] == list(range(16)) and len(order) == 40
    for a in (16, 28):
        block, earlier = order[a:a + 12], order[a - 16:a - 4]
        assert sorted(block) == sorted(earlier) and block != earlier  # the same noise, reordered
    assert set(order) == set(range(16))  # every frame's noise is one of the first window's
    assert rescheduled_frames(21, 16, 4, seed=7)[16:] == order[16:21]  # a partial block: its first frames
    assert order != rescheduled_frames(40, 16, 4, seed=8) and order == rescheduled_frames(40, 16, 4, seed=7)
    assert rescheduled_frames(12, 16, 4, seed=7) == list(range(12))

    opts = _opts(frames=7, chunk=3, overlap=1, steps=2, noise_share=0.0)
    noise = frame_noise(7, rescheduled_frames(7, 3, 1, 7), (4, 8, 8))
    assert torch.equal(generate_frames(comps, opts, output="latent"),
                       generate_frames(comps, opts, noise=noise, output="latent"))
    assert not torch.equal(generate_frames(comps, opts, output="latent"),
                           generate_frames(comps, opts, noise=frame_noise(7, range(7), (4, 8, 8)), output="latent"))
