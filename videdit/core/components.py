"""Load a recipe's models (diffusers/transformers ``from_pretrained``), offline-first.

Each component is looked up locally first (a directory, or the Hugging Face
cache with ``local_files_only=True``), so nothing waits on a network that is not
there; only if that fails, ``HF_HUB_OFFLINE`` is not set and the hub accepts a
connection (``hub_unavailable``), is the hub asked.
Any failure becomes one :class:`~videdit.errors.MissingWeightsError` line naming
the recipe, the component, where it was looked for and how to provide it.
Weights load as safetensors; pickled checkpoints are refused unless
``allow_pickle=True`` (they can run arbitrary code when unpickled).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field

import torch

from ..errors import MissingWeightsError
from ..structure.weights import hub_unavailable
from .recipes import ControlSpec, Recipe

__all__ = ["Components", "load_components"]

log = logging.getLogger("videdit")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def _checked(obj, check):
    if check is not None and not check(obj):
        raise OSError("files missing (loaded empty)")
    return obj


def _load(cls, ref: str, subfolder: str | None, *, recipe: str, what: str, allow_pickle: bool, check=None, **kw):
    """``cls.from_pretrained(ref, subfolder=...)``, local first, errors as one line.

    ``check(obj) -> bool`` rejects an object that loaded without error but empty."""
    is_dir = os.path.isdir(ref)
    if ref.startswith((".", "/", "~")) and not is_dir:
        raise MissingWeightsError(f"{recipe}: {what}: local directory {ref} does not exist")
    safe = {} if allow_pickle else {"use_safetensors": True}
    args = dict(subfolder=subfolder, **kw) if subfolder else dict(kw)
    try:
        return _checked(cls.from_pretrained(ref, local_files_only=True, **safe, **args), check)
    except Exception as err:  # noqa: BLE001 - every loader failure becomes one line below
        local_err = err
    where = f"'{ref}'" + (f" (subfolder {subfolder})" if subfolder else "")
    skipped = None if is_dir else hub_unavailable()
    if is_dir or skipped:
        hint = ("a pickled checkpoint was refused: convert it to safetensors or pass allow_pickle"
                if not allow_pickle and ".bin" in str(local_err) else _first_line(local_err))
        how = "" if is_dir else (f"; {skipped}, so the hub was not asked: download it once with "
                                 f"`hf download {ref}` or point the recipe at a local directory")
        raise MissingWeightsError(f"{recipe}: {what} not loadable from {where}: {hint}{how}")
    try:
        return _checked(cls.from_pretrained(ref, **safe, **args), check)
    except Exception as err:  # noqa: BLE001
        raise MissingWeightsError(
            f"{recipe}: {what} weights for {where} are not in the Hugging Face cache and could not be "
            f"downloaded ({_first_line(err)}); download with `hf download {ref}` on a connected machine "
            "or point the recipe at a local directory") from None


def _model_index(ref: str) -> dict:
    try:
        if os.path.isdir(ref):
            return json.loads(open(os.path.join(ref, "model_index.json")).read())
        from huggingface_hub import hf_hub_download

        return json.loads(open(hf_hub_download(ref, "model_index.json", local_files_only=True)).read())
    except Exception:  # noqa: BLE001 - absent index: fall back to the kind's defaults
        return {}


@dataclass
class Components:
    """The loaded models of a recipe, on ``device`` in ``dtype``; reusable across calls.

    ``controlnets`` pairs each :class:`ControlSpec` with its ``ControlNetModel``;
    ``image_encoder``/``feature_extractor`` are set when the recipe has an IP-Adapter
    (then the UNet carries the adapter's attention processors).
    """

    recipe: Recipe
    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    scheduler: object
    controlnets: list[tuple[ControlSpec, object]] = field(default_factory=list)
    image_encoder: object = None
    feature_extractor: object = None
    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def is_3d(self) -> bool:
        return type(self.unet).__name__ == "UNet3DConditionModel"

    def modules(self) -> list:
        mods = [self.text_encoder, self.vae, self.unet, *[m for _, m in self.controlnets]]
        return mods + ([self.image_encoder] if self.image_encoder is not None else [])


def _class(library: str, name: str):
    import importlib

    return getattr(importlib.import_module(library), name)


def load_components(recipe: Recipe, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                    allow_pickle: bool = False) -> Components:
    """Load every component ``recipe`` names; raises MissingWeightsError (one line) if one is missing."""
    import diffusers
    import transformers

    # The libraries' own per-file progress bars and info chatter would interleave
    # with ours on stderr; their errors still surface as exceptions.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()
    index = _model_index(recipe.base)
    kind3d = recipe.kind == "text2video"

    def cls_of(part, library, default):
        entry = index.get(part)
        if entry and entry[0] and entry[1]:
            return _class(entry[0] if entry[0] != "stable_diffusion" else "diffusers", entry[1])
        return getattr(library, default)

    kw = dict(recipe=recipe.name, allow_pickle=allow_pickle)
    # transformers 5 "loads" a CLIPTokenizer from a place without vocab files as a
    # two-token tokenizer instead of failing, which would silently garble prompts.
    tokenizer = _load(cls_of("tokenizer", transformers, "CLIPTokenizer"), recipe.base, "tokenizer",
                      what="tokenizer", check=lambda tok: len(tok) >= 10, **kw)
    text_encoder = _load(cls_of("text_encoder", transformers, "CLIPTextModel"), recipe.base, "text_encoder",
                         what="text encoder", **kw)
    vae = _load(cls_of("vae", diffusers, "AutoencoderKL"), recipe.base, "vae", what="VAE", **kw)
    unet = _load(cls_of("unet", diffusers, "UNet3DConditionModel" if kind3d else "UNet2DConditionModel"),
                 recipe.base, "unet", what="UNet", **kw)
    if recipe.temporal_positions:  # weight-free, so the recipe (not the checkpoint) says the UNet needs it
        from .attention import install_temporal_positions

        install_temporal_positions(unet, recipe.temporal_positions)
    sched_cls = getattr(diffusers, recipe.scheduler) if recipe.scheduler else cls_of("scheduler", diffusers,
                                                                                    "DDIMScheduler")
    # Scheduler "weights" are a JSON config: no pickle question.
    scheduler = _load(sched_cls, recipe.base, "scheduler", recipe=recipe.name, what="scheduler config",
                      allow_pickle=True)
    controlnets = [(spec, _load(diffusers.ControlNetModel, spec.model, spec.subfolder,
                                what=f"ControlNet for '{spec.signal}'", **kw)) for spec in recipe.controlnets]
    comps = Components(recipe, tokenizer, text_encoder, vae, unet, scheduler, controlnets, device=device,
                       dtype=dtype)
    if recipe.ip_adapter is not None:
        _attach_ip_adapter(comps, allow_pickle)
    for m in comps.modules():
        m.to(device=device, dtype=None if m.dtype == dtype else dtype).eval().requires_grad_(False)
    return comps


def _attach_ip_adapter(comps: Components, allow_pickle: bool) -> None:
    """Load the recipe's IP-Adapter through diffusers' own loader (``IPAdapterMixin.load_ip_adapter``).

    The loader lives on pipeline classes, so a throwaway ``StableDiffusionPipeline``
    holding our components is used only to run it: it installs the adapter's
    attention processors and image projection on *our* UNet, and loads the image
    encoder and feature extractor. Sampling stays ours.
    """
    from diffusers import StableDiffusionPipeline

    spec = comps.recipe.ip_adapter
    with warnings.catch_warnings():  # its SD-1.x scheduler-config advice is moot: the pipeline never samples
        warnings.simplefilter("ignore", FutureWarning)
        pipe = StableDiffusionPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                                       unet=comps.unet, scheduler=comps.scheduler, safety_checker=None,
                                       feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    try:
        pipe.load_ip_adapter(spec.model, subfolder=spec.subfolder, weight_name=spec.weight_name,
                             image_encoder_folder=spec.image_encoder_folder, local_files_only=True)
    except Exception as err:  # noqa: BLE001
        raise MissingWeightsError(f"{comps.recipe.name}: IP-Adapter '{spec.model}' ({spec.subfolder}/"
                                  f"{spec.weight_name}) not loadable: {_first_line(err)}") from None
    pipe.set_ip_adapter_scale(spec.scale)
    comps.image_encoder, comps.feature_extractor = pipe.image_encoder, pipe.feature_extractor
    if comps.feature_extractor is None:
        from transformers import CLIPImageProcessor

        comps.feature_extractor = CLIPImageProcessor()


def apply_memory_options(comps: Components, *, vae_tiling: bool = False, offload: bool = False) -> None:
    """Trade speed for memory: VAE tiling (large frames) and model CPU offload (CUDA only).

    Offload keeps every model in CPU memory and moves each to the GPU only while it
    runs (accelerate hooks chained in call order, as diffusers'
    ``enable_model_cpu_offload`` does), so peak GPU memory is the largest model.
    """
    if vae_tiling and hasattr(comps.vae, "enable_tiling"):
        comps.vae.enable_tiling()
    if not offload:
        return
    if not str(comps.device).startswith("cuda"):
        from ..errors import UsageError

        raise UsageError("--offload needs a CUDA device (it moves models between CPU and GPU memory)")
    from accelerate import cpu_offload_with_hook

    hook = None
    order = [comps.text_encoder, comps.image_encoder, *[m for _, m in comps.controlnets], comps.unet, comps.vae]
    for model in [m for m in order if m is not None]:
        model.to("cpu")
        _, hook = cpu_offload_with_hook(model, comps.device, prev_module_hook=hook)
