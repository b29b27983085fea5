"""Invisible video watermark: a tiled spread-spectrum mark in the luma, found by voting.

Why not ``invisible-watermark`` (imwatermark, the DWT-DCT mark of Stable Diffusion)?
It embeds per 8x8 DCT block at fixed pixel positions, so a 0.5x downscale or a crop
that shifts the block grid destroys it, and H.264 requantises exactly those
coefficients. This mark is built for video instead:

* **Geometry.** One ``32x32`` *canonical tile* is repeated over the frame with a
  period of ``min(H, W) / 3`` pixels, i.e. defined relative to frame size: a
  resize keeps it at the same relative period, a crop only shifts it and changes
  the relative period. The detector therefore searches the period (log-spaced,
  0.7x-1.6x of the nominal one) and, for each, finds the cyclic offset with one
  FFT cross-correlation on the *folded* tile (all tiles of the residual summed
  modulo the period) -- the periodic-template design of Kutter, "Watermarking
  resisting to translation, rotation and scaling" (SPIE 1998).
* **Spectrum.** The tile is band-limited to 2-10 cycles per tile (6-30 cycles per
  frame height, 308 real dimensions), flat inside the band. Measured per ring of
  the tile's spectrum on photo pan/zoom clips after CRF 28, CRF 35 and a 0.5x
  downscale (mark power that survives / content power, in the detector's own
  whitened fold): rings 1-3 are worth a fifth to a half of rings 5-10, where the
  content is weaker; beyond ~12 the encoder removes the mark. On the validation
  pans (``python -m videdit.provenance.bench --validation``) this band scored +3 to
  +4 on the median after CRF 28 / 80 % crop / 0.5x downscale over the earlier 1-8
  band tilted to its top, at the same energy, and the same after CRF 35.
* **Payload.** 49 patterns (orthonormal via QR before the tilt): pattern 0 is the
  fixed *sync* pattern keyed by the string ``"videdit"`` -- its presence is the
  detection -- and patterns 1..48 carry +/-1 bits: a 32-bit id (the short payload
  id also written in the C2PA manifest) and its CRC-16, so a decoded id is either
  right or reported as unreadable. The sync gets 85 % of the energy because
  detection matters more than the id (70 % before: +1 on the median score after
  CRF 35 on the validation pans, for fewer ids read); bits are read by a weighted least-squares
  fit of all 49 patterns at the sub-sample-refined peak.
* **Colour.** The luma field goes into R, G, B in proportion to the luma weights
  (:data:`GAINS`): for the same RGB PSNR that is 16 % more luma amplitude than
  equal R, G, B changes, at the price of a chroma component. Measured: equal
  gains (Y only, no chroma mark to encode) score ~15 % lower after every attack on
  the validation pans (CRF 35 median 10.2 vs 11.6) and save no clear write time
  (``--cost-only``, BENCHMARKS.md).
* **Detection.** Each frame's luma is high-passed and divided by its local RMS,
  frames are averaged (soft voting: frame-rate changes and trimming do not
  matter). Folded spectra are whitened by the median power over the period search
  (the mark only adds at the true period), each whitened bin is capped at
  :data:`CLIP` (robust: a few strong periodic content bins cannot fake a peak),
  and the correlation peak is divided by the median noise level over periods (or
  that period's own, after removing the fitted mark, if larger). The score is the
  largest of four votes: all frames, the first frame alone (a keyframe in any
  encode), the *motion vote*, and the sum of those three residuals. A strong
  re-encode (CRF 35) does not keep a static mark on moving content: P-frames
  predict each block from the previous frame moved with the content, mark
  included, and the correction is quantised away, so the decoded mark drifts with
  the content (measured on pans: 60 % of the mark left in frames 1-10, 10-20 %
  after frame 30) and the frame average loses it while the content does not
  average out. The motion vote uses what is left: the difference between each
  frame and an earlier one (:data:`MOTION_LAGS`) moved by optical flow (DIS,
  Kroeger et al., ECCV 2016) cancels most of the content and keeps ``m - warp(m)``
  of a static mark ``m``; see :meth:`WatermarkDetector._motion_update`.
  With it (and the band below) the benchmark's CRF 35 went from 16/23 to 23/23
  (BENCHMARKS.md); ``python -m videdit.provenance.bench --validation --set
  MOTION_VOTE=0`` measures a design without it.
* **Cost.** Luma amplitude 2.85 grey levels RMS, PSNR ~40.1 dB; embedding is two
  saturating uint8 adds per frame with precomputed per-channel deltas (OpenCV).

Detection score: ``z`` as above, max over the period/offset search and the votes.
Its null distribution (unmarked video) is measured by ``python -m
videdit.provenance.bench``, which fits a Gumbel law to it; :data:`THRESHOLD` sits
at or below a 1e-6 fitted false-positive rate per clip (see BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

__all__ = ["TILE", "THRESHOLD", "WatermarkEmbedder", "WatermarkResult", "WatermarkDetector",
           "embed", "detect", "detect_file", "encode_payload", "decode_payload"]

TILE = 32            # canonical tile size (samples); the band needs no more
TILES_PER_SIDE = 3   # period = min(H, W) / 3 pixels
BAND = (2.0, 10.0)   # cycles per tile (6-30 cycles per frame height): 308 real dimensions
N_BITS = 48          # 32-bit id + CRC-16
SYNC_SHARE = 0.85    # fraction of the mark's energy in the sync pattern
STRENGTH = 2.85      # luma RMS of the mark, grey levels (PSNR ~ 40.1 dB with GAINS)
SLOPE = 0.0          # amplitude ~ radius ** -SLOPE within the band (0: flat; -1.2 until 2026-11-26)
KEY = "videdit"      # the fixed identifier: seeds every pattern
DETECT_SIDE = 192    # frames are resized so min(H, W) <= this before detection (cost)
SEARCH = (0.7, 1.6, 0.006)  # period search: ratio range and log step
# Luma-proportional channel gains: the change of Y = .299 R + .587 G + .114 B per unit
# of mark is 1 while the RGB mean squared error is minimal (0.746 per unit^2, vs 1 for
# equal R, G, B changes), i.e. ~16 % more luma amplitude at the same PSNR.
_LUMA = np.array([0.299, 0.587, 0.114])
GAINS = _LUMA / np.sum(_LUMA ** 2)
CLIP = 1.6           # robust whitening: cap on a whitened bin's magnitude (noise RMS ~ 1.2)
FIRST_FRAME_VOTE = True  # also score the first frame alone (a keyframe in any encode)
COMBINED_VOTE = True  # also score the sum of the other votes' residuals (each at unit RMS)
MOTION_VOTE = True   # also score the motion-compensated frame differences (survive strong re-encodes)
# Frame lags of those differences: a longer lag moves the mark further against the content
# (more signal when the camera is slow) at the price of a worse prediction. The weakest of
# the 16 fast validation pans after CRF 35, less the 1e-6 threshold its design's 60-clip
# null needs (`python -m videdit.provenance.bench --validation --set MOTION_LAGS=...`):
# +0.45 with lag 1 (8.77 - 8.32), +2.16 with (1, 2, 3), +2.47 with these (10.06 - 7.59).
MOTION_LAGS = (1, 2, 3, 4, 6)
FLOW_PRESET = 1      # OpenCV's DIS preset for the motion vote: 0 ultrafast, 1 fast, 2 medium
# Detection threshold on z: the Gumbel fit of the null (unmarked clips, max over the
# period/offset search and the votes) puts under 1e-6 false positives per clip here
# (1e-6 at 7.68 on the benchmark's 200 clips, 7.62 on the validation's 60, with the
# motion vote at five lags; 8.1 before it); BENCHMARKS.md has the fit of the latest run.
THRESHOLD = 7.8

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


@functools.lru_cache(maxsize=1)
def _patterns() -> np.ndarray:
    """``(49, TILE, TILE) float64`` orthonormal, periodic, band-limited patterns (sync first)."""
    seed = int.from_bytes(hashlib.sha256(KEY.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((1 + N_BITS, TILE, TILE))
    pats = np.real(np.fft.ifft2(np.fft.fft2(noise) * _band())).reshape(1 + N_BITS, -1)
    q, _ = np.linalg.qr(pats.T)  # orthonormal columns spanning the same band
    # QR may flip signs; fix them so the patterns are a pure function of the key.
    q *= np.sign(np.sum(q * pats.T, axis=0))
    out = q.T.reshape(1 + N_BITS, TILE, TILE)
    if SLOPE:  # tilt the spectrum within the band (a design option: see SLOPE)
        f = np.fft.fftfreq(TILE) * TILE
        gain = np.maximum(np.hypot(f[:, None], f[None, :]), BAND[0]) ** -SLOPE
        out = np.real(np.fft.ifft2(np.fft.fft2(out) * gain))
        out /= np.sqrt(np.sum(out ** 2, axis=(1, 2), keepdims=True))
    out.flags.writeable = False
    return out


def _band() -> np.ndarray:
    """``(TILE, TILE) bool``: the FFT bins of the mark's band."""
    f = np.fft.fftfreq(TILE) * TILE
    radius = np.hypot(f[:, None], f[None, :])
    return (radius >= BAND[0]) & (radius <= BAND[1])


