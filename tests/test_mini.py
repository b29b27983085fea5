"""The built-in videdit-mini model: loads through the ordinary recipe path and does its job.

Fast (a few frames at 128 px): the output is not trivial, follows the source's
structure and follows the colour named in the prompt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "pipelines" / "videdit-mini"

# Bars measured on the shipped weights (see pipelines/videdit-mini/README.md), with margin.
EDGE_F1_MIN = 0.4  # measured 0.63 on samples/shapes.mp4 (4 frames; 0.29 before the fifth session's weights)
CHANCE_MARGIN = 2.0  # measured 5.2x the F1 against the source mirrored upside down
COLOUR_FRAMES_MIN = 2  # of 3


@pytest.fixture(scope="module")
def pipe():
    import torch

    from videdit.api import load_pipeline

    torch.set_num_threads(1)
    return load_pipeline("mini", device="cpu")


def _moving_scene(frames=3, seed=90_000_123):
    """A held-out scene (never in training) with its shapes drifting right, and their masks."""
    from videdit.mini import data

    rng = np.random.default_rng(seed)
    scene = data.random_scene(rng, 128)
    pal = data.random_palette(rng, scene, force="blue")
    imgs, masks = [], []
    for f in range(frames):
        for sh in scene.shapes:
            sh["cx"] += 2.0 * (f > 0)
        img, _, mask = data.render(scene, pal)
        imgs.append(img), masks.append(mask)
    return np.stack(imgs), np.stack(masks)


def test_shipped_weights_are_safetensors_and_small():
    files = list(MODEL.rglob("*"))
    weights = [f for f in files if f.suffix in (".safetensors", ".bin", ".pt", ".ckpt", ".pth")]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    assert sum(f.stat().st_size for f in weights) <= 40e6
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]


def test_tokenizer_knows_the_grammar():
    from transformers import CLIPTokenizer

    from videdit.mini import unknown_words
    from videdit.mini.data import WORDS

    tok = CLIPTokenizer.from_pretrained(str(MODEL / "tokenizer"))
    assert all(len(tok.tokenize(w)) == 1 for w in WORDS)
    assert len(tok.tokenize("zebra")) > 1  # unknown words still tokenise, into pieces
    assert unknown_words("a Neon blue zebra on a watercolour background, zebra!") == ["zebra", "watercolour"]
    assert unknown_words("pastel shapes on a dark background") == []


def test_mini_recipe_uses_the_ordinary_loader(pipe):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    c = pipe.components
    assert pipe.recipe.name == "mini"
    assert isinstance(c.unet, UNet2DConditionModel) and isinstance(c.vae, AutoencoderKL)
    assert isinstance(c.text_encoder, CLIPTextModel)
    assert [type(m) for _, m in c.controlnets] == [ControlNetModel]
    assert c.unet.dtype.is_floating_point and str(c.unet.dtype) == "torch.float32"


def _clip(name, frames=4):
    from videdit.io import read_video

    return read_video(str(ROOT / "samples" / f"{name}.mp4"), max_frames=frames).frames


def test_mini_restyle_is_not_trivial_and_follows_structure(pipe):
    import cv2

    from videdit.metrics import structure_fidelity

    out = pipe.restyle(str(ROOT / "samples" / "shapes.mp4"), "red shapes on a black background",
                       max_frames=4).frames
    src = np.stack([cv2.resize(f, (out.shape[2], out.shape[1]), interpolation=cv2.INTER_AREA)
                    for f in _clip("shapes")])
    assert out.shape == src.shape and out.dtype == np.uint8 and out.shape[1:3] == (128, 128)
    # not trivial: not constant, not the input returned unchanged
    assert out.std() > 10 and np.abs(out.astype(int) - src.astype(int)).mean() > 5
    # follows the structure: its edges match the source's, and clearly better than they
    # match the same source mirrored (the same shapes and colours in other places). Only
    # mirrors that really move the source's edges count: this clip's shapes sit about its
    # vertical axis, so its left-right mirror matches the source itself (edge F1 0.67).
    f1 = structure_fidelity(src, out)
    mirrors = [m for m in (src[:, :, ::-1], src[:, ::-1], src[:, ::-1, ::-1]) if structure_fidelity(src, m) < 0.5]
    assert mirrors
    chance = max(structure_fidelity(m, out) for m in mirrors)
    assert f1 >= EDGE_F1_MIN and f1 >= CHANCE_MARGIN * chance, (f1, chance)


def test_mini_restyle_keeps_a_wide_clip_s_shape_and_warns_of_a_far_larger_size(pipe, caplog):
    """pan-astronaut is 320x192 (5:3). At the recipe's 128 px it is 128x76.8: rounded to the VAE's multiple
    of 8 that is 128x80; rounding to the UNet's whole downsampling, 32, squashed it to 128x64 (2:1).
    Far more pixels than the model's 128x128 get a warning before the long run (not at 2x)."""
    clip = str(ROOT / "samples" / "pan-astronaut.mp4")
    with caplog.at_level("WARNING", logger="videdit"):
        out = pipe.restyle(clip, "red shapes on a black background", max_frames=2, steps=2).frames
        pipe.restyle(clip, "red shapes on a black background", max_frames=1, steps=2, size="176x176")
        assert "far longer run" not in caplog.text
        pipe.restyle(clip, "red shapes on a black background", max_frames=1, steps=2, size="288x288")
    assert out.shape == (2, 80, 128, 3)
    assert "pipeline 'mini' works at about 128x128; 288x288 has 5x its pixels" in caplog.text


RED_XFAIL = pytest.mark.xfail(
    reason="known weakness: red comes out orange (4 of the 7 reds of the 50 held-out scenes, the only misses of "
           "the 92 % there); the VAE round trip shifts red's hue by ~20 degrees (pipelines/videdit-mini/README.md)",
    strict=False)


@pytest.mark.parametrize("colour", [pytest.param("red", marks=RED_XFAIL), "green", "yellow"])
def test_mini_restyle_follows_colour(pipe, colour):
    """The painted shapes take the named colour (the scene's source palette has blue, so not blue)."""
    from videdit.io import Video
    from videdit.mini.eval import dominant_colour

    src, masks = _moving_scene()
    before = [dominant_colour(s, m) for s, m in zip(src, masks)]
    out = pipe.restyle(Video(src, 24.0), f"{colour} shapes on a black background").frames
    got = [dominant_colour(o, m) for o, m in zip(out, masks)]
    assert sum(g == colour for g in got) >= COLOUR_FRAMES_MIN, (got, before)
    assert sum(b == colour for b in before) < COLOUR_FRAMES_MIN, before  # the colour came from the prompt


