"""Tiny random models shaped like the real ones: the real configs from tests/hub_configs
with only size fields shrunk, saved in diffusers format (safetensors) so tests go
through the same loading code as real weights."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

CONFIGS = Path(__file__).parent / "hub_configs"
SD15 = CONFIGS / "runwayml--stable-diffusion-v1-5"


def _seeded(seed):
    torch.manual_seed(seed)


def tiny_sd15_parts(seed: int = 0):
    """(tokenizer, text_encoder, vae, unet, scheduler) shaped like SD 1.5, a few hundred K params."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(SD15 / "tokenizer")
    tcfg = CLIPTextConfig.from_pretrained(SD15 / "text_encoder")
    tcfg.hidden_size, tcfg.intermediate_size, tcfg.num_hidden_layers, tcfg.num_attention_heads = 32, 37, 2, 4
    tcfg.projection_dim = 32
    _seeded(seed)
    text_encoder = CLIPTextModel(tcfg).eval()
    vcfg = AutoencoderKL.load_config(SD15 / "vae")
    vcfg.update(block_out_channels=[16, 32], down_block_types=vcfg["down_block_types"][:2],
                up_block_types=vcfg["up_block_types"][:2], layers_per_block=1, norm_num_groups=8, sample_size=32)
    _seeded(seed + 1)
    vae = AutoencoderKL.from_config(vcfg).eval()
    ucfg = UNet2DConditionModel.load_config(SD15 / "unet")
    ucfg.update(block_out_channels=[32, 64], down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], layers_per_block=1, cross_attention_dim=32,
                attention_head_dim=4, norm_num_groups=8, sample_size=16)
    _seeded(seed + 2)
    unet = UNet2DConditionModel.from_config(ucfg).eval()
    scheduler = DDIMScheduler.from_pretrained(SD15 / "scheduler")
    return tokenizer, text_encoder, vae, unet, scheduler


def tiny_controlnet(unet, seed: int = 10):
    """A ControlNet shaped from the UNet, as the real v1.1 checkpoints were (``ControlNetModel.from_unet``).

    ``from_unet`` zero-initialises the output convolutions (so a fresh ControlNet adds
    nothing); random weights there make the test see the control signal.
    """
    from diffusers import ControlNetModel

    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16)).eval()
    _seeded(seed)
    with torch.no_grad():
        for p in cn.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return cn


def save_sd15_dir(root, seed: int = 0, controlnet: bool = True) -> dict:
    """Write a tiny SD1.5-format model dir (and a ControlNet dir) under ``root``; returns their paths."""
    root = Path(root)
    tok, te, vae, unet, sched = tiny_sd15_parts(seed)
    base = root / "tiny-sd15"
    for name, part in [("tokenizer", tok), ("text_encoder", te), ("vae", vae), ("unet", unet),
                       ("scheduler", sched)]:
        part.save_pretrained(base / name)
    index = json.loads((SD15 / "model_index.json").read_text())
    index.update(safety_checker=[None, None], feature_extractor=[None, None], scheduler=["diffusers", "DDIMScheduler"])
    (base / "model_index.json").write_text(json.dumps(index, indent=2))
    out = {"base": str(base)}
    if controlnet:
        cn = tiny_controlnet(unet, seed + 10)
        cn.save_pretrained(root / "tiny-controlnet")
        out["controlnet"] = str(root / "tiny-controlnet")
    return out


def write_recipe(path, base: str, controlnets=(), defaults=None, name="tiny", extra: str = "") -> str:
    lines = [f'name = "{name}"', 'kind = "restyle"', "", "[model]", f'base = "{base}"', ""]
    for model, signal in controlnets:
        lines += ["[[controlnet]]", f'model = "{model}"', f'signal = "{signal}"', ""]
    if defaults:
        lines.append("[defaults]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in defaults.items()]
    Path(path).write_text("\n".join(lines) + "\n" + extra)
    return os.fspath(path)
