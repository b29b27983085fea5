"""Tests for videdit.structure: signals, registry, streaming, coarsening, depth loading.

Everything runs on CPU, offline: the depth tests use a tiny randomly initialised
Depth-Anything model built from the real Depth-Anything-V2-Small config in
tests/hub_configs (only size fields shrunk), saved like a hub checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from videdit.errors import MissingWeightsError, UsageError
from videdit.structure import (
    Extractor,
    coarsen,
    extract_structure,
    get_extractor,
    list_signals,
    signal_names,
)

ROOT = Path(__file__).resolve().parent.parent
REAL_DEPTH_DIR = Path(__file__).parent / "hub_configs" / "depth-anything--Depth-Anything-V2-Small-hf"


# --------------------------------------------------------------------------- helpers


def square_frames(n=1, h=64, w=80, top=16, left=20, size=32):
    """``n`` black ``(h, w)`` RGB frames with a white ``size`` square at (top, left)."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[:, top : top + size, left : left + size] = 255
    return f


def border_distance(h=64, w=80, top=16, left=20, size=32):
    """Distance (pixels) of every pixel to the square's outline."""
    outline = np.full((h, w), 255, np.uint8)
    cv2.rectangle(outline, (left, top), (left + size - 1, top + size - 1), 0, 1)
    return cv2.distanceTransform(outline, cv2.DIST_L2, 3)