def test_cross_frame_attention_reduces_flicker(pipe):
    """Issue 3: on a sample clip with a small model, warp error with sparse-causal < none.

    A random model has no appearance for frames to share, so this uses the trained
    mini model; measured 0.0018 vs 0.0039 (ratio 0.48) on the second session's weights,
    0.0012 vs 0.0018 (0.67) on the GPU fine-tune's (guidance 5). The fifth session's
    weights and recipe (strength 0.9, one shared initial noise) flicker 4x less in both
    modes and attention's share shows over the whole clip, not in its first 6 frames:
    0.00036 vs 0.00045 (0.81) on all 48 frames, 1.04 on the first 6. The sixth session's
    UNet (attention at 16x16 too, trained on pans under sparse-causal attention): 0.00032
    vs 0.00061 (0.52); the bar sits between that and the previous weights' 0.81.
    """
    import cv2

    from videdit.metrics import temporal_consistency

    path, prompt = str(ROOT / "samples" / "shapes.mp4"), "red and yellow shapes on a black background"
    outs = {m: pipe.restyle(path, prompt, consistency=m).frames for m in ("sparse-causal", "none")}
    src = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in _clip("shapes", None)])
    err = {m: temporal_consistency(src, o)["output"] for m, o in outs.items()}
    assert len(src) == 48 and err["sparse-causal"] < 0.7 * err["none"], err
    # the modes really differ (frame 0 is the anchor in both, so it matches)
    assert np.abs(outs["sparse-causal"][1:].astype(int) - outs["none"][1:].astype(int)).mean() > 0.5


def test_eval_seed_offset_moves_every_held_out_set():
    """``--seed-offset`` gives a validation set: other scenes, captions and reference pairs."""
    from videdit.mini.eval import HELD_OUT, HELD_OUT_IP, held_out_scenes, reference_trials
    from videdit.mini.eval_t2v import HELD_OUT_T2V, held_out_captions

    off = 6_000_000
    assert not np.array_equal(held_out_scenes(1)[0][0], held_out_scenes(1, HELD_OUT + off)[0][0])
    assert not np.array_equal(reference_trials(1)[0][1], reference_trials(1, HELD_OUT_IP + off)[0][1])
    a, b = held_out_captions(4), held_out_captions(4, HELD_OUT_T2V + off)
    assert [w["seed"] for w in b] == [w["seed"] + off for w in a]
    assert [w["direction"] for w in a] == [w["direction"] for w in b]  # the four directions still take turns


def test_eval_clip_seed_reaches_the_clip_restyles(monkeypatch, tmp_path):
    """``--clip-seed`` is another draw of the warp ratios: both modes' restyles of every clip get it; with
    several seeds, each clip's mean ratio is reported; ``--modes`` adds other cross-frame modes against the same
    none."""
    from types import SimpleNamespace

    import torch

    import videdit.api
    from videdit.io import read_video
    from videdit.mini import eval as ev

    seen = []

    class Fake:  # the source itself, noisier without cross-frame attention under seed 8: two ratios to average
        def restyle(self, path, prompt, **kw):
            seen.append((kw["consistency"], kw.get("seed")))
            frames = read_video(path, max_frames=kw["max_frames"]).frames
            if kw.get("seed") == 8 and kw["consistency"] == "none":
                noise = np.random.default_rng(0).integers(-20, 21, frames.shape)
                frames = np.clip(frames.astype(int) + noise, 0, 255).astype(np.uint8)
            return SimpleNamespace(frames=frames)

    monkeypatch.setattr(videdit.api, "load_pipeline", lambda *a, **k: Fake())
    threads = torch.get_num_threads()
    try:
        ev.main(["--scenes", "0", "--clips", "shapes", "--max-frames", "3", "--clip-seed", "7"])
        assert seen == [("sparse-causal", 7), ("none", 7)]
        seen.clear()
        ev.main(["--scenes", "0", "--clips", "shapes", "--max-frames", "3"])
        assert seen == [("sparse-causal", None), ("none", None)]  # the engine's default
        seen.clear()
        ev.main(["--scenes", "0", "--clips", "shapes", "--max-frames", "3", "--clip-seed", "7,8",
                 "--json", str(tmp_path / "r.json")])
        assert seen == [("sparse-causal", 7), ("none", 7), ("sparse-causal", 8), ("none", 8)]
        report = json.loads((tmp_path / "r.json").read_text())
        ratios = [r["consistency_ratio"] for r in report["clips"]]
        assert [r["seed"] for r in report["clips"]] == [7, 8] and ratios[0] != ratios[1]
        assert report["clip_means"][0]["consistency_ratio"] == pytest.approx(sum(ratios) / 2)
        f1s = [r["edge_f1"] for r in report["clips"]]
        assert report["clip_means"][0]["edge_f1"] == pytest.approx(sum(f1s) / 2)
        with pytest.raises(SystemExit):
            ev.main(["--scenes", "0", "--clips", "shapes", "--clip-seed", "1,1"])
        seen.clear()  # other cross-frame modes, each against the same none
        ev.main(["--scenes", "0", "--clips", "shapes", "--max-frames", "3", "--clip-seed", "8", "--modes", "full",
                 "--json", str(tmp_path / "m.json")])
        assert seen == [("sparse-causal", 8), ("full", 8), ("none", 8)]
        row = json.loads((tmp_path / "m.json").read_text())["clips"][0]
        assert row["ratio_full"] == pytest.approx(row["warp_full"] / row["warp_none"]) and row["ratio_full"] < 1
        with pytest.raises(SystemExit):
            ev.main(["--scenes", "0", "--clips", "shapes", "--modes", "none"])
    finally:
        torch.set_num_threads(threads)


