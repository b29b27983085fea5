"""Weight-free edge signals: ``canny`` (binary edges) and ``softedge`` (soft gradient map).

Both need only OpenCV, so they are always available; they are the defaults the CLI
can fall back to when no model weights are installed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import UsageError
from .base import Extractor, check_float, check_int, to_rgb
from .registry import register

__all__ = ["CannyExtractor", "SoftEdgeExtractor"]


def _gray(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB -> ``(H, W) uint8`` luma (BT.601, as OpenCV does)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


@register("canny")
class CannyExtractor(Extractor):
    """Canny edges (``cv2.Canny``): white 1-pixel edges (255) on black (0).

    ``low``/``high`` are the hysteresis thresholds on the Sobel gradient of the
    grey image, 0..255 with ``low < high``; 100/200 are the values the ControlNet
    canny models were trained with.
    """

    description = "Canny edges (OpenCV), white on black; options low, high (0..255)"

    def __init__(self, *, low: int = 100, high: int = 200, batch_size: int = 8):
        super().__init__(batch_size=batch_size)
        self.low = check_int(self.name, "low", low, 0, 255)
        self.high = check_int(self.name, "high", high, 0, 255)
        if self.low >= self.high:
            raise UsageError(
                f"{self.name}: option 'low' must be less than 'high' (got low={self.low}, high={self.high})"
            )

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        edges = np.stack([cv2.Canny(_gray(f), self.low, self.high) for f in frames])
        return to_rgb(edges)


@register("softedge")
class SoftEdgeExtractor(Extractor):
    """Soft edges without weights: Gaussian-smoothed gradient magnitude.

    The grey frame is blurred with ``sigma`` (pixels, 0.3..10), Sobel gradients are
    taken, and the magnitude is scaled so that its ``percentile``-th percentile
    (50..100, default 99.5) maps to 255. A percentile rather than the maximum keeps a
    few extreme pixels from darkening the whole map. The scale never drops below the
    gradient of a ``min_contrast`` step (default 0.1 = 10 % of full range) so that a
    flat or noisy frame stays dark instead of having its noise stretched to white.
    Values are continuous 0..255 (like HED/PiDiNet soft edges), not binary.
    """

    description = "soft edges from smoothed gradient magnitude (no weights); options sigma, percentile"

    def __init__(
        self,
        *,
        sigma: float = 1.5,
        percentile: float = 99.5,
        min_contrast: float = 0.1,
        batch_size: int = 8,
    ):
        super().__init__(batch_size=batch_size)
        self.sigma = check_float(self.name, "sigma", sigma, 0.3, 10.0)
        self.percentile = check_float(self.name, "percentile", percentile, 50.0, 100.0)
        self.min_contrast = check_float(self.name, "min_contrast", min_contrast, 0.001, 1.0)
        # Peak derivative of a step of height c blurred by a Gaussian of std s is
        # c / (sqrt(2*pi) * s); that is the floor of the normalising scale.
        self._floor = self.min_contrast / (math.sqrt(2.0 * math.pi) * self.sigma)

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty(frames.shape[:3], np.float32)
        for i, f in enumerate(frames):
            g = _gray(f).astype(np.float32) / 255.0
            g = cv2.GaussianBlur(g, (0, 0), self.sigma, borderType=cv2.BORDER_REFLECT)
            # Sobel 3x3 has gain 8 on a unit ramp; divide so magnitudes are per pixel.
            gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
            gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
            mag = cv2.magnitude(gx, gy)
            scale = max(float(np.percentile(mag, self.percentile)), self._floor)
            out[i] = np.clip(mag / scale, 0.0, 1.0) * 255.0
        return to_rgb(out)