def _tile(bits: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """The canonical tile for ``bits``: ``(TILE, TILE) float32``, zero mean, unit RMS."""
    signs = 2.0 * bits.astype(np.float64) - 1.0
    t = np.sqrt(SYNC_SHARE) * patterns[0] + np.sqrt((1 - SYNC_SHARE) / N_BITS) * np.tensordot(signs, patterns[1:], 1)
    return (t / t.std()).astype(np.float32)


def _field(height: int, width: int, tile: np.ndarray) -> np.ndarray:
    """The tile repeated over an ``H x W`` frame at period ``min(H, W) / 3``: ``(H, W) float32``."""
    import cv2

    period = min(height, width) / TILES_PER_SIDE
    scale = np.float32(TILE / period)
    xs = (np.arange(width, dtype=np.float32) * scale) % TILE
    ys = (np.arange(height, dtype=np.float32) * scale) % TILE
    mx = np.broadcast_to(xs[None, :], (height, width))
    my = np.broadcast_to(ys[:, None], (height, width))
    # BORDER_WRAP makes the sampling exactly periodic for any non-integer period.
    return cv2.remap(tile, np.ascontiguousarray(mx), np.ascontiguousarray(my), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_WRAP)


class WatermarkEmbedder:
    """Adds the mark for ``payload_id`` to frames of one size.

    ``apply(frames)``: ``(n, H, W, 3)`` RGB or ``(n, H, W)`` gray ``uint8`` -> same shape
    and dtype, marked. The luma field (``strength`` grey levels RMS, default
    :data:`STRENGTH`) goes into R, G, B with the luma-proportional :data:`GAINS`
    (gray frames: into the one channel). The
    per-channel deltas are computed once, rounded to integers and split into positive
    and negative uint8 parts, so each frame costs two saturating adds (OpenCV).
    """

    def __init__(self, height: int, width: int, payload_id: str, strength: float | None = None):
        # None reads STRENGTH now, not at import (the bench's --set must reach every embed).
        strength = STRENGTH if strength is None else strength
        luma = _field(height, width, _tile(encode_payload(payload_id), _patterns())) * np.float32(strength)
        self.shape = (height, width)
        self.strength = strength
        self._luma = luma
        self._parts = {}

    def _deltas(self, channels: int):
        if channels not in self._parts:
            if channels == 0:
                delta = np.rint(self._luma)
            else:
                gains = GAINS if channels == 3 else np.full(channels, 1.0)
                delta = np.rint(self._luma[:, :, None] * gains.astype(np.float32)).reshape(self.shape[0], -1)
            delta = np.clip(delta, -255, 255)
            self._parts[channels] = (np.maximum(delta, 0).astype(np.uint8), np.maximum(-delta, 0).astype(np.uint8))
        return self._parts[channels]

    def apply(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:3] != self.shape:
            raise ValueError(f"expected uint8 frames of size {self.shape}, got {frames.dtype} {frames.shape}")
        channels = frames.shape[3] if frames.ndim == 4 else 0
        pos, neg = self._deltas(channels)
        n, h = frames.shape[:2]
        flat = np.ascontiguousarray(frames).reshape(n, h, -1)  # (n, H, W*C): 2-D images for OpenCV
        out = np.empty_like(flat)
        for i in range(n):  # cv2 saturates at 0 and 255, no int16 round trip
            cv2.add(flat[i], pos, dst=out[i])
            cv2.subtract(out[i], neg, dst=out[i])
        return out.reshape(frames.shape)


def embed(frames: np.ndarray, payload_id: str, strength: float | None = None) -> np.ndarray:
    """Mark ``(n, H, W, 3)`` (or ``(n, H, W)``) uint8 frames with ``payload_id`` (8 hex chars)."""
    frames = np.asarray(frames)
    return WatermarkEmbedder(frames.shape[1], frames.shape[2], payload_id, strength).apply(frames)


@dataclass(frozen=True)
class WatermarkResult:
    """What the detector found.

    ``score``: z of the sync correlation peak, max over the period search (unmarked
    video: see BENCHMARKS.md for the measured null); ``detected``: ``score >=
    threshold``; ``payload_id``: the 8-hex id when its CRC matched, else None;
    ``scale``: detected period / nominal period (1.25 after an 80 % crop);
    ``offset``: ``(dy, dx)`` tile offset in canonical samples; ``bit_agreement``:
    mean |soft bit| relative to the sync peak (0..~1, a payload-quality hint);
    ``frames``: frames used; ``votes``: each vote's own z (``all``, ``first``,
    ``motion``, ``combined``: see the module doc), the largest of which is ``score``.
    """

    detected: bool
    score: float
    threshold: float
    payload_id: str | None
    scale: float
    offset: tuple[int, int]
    bit_agreement: float
    frames: int
    votes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _luma(frame: np.ndarray) -> np.ndarray:
    """One ``(h, w)`` gray or ``(h, w, 3)`` RGB frame -> ``(h, w) float32`` luma."""
    if frame.ndim == 2:
        return frame.astype(np.float32)
    return frame.astype(np.float32) @ _LUMA.astype(np.float32)



def _whiten(y: np.ndarray) -> np.ndarray:
    """Residual of one luma frame, ``(h, w) float32`` with unit mean square.

    Minus a wide Gaussian blur (below the band: drops the frame's mean and gradual
    shading), divided by the local RMS of that residual (edges and textured regions
    do not dominate), then scaled to unit mean square so every frame votes equally.
    """
    import cv2

    sigma = min(y.shape) / 12
    r = y - cv2.GaussianBlur(y, (0, 0), sigma)
    local = np.sqrt(cv2.GaussianBlur(r * r, (0, 0), sigma / 2))
    r /= local + 2.0
    return r / np.float32(np.sqrt(np.mean(r * r)) + 1e-3)


def _fold(residual: np.ndarray, period: float) -> np.ndarray:
    """Resample so ``period`` px -> TILE samples and sum all tiles: ``(TILE, TILE) float32``."""
    import cv2

    h, w = residual.shape
    s = TILE / period
    hh, ww = max(TILE, int(round(h * s))), max(TILE, int(round(w * s)))
    img = cv2.resize(residual, (ww, hh), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)
    img = np.pad(img, ((0, -hh % TILE), (0, -ww % TILE)))
    return img.reshape(img.shape[0] // TILE, TILE, img.shape[1] // TILE, TILE).sum(axis=(0, 2))


def _subsample(corr: np.ndarray, dy: int, dx: int) -> tuple[float, float]:
    """Peak of a cyclic correlation surface refined to a fraction of a sample (parabola fits)."""
    def vertex(m, c, p):
        den = m - 2 * c + p
        return 0.0 if den >= 0 else float(np.clip(0.5 * (m - p) / den, -0.5, 0.5))

    n = corr.shape[0]
    fy = vertex(corr[(dy - 1) % n, dx], corr[dy, dx], corr[(dy + 1) % n, dx])
    fx = vertex(corr[dy, (dx - 1) % n], corr[dy, dx], corr[dy, (dx + 1) % n])
    return dy + fy, dx + fx


class WatermarkDetector:
    """Streaming detector: ``update(chunk)`` for each ``(n, H, W[, 3]) uint8`` chunk, then ``result()``."""

    def __init__(self, threshold: float | None = None):
        self.threshold = THRESHOLD if threshold is None else threshold  # read now, not at import
        self._sum = None
        self._first = None
        self._frames = 0
        self._recent = []     # the last max(MOTION_LAGS) luma frames, uint8 at detection size
        self._motion = None   # sum of motion-compensated difference residuals
        self._flow = None     # the optical-flow engine, made on first use
        self._grid = None     # pixel coordinates (x, y) at detection size, for the warps

    def update(self, frames: np.ndarray) -> None:
        import cv2

        frames = np.asarray(frames)
        if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3):
            frames = frames[None]
        h, w = frames.shape[1:3]
        k = min(1.0, DETECT_SIDE / min(h, w))  # relative geometry is all that matters
        for frame in frames:
            if k < 1.0:
                frame = cv2.resize(frame, (max(2, round(w * k)), max(2, round(h * k))), interpolation=cv2.INTER_AREA)
            y = _luma(frame)
            r = _whiten(y)
            if self._sum is not None and self._sum.shape != r.shape:
                raise ValueError("frame size changed during detection")
            if self._sum is None:
                self._first, self._sum = r, r.copy()
            else:
                self._sum += r
            if MOTION_VOTE:
                self._motion_update(y)
            self._frames += 1

    def _motion_update(self, y: np.ndarray) -> None:
        """Add one frame's motion-compensated differences to the motion vote (module doc).

        ``y``: ``(h, w) float32`` luma in [0, 255] at detection size. With the flow ``u``
        from this frame to an earlier one ``p`` (:data:`MOTION_LAGS` frames back),
        ``d = y - warp_u(p)`` cancels the content that moved and keeps ``m - warp_u(m)``
        of a static mark ``m``; correlating ``d`` with ``m - warp_u(m)`` is correlating
        ``d - warp_u^*(d)`` with ``m``, where the adjoint ``warp_u^*`` is approximated by
        the warp with ``-u``. Summing that image over frames and lags gives one residual
        that the same blind search reads.
        """
        import cv2

        y8 = np.clip(y, 0, 255).astype(np.uint8)
        h, w = y.shape
        from ..metrics import MIN_FLOW_SIDE

        if min(h, w) < MIN_FLOW_SIDE:  # DIS flow takes no smaller frame, and no mark survives in one
            return
        if not self._recent:  # the first frame: nothing to predict it from
            self._recent = [y8]
            return
        if self._flow is None:
            # DIS (Kroeger et al., ECCV 2016), "fast" preset: as for MOTION_LAGS, the weakest
            # fast pan's margin is +2.47 with it, +1.28 with "ultrafast" (--set FLOW_PRESET=0).
            self._flow = cv2.DISOpticalFlow_create(FLOW_PRESET)
            self._grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        gx, gy = self._grid
        for lag in MOTION_LAGS:
            if lag > len(self._recent):
                break
            prev = self._recent[-lag]
            u = self._flow.calc(y8, prev, None)
            d = y - cv2.remap(prev.astype(np.float32), gx + u[..., 0], gy + u[..., 1], cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
            # Where the prediction fails (occlusions, new content) the difference is large
            # and carries no mark: divide by its local RMS, like _whiten.
            d /= np.sqrt(cv2.GaussianBlur(d * d, (0, 0), min(h, w) / 24)) + 1.0
            back = cv2.remap(d, gx - u[..., 0], gy - u[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            self._motion = d - back if self._motion is None else self._motion + (d - back)
        self._recent = (self._recent + [y8])[-max(MOTION_LAGS):]

    @staticmethod
    def _search(avg: np.ndarray):
        """Period/offset search on one averaged residual: ``(z, ratio, (dy, dx), 49 coefficients)``."""
        specs = np.fft.fft2(_patterns())
        nominal = min(avg.shape) / TILES_PER_SIDE
        lo, hi, step = SEARCH
        ratios = np.exp(np.arange(np.log(lo), np.log(hi), step))
        folded = np.fft.fft2(np.stack([_fold(avg, nominal * r) for r in ratios]))
        # Noise power per bin: the median over the period search. The mark adds to only
        # the few periods next to the true one, so this is the content's spectrum alone.
        power = np.median(np.abs(folded) ** 2, axis=0)
        weight = np.where(_band(), 1.0 / np.sqrt(power + 1e-9), 0.0)
        raw = folded * weight
        # Robust whitening: no bin may exceed CLIP times the typical noise magnitude, so a
        # few strong content peaks (periodic structure folding coherently) cannot make a
        # correlation peak on their own; the mark is spread thinly over all bins.
        white = raw * np.minimum(1.0, CLIP / (np.abs(raw) + 1e-12))
        corr = np.real(np.fft.ifft2(white * np.conj(specs[0])))
        # Noise level of the correlation: the median over periods (robust to the mark),
        # or, where larger, that of each period itself after removing the best match
        # (content that repeats at about the period, e.g. a grid of objects, folds
        # coherently at that period only and must not read as the mark).
        var = np.var(corr, axis=(1, 2))
        sigma = np.sqrt(np.median(var)) + 1e-12
        peaks = corr.reshape(len(ratios), -1).argmax(axis=1)
        top = corr.reshape(len(ratios), -1)[np.arange(len(ratios)), peaks]
        band = _band()
        design = specs[:, band] * weight[band]
        lsq = np.concatenate([design.real, design.imag], axis=1).T
        dof = 1.0 - (1 + N_BITS) / band.sum()  # noise the 49-pattern fit absorbs
        f = np.fft.fftfreq(TILE)
        best = (-np.inf, 0)
        for i in np.argsort(top)[::-1][:6]:  # only the best few periods can win
            dy, dx = _subsample(corr[i], *np.unravel_index(peaks[i], corr.shape[1:]))
            ramp = np.exp(2j * np.pi * (f[:, None] * dy + f[None, :] * dx))
            aligned = white[i] * ramp
            coef = np.linalg.lstsq(lsq, np.concatenate([aligned[band].real, aligned[band].imag]), rcond=None)[0]
            fitted = np.tensordot(coef, specs, 1) * weight / ramp
            rest = corr[i] - np.real(np.fft.ifft2(fitted * np.conj(specs[0])))
            zi = float(top[i] / max(sigma, float(np.std(rest)) / np.sqrt(dof)))
            if zi > best[0]:
                best = (zi, int(i))
        # Geometry and payload from the unclipped spectrum (clipping caps a strong mark's
        # bins, which flattens the peak over neighbouring periods and distorts the bits).
        near = np.arange(max(0, best[1] - 3), min(len(ratios), best[1] + 4))
        rc = np.real(np.fft.ifft2(raw[near] * np.conj(specs[0])))
        k = int(np.argmax(rc))
        j, py, px = np.unravel_index(k, rc.shape)
        dy, dx = _subsample(rc[j], py, px)
        ramp = np.exp(2j * np.pi * (f[:, None] * dy + f[None, :] * dx))
        aligned = raw[near[j]] * ramp
        coef = np.linalg.lstsq(lsq, np.concatenate([aligned[band].real, aligned[band].imag]), rcond=None)[0]
        return best[0], float(ratios[near[j]]), (round(dy) % TILE, round(dx) % TILE), coef

    def result(self) -> WatermarkResult:
        if self._sum is None:
            raise ValueError("no frames given to the watermark detector")
        # Four votes, the largest wins: the mean of all frames (the mark adds up, moving
        # content does not); the first frame alone (the first frame of any encode is a
        # keyframe, coded without motion-compensated prediction and at the lowest QP);
        # the motion vote (_motion_update); and their sum, each residual at unit RMS, for
        # when each holds part of the evidence (after CRF 35 on the validation pans: +2 on
        # the median, the null's fitted 1e-6 threshold +0.5). The null (BENCHMARKS.md) is
        # of this maximum.
        mean = self._sum / self._frames
        votes = {"all": self._search(mean)}
        if FIRST_FRAME_VOTE and self._frames > 1:
            votes["first"] = self._search(self._first)
        if self._motion is not None and np.any(self._motion):
            votes["motion"] = self._search(self._motion)
        if COMBINED_VOTE and len(votes) > 1:
            parts = [mean, self._first] + ([self._motion] if "motion" in votes else [])
            votes["combined"] = self._search(sum(p / np.sqrt(np.mean(p * p) + 1e-12) for p in parts))
        z, ratio, (dy, dx), proj = max(votes.values(), key=lambda t: t[0])
        detected = z >= self.threshold
        # The id: from the first vote over the threshold, best first, whose bits pass the
        # CRC. The winning vote need not hold the cleanest bits: the motion residual sees
        # the mark through (1 - warp), which filters it unevenly. Up to 4 tries keep a
        # random word's chance of passing near 4 x 7 / 65536.
        over = sorted((v for v in votes.values() if v[0] >= self.threshold), key=lambda t: -t[0])
        payload_id = next((pid for pid in (decode_payload(v[3][1:]) for v in over) if pid), None)
        peak, soft = float(proj[0]), proj[1:]
        # Bits have (1 - SYNC_SHARE) / N_BITS of the energy: expected |soft| relative to the peak.
        expected = np.sqrt((1 - SYNC_SHARE) / N_BITS / SYNC_SHARE)
        agreement = float(np.mean(np.abs(soft)) / (abs(peak) * expected + 1e-12))
        return WatermarkResult(detected=bool(detected), score=round(z, 3), threshold=self.threshold,
                               payload_id=payload_id, scale=round(ratio, 4),
                               offset=(int(dy), int(dx)), bit_agreement=round(agreement, 3), frames=self._frames,
                               votes={k: round(v[0], 3) for k, v in votes.items()})


def detect(frames: np.ndarray | Iterable[np.ndarray], threshold: float | None = None) -> WatermarkResult:
    """Detect the mark in ``(n, H, W, 3)`` uint8 frames or an iterable of such chunks."""
    det = WatermarkDetector(threshold)
    if isinstance(frames, np.ndarray):
        det.update(frames)
    else:
        for chunk in frames:
            det.update(np.asarray(chunk))
    return det.result()


def detect_file(path: str, max_frames: int = 240, threshold: float | None = None) -> WatermarkResult:
    """Detect the mark in the first ``max_frames`` frames of a video file (InputError if unreadable)."""
    from ..io import iter_video
    from ..options import ReadOptions
    from ..progress import progress

    det = WatermarkDetector(threshold)
    # ~17 ms a frame at detection size (5 optical flows each): 4 s for 240 frames.
    with progress(max_frames, "watermark", unit="frame") as bar:
        for chunk in iter_video(path, ReadOptions(max_frames=max_frames)):
            det.update(chunk)
            bar.update(len(chunk))
    return det.result()