def test_pool_cache_is_keyed_by_its_options(tmp_path):
    """A cached training pool is reused for the same options and rebuilt for others
    (a pool of 8-frame clips must not silently feed a 16-frame run)."""
    from videdit.mini.train import cached_pool

    calls = []

    def build(n):
        calls.append(n)
        return {"x": np.arange(n)}

    path = tmp_path / "pool.npz"
    assert len(cached_pool(path, lambda: build(3), {"frames": 8})["x"]) == 3
    assert len(cached_pool(path, lambda: build(5), {"frames": 8})["x"]) == 3  # reused
    assert len(cached_pool(path, lambda: build(5), {"frames": 16})["x"]) == 5  # rebuilt
    assert calls == [3, 5] and not list(tmp_path.glob("*.tmp*"))


def test_pool_rendering_in_worker_processes_matches_one_process():
    """Workers render the same pool, in order; also after this process has run OpenCV's and torch's
    thread pools (forked workers deadlocked in that state)."""
    import torch

    from videdit.mini.train import _render_scene, process_map

    import signal

    def hung(*_):
        raise TimeoutError("pool workers hung")

    items = [(1000 + i, 2) for i in range(6)]
    _render_scene(items[0]), torch.ones(256, 256) @ torch.ones(256, 256)
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with process_map(1) as one, process_map(2) as two:
            a, b = list(one(_render_scene, items)), list(two(_render_scene, items, chunksize=2))
    finally:
        signal.alarm(0), signal.signal(signal.SIGALRM, old)
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert x[2] == y[2] and all(np.array_equal(u, v) for u, v in zip(x[:2] + x[3:], y[:2] + y[3:]))
    assert not np.array_equal(a[0][0], a[1][0])  # different seeds, different scenes


@pytest.mark.slow
@pytest.mark.parametrize("joint", [False, True], ids=["stages", "joint-cn-v"])
def test_gpu_schedule_runs_end_to_end_on_a_toy_budget(tmp_path, joint):
    """``python -m videdit.mini.gpu`` (here on the CPU, toy sizes): pools and smoke run, every stage
    fine-tunes the shipped weights to the shared deadline, and the packed parts load. ``joint``: the
    ControlNet trains inside the text-unet stage, every model on the v objective."""
    import tarfile

    from diffusers import ControlNetModel, UNet3DConditionModel

    from videdit.mini import gpu, train

    pack = tmp_path / "pack"
    rc = gpu.main(["--device", "cpu", "--minutes", "1.3", "--reserve", "15", "--work", str(tmp_path / "w"),
                   "--pack", str(pack), "--pool", "6", "--t2v-pool", "3", "--ip-pool", "6", "--batch", "2",
                   "--t2v-batch", "1", "--workers", "2",
                   *(["--joint-cn", "0.5", "--objective", "v", "--top-attention", "--cross-frame", "0.5",
                      "--cross-frame-span", "4", "--teacher-distill", "--train-only", "self-attention",
                      "--camera-pixels", "--camera-speed", "0.5"] if joint
                     else ["--joint-cn", "0"])])
    assert rc == 0
    assert {p.name for p in pack.iterdir()} == {"mini.tar", "mini-t2v.tar", "logs.tar"} | (
        set() if joint else {"mini-ip.tar"})
    for name in ("mini.tar", "mini-t2v.tar"):
        assert pack.joinpath(name).stat().st_size < 16 * 2**20  # what one file back from a GPU machine may be
        tarfile.open(pack / name).extractall(tmp_path / name, filter="data")
        assert train.objective_of(tmp_path / name) == ("v" if joint else train.objective_of(train.OUT)), name
    assert isinstance(ControlNetModel.from_pretrained(tmp_path / "mini.tar" / "controlnet-edges"), ControlNetModel)
    assert isinstance(UNet3DConditionModel.from_pretrained(tmp_path / "mini-t2v.tar" / "unet"), UNet3DConditionModel)
    stages = ("text-unet", "t2v") if joint else ("text-unet", "t2v", "controlnet-edges")
    logs = {n: (tmp_path / "w" / f"{n}.log").read_text() for n in stages}
    for stage, text in logs.items():
        assert "initialised from" in text and "done at step" in text, stage
    assert "text motion accuracy" in logs["t2v"]  # the auxiliary motion-word loss is on by default
    if joint:  # the packed UNet has attention at its first level, and the loader builds it
        assert train.has_top_attention(tmp_path / "mini.tar")
        assert "3-frame camera moves (anchor up to 4 frames back)" in logs["text-unet"]
        assert "targets from the frozen initial model" in logs["text-unet"]
        assert "made in pixels" in logs["text-unet"] and "training 0." in logs["text-unet"]
        assert "camera speed 0.5" in logs["text-unet"]


@pytest.mark.slow
def test_gpu_schedule_t2v_only_runs_both_position_variants(tmp_path):
    """``--t2v-only --t2v-positions both``: no image stage, two t2v runs on one pool (the second in its
    own folder, with frame positions), each packed and loadable; only the second's log has positions."""
    import tarfile

    from diffusers import UNet3DConditionModel

    from videdit.mini import gpu

    pack, work = tmp_path / "pack", tmp_path / "w"
    rc = gpu.main(["--device", "cpu", "--minutes", "0.9", "--reserve", "15", "--work", str(work), "--pack", str(pack),
                   "--t2v-pool", "3", "--t2v-batch", "1", "--workers", "2", "--t2v-only", "--t2v-positions", "both"])
    assert rc == 0
    assert {p.name for p in pack.iterdir()} == {"mini-t2v.tar", "mini-t2v-pos.tar", "logs.tar"}
    for name in ("mini-t2v.tar", "mini-t2v-pos.tar"):
        tarfile.open(pack / name).extractall(tmp_path / name, filter="data")
        assert isinstance(UNet3DConditionModel.from_pretrained(tmp_path / name / "unet"), UNet3DConditionModel)
    plain, pos = (work / "t2v.log").read_text(), (work / "t2v-pos" / "t2v.log").read_text()
    assert "done at step" in plain and "done at step" in pos
    assert "frame positions" in pos and "frame positions" not in plain
    assert not (work / "text-unet.log").exists()
    assert (work / "t2v-pos" / "t2v-pool.npz").resolve() == (work / "t2v-pool.npz").resolve()