def scene_frames(n=4, h=72, w=96, seed=0):
    """Frames with a few shapes and mild noise, varying per frame (for streaming/depth)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        cv2.rectangle(f, (5 + 3 * i, 8), (40 + 3 * i, 50), (220, 180, 60), -1)
        cv2.circle(f, (70, 30 + 2 * i), 14, (30, 200, 250), -1)
        cv2.line(f, (0, h - 10), (w - 1, h - 20 - i), (255, 255, 255), 2)
        f = np.clip(f.astype(np.int16) + rng.integers(-6, 7, f.shape), 0, 255).astype(np.uint8)
        out[i] = f
    return out


def laplacian_energy(maps):
    """Mean absolute Laplacian: a measure of high-frequency content."""
    return float(np.mean([np.abs(cv2.Laplacian(m[..., 0].astype(np.float32), cv2.CV_32F)).mean() for m in maps]))


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network and an empty Hugging Face cache, so weight checks are fast and honest."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


# --------------------------------------------------------------------------- canny


def test_canny_edges_lie_on_square_border():
    frames = square_frames(n=2)
    out = get_extractor("canny")(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert set(np.unique(out)) <= {0, 255}
    dist = border_distance()
    edges = out[0, ..., 0] > 0
    assert edges.sum() > 0
    assert dist[edges].max() <= 2.0, "an edge pixel is far from the square's border"
    # Every point of the outline has an edge pixel within 2 px (no gaps).
    near_edge = cv2.dilate(edges.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert near_edge[dist == 0].all()


def test_canny_thresholds_change_result_and_are_validated():
    frame = scene_frames(n=1)
    loose = get_extractor("canny", low=10, high=30)(frame)
    strict = get_extractor("canny", low=200, high=250)(frame)
    assert (loose > 0).sum() > (strict > 0).sum()
    for bad, word in [({"low": 300}, "low"), ({"high": -1}, "high"), ({"low": True}, "low"), ({"low": 1.5}, "low")]:
        with pytest.raises(UsageError, match=word) as err:
            get_extractor("canny", **bad)
        assert "0..255" in str(err.value)
    with pytest.raises(UsageError, match="less than"):
        get_extractor("canny", low=200, high=100)


def test_extractor_rejects_wrong_frame_arrays():
    ext = get_extractor("canny")
    for bad in [np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4, 4, 4), np.uint8)]:
        with pytest.raises(UsageError, match=r"\(n, H, W, 3\) uint8"):
            ext(bad)
    empty = ext(np.zeros((0, 5, 7, 3), np.uint8))
    assert empty.shape == (0, 5, 7, 3) and empty.dtype == np.uint8


# --------------------------------------------------------------------------- softedge


def test_softedge_is_soft_high_on_border_low_in_flat_areas():
    frames = square_frames(n=1)
    out = get_extractor("softedge")(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    m = out[0, ..., 0]
    assert len(np.unique(m)) > 2, "soft edges must not be binary"
    dist = border_distance()
    assert m[dist <= 1].mean() > 150
    assert m[dist >= 6].max() < 10  # flat inside and outside the square
    # Values fall off smoothly with distance from the edge (soft, not a hard step).
    profile = [m[(dist > d - 0.5) & (dist <= d + 0.5)].mean() for d in (0, 2, 4)]
    assert profile[0] > profile[1] > profile[2]


def test_softedge_flat_frame_stays_dark_and_options_validated():
    flat = np.full((1, 32, 32, 3), 128, np.uint8)
    assert get_extractor("softedge")(flat).max() == 0
    with pytest.raises(UsageError, match="sigma"):
        get_extractor("softedge", sigma=0)


# --------------------------------------------------------------------------- registry


def test_unknown_signal_and_option_name_the_choices():
    with pytest.raises(UsageError) as err:
        get_extractor("foo")
    msg = str(err.value)
    assert "unknown structure signal 'foo'" in msg
    for name in ("canny", "depth", "lineart", "pose", "softedge", "softedge-hed", "softedge-pidinet"):
        assert name in msg
    with pytest.raises(UsageError, match="'thresh'.*low"):
        get_extractor("canny", thresh=3)
    assert signal_names() == sorted(signal_names())


def test_list_signals_reports_availability(offline_hub):
    rows = {r.name: r for r in list_signals()}
    assert {"canny", "softedge", "softedge-hed", "softedge-pidinet", "lineart", "pose", "depth"} <= set(rows)
    for name in ("canny", "softedge"):
        assert rows[name].available and rows[name].reason is None
    for name in ("softedge-hed", "softedge-pidinet", "lineart", "pose"):
        row = rows[name]
        assert not row.available
        assert "lllyasviel/Annotators" in row.reason and "\n" not in row.reason
    assert not rows["depth"].available and "Depth-Anything-V2-Small-hf" in rows["depth"].reason
    assert all(r.description for r in rows.values())


@pytest.mark.parametrize("name", ["softedge-hed", "softedge-pidinet", "lineart", "pose"])
def test_annotator_without_weights_raises_one_line(offline_hub, name):
    ext = get_extractor(name)  # building is fine: weights are only needed on first call
    with pytest.raises(MissingWeightsError) as err:
        ext(square_frames())
    msg = str(err.value)
    assert "\n" not in msg
    assert "lllyasviel/Annotators" in msg and "--model" in msg and "HF_HUB_OFFLINE" in msg
    assert err.value.exit_code == 4


def test_annotator_local_dir_without_files(offline_hub):
    empty = offline_hub / "annotators"
    empty.mkdir()
    with pytest.raises(MissingWeightsError, match="ControlNetHED.pth") as err:
        get_extractor("softedge-hed", model=str(empty)).prepare()
    assert str(empty) in str(err.value) and "\n" not in str(err.value)


def test_import_is_light():
    code = (
        "import sys, videdit.structure as s; s.list_signals();"
        "print(sorted(m for m in ('torch', 'transformers', 'controlnet_aux', 'diffusers') if m in sys.modules))"
    )
    # The child must find the package however this pytest run found it (installed,
    # PYTHONPATH, or pytest's own pythonpath setting, which the child does not inherit).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_register_rejects_non_extractors_and_duplicates():
    from videdit.structure import register

    with pytest.raises(TypeError):
        register("x-not-a-class")(object)

    with pytest.raises(ValueError, match="already registered"):

        @register("canny")
        class Other(Extractor):
            pass


# --------------------------------------------------------------------------- streaming


def test_streaming_matches_whole_array_and_is_lazy():
    frames = scene_frames(n=6)
    pulled = []

    def chunks():
        for a, b in [(0, 2), (2, 5), (5, 6)]:
            pulled.append(a)
            yield frames[a:b]

    gen = extract_structure(chunks(), "canny", low=50, high=150)
    assert pulled == []  # nothing read before iteration
    first = next(gen)
    assert pulled == [0] and first.shape == (2, 72, 96, 3)
    outs = [first, *gen]
    assert [len(o) for o in outs] == [2, 3, 1]
    whole = extract_structure(frames, "canny", low=50, high=150)
    assert isinstance(whole, np.ndarray) and whole.shape == frames.shape
    np.testing.assert_array_equal(np.concatenate(outs), whole)
    # The same holds with coarsening applied per chunk.
    coarse = list(extract_structure([frames[:2], frames[2:5], frames[5:]], "canny", detail=3))
    np.testing.assert_array_equal(np.concatenate(coarse), extract_structure(frames, "canny", detail=3))


def test_extract_structure_checks_eagerly():
    never = (_ for _ in ())  # must not need to be iterated for the error to show
    with pytest.raises(UsageError, match="unknown structure signal"):
        extract_structure(never, "foo")
    with pytest.raises(UsageError, match="detail"):
        extract_structure(never, "canny", detail=8)
    with pytest.raises(UsageError, match="iterable"):
        extract_structure(42, "canny")


# --------------------------------------------------------------------------- coarsen


def test_coarsen_reduces_detail_monotonically():
    maps = get_extractor("canny", low=30, high=90)(scene_frames(n=2))
    assert coarsen(maps, 0) is maps or np.array_equal(coarsen(maps, 0), maps)
    energies = []
    for level in (0, 3, 7):
        out = coarsen(maps, level)
        assert out.shape == maps.shape and out.dtype == np.uint8
        energies.append(laplacian_energy(out))
    assert energies[0] > energies[1] > energies[2] > 0
    # Coarsening keeps the layout: the map still has mass where the edges were.
    assert abs(float(coarsen(maps, 7).mean()) - float(maps.mean())) < 0.3 * float(maps.mean())


@pytest.mark.parametrize("bad", [8, -1, 2.5, True, "3"])
def test_coarsen_rejects_bad_detail(bad):
    with pytest.raises(UsageError, match="0..7"):
        coarsen(square_frames(), bad)


def test_coarsen_handles_tiny_maps():
    tiny = np.full((1, 3, 5, 3), 200, np.uint8)
    out = coarsen(tiny, 7)
    assert out.shape == tiny.shape and (out == 200).all()


# --------------------------------------------------------------------------- depth


@pytest.fixture(scope="session")
def tiny_depth_dir(tmp_path_factory):
    """A tiny random Depth-Anything checkpoint in hub layout, from the real V2-Small config.

    Only size fields are shrunk (backbone width/depth/heads and the neck/fusion/head
    widths); model type, backbone type, patch size and preprocessing stay real. The
    weights are re-initialised with Kaiming scaling: the default 0.02-std init makes
    the relu'd output ~1e-7, where float noise would dominate the normalised map.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

    cfg = AutoConfig.from_pretrained(REAL_DEPTH_DIR)
    assert cfg.model_type == "depth_anything" and cfg.backbone_config.model_type == "dinov2"
    bb = cfg.backbone_config.to_dict()
    bb.update(
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=4,
        out_indices=[1, 2, 3, 4],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    bb.pop("stage_names", None)  # derived from num_hidden_layers; let the config rebuild it
    cfg.backbone_config = type(cfg.backbone_config)(**bb)
    cfg.reassemble_hidden_size = 32
    cfg.neck_hidden_sizes = [8, 16, 32, 32]
    cfg.fusion_hidden_size = 16
    cfg.head_hidden_size = 8
    torch.manual_seed(0)
    model = AutoModelForDepthEstimation.from_config(cfg).eval()
    for mod in model.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    out = tmp_path_factory.mktemp("tiny-depth-anything")
    model.save_pretrained(out, safe_serialization=True)
    AutoImageProcessor.from_pretrained(REAL_DEPTH_DIR).save_pretrained(out)
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    del transformers
    return out


def test_depth_tiny_model_shape_determinism_batching(tiny_depth_dir, offline_hub):
    frames = scene_frames(n=3, h=48, w=64)
    ext = get_extractor("depth", model=str(tiny_depth_dir), batch_size=3)
    a = ext(frames)
    net = ext._net
    b = ext(frames)
    assert ext._net is net, "the model must be loaded once and reused across chunks"
    assert a.shape == (3, 48, 64, 3) and a.dtype == np.uint8
    assert (a[..., 0] == a[..., 2]).all()
    # Per-frame normalisation: each frame spans the full 0..255 range.
    assert (a.reshape(3, -1).min(1) == 0).all() and (a.reshape(3, -1).max(1) == 255).all()
    np.testing.assert_array_equal(a, b)
    one_by_one = get_extractor("depth", model=str(tiny_depth_dir), batch_size=1)(frames)
    assert np.abs(one_by_one.astype(int) - a.astype(int)).max() <= 2


def test_depth_invert_flips_near_and_far(tiny_depth_dir):
    frames = scene_frames(n=1, h=48, w=64)
    normal = get_extractor("depth", model=str(tiny_depth_dir))(frames).astype(int)
    flipped = get_extractor("depth", model=str(tiny_depth_dir), invert=True)(frames).astype(int)
    assert np.abs((255 - normal) - flipped).max() <= 1


def test_depth_real_config_instantiates_vit_small():
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForDepthEstimation

    cfg = AutoConfig.from_pretrained(REAL_DEPTH_DIR)
    torch.manual_seed(0)
    model = AutoModelForDepthEstimation.from_config(cfg)
    assert type(model).__name__ == "DepthAnythingForDepthEstimation"
    n = sum(p.numel() for p in model.parameters())
    # Depth-Anything-V2-Small is published as 24.8M parameters (ViT-S/14 DINOv2 + DPT head).
    assert 24.7e6 < n < 24.9e6, n


def test_depth_missing_weights_one_line(offline_hub):
    frames = scene_frames(n=1, h=32, w=32)
    missing_dir = offline_hub / "no-such-model-dir"
    with pytest.raises(MissingWeightsError) as err:
        get_extractor("depth", model=str(missing_dir))(frames)
    assert "\n" not in str(err.value) and str(missing_dir) in str(err.value) and "does not exist" in str(err.value)

    with pytest.raises(MissingWeightsError) as err:
        get_extractor("depth", model="nobody-here/no-such-depth-model")(frames)
    msg = str(err.value)
    assert "\n" not in msg and "nobody-here/no-such-depth-model" in msg and "HF_HUB_OFFLINE" in msg

    config_only = offline_hub / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((REAL_DEPTH_DIR / "config.json").read_text())
    (config_only / "preprocessor_config.json").write_text((REAL_DEPTH_DIR / "preprocessor_config.json").read_text())
    with pytest.raises(MissingWeightsError, match="model.safetensors") as err:
        get_extractor("depth", model=str(config_only)).prepare()
    assert "\n" not in str(err.value)


def test_depth_options_validated():
    with pytest.raises(UsageError, match="dtype"):
        get_extractor("depth", dtype="float64")
    with pytest.raises(UsageError, match="device"):
        get_extractor("depth", device="gpu")
    with pytest.raises(UsageError, match="batch_size"):
        get_extractor("depth", batch_size=0)
    with pytest.raises(UsageError, match="invert"):
        get_extractor("depth", invert="yes")


# --------------------------------------------------------------------------- controlnet-aux path


@pytest.fixture(scope="session")
def hed_weights_dir(tmp_path_factory):
    """A directory holding ControlNetHED.pth with random weights of the real HED network."""
    torch = pytest.importorskip("torch")
    from videdit.structure.annotators import _import_detector

    _import_detector("controlnet_aux.hed", "HEDdetector")  # quiet import of controlnet_aux
    from controlnet_aux.hed import ControlNetHED_Apache2

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("annotators")
    torch.save(ControlNetHED_Apache2().state_dict(), out / "ControlNetHED.pth")
    return out


def test_hed_runs_from_local_dir_and_from_offline_cache(hed_weights_dir, offline_hub):
    frames = square_frames(n=2, h=48, w=80, top=10, left=20, size=24)
    local = get_extractor("softedge-hed", model=str(hed_weights_dir), detect_resolution=64)(frames)
    assert local.shape == frames.shape and local.dtype == np.uint8
    assert (local[..., 0] == local[..., 1]).all() and len(np.unique(local)) > 2

    # The same file placed in the (empty, offline) Hugging Face cache layout makes the
    # default hub id available and loadable without network.
    rows = {r.name: r for r in list_signals()}
    assert not rows["softedge-hed"].available
    snap = "0" * 40
    repo = offline_hub / "hf_home" / "hub" / "models--lllyasviel--Annotators"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(snap)
    (repo / "snapshots" / snap).mkdir(parents=True)
    (repo / "snapshots" / snap / "ControlNetHED.pth").symlink_to(hed_weights_dir / "ControlNetHED.pth")
    rows = {r.name: r for r in list_signals()}
    assert rows["softedge-hed"].available and rows["softedge-hed"].reason is None
    assert not rows["softedge-pidinet"].available
    cached = get_extractor("softedge-hed", detect_resolution=64)(frames)
    np.testing.assert_array_equal(cached, local)
