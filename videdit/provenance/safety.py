"""The Stable Diffusion safety checker applied to video frames.

When a recipe names a safety checker (``CompVis/stable-diffusion-safety-checker``
as shipped in SD 1.x pipelines: a CLIP vision tower whose image embedding is
compared with 17 concept + 3 special-care embeddings, each with its own cosine
threshold; diffusers' ``StableDiffusionSafetyChecker``) and its weights are
present, generated frames go through :class:`SafetyFilter`; flagged frames are
replaced with black frames and the run logs a warning naming how many.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import MissingWeightsError

__all__ = ["SafetyFilter"]

log = logging.getLogger("videdit")


class SafetyFilter:
    """``filter(frames) -> (frames, flagged)`` with a loaded checker and CLIP image processor.

    Build it with :meth:`from_pretrained`, or directly from a
    ``StableDiffusionSafetyChecker`` and a ``CLIPImageProcessor`` (tests do, with a
    tiny random checker).
    """

    def __init__(self, checker, processor, batch: int = 8):
        self.checker = checker.eval()
        self.processor = processor
        self.batch = batch

    @classmethod
    def from_pretrained(cls, ref: str | os.PathLike, *, local_files_only: bool = True) -> "SafetyFilter":
        """Load from a local directory or a hub id already in the Hugging Face cache.

        ``ref`` is either a pipeline (with ``safety_checker/`` and
        ``feature_extractor/`` subfolders) or a checker folder itself. Raises
        :class:`MissingWeightsError` (one line) when the weights are not there.
        """
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        ref = os.fspath(ref)
        is_dir = os.path.isdir(ref)
        if not is_dir and (ref.startswith((".", "/", "~")) or os.sep in ref and ref.count("/") > 1):
            raise MissingWeightsError(f"safety checker: local directory {ref} does not exist")
        sub = "safety_checker" if (not is_dir or os.path.isdir(os.path.join(ref, "safety_checker"))) else None
        fe_sub = "feature_extractor" if (not is_dir or os.path.isdir(os.path.join(ref, "feature_extractor"))) else None
        try:
            checker = StableDiffusionSafetyChecker.from_pretrained(ref, subfolder=sub, local_files_only=local_files_only)
        except (OSError, ValueError) as err:
            where = ref if is_dir else f"{ref} (Hugging Face cache, offline)"
            raise MissingWeightsError(f"safety checker: weights not found in {where} "
                                      f"({type(err).__name__}); download them or drop the checker from the recipe") from None
        try:
            processor = CLIPImageProcessor.from_pretrained(ref, subfolder=fe_sub, local_files_only=local_files_only)
        except (OSError, ValueError):
            # Same preprocessing as SD's feature_extractor/preprocessor_config.json (CLIP ViT-L/14 defaults).
            processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
        return cls(checker, processor)

    def flags(self, frames: np.ndarray) -> np.ndarray:
        """``(n, H, W, 3) uint8`` -> ``(n,) bool``, True where the checker flags the frame."""
        import torch

        frames = np.asarray(frames)
        out = np.zeros(len(frames), bool)
        for i in range(0, len(frames), self.batch):
            part = frames[i: i + self.batch]
            pixels = self.processor(images=list(part), return_tensors="pt").pixel_values
            pixels = pixels.to(dtype=self.checker.dtype, device=self.checker.device)
            with torch.no_grad():
                _, nsfw = self.checker(clip_input=pixels, images=np.zeros((len(part), 1, 1, 3), np.float32))
            out[i: i + len(part)] = np.asarray(nsfw, bool)
        return out

    def filter(self, frames: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Replace flagged frames with black; returns ``(frames, flagged_indices)`` (input untouched)."""
        frames = np.asarray(frames)
        flagged = np.flatnonzero(self.flags(frames)).tolist()
        if flagged:
            frames = frames.copy()
            frames[flagged] = 0
            log.warning("safety checker flagged %d of %d frame(s) (%s); replaced with black frames",
                        len(flagged), len(frames), ", ".join(map(str, flagged[:10])) + (" ..." if len(flagged) > 10 else ""))
        return frames, flagged
