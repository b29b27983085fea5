"""``depth``: monocular depth from a transformers depth-estimation model.

Any checkpoint that ``AutoModelForDepthEstimation`` loads works (Depth Anything
V1/V2, DPT, GLPN, ...), from a hub id or a local ``save_pretrained`` directory. The
default, Depth-Anything-V2-Small (24.8M parameters), is fast enough on a CPU and is
what current depth ControlNets are used with. Gen-1 (Esser et al. 2023) conditions
on MiDaS depth for the same reason we offer it: depth carries the layout of a scene
without its texture, so an edit can change appearance while keeping structure.

Output convention is the depth ControlNets': near = bright. Depth Anything and
DPT predict relative *inverse* depth (disparity), which already is near = large;
models that predict metric depth (far = large) are inverted (``invert='auto'``).
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import UsageError
from .base import Extractor, check_choice, to_rgb
from .registry import register
from .weights import (
    first_line,
    hub_cache_dir,
    hub_unavailable,
    local_missing,
    looks_like_path,
    missing_weights_error,
    missing_weights_text,
)

__all__ = ["DepthExtractor", "DEFAULT_DEPTH_MODEL", "check_device", "torch_dtype"]

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
DTYPES = ("float32", "float16", "bfloat16")
_REQUIRED = ("config.json", "preprocessor_config.json")
# Any one of these holds the weights (single file or a sharded index).
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_device(signal: str, device) -> str:
    """Check the spelling of a torch device (``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Whether that device exists is checked when the model loads, so building an
    extractor (e.g. to validate CLI options) does not import torch.
    """
    if not isinstance(device, str) or not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise UsageError(f"{signal}: option 'device' must be cpu, cuda, cuda:N or mps (got {device!r})")
    return device


def resolve_device(signal: str, device: str):
    """Return ``torch.device(device)`` or raise :class:`UsageError` if it is absent here."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{signal}: option 'device' is {device!r} but no CUDA GPU is available; use device=cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"{signal}: option 'device' is 'mps' but MPS is not available; use device=cpu")
    return torch.device(device)


def torch_dtype(name: str):
    """``"float32"`` -> ``torch.float32`` (imports torch)."""
    import torch

    return getattr(torch, name)


def _missing_files(model: str) -> list[str]:
    """Files needed to load ``model`` that are not present locally (dir or cache)."""
    missing = local_missing(model, _REQUIRED)
    if len(local_missing(model, _WEIGHTS)) == len(_WEIGHTS):
        missing.append("model.safetensors")
    return missing


@register("depth")
class DepthExtractor(Extractor):
    """Depth map from a transformers depth-estimation model; near = bright.

    Options: ``model`` (hub id or local directory, default
    Depth-Anything-V2-Small-hf), ``device`` (cpu/cuda/cuda:N/mps), ``dtype``
    (float32/float16/bfloat16; float32 on CPU), ``invert`` ("auto", True, False:
    flip so near is bright; auto flips metric-depth models only), ``batch_size``
    (frames per forward pass). Each frame is normalised to its own 0..255 range,
    because relative depth has no absolute scale to keep.
    """

    description = "monocular depth, near = bright (transformers; default Depth-Anything-V2-Small)"

    def __init__(
        self,
        *,
        model: str = DEFAULT_DEPTH_MODEL,
        device: str = "cpu",
        dtype: str = "float32",
        invert="auto",
        batch_size: int = 8,
    ):
        super().__init__(batch_size=batch_size)
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise UsageError(f"{self.name}: option 'model' must be a hub id or a directory (got {model!r})")
        self.model = os.fspath(model)
        self.device = check_device(self.name, device)
        self.dtype = check_choice(self.name, "dtype", dtype, DTYPES)
        if invert not in ("auto", True, False):
            raise UsageError(f"{self.name}: option 'invert' must be auto, true or false (got {invert!r})")
        self.invert = invert
        self._net = self._processor = None

    @classmethod
    def unavailable_reason(cls, model: str = DEFAULT_DEPTH_MODEL, **_) -> str | None:
        from importlib.util import find_spec

        for pkg in ("torch", "transformers"):
            if find_spec(pkg) is None:
                return f"needs the '{pkg}' package (pip install {pkg})"
        missing = _missing_files(model)
        return missing_weights_text(model, missing) if missing else None

    def _load(self) -> None:
        missing = _missing_files(self.model)
        is_dir = looks_like_path(self.model)
        # A directory cannot be downloaded into, and offline the hub cannot be asked:
        # in both cases fail now, with the list of what is missing.
        skipped = hub_unavailable() if missing and not is_dir else None
        if missing and (is_dir or skipped):
            raise missing_weights_error(self.name, self.model, missing, skipped=skipped)
        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as err:
            raise UsageError(f"{self.name}: needs torch and transformers ({first_line(err)})") from None
        device = resolve_device(self.name, self.device)
        source = os.path.expanduser(self.model) if is_dir else self.model
        # All files local -> never touch the network (no HEAD requests, no hangs).
        kwargs = {"local_files_only": not missing}
        if not is_dir:
            kwargs["cache_dir"] = hub_cache_dir()
        try:
            processor = AutoImageProcessor.from_pretrained(source, **kwargs)
            net = AutoModelForDepthEstimation.from_pretrained(source, **kwargs)
        except Exception as err:  # OSError, hub HTTP/validation errors, bad configs
            raise missing_weights_error(self.name, self.model, missing, cause=first_line(err)) from None
        self._net = net.to(device=device, dtype=torch_dtype(self.dtype)).eval()
        self._processor = processor
        self._torch_device = device
        if self.invert == "auto":
            cfg = net.config
            metric = getattr(cfg, "depth_estimation_type", "relative") == "metric" or cfg.model_type == "zoedepth"
            self._flip = bool(metric)
        else:
            self._flip = bool(self.invert)

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        n, h, w, _ = frames.shape
        inputs = self._processor(images=list(frames), return_tensors="pt", input_data_format="channels_last")
        pixels = inputs["pixel_values"].to(self._torch_device, torch_dtype(self.dtype))
        with torch.inference_mode():
            pred = self._net(pixel_values=pixels).predicted_depth  # (b, h', w'), model resolution
            # Back to the frame size in float32: fp16 bicubic is unsupported on CPU.
            pred = F.interpolate(pred[:, None].float(), size=(h, w), mode="bicubic", align_corners=False)[:, 0]
        depth = pred.cpu().numpy()
        lo = depth.min(axis=(1, 2), keepdims=True)
        span = depth.max(axis=(1, 2), keepdims=True) - lo
        # A constant prediction (flat frame) has no structure: map it to black, not NaN.
        norm = np.where(span > 0, (depth - lo) / np.where(span > 0, span, 1.0), 0.0)
        if self._flip:
            norm = np.where(span > 0, 1.0 - norm, 0.0)
        return to_rgb(norm * 255.0)

