"""Cheap checks of whether a recipe's weights are on this machine (nothing is loaded or downloaded)."""

from __future__ import annotations

import os

from .recipes import Recipe

__all__ = ["recipe_status", "has_weights"]

_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                 "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors")


def has_weights(ref: str, subfolder: str | None) -> bool:
    """True if ``ref`` (local dir or hub id in the HF cache) holds safetensors weights in ``subfolder``."""
    if os.path.isdir(ref):
        d = os.path.join(ref, subfolder) if subfolder else ref
        return any(os.path.isfile(os.path.join(d, n)) for n in _WEIGHT_NAMES)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    for name in _WEIGHT_NAMES:
        path = try_to_load_from_cache(ref, f"{subfolder}/{name}" if subfolder else name)
        if isinstance(path, str) and os.path.isfile(path):
            return True
    return False


def recipe_status(recipe: Recipe) -> tuple[bool, str]:
    """``(ready, what is missing)`` for a recipe."""
    missing = []
    for sub in ("text_encoder", "vae", "unet"):
        if not has_weights(recipe.base, sub):
            missing.append(f"{recipe.base} ({sub})")
    for spec in recipe.controlnets:
        if not has_weights(spec.model, spec.subfolder):
            missing.append(spec.model)
    if recipe.ip_adapter is not None:
        ip = recipe.ip_adapter
        d = os.path.join(ip.model, ip.subfolder) if os.path.isdir(ip.model) else None
        if d is None or not os.path.isfile(os.path.join(d, ip.weight_name)):
            missing.append(f"{ip.model} ({ip.subfolder}/{ip.weight_name})")
    return (not missing, ", ".join(missing))
