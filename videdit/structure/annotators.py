"""Signals from controlnet-aux annotators: HED/PiDiNet soft edges, line art, pose, MiDaS.

These are the preprocessors the ControlNet 1.1 models were trained on, so they give
the control images those models expect. Their weights live in the hub repo
``lllyasviel/Annotators`` (or a local directory holding the same ``.pth`` files,
given with ``model=``). They are available only when those files are on disk:
availability is decided by looking for the files, and a missing file becomes one
:class:`~videdit.errors.MissingWeightsError` line before controlnet-aux (slow to
import, and prone to download on its own) is touched.

The detectors work on one image at a time at ``detect_resolution`` (short side,
rounded to 64 by controlnet-aux); we resize each result back to the frame size.
"""

from __future__ import annotations

import importlib
import os
import warnings

import cv2
import numpy as np

from ..errors import UsageError
from .base import Extractor, check_bool, check_int
from .depth import check_device, resolve_device
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

__all__ = [
    "ANNOTATORS_REPO",
    "AnnotatorExtractor",
    "HedExtractor",
    "PidiNetExtractor",
    "LineartExtractor",
    "PoseExtractor",
    "MidasExtractor",
]

ANNOTATORS_REPO = "lllyasviel/Annotators"


def _import_detector(module: str, cls: str):
    """Import a controlnet-aux detector class, quietly.

    Importing any controlnet_aux submodule runs its package ``__init__``, which
    imports every annotator and emits a burst of third-party deprecation warnings
    (timm, mediapipe, torch.jit) that mean nothing to a videdit user.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(module), cls)


class AnnotatorExtractor(Extractor):
    """Shared machinery of the controlnet-aux signals (not registered itself).

    Subclasses set ``detector`` (module, class name), ``files`` (weight files the
    detector's ``from_pretrained`` reads) and may override :meth:`_call_kwargs`.
    Options: ``model`` (hub id or directory, default ``lllyasviel/Annotators``),
    ``detect_resolution`` (64..2048, default 512: the short side the network sees),
    ``device`` (cpu/cuda/cuda:N/mps), ``batch_size``.
    """

    detector: tuple[str, str] = ("", "")
    files: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        model: str = ANNOTATORS_REPO,
        detect_resolution: int = 512,
        device: str = "cpu",
        batch_size: int = 8,
    ):
        super().__init__(batch_size=batch_size)
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise UsageError(f"{self.name}: option 'model' must be a hub id or a directory (got {model!r})")
        self.model = os.fspath(model)
        self.detect_resolution = check_int(self.name, "detect_resolution", detect_resolution, 64, 2048)
        self.device = check_device(self.name, device)
        self._det = None

    @classmethod
    def unavailable_reason(cls, model: str = ANNOTATORS_REPO, **_) -> str | None:
        from importlib.util import find_spec

        if find_spec("controlnet_aux") is None:
            return "needs the 'controlnet-aux' package (pip install controlnet-aux)"
        missing = local_missing(model, cls.files)
        return missing_weights_text(model, missing) if missing else None

    def _load(self) -> None:
        missing = local_missing(self.model, self.files)
        is_dir = looks_like_path(self.model)
        skipped = hub_unavailable() if missing and not is_dir else None
        if missing and (is_dir or skipped):
            raise missing_weights_error(self.name, self.model, missing, skipped=skipped)
        try:
            det_cls = _import_detector(*self.detector)
        except ImportError as err:
            raise UsageError(f"{self.name}: needs the controlnet-aux package ({first_line(err)})") from None
        device = resolve_device(self.name, self.device)
        source = os.path.expanduser(self.model) if is_dir else self.model
        kwargs = {} if is_dir else {"cache_dir": hub_cache_dir(), "local_files_only": not missing}
        try:
            self._det = det_cls.from_pretrained(source, **kwargs).to(device)
        except Exception as err:  # hub errors, OSError, unpickling/state-dict mismatches
            raise missing_weights_error(self.name, self.model, missing, cause=first_line(err)) from None

    def _call_kwargs(self) -> dict:
        """Signal-specific keyword arguments for the detector's ``__call__``."""
        return {}

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        n, h, w, _ = frames.shape
        out = np.empty_like(frames)
        for i, frame in enumerate(frames):
            res = self._det(
                frame,
                detect_resolution=self.detect_resolution,
                image_resolution=self.detect_resolution,
                output_type="np",
                **self._call_kwargs(),
            )
            res = np.asarray(res, dtype=np.uint8)
            if res.ndim == 2:
                res = np.repeat(res[..., None], 3, axis=-1)
            out[i] = cv2.resize(res, (w, h), interpolation=cv2.INTER_LINEAR)
        return out


@register("softedge-hed")
class HedExtractor(AnnotatorExtractor):
    """HED soft edges (ControlNet 1.1 softedge); ``safe`` quantises them (HED-safe)."""

    description = "HED soft edges (controlnet-aux, lllyasviel/Annotators ControlNetHED.pth)"
    detector = ("controlnet_aux.hed", "HEDdetector")
    files = ("ControlNetHED.pth",)

    def __init__(self, *, safe: bool = False, **kw):
        super().__init__(**kw)
        self.safe = check_bool(self.name, "safe", safe)

    def _call_kwargs(self) -> dict:
        return {"safe": self.safe}


@register("softedge-pidinet")
class PidiNetExtractor(AnnotatorExtractor):
    """PiDiNet soft edges (ControlNet 1.1 softedge); ``safe`` quantises them."""

    description = "PiDiNet soft edges (controlnet-aux, lllyasviel/Annotators table5_pidinet.pth)"
    detector = ("controlnet_aux.pidi", "PidiNetDetector")
    files = ("table5_pidinet.pth",)

    def __init__(self, *, safe: bool = False, **kw):
        super().__init__(**kw)
        self.safe = check_bool(self.name, "safe", safe)

    def _call_kwargs(self) -> dict:
        return {"safe": self.safe}


@register("lineart")
class LineartExtractor(AnnotatorExtractor):
    """Line art, white lines on black (ControlNet 1.1 lineart); ``coarse`` uses sk_model2."""

    description = "line art (controlnet-aux, lllyasviel/Annotators sk_model.pth + sk_model2.pth)"
    detector = ("controlnet_aux.lineart", "LineartDetector")
    files = ("sk_model.pth", "sk_model2.pth")

    def __init__(self, *, coarse: bool = False, **kw):
        super().__init__(**kw)
        self.coarse = check_bool(self.name, "coarse", coarse)

    def _call_kwargs(self) -> dict:
        return {"coarse": self.coarse}


@register("pose")
class PoseExtractor(AnnotatorExtractor):
    """OpenPose skeletons drawn in colour on black (the RGB image ControlNet openpose expects).

    ``hands``/``face`` add hand and face keypoints (slower). controlnet-aux loads the
    body, hand and face networks together, so all three files are needed.
    """

    description = "OpenPose skeleton image (controlnet-aux, lllyasviel/Annotators body/hand/face .pth)"
    gray = False
    detector = ("controlnet_aux.open_pose", "OpenposeDetector")
    files = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")

    def __init__(self, *, hands: bool = False, face: bool = False, **kw):
        super().__init__(**kw)
        self.hands = check_bool(self.name, "hands", hands)
        self.face = check_bool(self.name, "face", face)

    def _call_kwargs(self) -> dict:
        return {"include_body": True, "include_hand": self.hands, "include_face": self.face}


@register("depth-midas")
class MidasExtractor(AnnotatorExtractor):
    """MiDaS DPT-Hybrid depth, near = bright (the ControlNet 1.0/1.1 depth preprocessor)."""

    description = "MiDaS DPT-Hybrid depth, near = bright (controlnet-aux, lllyasviel/Annotators)"
    detector = ("controlnet_aux.midas", "MidasDetector")
    files = ("dpt_hybrid-midas-501f0c75.pt",)