def test_gpu_schedule_t2v_variants_name_their_flags(tmp_path):
    """The t2v runs of one GPU schedule: one by default; ``both`` adds a second run in its own folder
    with the compared flag (frame positions, or training the temporal layers and text cross-attention);
    a single ``on`` / ``temporal-text`` sets the flag on the one run; two comparisons are refused."""
    from videdit.mini import gpu

    w = tmp_path
    assert gpu.t2v_variants(w) == [("t2v", w, [])]
    assert gpu.t2v_variants(w, "on", "temporal-text") == [("t2v", w, ["--t2v-positions", "--t2v-train",
                                                                       "temporal-text"])]
    assert gpu.t2v_variants(w, train="both") == [("t2v", w, []),
                                                 ("t2v-tt", w / "t2v-tt", ["--t2v-train", "temporal-text"])]
    assert gpu.t2v_variants(w, "both", "temporal-text")[1] == (
        "t2v-pos", w / "t2v-pos", ["--t2v-train", "temporal-text", "--t2v-positions"])
    with pytest.raises(SystemExit, match="one comparison"):
        gpu.main(["--work", str(w / "x"), "--t2v-positions", "both", "--t2v-train", "both"])
    assert not (w / "x").exists()  # refused before anything started


def test_camera_frames_move_and_zoom_the_still():
    """Frame 0 is the still; integer shifts move the content by k * shift (checked against a slice away
    from the mirrored border) for latents and 8x finer edge maps alike; a zoom scales a ramp's slope."""
    import torch

    from videdit.mini.train_unet import camera_frames

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    e = torch.randint(0, 255, (2, 128, 128), generator=g).to(torch.uint8)
    shifts, ones = torch.tensor([[1.0, -2.0], [0.0, 2.0]]), torch.ones(2)
    out, oute = camera_frames(x, shifts, ones, 3), camera_frames(e, 8 * shifts, ones, 3)
    assert out.shape == (6, 3, 16, 16) and oute.shape == (6, 128, 128) and oute.dtype == torch.uint8
    for i in range(2):
        assert torch.allclose(out[3 * i], x[i], atol=1e-5) and torch.equal(oute[3 * i], e[i])
        for k in (1, 2):
            dy, dx = (k * shifts[i]).long().tolist()
            # content at (y, x) of the still is at (y + dy, x + dx) in frame k
            assert torch.allclose(out[3 * i + k][:, 4 + dy:12 + dy, 4 + dx:12 + dx], x[i][:, 4:12, 4:12], atol=1e-5)
            assert torch.equal(oute[3 * i + k][32 + 8 * dy:96 + 8 * dy, 32 + 8 * dx:96 + 8 * dx], e[i][32:96, 32:96])
    ramp = torch.arange(32.0).expand(32, 32)[None, None]  # value = column
    zoomed = camera_frames(ramp, torch.zeros(1, 2), torch.tensor([1.25]), 2)[1, 0]
    slope = (zoomed[16, 20] - zoomed[16, 12]) / 8
    assert abs(slope - 1 / 1.25) < 0.02, slope
    # frames taken at other times (--cross-frame-span): frames 0, 3, 4 of the move, per clip
    times = torch.tensor([[0.0, 3.0, 4.0], [0.0, 1.0, 2.0]])
    zooms = torch.tensor([1.05, 0.9])
    later, long = camera_frames(x, shifts, zooms, 3, times), camera_frames(x, shifts, zooms, 5)
    assert torch.allclose(later[:3], long[[0, 3, 4]], atol=1e-5)
    assert torch.allclose(later[3:], long[5:8], atol=1e-5)
    from videdit.mini import train

    with pytest.raises(SystemExit, match="--cross-frame-span"):
        train.main(["--stage", "text-unet", "--cross-frame-span", "1"])
    with pytest.raises(SystemExit, match="--camera-speed"):
        train.main(["--stage", "text-unet", "--camera-speed", "0"])


def test_camera_speed_scales_the_drawn_moves():
    """``--camera-speed s``: the same draws as speed 1 with the motion and the log-zoom times s (the
    clips that only pan stay unzoomed), inside the bounds the flag names; ``span`` picks the frame times."""
    import math

    import torch

    from videdit.mini.train_unet import camera_draws

    def draw(speed, span=2):
        return camera_draws(4000, torch.Generator().manual_seed(3), speed, span)

    base, slow = draw(1.0), draw(0.125)
    assert torch.allclose(slow[0], base[0] * 0.125) and torch.allclose(slow[1].log(), base[1].log() * 0.125, atol=1e-6)
    assert slow[2] is None and base[2] is None
    for (shifts, zooms, _), s in ((base, 1.0), (slow, 0.125)):
        assert shifts.abs().max() <= 2 * s and shifts.abs().max() > 1.9 * s
        assert zooms.log().abs().max() <= s * math.log(1.1) + 1e-6
        assert 0.2 < (zooms == 1).float().mean() < 0.3  # a quarter pan only
    times = draw(0.5, span=8)[2]
    assert torch.equal(times[:, 0], torch.zeros(4000)) and torch.equal(times[:, 2] - times[:, 1], torch.ones(4000))
    assert times[:, 2].min() == 2 and times[:, 2].max() == 8


def test_top_attention_starts_as_the_exported_unet(tmp_path):
    """``--top-attention`` grows an exported UNet (without first-level attention) by transformer
    blocks: every exported weight loads, the output is unchanged until training moves the new
    blocks (a random block would change it), and weights that do not fit are refused."""
    import torch
    from diffusers import UNet2DConditionModel

    from videdit.mini import train

    torch.manual_seed(0)
    base = UNet2DConditionModel(**train.unet_config()).eval()
    base.save_pretrained(tmp_path / "unet")
    assert not train.has_top_attention(tmp_path)
    grown = UNet2DConditionModel(**train.unet_config(top_attention=True)).eval()
    fresh = [k for k in grown.state_dict() if k not in base.state_dict()]
    assert fresh and all(k.startswith(("down_blocks.0.attentions.", "up_blocks.2.attentions.")) for k in fresh)
    logs = []
    train.load_unet_weights(logs.append, tmp_path / "unet", grown)
    x, t = torch.randn(2, 8, 16, 16), torch.tensor([500, 900])
    emb = torch.randn(2, 77, base.config.cross_attention_dim)
    with torch.no_grad():
        ref, out = base(x, t, encoder_hidden_states=emb).sample, grown(x, t, encoder_hidden_states=emb).sample
        assert torch.allclose(out, ref, atol=1e-5)
        grown.down_blocks[0].attentions[0].proj_out.weight.normal_()
        assert not torch.allclose(grown(x, t, encoder_hidden_states=emb).sample, ref, atol=1e-3)
    assert "identity at start" in logs[0]
    grown.save_pretrained(tmp_path / "g" / "unet")
    assert train.has_top_attention(tmp_path / "g")
    with pytest.raises(SystemExit, match="do not fit"):  # the grown weights into the smaller UNet
        train.load_unet_weights(logs.append, tmp_path / "g" / "unet", base)


