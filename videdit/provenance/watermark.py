"""Invisible video watermark: a tiled spread-spectrum mark in the luma, found by voting.

Why not ``invisible-watermark`` (imwatermark, the DWT-DCT mark of Stable Diffusion)?
It embeds per 8x8 DCT block at fixed pixel positions, so a 0.5x downscale or a crop
that shifts the block grid destroys it, and H.264 requantises exactly those
coefficients. This mark is built for video instead:

* **Geometry.** One ``64x64`` *canonical tile* is repeated over the frame with a
  period of ``min(H, W) / 3`` pixels, i.e. defined relative to frame size: a
  resize keeps it at the same relative period, a crop only shifts it and changes
  the relative period. The detector therefore searches the period (log-spaced,
  0.7x-1.6x of the nominal one) and, for each, finds the cyclic offset with one
  FFT cross-correlation on the *folded* tile (all tiles of the residual summed
  modulo the period) -- the periodic-template design of Kutter, "Watermarking
  resisting to translation, rotation and scaling" (SPIE 1998).
* **Spectrum.** The tile is band-limited to 2-8 cycles per tile (6-24 cycles per
  frame height): low enough that H.264 at CRF 28-35 and a 0.5x downscale keep it
  (measured: higher bands lose most of their energy at CRF 35), high enough that
  content (1/f spectrum) does not drown it.
* **Payload.** 49 orthonormal patterns (Gram-Schmidt via QR, so no cross-talk):
  pattern 0 is the fixed *sync* pattern keyed by the string ``"videdit"`` -- its
  presence is the detection -- and patterns 1..48 carry +/-1 bits: a 32-bit id
  (the short payload id also written in the C2PA manifest) and its CRC-16, so a
  decoded id is either right or reported as unreadable. The sync gets 60 % of the
  energy because detection matters more than the id.
* **Redundancy.** The same mark is in every frame at the same place, so the
  detector averages the whitened residual of all frames (soft voting) before the
  search: frame-rate changes and trimming do not matter, and a few seconds of
  footage suffice.
* **Cost.** Luma amplitude 2.3 grey levels RMS (added equally to R, G, B, which
  adds exactly that to Y), ~41 dB PSNR; embedding is two saturating uint8 adds
  with a precomputed delta (OpenCV), so it costs a few % of an encode.

Detection score: ``z`` = correlation peak / std of the correlation surface, max
over the period search. Its null distribution (unmarked video) was measured by
``python -m videdit.provenance.bench`` and the threshold is set above all of it;
see BENCHMARKS.md for the measured false-positive rate.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

__all__ = ["TILE", "THRESHOLD", "WatermarkEmbedder", "WatermarkResult", "WatermarkDetector",
           "embed", "detect", "detect_file", "encode_payload", "decode_payload"]

TILE = 64            # canonical tile size (samples)
TILES_PER_SIDE = 3   # period = min(H, W) / 3 pixels
BAND = (2.0, 8.0)    # cycles per tile
N_BITS = 48          # 32-bit id + CRC-16
SYNC_SHARE = 0.6     # fraction of the mark's energy in the sync pattern
STRENGTH = 2.3       # luma RMS of the mark, grey levels (PSNR ~ 41 dB)
KEY = "videdit"      # the fixed identifier: seeds every pattern
DETECT_SIDE = 288    # frames are resized so min(H, W) <= this before detection (cost)
SEARCH = (0.7, 1.6, 0.004)  # period search: ratio range and log step
# Detection threshold on z. Unmarked clips measured by the bench score 3.1-4.6
# (max over >= 200 clips); see BENCHMARKS.md for the fitted false-positive rate.
THRESHOLD = 5.0


def _crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode_payload(payload_id: str) -> np.ndarray:
    """8 hex chars -> ``(48,) uint8`` bits in {0, 1}: the 32-bit id then its CRC-16."""
    try:
        raw = bytes.fromhex(payload_id)
    except ValueError:
        raw = b""
    if len(raw) != 4:
        raise ValueError(f"payload id must be 8 hex characters, got {payload_id!r}")
    word = int.from_bytes(raw, "big") << 16 | _crc16(raw)
    return np.array([(word >> (N_BITS - 1 - i)) & 1 for i in range(N_BITS)], np.uint8)


def decode_payload(soft: np.ndarray) -> str | None:
    """``(48,)`` soft bits (positive = 1) -> the id, or None when the CRC does not match.

    Tries the hard decision, then flips of the 1 and 2 least reliable bits (a small
    Chase decoder): at most 7 candidates, so a random word passes the CRC with
    probability ~ 7 / 65536.
    """
    soft = np.asarray(soft, np.float64)
    hard = (soft > 0).astype(np.uint8)
    weak = np.argsort(np.abs(soft))[:3]
    flips = [(), (weak[0],), (weak[1],), (weak[2],), (weak[0], weak[1]), (weak[0], weak[2]), (weak[1], weak[2])]
    for flip in flips:
        bits = hard.copy()
        bits[list(flip)] ^= 1
        word = int("".join(map(str, bits)), 2)
        raw = (word >> 16).to_bytes(4, "big")
        if _crc16(raw) == word & 0xFFFF:
            return raw.hex()
    return None


def _patterns() -> np.ndarray:
    """``(49, TILE, TILE) float64`` orthonormal, periodic, band-limited patterns (sync first)."""
    seed = int.from_bytes(hashlib.sha256(KEY.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(TILE) * TILE
    radius = np.hypot(f[:, None], f[None, :])
    band = (radius >= BAND[0]) & (radius <= BAND[1])
    noise = rng.standard_normal((1 + N_BITS, TILE, TILE))
    pats = np.real(np.fft.ifft2(np.fft.fft2(noise) * band)).reshape(1 + N_BITS, -1)
    q, _ = np.linalg.qr(pats.T)  # orthonormal columns spanning the same band
    # QR may flip signs; fix them so the patterns are a pure function of the key.
    q *= np.sign(np.sum(q * pats.T, axis=0))
    return q.T.reshape(1 + N_BITS, TILE, TILE)


def _tile(bits: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """The canonical tile for ``bits``: ``(TILE, TILE) float32``, zero mean, unit RMS."""
    signs = 2.0 * bits.astype(np.float64) - 1.0
    t = np.sqrt(SYNC_SHARE) * patterns[0] + np.sqrt((1 - SYNC_SHARE) / N_BITS) * np.tensordot(signs, patterns[1:], 1)
    return (t / t.std()).astype(np.float32)


def _field(height: int, width: int, tile: np.ndarray) -> np.ndarray:
    """The tile repeated over an ``H x W`` frame at period ``min(H, W) / 3``: ``(H, W) float32``."""
    import cv2

    period = min(height, width) / TILES_PER_SIDE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    scale = np.float32(TILE / period)
    # BORDER_WRAP makes the sampling exactly periodic for any non-integer period.
    return cv2.remap(tile, (xs * scale) % TILE, (ys * scale) % TILE, cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)


class WatermarkEmbedder:
    """Adds the mark for ``payload_id`` to frames of one size.

    ``apply(frames)``: ``(n, H, W, 3)`` RGB or ``(n, H, W)`` gray ``uint8`` -> same shape
    and dtype, marked. The delta is precomputed once (rounded to integers and split
    into positive and negative uint8 parts) so each chunk costs two saturating adds.
    """

    def __init__(self, height: int, width: int, payload_id: str, strength: float = STRENGTH):
        delta = np.rint(_field(height, width, _tile(encode_payload(payload_id), _patterns())) * strength)
        delta = np.clip(delta, -255, 255)
        self.shape = (height, width)
        self._pos = np.maximum(delta, 0).astype(np.uint8)
        self._neg = np.maximum(-delta, 0).astype(np.uint8)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:3] != self.shape:
            raise ValueError(f"expected uint8 frames of size {self.shape}, got {frames.dtype} {frames.shape}")
        pos, neg = self._pos, self._neg
        if frames.ndim == 4:
            pos = np.repeat(pos[:, :, None], frames.shape[3], axis=2)
            neg = np.repeat(neg[:, :, None], frames.shape[3], axis=2)
        out = np.empty_like(frames)
        for i, frame in enumerate(frames):  # cv2 saturates at 0 and 255, no int16 round trip
            cv2.subtract(cv2.add(frame, pos), neg, dst=out[i])
        return out


def embed(frames: np.ndarray, payload_id: str, strength: float = STRENGTH) -> np.ndarray:
    """Mark ``(n, H, W, 3)`` (or ``(n, H, W)``) uint8 frames with ``payload_id`` (8 hex chars)."""
    frames = np.asarray(frames)
    return WatermarkEmbedder(frames.shape[1], frames.shape[2], payload_id, strength).apply(frames)


@dataclass(frozen=True)
class WatermarkResult:
    """What the detector found.

    ``score``: z of the sync correlation peak (unmarked video scores ~3-4.6);
    ``detected``: ``score >= threshold``; ``payload_id``: the 8-hex id when its CRC
    matched, else None; ``scale``: detected period / nominal period (1.25 after an
    80 % crop); ``offset``: ``(dy, dx)`` tile offset in canonical samples;
    ``bit_agreement``: mean |soft bit| relative to the sync peak (0..~1, a
    payload-quality hint); ``frames``: frames used.
    """

    detected: bool
    score: float
    threshold: float
    payload_id: str | None
    scale: float
    offset: tuple[int, int]
    bit_agreement: float
    frames: int

    def as_dict(self) -> dict:
        return asdict(self)


def _luma(frames: np.ndarray) -> np.ndarray:
    if frames.ndim == 3:
        return frames.astype(np.float32)
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _whiten(y: np.ndarray) -> np.ndarray:
    """Residual of one luma frame: high-pass, divided by local contrast, ``(h, w) float32``.

    The high-pass (minus a Gaussian blur at ~1/64 of the frame) drops the content's
    strong low frequencies that are below the mark's band; the division by local
    RMS keeps edges from dominating the correlation (a cheap prewhitening).
    """
    import cv2

    sigma = 3.0 * min(y.shape) / 192
    r = y - cv2.GaussianBlur(y, (0, 0), sigma)
    local = np.sqrt(cv2.GaussianBlur(r * r, (0, 0), 2 * sigma))
    return r / (local + 2.0)


def _fold(residual: np.ndarray, period: float) -> np.ndarray:
    """Resample so ``period`` px -> TILE samples and sum all tiles: ``(TILE, TILE) float32``."""
    import cv2

    h, w = residual.shape
    s = TILE / period
    hh, ww = max(TILE, int(round(h * s))), max(TILE, int(round(w * s)))
    img = cv2.resize(residual, (ww, hh), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)
    img = np.pad(img, ((0, -hh % TILE), (0, -ww % TILE)))
    return img.reshape(img.shape[0] // TILE, TILE, img.shape[1] // TILE, TILE).sum(axis=(0, 2))


class WatermarkDetector:
    """Streaming detector: ``update(chunk)`` for each ``(n, H, W[, 3]) uint8`` chunk, then ``result()``."""

    def __init__(self, threshold: float = THRESHOLD):
        self.threshold = threshold
        self._sum = None
        self._frames = 0

    def update(self, frames: np.ndarray) -> None:
        import cv2

        frames = np.asarray(frames)
        if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3):
            frames = frames[None]
        h, w = frames.shape[1:3]
        k = min(1.0, DETECT_SIDE / min(h, w))  # relative geometry is all that matters
        for y in _luma(frames):
            if k < 1.0:
                y = cv2.resize(y, (max(2, round(w * k)), max(2, round(h * k))), interpolation=cv2.INTER_AREA)
            r = _whiten(y)
            if self._sum is not None and self._sum.shape != r.shape:
                raise ValueError("frame size changed during detection")
            self._sum = r if self._sum is None else self._sum + r
            self._frames += 1

    def result(self) -> WatermarkResult:
        if self._sum is None:
            raise ValueError("no frames given to the watermark detector")
        patterns = _patterns()
        sync = np.conj(np.fft.fft2(patterns[0]))
        avg = self._sum / self._frames
        nominal = min(avg.shape) / TILES_PER_SIDE
        lo, hi, step = SEARCH
        best = (-np.inf, 1.0, (0, 0), None)
        for ratio in np.exp(np.arange(np.log(lo), np.log(hi), step)):
            folded = _fold(avg, nominal * ratio)
            corr = np.real(np.fft.ifft2(np.fft.fft2(folded) * sync))
            i = int(np.argmax(corr))
            z = float(corr.flat[i] / (corr.std() + 1e-12))
            if z > best[0]:
                best = (z, float(ratio), np.unravel_index(i, corr.shape), folded)
        z, ratio, (dy, dx), folded = best
        aligned = np.roll(folded, (-int(dy), -int(dx)), axis=(0, 1))
        soft = np.tensordot(patterns[1:], aligned, 2)
        peak = float(np.sum(patterns[0] * aligned))
        # Bits have (1 - SYNC_SHARE) / N_BITS of the energy: expected |soft| relative to the peak.
        expected = np.sqrt((1 - SYNC_SHARE) / N_BITS / SYNC_SHARE)
        agreement = float(np.mean(np.abs(soft)) / (abs(peak) * expected + 1e-12))
        detected = z >= self.threshold
        return WatermarkResult(detected=bool(detected), score=round(z, 3), threshold=self.threshold,
                               payload_id=decode_payload(soft) if detected else None, scale=round(ratio, 4),
                               offset=(int(dy), int(dx)), bit_agreement=round(agreement, 3), frames=self._frames)


def detect(frames: np.ndarray | Iterable[np.ndarray], threshold: float = THRESHOLD) -> WatermarkResult:
    """Detect the mark in ``(n, H, W, 3)`` uint8 frames or an iterable of such chunks."""
    det = WatermarkDetector(threshold)
    if isinstance(frames, np.ndarray):
        det.update(frames)
    else:
        for chunk in frames:
            det.update(np.asarray(chunk))
    return det.result()


def detect_file(path: str, max_frames: int = 240, threshold: float = THRESHOLD) -> WatermarkResult:
    """Detect the mark in the first ``max_frames`` frames of a video file (InputError if unreadable)."""
    from ..io import iter_video
    from ..options import ReadOptions

    det = WatermarkDetector(threshold)
    for chunk in iter_video(path, ReadOptions(max_frames=max_frames)):
        det.update(chunk)
    return det.result()
