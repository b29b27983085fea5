"""Tiny random models shaped like the real ones, for tests and benchmarks.

The real configs in ``tests/hub_configs`` (verbatim from the Hugging Face hub, see
its SOURCES.md) with only size fields shrunk, saved in diffusers format
(safetensors), so tests and benchmarks go through the same loading code as real
weights. Needs a source checkout (the configs live in ``tests/``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "hub_configs"
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


IP = CONFIGS / "h94--IP-Adapter" / "models" / "image_encoder"


def save_ip_adapter(root, unet_config: dict, seed: int = 20) -> str:
    """A tiny IP-Adapter in h94/IP-Adapter's layout: ``models/ip-adapter_tiny.safetensors``
    (keys ``image_proj.*`` and ``ip_adapter.{1,3,5..}.to_{k,v}_ip.weight``, the format
    diffusers' ``load_ip_adapter`` reads) and ``models/image_encoder/`` (a tiny
    ``CLIPVisionModelWithProjection`` from the real ViT-H config, shrunk)."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    root = Path(root) / "tiny-ip-adapter"
    cfg = CLIPVisionConfig.from_pretrained(IP)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads = 32, 37, 2, 4
    cfg.projection_dim = 16
    _seeded(seed)
    CLIPVisionModelWithProjection(cfg).save_pretrained(root / "models" / "image_encoder")
    cross, blocks = unet_config["cross_attention_dim"], unet_config["block_out_channels"]
    g = torch.Generator().manual_seed(seed)
    sd = {"image_proj.proj.weight": torch.randn(cross * 4, cfg.projection_dim, generator=g) * 0.2,
          "image_proj.proj.bias": torch.zeros(cross * 4),
          "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    # One (to_k_ip, to_v_ip) pair per cross-attention layer, in attn_processors order, ids 1, 3, 5...
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(unet_config)
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            if name.startswith("mid_block"):
                hidden = blocks[-1]
            elif name.startswith("up_blocks"):
                hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
            else:
                hidden = blocks[int(name[len("down_blocks.")])]
            for kv in ("k", "v"):
                sd[f"ip_adapter.{key_id}.to_{kv}_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.2
            key_id += 2
    save_file(sd, str(root / "models" / "ip-adapter_tiny.safetensors"))
    return str(root)


def reference_controlnet_pipeline(comps):
    """diffusers' ``StableDiffusionControlNetPipeline`` over the same loaded models: the oracle
    that tests and benchmarks compare our restyle engine with (fresh scheduler, no safety checker)."""
    from diffusers import StableDiffusionControlNetPipeline

    ref = StableDiffusionControlNetPipeline(vae=comps.vae, text_encoder=comps.text_encoder,
                                            tokenizer=comps.tokenizer, unet=comps.unet,
                                            controlnet=comps.controlnets[0][1],
                                            scheduler=type(comps.scheduler).from_config(comps.scheduler.config),
                                            safety_checker=None, feature_extractor=None,
                                            requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    return ref