@pytest.mark.slow
def test_joint_controlnet_and_v_objective_fine_tune(tmp_path):
    """``--stage text-unet --joint-cn 0.5 --objective v`` fine-tunes the shipped UNet, text encoder and
    edge ControlNet in the same steps, resumes all three, and exports a v / zero-terminal-SNR
    scheduler that the ordinary loader samples with; a ControlNet stage run after it in the same work
    directory inherits the objective."""
    import json

    import torch

    from videdit.api import load_pipeline
    from videdit.io import Video
    from videdit.mini import data, train

    work, out = tmp_path / "w", tmp_path / "out"
    shutil.copytree(train.OUT, out, ignore=shutil.ignore_patterns("ip-adapter"))
    shutil.copytree(train.OUT / "vae", work / "vae")
    tiny = ["--work", str(work), "--out", str(out), "--pool", "2", "--palettes", "2", "--batch", "2",
            "--save-every", "1", "--minutes", "5", "--init-from", str(train.OUT)]
    threads = torch.get_num_threads()
    try:
        train.main(["--stage", "text-unet", *tiny, "--objective", "v", "--joint-cn", "0.5", "--unet-steps", "2",
                    "--no-export"])
        ck = train.load_ckpt(work, "text-unet")
        assert ck["step"] == 2 and {"x", "ema_x"} <= set(ck)
        train.main(["--stage", "text-unet", *tiny, "--objective", "v", "--joint-cn", "0.5", "--unet-steps", "3"])
        train.main(["--stage", "controlnet-edges", *tiny, "--cn-steps", "1", "--no-export"])
    finally:
        torch.set_num_threads(threads)
    log = (work / "text-unet.log").read_text()
    assert "resumed at step 2" in log and "objective v" in log and "controlnet trained jointly" in log
    assert "objective v" in (work / "controlnet-edges.log").read_text()
    cfg = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["prediction_type"] == "v_prediction" and cfg["rescale_betas_zero_snr"]
    assert train.objective_of(out) == "v" and train.objective_of(tmp_path) is None  # no scheduler there
    from safetensors.torch import load_file

    shipped = load_file(train.OUT / "controlnet-edges" / "diffusion_pytorch_model.safetensors")
    tuned = load_file(out / "controlnet-edges" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(shipped[k], tuned[k]) for k in shipped)  # the ControlNet did train
    recipe = tmp_path / "r.toml"
    recipe.write_text((train.ROOT / "pipelines" / "mini.toml").read_text().replace("./videdit-mini", str(out)))
    pipe = load_pipeline(str(recipe), device="cpu")
    assert pipe.components.scheduler.config.prediction_type == "v_prediction"
    img = data.sample(5, 128, 1)[0][0]
    frames = pipe.restyle(Video(img[None], 24.0), "red shapes on a black background", steps=2, strength=1.0).frames
    assert frames.shape == (1, 128, 128, 3) and frames.std() > 1


@pytest.mark.slow
def test_training_stages_run_resume_and_export(tmp_path):
    """``python -m videdit.mini.train`` on a toy budget: every stage trains, checkpoints,
    resumes where it stopped, and the export loads through the ordinary loader."""
    import torch
    from diffusers import ControlNetModel

    from videdit.api import load_pipeline
    from videdit.mini import train

    work, out = tmp_path / "work", tmp_path / "out"
    tiny = ["--work", str(work), "--out", str(out), "--vae-steps", "2", "--vae-batch", "4", "--unet-steps", "2",
            "--cn-steps", "2", "--depth-steps", "1", "--pool", "2", "--palettes", "2", "--batch", "2",
            "--save-every", "1", "--minutes", "5", "--t2v-pool", "2", "--t2v-steps", "2", "--t2v-batch", "2",
            "--t2v-frames", "3", "--ip-pool", "3", "--ip-steps", "2"]
    threads = torch.get_num_threads()
    try:
        train.main(["--stage", "all", *tiny])
        first = train.load_ckpt(work, "text-unet")
        assert first["step"] == 2 and np.isfinite(first["loss"])
        train.main(["--stage", "text-unet", *tiny, "--unet-steps", "3", "--no-export"])  # the last value wins
    finally:
        torch.set_num_threads(threads)
    assert "resumed at step 2" in (work / "text-unet.log").read_text()
    assert train.load_ckpt(work, "text-unet")["step"] == 3
    # from scratch the objective is v, and the resumed stage kept it (it reads the work folder's)
    assert train.objective_of(out) == "v" and train.objective_of(work) == "v"
    assert "objective eps" not in (work / "text-unet.log").read_text()
    # a work folder trained with eps (earlier sessions' checkpoints) keeps eps when resumed
    import argparse

    train.scheduler("eps").save_pretrained(tmp_path / "eps-work" / "scheduler")
    for stage in ("text-unet", "controlnet-edges", "all"):
        ns = argparse.Namespace(stage=stage, init_from=None, work=tmp_path / "eps-work", base=out)
        assert train.default_objective(ns) == "eps", stage
    assert train.default_objective(argparse.Namespace(stage="text-unet", init_from=None,
                                                      work=tmp_path / "fresh", base=out)) == "v"
    for part in ("vae", "unet", "text_encoder", "tokenizer", "controlnet-edges", "controlnet-depth", "scheduler"):
        assert (out / part).is_dir(), part
    assert not list(out.rglob("*.bin")) and list(out.rglob("*.safetensors"))
    assert isinstance(ControlNetModel.from_pretrained(out / "controlnet-edges"), ControlNetModel)
    pipe = load_pipeline(str(out), device="cpu")  # a plain diffusers directory
    assert pipe.components.unet.config.in_channels == train.LATENT_CH
    # the t2v stage: inflated from the exported image model, exported beside it, VAE shared by a link
    t2v = tmp_path / "out-t2v"
    assert train.load_ckpt(work, "t2v")["step"] == 2
    assert (t2v / "vae").is_symlink() and (t2v / "vae").resolve() == (out / "vae").resolve()
    gen = load_pipeline(str(t2v), kind="text2video", device="cpu")
    assert gen.components.is_3d
    clip = gen.generate("a red circle moving left", frames=3, steps=1, size=(64, 64)).frames
    assert clip.shape == (3, 64, 64, 3)
    # the ip-adapter stage: h94's layout inside the image model's directory
    from videdit.mini.train_ip import SUBFOLDER, WEIGHT_NAME

    assert train.load_ckpt(work, "ip-adapter")["step"] == 2
    assert (out / SUBFOLDER / WEIGHT_NAME).is_file() and (out / SUBFOLDER / "image_encoder").is_dir()
    # fine-tuning the exported adapter (--init-from), with shuffled-patch references
    try:
        train.main(["--stage", "ip-adapter", *tiny, "--work", str(tmp_path / "w2"), "--init-from", str(out),
                    "--ip-self-share", "0.5", "--no-ip-distill", "--ip-steps", "1", "--no-export"])
    finally:
        torch.set_num_threads(threads)
    assert "initialised from" in (tmp_path / "w2" / "ip-adapter.log").read_text()
    # distillation from the caption-conditioned UNet is the default; --no-ip-distill the plain loss
    assert "distillation" in (work / "ip-adapter.log").read_text()
    assert "distillation" not in (tmp_path / "w2" / "ip-adapter.log").read_text()
    assert train.load_ckpt(tmp_path / "w2", "ip-adapter")["step"] == 1


