"""Recipes: one TOML file per supported model setup (``pipelines/*.toml``).

A recipe names where each component comes from (a Hugging Face hub id or a
local directory, the way ``from_pretrained`` takes them), which structure signal
feeds which ControlNet, an optional IP-Adapter, and defaults. ``--pipeline`` takes
a recipe name, a path to a ``.toml`` file, or a local diffusers directory (one with
``model_index.json``), which becomes a recipe on the fly.

Relative paths inside a recipe are relative to the recipe file, so a model shipped
beside it (``pipelines/videdit-mini/``) works from any working directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

__all__ = ["ControlSpec", "IPAdapterSpec", "Recipe", "load_recipe", "list_recipes", "recipe_dirs",
           "KINDS"]

KINDS = ("restyle", "text2video")
_DEFAULT_KEYS = {"steps", "guidance", "strength", "consistency", "window", "max_side", "size", "multiple",
                 "chunk", "overlap", "frames", "fps", "negative_prompt", "structure_detail", "decode_chunk_size",
                 "shared_noise", "noise_share", "eta", "prompt"}


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up: ``$VIDEDIT_PIPELINES`` (os.pathsep-separated), then the repo's ``pipelines/``."""
    dirs = [Path(p) for p in os.environ.get("VIDEDIT_PIPELINES", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "pipelines")
    return dirs


@dataclass(frozen=True)
class ControlSpec:
    """A ControlNet and the structure signal that feeds it.

    ``scale``: conditioning scale; ``start``/``end``: fraction of the denoising steps
    during which it is applied (diffusers' ``control_guidance_start/end``);
    ``params``: options for the structure extractor (e.g. ``low``/``high`` for canny,
    ``model`` for depth).
    """

    model: str
    signal: str
    subfolder: str | None = None
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class IPAdapterSpec:
    """An IP-Adapter loaded with diffusers' ``load_ip_adapter(model, subfolder, weight_name)``."""

    model: str
    weight_name: str
    subfolder: str = "models"
    image_encoder_folder: str | None = "image_encoder"
    scale: float = 0.6


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    base: str
    description: str = ""
    scheduler: str | None = None
    controlnets: tuple[ControlSpec, ...] = ()
    ip_adapter: IPAdapterSpec | None = None
    defaults: dict = field(default_factory=dict)
    source: str = ""
    #: UNet3D only: frame positions its temporal attention was trained with (``attention.TEMPORAL_POSITIONS``)
    temporal_positions: str | None = None

    def default(self, key: str, fallback=None):
        return self.defaults.get(key, fallback)


def _resolve(ref: str, base_dir: Path) -> str:
    """Relative local paths (``./x``, ``../x``, or an existing relative dir) become absolute; hub ids stay."""
    if ref.startswith((".", "/", "~")) or (base_dir / ref).is_dir():
        p = Path(os.path.expanduser(ref))
        return str(p if p.is_absolute() else (base_dir / p).resolve())
    return ref


def _parse(data: dict, name: str, source: str, base_dir: Path) -> Recipe:
    def need(d, key, where):
        if key not in d:
            raise UsageError(f"{source}: missing '{key}' in {where}")
        return d[key]

    kind = data.get("kind", "restyle")
    if kind not in KINDS:
        raise UsageError(f"{source}: kind '{kind}' unknown; choose one of: {', '.join(KINDS)}")
    model = need(data, "model", "the file")
    base = _resolve(need(model, "base", "[model]"), base_dir)
    cns = []
    for i, c in enumerate(data.get("controlnet", [])):
        unknown = set(c) - {"model", "signal", "subfolder", "scale", "start", "end", "params"}
        if unknown:
            raise UsageError(f"{source}: [[controlnet]] {i + 1}: unknown key(s) {', '.join(sorted(unknown))}")
        cns.append(ControlSpec(model=_resolve(need(c, "model", "[[controlnet]]"), base_dir),
                               signal=need(c, "signal", "[[controlnet]]"), subfolder=c.get("subfolder"),
                               scale=float(c.get("scale", 1.0)), start=float(c.get("start", 0.0)),
                               end=float(c.get("end", 1.0)), params=dict(c.get("params", {}))))
    ip = None
    if "ip_adapter" in data:
        d = data["ip_adapter"]
        ip = IPAdapterSpec(model=_resolve(need(d, "model", "[ip_adapter]"), base_dir),
                           weight_name=need(d, "weight_name", "[ip_adapter]"),
                           subfolder=d.get("subfolder", "models"),
                           image_encoder_folder=d.get("image_encoder_folder", "image_encoder"),
                           scale=float(d.get("scale", 0.6)))
    defaults = dict(data.get("defaults", {}))
    unknown = set(defaults) - _DEFAULT_KEYS
    if unknown:
        raise UsageError(f"{source}: unknown [defaults] key(s) {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(sorted(_DEFAULT_KEYS))}")
    positions = model.get("temporal_positions")
    if positions is not None:
        from .attention import TEMPORAL_POSITIONS

        if kind != "text2video" or positions not in TEMPORAL_POSITIONS:
            raise UsageError(f"{source}: [model] temporal_positions = {positions!r} is for text2video recipes, "
                             f"one of: {', '.join(TEMPORAL_POSITIONS)}")
    return Recipe(name=data.get("name", name), kind=kind, base=base, description=data.get("description", ""),
                  scheduler=model.get("scheduler"), controlnets=tuple(cns), ip_adapter=ip,
                  defaults=defaults, source=source, temporal_positions=positions)


def _from_toml(path: Path) -> Recipe:
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read recipe ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML ({err})") from None
    return _parse(data, path.stem, str(path), path.parent)


def _from_diffusers_dir(path: Path) -> Recipe:
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: unreadable model_index.json ({err})") from None
    unet = index.get("unet", [None, None])[1]
    kind = "text2video" if unet == "UNet3DConditionModel" else "restyle"
    return Recipe(name=path.name, kind=kind, base=str(path.resolve()), source=str(path),
                  description=f"local diffusers directory ({index.get('_class_name', '?')})")


def list_recipes() -> list[Recipe]:
    """Every recipe found in :func:`recipe_dirs` (the first of a name wins)."""
    seen, out = set(), []
    for d in recipe_dirs():
        for f in sorted(d.glob("*.toml")) if d.is_dir() else []:
            if f.stem not in seen:
                seen.add(f.stem)
                out.append(_from_toml(f))
    return out


def load_recipe(ref: str | os.PathLike | Recipe) -> Recipe:
    """A recipe by name, ``.toml`` path, or local diffusers directory; UsageError lists valid names."""
    if isinstance(ref, Recipe):
        return ref
    ref = os.fspath(ref)
    p = Path(os.path.expanduser(ref))
    if p.suffix == ".toml":
        if not p.is_file():
            raise UsageError(f"{ref}: no such recipe file")
        return _from_toml(p)
    if p.is_dir() and (p / "model_index.json").is_file():
        return _from_diffusers_dir(p)
    for d in recipe_dirs():
        f = d / f"{ref}.toml"
        if f.is_file():
            return _from_toml(f)
    if p.is_dir():
        raise UsageError(f"{ref}: directory is not a diffusers pipeline (it has no model_index.json)")
    names = ", ".join(r.name for r in list_recipes()) or "(none found)"
    raise UsageError(f"unknown pipeline '{ref}'; choose one of: {names} "
                     "(or give a .toml recipe or a local diffusers directory)")
