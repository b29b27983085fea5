"""The real SD 1.5 architecture (configs from tests/hub_configs), random weights:
one denoising step through our restyle model closure proves the recipes' shapes line up."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from videdit.testing import SD15


@pytest.mark.slow
def test_sd15_unet_controlnet_vae_text_encoder_one_step():
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from videdit.core.attention import FrameContext, cross_frame_attention
    from videdit.core.conditioning import encode_prompt, vae_decode
    from videdit.core.restyle import Prepared, controlled_unet
    from videdit.core.sampling import classifier_free
    from videdit.options import DiffusionOptions
    from videdit.structure import get_extractor

    torch.manual_seed(0)
    with torch.no_grad():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15 / "unet")).eval()
        # No ControlNet config was recovered verbatim; the v1.1 checkpoints were shaped from
        # the SD 1.5 UNet exactly like this (see tests/hub_configs/SOURCES.md, section 2).
        controlnet = ControlNetModel.from_unet(unet).eval()
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(SD15 / "text_encoder")).eval()
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD15 / "vae")).eval()
    n_unet = sum(p.numel() for p in unet.parameters())
    n_cn = sum(p.numel() for p in controlnet.parameters())
    assert 855e6 < n_unet < 865e6 and 355e6 < n_cn < 365e6  # SD 1.5: 859.5M; ControlNet: 361.3M
    tokenizer = CLIPTokenizer.from_pretrained(SD15 / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(SD15 / "scheduler")
    embeds = encode_prompt(tokenizer, text_encoder, "a watercolor city", guidance=7.5)
    assert embeds.cond.shape == (1, 77, 768)

    # 64x40: a 8x5 latent, which SD's three downsamplings take to 4x3, 2x2, 1x1 (frames are rounded to the
    # VAE's multiple of 8 only; the UNet and ControlNet upsample to their skip connections' sizes)
    frames = np.zeros((2, 40, 64, 3), np.uint8)
    frames[:, 8:32, 16:48] = 255
    canny = get_extractor("canny")
    conds = [torch.from_numpy(canny(frames)).permute(0, 3, 1, 2).float() / 255]

    class C:  # the parts of Components that controlled_unet reads
        pass

    comps = C()
    comps.unet = unet
    prep = Prepared(DiffusionOptions(prompt="x").resolved(), embeds, None, [(canny, controlnet, 1.0, 0.0, 1.0)])
    ctx = FrameContext()
    scheduler.set_timesteps(20)
    t = scheduler.timesteps[0]
    x = torch.randn(2, 4, 5, 8)
    with torch.no_grad(), cross_frame_attention([unet, controlnet], "sparse-causal", ctx):
        eps = classifier_free(controlled_unet(comps, prep, conds, 2, ctx, 20), 7.5)(x, t, 0)
        x1 = scheduler.step(eps, t, x).prev_sample
        image = vae_decode(vae, x1[:1])
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    assert image.shape == (1, 3, 40, 64) and torch.isfinite(image).all()
    del unet, controlnet, vae, text_encoder
    gc.collect()