def test_x0_weighting_is_the_x0_error_weighted_by_truncated_snr():
    """``diffusion_loss(..., "x0")`` is what its docstring derives: the x0 reconstruction error
    weighted by max(SNR, 1) (within the cap), computed here the long way."""
    import torch

    from videdit.mini.loop import diffusion_loss
    from videdit.mini.train import scheduler

    sched = scheduler()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 8, 4, 4, generator=g), torch.randn(6, 8, 4, 4, generator=g)
    eps_hat = noise + 0.1 * torch.randn(6, 8, 4, 4, generator=g)
    t = torch.tensor([100, 300, 500, 600, 700, 800])  # 1/SNR stays under the cap of 50 here (26 at 800)
    ac = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
    x0_hat = (xt - (1 - ac).sqrt() * eps_hat) / ac.sqrt()
    snr = (ac / (1 - ac)).flatten()
    want = (torch.clamp(snr, min=1.0) * ((x0_hat - x0) ** 2).flatten(1).mean(1)).mean()

    def loss(i, w="x0"):
        return diffusion_loss(sched, t[i], eps_hat[i], x0[i], noise[i], w)

    assert torch.allclose(loss(slice(None)), want, rtol=1e-4)
    # min-SNR weighs the same errors less at high noise: the x0 weighting is not a rescaling of it
    ratio = loss(slice(-1, None)) / loss(slice(0, 1))
    ratio_min = loss(slice(-1, None), "min-snr") / loss(slice(0, 1), "min-snr")
    assert ratio > 5 * ratio_min


def test_v_objective_zero_terminal_snr_and_its_loss():
    """``scheduler("v")``: SD's betas rescaled to zero terminal SNR (no signal left at t = 999),
    trailing timesteps that start there; ``diffusion_loss`` then targets the velocity and its
    weightings are the x0 error weighted by min(SNR + 1, 5) / max(SNR, 1), finite at SNR = 0."""
    import torch

    from videdit.mini.loop import diffusion_loss
    from videdit.mini.train import scheduler

    eps_s, v_s = scheduler("eps"), scheduler("v")
    assert float(eps_s.alphas_cumprod[-1]) > 1e-3  # SD's flaw: signal left at the last step
    assert float(v_s.alphas_cumprod[-1]) == 0.0 and v_s.config.prediction_type == "v_prediction"
    v_s.set_timesteps(12)
    assert int(v_s.timesteps[0]) == 999
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(5, 8, 4, 4, generator=g), torch.randn(5, 8, 4, 4, generator=g)
    t = torch.tensor([999, 900, 500, 200, 20])
    ac = v_s.alphas_cumprod[t].view(-1, 1, 1, 1)
    v = ac.sqrt() * noise - (1 - ac).sqrt() * x0
    v_hat = v + 0.1 * torch.randn(5, 8, 4, 4, generator=g)
    xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
    x0_hat = ac.sqrt() * xt - (1 - ac).sqrt() * v_hat  # what DDIM recovers from a v prediction
    snr = (ac / (1 - ac)).flatten()
    err = ((x0_hat - x0) ** 2).flatten(1).mean(1)
    for weighting, w in (("x0", torch.clamp(snr, min=1.0)), ("min-snr", torch.clamp(snr + 1, max=5.0))):
        got = diffusion_loss(v_s, t, v_hat, x0, noise, weighting)
        assert torch.isfinite(got) and torch.allclose(got, (w * err).mean(), rtol=1e-4), weighting
    # the wrong target would be far off: the loss really is on v, not on the noise
    assert diffusion_loss(v_s, t, noise, x0, noise) > 10 * diffusion_loss(v_s, t, v_hat, x0, noise)


