"""Tests of videdit.metrics on small synthetic videos (64x96, <= 8 frames, CPU)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from videdit import metrics
from videdit.errors import UsageError
from videdit.metrics import structure_fidelity, temporal_consistency, video_metrics, warp_error

H, W, F = 64, 96, 8


def _texture(h, w, seed=0, blur=3.0):
    """Smooth random RGB texture, float32 in [0.2, 0.8] (no clipping when noise or flicker is added)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), blur)
    img = (img - img.min()) / (img.max() - img.min())
    return (0.2 + 0.6 * img).astype(np.float32)


def _pan(frames=F, dx=2, seed=0):
    """A camera pan: a window sliding ``dx`` px right per frame over a larger texture."""
    big = _texture(H, W + frames * dx, seed)
    return np.stack([big[:, t * dx : t * dx + W] for t in range(frames)])


def _static(frames=F, seed=0):
    return np.repeat(_texture(H, W, seed)[None], frames, axis=0)


def _u8(v):
    return np.rint(v * 255).astype(np.uint8)


def _shapes(seed, frames=6):
    """Flat shapes on a dark background (sparse, clean edges), panning 1 px per frame."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 40, np.uint8)
    for _ in range(3):
        color = tuple(int(c) for c in rng.integers(120, 255, 3))
        x0, y0 = int(rng.integers(5, W - 30)), int(rng.integers(5, H - 25))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(10, 25)), y0 + int(rng.integers(10, 20))), color, -1)
        else:
            cv2.circle(img, (x0 + 10, y0 + 10), int(rng.integers(6, 12)), color, -1)
    return np.stack([np.roll(img, t, axis=1) for t in range(frames)])


# ----------------------------------------------------------------------------- warp error


def test_static_identical_video_scores_exactly_zero():
    v = _u8(_static())
    res = warp_error(v, v, return_details=True)
    # Identical frames: zero flow, warping is the identity, every difference is 0.
    assert res.value == 0.0
    assert res.per_frame.shape == (F - 1,)
    assert np.all(res.per_frame == 0.0)
    # Nothing moves: no occlusion, no motion boundary, nothing leaves the frame.
    assert res.mask_fraction > 0.99


def test_pure_translation_vs_itself_is_near_zero():
    v = _pan(dx=2)
    res = warp_error(v, v, return_details=True)
    # A pure shift is exactly predicted by the true flow; the only error left is from
    # flow estimation, far below the 2*0.01**2 = 2e-4 of even faint 1% noise.
    assert 0 <= res.value < 1e-5
    # The 2 columns that slide out of the frame each step cannot be compared.
    assert res.mask_fraction <= 1 - 2 / W + 1e-9
    assert res.mask_fraction > 0.8
    # Same with np.roll (wrap-around) and with uint8 input.
    rolled = _u8(np.stack([np.roll(_texture(H, W), 2 * t, axis=1) for t in range(6)]))
    assert warp_error(rolled, rolled) < 1e-5
    # The floor (source scored under its own flow) is ~0 as well.
    tc = temporal_consistency(v, v)
    assert tc["floor"] < 1e-5 and tc["output"] == pytest.approx(tc["floor"])


def test_independent_noise_matches_two_sigma_squared():
    v = _pan()
    sigma = 0.05
    noisy = (v + np.random.default_rng(1).normal(0, sigma, v.shape)).astype(np.float32)
    assert noisy.min() >= 0 and noisy.max() <= 1  # no clipping: the noise keeps its std
    clean = warp_error(v, v)
    res = warp_error(v, noisy, return_details=True)
    # Independent noise in frames t and t+1: the difference has variance 2*sigma^2.
    assert res.value == pytest.approx(2 * sigma**2, rel=0.25)
    assert res.value > 10 * clean
    assert np.all(np.abs(res.per_frame / (2 * sigma**2) - 1) < 0.25)


def test_flicker_scores_higher_than_steady():
    v = _pan()
    # Brightness alternating +-0.05 every frame: consecutive frames differ by 0.1 everywhere.
    flicker = v + 0.05 * ((-1.0) ** np.arange(F))[:, None, None, None].astype(np.float32)
    steady = warp_error(v, v)
    flick = warp_error(v, flicker)
    assert flick > steady
    assert flick == pytest.approx(0.1**2, rel=0.1)


def test_occlusion_mask_drops_pixels_around_a_moving_object():
    bg, fg = _texture(H, W, seed=1), _texture(H, W, seed=2, blur=1.5)
    frames = []
    for t in range(F):
        f = bg.copy()
        x = 20 + 3 * t
        f[20:44, x : x + 24] = fg[20:44, 20:44]  # a 24x24 square moving 3 px right per frame
        frames.append(f)
    v = np.stack(frames)
    kept_strip, kept_far = [], []
    for t, pair in enumerate(metrics.source_flows(v)):
        assert pair.flow.shape == (H, W, 2) and pair.valid.shape == (H, W)
        # Background just right of the square in frame t is covered by it in frame t+1:
        # it has no correspondence, so the occlusion test must drop (most of) it.
        kept_strip.append(pair.valid[20:44, 44 + 3 * t : 47 + 3 * t].mean())
        kept_far.append(pair.valid[52:, :].mean())  # static background, far from the square
    assert np.mean(kept_strip) < 0.5
    assert np.mean(kept_far) > 0.95
    res = warp_error(v, v, return_details=True)
    static = warp_error(_static(), _static(), return_details=True)
    assert res.mask_fraction < static.mask_fraction - 0.02
    assert res.value < 1e-3


def _with_fake_flow(monkeypatch, v, forward, backward):
    """Make the flow estimator return ``forward`` for frame 0 -> 1 and ``backward`` for 1 -> 0."""
    g0 = cv2.cvtColor(v[0], cv2.COLOR_RGB2GRAY)

    def fake(dis, first, second):
        return (forward if np.array_equal(first, g0) else backward).astype(np.float32)

    monkeypatch.setattr(metrics, "_dis_flow", fake)


def test_forward_backward_check_follows_the_formula(monkeypatch):
    v = _u8(_pan(frames=2))
    ones = np.ones((H, W, 2), np.float32)
    # Consistent: F = (2, 0), B = (-2, 0), so F + B~ = 0: only the 2 columns whose
    # x + 2 leaves the frame are dropped.
    _with_fake_flow(monkeypatch, v, ones * [2, 0], ones * [-2, 0])
    (pair,) = metrics.source_flows(v)
    expected = np.ones((H, W), bool)
    expected[:, W - 2 :] = False
    assert np.array_equal(pair.valid, expected)
    # Inconsistent: B = (+2, 0): |F + B~|^2 = 16 > 0.01 * (4 + 4) + 0.5 everywhere.
    _with_fake_flow(monkeypatch, v, ones * [2, 0], ones * [2, 0])
    res = warp_error(v, v, return_details=True)
    assert res.mask_fraction == 0.0 and math.isnan(res.value) and np.all(np.isnan(res.per_frame))
    # Just under the threshold: |F + B~|^2 = 0.25 + 0.25 = 0.5 <= 0.01 * |..|^2 + 0.5: kept.
    _with_fake_flow(monkeypatch, v, ones * 0, ones * 0.5)
    (pair,) = metrics.source_flows(v)
    assert pair.valid.all()


@pytest.mark.parametrize("axis", [1, 0])
def test_motion_boundary_check_drops_the_flow_edge(monkeypatch, axis):
    v = _u8(_pan(frames=2))
    # One half still, the other (right / bottom) moving 2 px away from it; backward
    # flow consistent with that, so only the motion-boundary test can drop pixels.
    n = (W, H)[1 - axis]
    comp = 0 if axis == 1 else 1  # flow component along the motion
    idx = [slice(None), slice(None)]
    idx[axis] = slice(n // 2, None)
    fw = np.zeros((H, W, 2), np.float32)
    bw = np.zeros((H, W, 2), np.float32)
    fw[tuple(idx) + (comp,)] = 2
    bw[tuple(idx) + (comp,)] = -2
    _with_fake_flow(monkeypatch, v, fw, bw)
    (pair,) = metrics.source_flows(v)
    expected = np.ones((H, W), bool)
    edge = [slice(None), slice(None)]
    edge[axis] = n // 2 - 1
    expected[tuple(edge)] = False  # |grad F|^2 = 4 > 0.01 * 0 + 0.002 at the flow edge
    out = [slice(None), slice(None)]
    out[axis] = slice(n - 2, None)
    expected[tuple(out)] = False  # x + 2 leaves the frame
    assert np.array_equal(pair.valid, expected)


def test_float_and_uint8_and_video_inputs_agree():
    from videdit.io.video import Video

    v = _pan(frames=5)
    u = _u8(v)
    a = warp_error(u, u)
    b = warp_error(u.astype(np.float32) / 255, u.astype(np.float32) / 255)
    c = warp_error(Video(u, fps=24.0), Video(u, fps=24.0))
    assert a == pytest.approx(b, abs=1e-9) and a == pytest.approx(c, abs=1e-12)


def test_paths_are_streamed_and_measure_what_their_decoded_frames_measure(monkeypatch, tmp_path):
    import videdit.io

    u = _u8(_pan(frames=40))
    a, b = str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")
    videdit.io.write_video(u, a, fps=24)
    rng = np.random.default_rng(0)
    videdit.io.write_video(np.clip(u + rng.normal(0, 8, u.shape), 0, 255).astype(np.uint8), b, fps=24)
    expected = video_metrics(videdit.io.read_video(a).frames, videdit.io.read_video(b).frames)
    assert expected["frames"] == 40 and expected["warp_error_ratio"] > 2

    def whole(*args, **kw):
        raise AssertionError("a path was read whole into memory")

    monkeypatch.setattr(videdit.io, "read_video", whole)
    chunks = []
    real_iter = videdit.io.VideoStream.__iter__

    def counted(self):
        for c in real_iter(self):
            chunks.append(len(c))
            yield c

    monkeypatch.setattr(videdit.io.VideoStream, "__iter__", counted)
    streams = videdit.io.iter_video(a, chunk=8), videdit.io.iter_video(b, chunk=8)
    assert video_metrics(*streams) == expected
    assert max(chunks) == 8 and sum(chunks) >= 3 * 40  # source and output decoded 2x each, 8 frames at a time
    assert warp_error(a, b) == expected["warp_error"]


def test_size_mismatch_is_resized_and_finite():
    u = _u8(_pan())
    half = np.stack([cv2.resize(f, (W // 2, H // 2), interpolation=cv2.INTER_AREA) for f in u])
    res = warp_error(u, half, return_details=True)
    assert math.isfinite(res.value)
    # A smooth texture survives a 2x down/up-scale: still far below 1% noise (2e-4).
    assert res.value < 2e-4
    assert any("resized" in n for n in res.notes)
    assert math.isfinite(structure_fidelity(u, half))


def test_frame_count_mismatch_uses_common_prefix():
    u = _u8(_pan())
    res = warp_error(u, u[:5], return_details=True)
    assert res.frames == 5 and res.per_frame.shape == (4,)
    assert any("frame counts differ" in n for n in res.notes)


def test_fewer_than_two_frames_is_a_usage_error():
    u = _u8(_pan(frames=3))
    with pytest.raises(UsageError):
        warp_error(u[:1], u[:1])
    with pytest.raises(UsageError):
        warp_error(u, u[:1])  # only one common frame
    with pytest.raises(UsageError):
        temporal_consistency(u[:1], u[:1])
    with pytest.raises(UsageError):
        warp_error(u[..., 0], u[..., 0])  # not RGB
    with pytest.raises(UsageError):
        warp_error(u.astype(np.float32), u.astype(np.float32))  # float but 0-255


# ----------------------------------------------------------------------------- consistency


def test_temporal_consistency_reuses_one_flow_per_direction(monkeypatch):
    v = _pan(frames=6)
    src = _u8(v)
    noisy = _u8(np.clip(v + np.random.default_rng(2).normal(0, 0.05, v.shape), 0, 1))
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in src]
    calls = []
    real = metrics._dis_flow

    def counting(dis, first, second):
        t0 = next(i for i, g in enumerate(gray) if np.array_equal(g, first))
        t1 = next(i for i, g in enumerate(gray) if np.array_equal(g, second))
        calls.append((t0, t1))
        return real(dis, first, second)

    monkeypatch.setattr(metrics, "_dis_flow", counting)
    tc = temporal_consistency(src, noisy)
    n = len(src)
    forward = sorted(c for c in calls if c[1] == c[0] + 1)
    backward = sorted(c for c in calls if c[1] == c[0] - 1)
    assert forward == [(t, t + 1) for t in range(n - 1)]
    assert backward == [(t + 1, t) for t in range(n - 1)]
    assert len(calls) == 2 * (n - 1)  # not 4 * (n - 1): output and floor share the flow

    calls.clear()
    out_alone = warp_error(src, noisy)
    floor_alone = warp_error(src, src)
    assert len(calls) == 4 * (n - 1)
    assert tc["output"] == pytest.approx(out_alone, rel=1e-12)
    assert tc["floor"] == pytest.approx(floor_alone, rel=1e-12)
    assert tc["ratio"] == pytest.approx(tc["output"] / tc["floor"], rel=1e-12)
    assert tc["ratio"] > 10  # noise on top of a near-perfectly predicted pan


def test_temporal_consistency_zero_floor_gives_no_ratio():
    v = _u8(_static(frames=4))
    tc = temporal_consistency(v, v)
    assert tc["floor"] == 0.0 and tc["output"] == 0.0 and tc["ratio"] is None


# ----------------------------------------------------------------------------- structure


def test_structure_fidelity_same_video_is_one():
    s = _shapes(0)
    assert structure_fidelity(s, s) == 1.0


def test_structure_fidelity_one_pixel_shift_is_within_tolerance():
    s = _shapes(0)
    shifted = np.roll(s, 1, axis=2)
    # Every edge moved by 1 px <= tolerance 2: nearly all match.
    assert structure_fidelity(s, shifted, tolerance=2) > 0.8
    # With tolerance 0 the same shift misses most edges.
    assert structure_fidelity(s, shifted, tolerance=0) < structure_fidelity(s, shifted, tolerance=2)


def test_structure_fidelity_unrelated_texture_is_low():
    s = _shapes(0)
    rng = np.random.default_rng(5)
    tex = np.stack([cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 2.0) for _ in range(len(s))])
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    # Unrelated edges coincide only by chance: precision is about the share of the
    # frame lying within 2 px of the sparse source edges.
    assert structure_fidelity(s, tex) < 0.3


def test_structure_fidelity_black_output_is_zero():
    s = _shapes(0)
    assert structure_fidelity(s, np.zeros_like(s)) == 0.0
    # Both edgeless: defined as a perfect match.
    assert structure_fidelity(np.zeros_like(s), np.zeros_like(s)) == 1.0


def test_structure_fidelity_rejects_bad_parameters():
    s = _shapes(0, frames=2)
    with pytest.raises(UsageError):
        structure_fidelity(s, s, tolerance=-1)
    with pytest.raises(UsageError):
        structure_fidelity(s, s, sigma=0)


# ----------------------------------------------------------------------------- all


def test_video_metrics_is_json_ready():
    u = _u8(_pan(frames=5))
    half = np.stack([cv2.resize(f, (W // 2, H // 2), interpolation=cv2.INTER_AREA) for f in u])
    d = video_metrics(u, half)
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["frames"] == 5 and d["source_size"] == [W, H] and d["output_size"] == [W // 2, H // 2]
    for key in ("warp_error", "warp_error_floor", "warp_error_ratio", "mask_fraction", "structure_fidelity"):
        assert type(d[key]) is float
    assert d["warp_error_ratio"] == pytest.approx(d["warp_error"] / d["warp_error_floor"])
    assert 0 <= d["structure_fidelity"] <= 1
    assert d["notes"]


def test_a_stream_that_ends_early_is_compared_as_far_as_it_goes():
    # A damaged file can decode fewer frames than its index declares: measure what is there.
    u = _u8(_pan(frames=8))
    short = metrics._Frames(8, H, W, lambda: iter(u[:5]))  # declares 8, yields 5
    d = video_metrics(short, u)
    assert d["frames"] == 5 and any("only 5 of 8 frames could be decoded" in n for n in d["notes"])
    assert d["warp_error"] == pytest.approx(video_metrics(u[:5], u[:5])["warp_error"])