def test_soup_averages_two_exports_parameter_by_parameter(tmp_path):
    """``--stage soup``: every parameter becomes (1 - w) a + w b; different architectures are refused."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    from videdit.mini import train

    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        UNet2DConditionModel(**train.unet_config()).save_pretrained(tmp_path / name / "unet")
    fn = "diffusion_pytorch_model.safetensors"
    a, b = load_file(tmp_path / "a" / "unet" / fn), load_file(tmp_path / "b" / "unet" / fn)
    logs = []
    train.soup(logs.append, tmp_path / "a", tmp_path / "b", 0.25, parts=("unet",))
    mixed = load_file(tmp_path / "a" / "unet" / fn)
    assert mixed.keys() == a.keys() and "souped unet" in logs[0]
    for k in a:
        assert torch.allclose(mixed[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-6), k
    assert not torch.allclose(mixed["conv_in.weight"], a["conv_in.weight"])
    UNet2DConditionModel(**train.unet_config(top_attention=True)).save_pretrained(tmp_path / "c" / "unet")
    with pytest.raises(SystemExit, match="different parameters"):
        train.soup(logs.append, tmp_path / "a", tmp_path / "c", 0.5, parts=("unet",))
    with pytest.raises(SystemExit, match="soup-with"):
        train.main(["--stage", "soup", "--out", str(tmp_path / "a")])
    # through the CLI, an export without a ControlNet (a t2v model's) soups the parts it has
    train.main(["--stage", "soup", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "a"),
                "--soup-with", str(tmp_path / "b"), "--soup-weight", "1"])
    assert torch.equal(load_file(tmp_path / "a" / "unet" / fn)["conv_in.weight"], b["conv_in.weight"])


def test_one_frame_cross_frame_attention_is_plain_self_attention():
    """The text-unet stage installs sparse-causal processors once and runs its single-image steps
    through them with one frame per clip: that must be the UNet's ordinary attention."""
    import torch
    from diffusers import UNet2DConditionModel

    from videdit.core.attention import FrameContext, cross_frame_attention
    from videdit.mini import train

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**train.unet_config(top_attention=True)).eval()
    x, t, emb = torch.randn(5, 8, 16, 16), torch.full((5,), 300), torch.randn(5, 7, 64)
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=emb).sample
        with cross_frame_attention([unet], "sparse-causal", FrameContext(1)) as ctx:
            one = unet(x, t, encoder_hidden_states=emb).sample
            ctx.frames = 5  # the same batch as one 5-frame clip: now the frames do mix
            clip = unet(x, t, encoder_hidden_states=emb).sample
    assert torch.allclose(one, ref, atol=1e-5)
    assert not torch.allclose(clip, ref, atol=1e-3)


def test_predicted_x0_inverts_the_forward_process():
    """From x_t and the exact target (v or eps) of a known x0, ``predicted_x0`` gives x0 back."""
    import torch

    from videdit.mini.loop import prediction_target, predicted_x0
    from videdit.mini.train import scheduler

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 8, 16, 16, generator=g), torch.randn(4, 8, 16, 16, generator=g)
    t = torch.tensor([0, 300, 700, 990])
    for objective in ("v", "eps"):
        sched = scheduler(objective)
        xt = sched.add_noise(x0, noise, t)
        back = predicted_x0(sched, xt, t, prediction_target(sched, x0, noise, t))
        assert torch.allclose(back, x0, atol=1e-3 if objective == "v" else 2e-2), objective


def test_t2v_temporal_text_fine_tune_keeps_the_spatial_layers(tmp_path):
    """``--t2v-train temporal-text`` changes the UNet3D's temporal layers and text cross-attention (and
    the text encoder) and leaves every other spatial weight as it was."""
    import torch
    from diffusers import UNet3DConditionModel

    from videdit.mini import train, train_t2v
    from videdit.mini.train_t2v import OUT_T2V

    work = tmp_path / "w"
    threads = torch.get_num_threads()
    try:
        train.main(["--stage", "t2v", "--work", str(work), "--base", str(train.OUT), "--init-from", str(OUT_T2V),
                    "--t2v-pool", "2", "--t2v-frames", "4", "--t2v-batch", "1", "--t2v-steps", "2", "--t2v-lr", "1e-3",
                    "--minutes", "5", "--t2v-train", "temporal-text", "--no-export"])
    finally:
        torch.set_num_threads(threads)
    assert "temporal layers and text cross-attention" in (work / "t2v.log").read_text()
    before = UNet3DConditionModel.from_pretrained(OUT_T2V / "unet").float().state_dict()
    after = UNet3DConditionModel.from_pretrained(work / "t2v-unet").state_dict()  # the EMA
    changed = {k for k in before if not torch.allclose(before[k], after[k].float(), atol=1e-6)}
    assert any("temp_convs" in k for k in changed) and any(".attn2." in k and "temp_" not in k for k in changed)
    def trained(key):  # a parameter of a kept module, or of one inside it (attn2.to_out.0.weight)
        parts = key.split(".")
        return any(train_t2v.temporal_or_text_attention(".".join(parts[:i])) for i in range(1, len(parts)))

    assert all(trained(k) for k in changed), sorted(k for k in changed if not trained(k))[:5]
    assert any("resnets" in k for k in before) and not any("resnets" in k for k in changed)


def test_self_attention_only_fine_tune_with_consistency_loss(tmp_path):
    """``--train-only self-attention`` changes the attn1 weights of UNet and ControlNet and nothing else
    (text encoder included), here on camera-move steps with the consistency loss on."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    from videdit.mini import train

    work = tmp_path / "w"
    shutil.copytree(train.OUT / "vae", work / "vae")
    threads = torch.get_num_threads()
    try:
        train.main(["--stage", "text-unet", "--work", str(work), "--pool", "2", "--palettes", "2", "--batch", "3",
                    "--minutes", "5", "--init-from", str(train.OUT), "--unet-steps", "2", "--unet-lr", "1e-3",
                    "--joint-cn", "1", "--cross-frame", "1", "--consistency-loss", "1",
                    "--train-only", "self-attention", "--no-export"])
    finally:
        torch.set_num_threads(threads)
    assert "training 0.47 M parameters" in (work / "text-unet.log").read_text()
    with pytest.raises(SystemExit, match="--cross-frame"):  # the loss has no camera-move steps to act on
        train.main(["--stage", "text-unet", "--work", str(work), "--consistency-loss", "1"])
    for name, cls in (("unet", UNet2DConditionModel), ("controlnet-edges", ControlNetModel)):
        before = cls.from_pretrained(train.OUT / name).float().state_dict()
        after = cls.from_pretrained(work / name).state_dict()  # the EMA, which follows the trained weights
        changed = {k for k in before if not torch.allclose(before[k], after[k].float(), atol=1e-6)}
        assert changed and all(".attn1." in k for k in changed), (name, sorted(changed)[:5])
    from transformers import CLIPTextModel

    before = CLIPTextModel.from_pretrained(train.OUT / "text_encoder").float().state_dict()
    after = CLIPTextModel.from_pretrained(work / "text_encoder").state_dict()
    assert all(torch.allclose(before[k], after[k].float(), atol=1e-6) for k in before)  # frozen


def test_teacher_targets_paint_the_anchor_moved_by_the_camera():
    """``--teacher-distill [all|images]``: a single image's target is the frozen model's own prediction; in a
    camera move, the clean latent each frame's target implies is the teacher's anchor prediction
    moved by that camera, and the anchor's target is the teacher's own prediction."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from videdit.mini import train, train_unet
    from videdit.mini.loop import predicted_x0

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**train.unet_config(top_attention=True)).eval()
    te = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=8)).eval()
    teacher = (unet, te, None)
    sched = train.scheduler("v")
    n, frames = 2, 3
    x0 = torch.randn(n, 8, 16, 16)
    shifts, zooms = torch.tensor([[1.0, -2.0], [0.5, 1.5]]), torch.tensor([1.1, 0.95])
    clip = train_unet.camera_frames(x0, shifts, zooms, frames)
    noise = torch.randn(n, 8, 16, 16).repeat_interleave(frames, 0)  # one noise per clip, as trained
    t = torch.tensor([200, 700]).repeat_interleave(frames, 0)
    ids = torch.randint(0, 64, (n, 8)).repeat_interleave(frames, 0)
    xt = sched.add_noise(clip, noise, t)
    on = torch.ones(n * frames, 1, 1, 1)
    target = train_unet.teacher_target(sched, teacher, xt, t, ids, None, on, frames, shifts, zooms)
    with torch.no_grad():
        own = unet(xt[::frames], t[::frames], encoder_hidden_states=te(ids[::frames])[0]).sample
    assert torch.allclose(target[::frames], own, atol=1e-5)  # the anchor: the teacher's prediction
    implied = predicted_x0(sched, xt, t, target)
    moved = train_unet.camera_frames(predicted_x0(sched, xt[::frames], t[::frames], own), shifts, zooms, frames)
    assert torch.allclose(implied, moved, atol=1e-4)
    assert not torch.allclose(implied[1], implied[0], atol=1e-2)  # later frames do move
    single = train_unet.teacher_target(sched, teacher, xt[:2], t[:2], ids[:2], None, on[:2], 1)
    with torch.no_grad():
        assert torch.allclose(single, unet(xt[:2], t[:2], encoder_hidden_states=te(ids[:2])[0]).sample, atol=1e-5)
    # What a step trains on: 'all' distils everything; 'images' distils single images and leaves camera
    # moves the data's own target (the velocity of the moved clip and its noise); no teacher, the data.
    data = sched.get_velocity(clip, noise, t)
    camera = (shifts, zooms, None)
    args = (sched, clip, noise, xt, t, ids, None, on, frames, camera)
    assert torch.allclose(train_unet.step_target(*args, teacher, "all"), target)
    assert torch.allclose(train_unet.step_target(*args, teacher, "images"), data)
    assert torch.allclose(train_unet.step_target(*args), data)
    one = (sched, clip[:2], noise[:2], xt[:2], t[:2], ids[:2], None, on[:2], 1)
    assert torch.allclose(train_unet.step_target(*one, (), teacher, "images"), single)
    with pytest.raises(SystemExit, match="--init-from"):
        train.main(["--stage", "text-unet", "--teacher-distill", "--cross-frame", "0.5"])


def test_camera_moves_in_pixels_are_encoded_and_edge_detected_frame_by_frame():
    """``--camera-pixels``: a camera move made from a still in pixels: frame k is the still moved by
    k x 8 px per latent pixel of shift, encoded by the VAE on its own, with canny run on that frame (so
    its edges are the moved still's edges, not a moved edge map); frame 0 is the still's own encode;
    and the pool's stills are rendered again exactly as the pool rendered them."""
    import types

    import torch

    from videdit.mini import data, train, train_unet
    from videdit.structure import get_extractor

    vae = train.load_vae(train.OUT)
    still = np.zeros((1, 64, 64, 3), np.uint8)
    still[0, 20:40, 16:36] = (230, 40, 40)  # a red square: sharp edges
    shifts = torch.tensor([[0.0, 1.0]])  # one latent pixel right per frame = 8 px
    z, edges = train_unet.rendered_camera(vae, still, shifts, torch.ones(1), 3)
    assert z.shape == (3, vae.config.latent_channels, 8, 8) and edges.shape == (3, 64, 64)
    canny = get_extractor("canny")
    for k in range(3):
        frame = np.roll(still, 8 * k, axis=2)  # the square moved right; the border stays black
        assert np.array_equal(edges[k].numpy(), canny(frame)[0, ..., 0]), k
    with torch.no_grad():
        own = vae.encode(torch.from_numpy(still).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode()
    assert torch.allclose(z[0], own[0] * vae.config.scaling_factor, atol=1e-4)
    assert not torch.allclose(z[1], z[0], atol=1e-2)  # frames are encoded from the moved pixels
    # A sub-pixel move (2.4 px a frame): the edges are canny of the resampled frame, where aliasing
    # differs from frame to frame, not the still's edge map moved (what latent-space moves train on).
    sub = torch.tensor([[0.3, 0.3]])
    _, edges = train_unet.rendered_camera(vae, still, sub, torch.ones(1), 3)
    x = torch.from_numpy(still).permute(0, 3, 1, 2).float() / 127.5 - 1
    frames = ((train_unet.camera_frames(x, 8 * sub, torch.ones(1), 3) + 1) * 127.5).round().clamp(0, 255)
    want = canny(frames.to(torch.uint8).permute(0, 2, 3, 1).numpy())[..., 0]
    moved_map = train_unet.camera_frames(torch.from_numpy(canny(still)[..., 0]), 8 * sub, torch.ones(1), 3)
    assert np.array_equal(edges.numpy(), want)
    assert not np.array_equal(edges[2].numpy(), moved_map[2].numpy())
    args = types.SimpleNamespace(seed=3, palettes=2)
    stills = train_unet.pool_stills(args, torch.tensor([0, 3]), flip=True)
    whole = [data.sample(train.pool_seed(args, k), train.SIZE, 2) for k in (0, 1)]  # every palette rendered
    assert np.array_equal(stills, np.stack([whole[0][0][0], whole[1][1][0]])[:, :, ::-1])
    one = data.sample(train.pool_seed(args, 1), train.SIZE, 2, only=1)  # that palette alone: the same tuple
    assert one[3] == whole[1][1][3] and all(np.array_equal(a, b) for a, b in zip(one[:3], whole[1][1][:3]))
