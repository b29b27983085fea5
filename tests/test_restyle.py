"""The restyle engine against diffusers' own reference pipelines, on tiny models
built from the real SD 1.5 configs; plus consistency, chunking, API and CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from videdit.core.attention import spatial_self_attention_names
from videdit.core.conditioning import control_tensor, vae_decode
from videdit.core.restyle import denoise_clip, prepare
from videdit.core.sampling import frame_noise
from videdit.errors import InputError, MissingWeightsError, UsageError
from videdit.io import probe, read_video

from videdit.testing import reference_controlnet_pipeline, save_sd15_dir, write_recipe

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    d = save_sd15_dir(root)
    recipe = write_recipe(root / "tiny.toml", d["base"], [(d["controlnet"], "canny")],
                          {"steps": 3, "chunk": 4, "overlap": 1, "max_side": 64, "strength": 1.0})
    from videdit.api import load_pipeline

    return {"recipe": recipe, "pipe": load_pipeline(recipe, device="cpu"), **d}


@pytest.fixture(scope="module")
def frames():
    return read_video(os.path.join(SAMPLES, "shapes.mp4"), max_frames=6, size="64x64").frames


def _floats(images: torch.Tensor) -> np.ndarray:
    return (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _ours(pipe, frames, **kw):
    opts = pipe.options("a red circle", **kw)
    lat = denoise_clip(pipe.components, opts, frames)
    return _floats(vae_decode(pipe.components.vae, lat)), prepare(pipe.components, opts)


@pytest.mark.parametrize("height", [64, 40])  # and a frame that is not square
def test_consistency_none_equals_diffusers_controlnet_pipeline(tiny, frames, height):
    c = tiny["pipe"].components
    frames = frames[:, :height]
    ours, prep = _ours(tiny["pipe"], frames, consistency="none", strength=1.0, steps=3, guidance=7.5, seed=5)
    ref = reference_controlnet_pipeline(c)
    maps = prep.controls[0][0](frames)
    h, w = height // c.vae_factor, 64 // c.vae_factor
    for i in range(len(frames)):
        out = ref("a red circle", image=control_tensor(maps[i:i + 1]), height=height, width=64,
                  num_inference_steps=3, guidance_scale=7.5, output_type="np",
                  latents=frame_noise(5, [i], (4, h, w))).images[0]
        assert np.abs(out - ours[i]).max() <= 1e-4, i


def test_first_equals_diffusers_cross_frame_processor(tiny, frames):
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import \
        CrossFrameAttnProcessor2_0

    pipe = tiny["pipe"]
    c = pipe.components
    ours, _ = _ours(pipe, frames, consistency="first", seed=3)
    old_u, old_c = dict(c.unet.attn_processors), dict(c.controlnets[0][1].attn_processors)
    try:  # diffusers' Text2Video-Zero processor (batch_size=2: CFG), on UNet and ControlNet as its pipeline does
        c.unet.set_attn_processor(CrossFrameAttnProcessor2_0(batch_size=2))
        c.controlnets[0][1].set_attn_processor(CrossFrameAttnProcessor2_0(batch_size=2))
        theirs, _ = _ours(pipe, frames, consistency="none", seed=3)
    finally:
        c.unet.set_attn_processor(old_u)
        c.controlnets[0][1].set_attn_processor(old_c)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_modes_keep_frame_zero_and_change_the_rest(tiny, frames):
    pipe = tiny["pipe"]
    none, _ = _ours(pipe, frames, consistency="none", seed=1)
    for mode in ("first", "sparse-causal"):
        out, _ = _ours(pipe, frames, consistency=mode, seed=1)
        # Frame 0 attends only to itself in both modes: identical to plain attention.
        assert np.abs(out[0] - none[0]).max() <= 1e-5
        assert np.abs(out[1:] - none[1:]).max() > 1e-3
    full, _ = _ours(pipe, frames, consistency="full", seed=1)
    assert np.abs(full[0] - none[0]).max() > 1e-3  # frame 0 sees every frame
    win, _ = _ours(pipe, frames, consistency="window", window=1, seed=1)
    assert np.isfinite(win).all() and np.abs(win - full).max() > 1e-4


def _naive_sources(mode, i, frames, window=1):
    """Source frames of query frame ``i``, straight from the papers' definitions."""
    if mode == "first":
        return [0]
    if mode == "sparse-causal":  # Tune-A-Video: the first frame and the previous one
        return [0, max(i - 1, 0)]
    if mode == "full":
        return list(range(frames))
    return [0] + [j for j in range(i - window, i + window + 1) if 0 < j < frames]  # window


@pytest.mark.parametrize("mode", ["first", "sparse-causal", "full", "window"])
@pytest.mark.parametrize("frames_n", [1, 2, 5])
def test_cross_frame_processor_matches_a_naive_loop(mode, frames_n):
    """The batched processor (grouped, deduplicated key sets, CFG branches) equals plain
    per-frame softmax attention over the concatenated source frames' keys."""
    from diffusers.models.attention_processor import Attention

    from videdit.core.attention import CrossFrameAttnProcessor, FrameContext

    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=4, dim_head=8).eval()
    branches, tokens = 2, 6
    x = torch.randn(branches * frames_n, tokens, 32)
    attn.set_processor(CrossFrameAttnProcessor(mode, FrameContext(frames_n), window=1))
    with torch.no_grad():
        ours = attn(x)
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        ref = torch.empty_like(q)
        for b in range(branches):
            for i in range(frames_n):
                row = b * frames_n + i
                src = [b * frames_n + j for j in _naive_sources(mode, i, frames_n)]
                kk, vv = torch.cat([k[j] for j in src]), torch.cat([v[j] for j in src])
                qh, kh, vh = (t.view(t.shape[0], 4, 8).transpose(0, 1) for t in (q[row], kk, vv))
                w = torch.softmax(qh @ kh.transpose(1, 2) / 8 ** 0.5, -1)
                ref[row] = (w @ vh).transpose(0, 1).reshape(tokens, 32)
        ref = attn.to_out[0](ref)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_processors_only_on_spatial_self_attention(tiny):
    unet = tiny["pipe"].components.unet
    names = spatial_self_attention_names(unet)
    assert names and all(n.endswith("attn1.processor") for n in names)
    assert len(names) == sum(1 for n in unet.attn_processors if n.endswith("attn1.processor"))


def test_seed_gives_bit_identical_output_and_seeds_differ(tiny, frames):
    pipe = tiny["pipe"]
    a = pipe.restyle(frames_video(frames), "blue", seed=7, strength=0.8)
    b = pipe.restyle(frames_video(frames), "blue", seed=7, strength=0.8)
    c = pipe.restyle(frames_video(frames), "blue", seed=8, strength=0.8)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def frames_video(frames):
    from videdit.io import Video

    return Video(frames, 24.0)


def test_long_video_windows_cover_every_frame_once(tiny):
    from videdit.io import Video

    src = read_video(os.path.join(SAMPLES, "shapes.mp4"), max_frames=11, size="64x64")
    out = tiny["pipe"].restyle(Video(src.frames, src.fps), "red", chunk=4, overlap=1)
    assert out.frames.shape == src.frames.shape
    assert out.frames.std() > 5  # not a constant image


def test_shared_noise_makes_identical_frames_identical(tiny, frames):
    """Three copies of one frame: with one noise for all frames the outputs agree
    exactly; with a noise per frame (the default) they differ."""
    same = frames_video(np.repeat(frames[:1], 3, axis=0))
    shared = tiny["pipe"].restyle(same, "red", consistency="none", shared_noise=True).frames
    own = tiny["pipe"].restyle(same, "red", consistency="none").frames
    assert np.array_equal(shared[0], shared[1]) and np.array_equal(shared[0], shared[2])
    assert np.abs(own[0].astype(int) - own[1].astype(int)).mean() > 1


def test_short_video_and_single_frame(tiny, frames):
    one = tiny["pipe"].restyle(frames_video(frames[:1]), "red", chunk=8)
    assert one.frames.shape == (1, 64, 64, 3)


def test_bad_inputs_raise_one_line_errors(tiny, tmp_path):
    from videdit.api import load_pipeline

    pipe = tiny["pipe"]
    with pytest.raises(UsageError, match="choose one of"):
        load_pipeline("no-such-pipeline")
    with pytest.raises(UsageError, match="--strength"):
        pipe.restyle(os.path.join(SAMPLES, "shapes.mp4"), "x", strength=1.5)
    with pytest.raises(UsageError, match="--prompt or a --ref-image"):
        pipe.restyle(os.path.join(SAMPLES, "shapes.mp4"), "  ")
    with pytest.raises(InputError, match="nope.png: reference image not found"):  # before any work
        pipe.restyle(os.path.join(SAMPLES, "shapes.mp4"), "x", ref_image=str(tmp_path / "nope.png"))
    ref = tmp_path / "ref.png"
    ref.write_bytes(b"")  # exists: the recipe is checked next
    with pytest.raises(UsageError, match="no IP-Adapter"):
        pipe.restyle(os.path.join(SAMPLES, "shapes.mp4"), "x", ref_image=str(ref))
    with pytest.raises(UsageError, match="has ControlNets for: canny"):
        pipe.restyle(os.path.join(SAMPLES, "shapes.mp4"), "x", structure=("depth",))
    missing = write_recipe(tmp_path / "m.toml", str(tmp_path / "absent-model"))
    with pytest.raises(MissingWeightsError) as err:
        load_pipeline(missing)
    assert "\n" not in str(err.value) and "absent-model" in str(err.value)


def test_missing_hub_weights_offline_is_one_line(monkeypatch, tmp_path):
    from videdit.api import load_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(MissingWeightsError) as err:
        load_pipeline("sd15-depth")
    msg = str(err.value)
    assert "\n" not in msg and "runwayml/stable-diffusion-v1-5" in msg and "HF_HUB_OFFLINE" in msg


def test_missing_hub_weights_fail_fast_when_the_hub_cannot_be_reached(monkeypatch, tmp_path):
    # No HF_HUB_OFFLINE: without the connection probe huggingface_hub retried every file
    # five times with backoff, minutes before the same error.
    import time

    from videdit.api import load_pipeline
    from videdit.structure import get_extractor

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as err:
        load_pipeline("sd15-depth")
    with pytest.raises(MissingWeightsError) as err2:
        get_extractor("depth", model="nobody-here/no-such-depth-model")(np.zeros((1, 32, 32, 3), np.uint8))
    assert time.monotonic() - t < 30
    for e in (err, err2):
        msg = str(e.value)
        assert "\n" not in msg and "127.0.0.1 cannot be reached" in msg and "hf download" in msg, msg


def test_behind_a_proxy_the_proxy_is_what_must_answer(monkeypatch):
    import socket

    from videdit.structure.weights import hub_unavailable

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # not reachable directly
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert hub_unavailable() is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert "127.0.0.1 cannot be reached" in hub_unavailable()


def test_cli_restyle_writes_output_with_audio(tiny, tmp_path, capfd, monkeypatch):
    from videdit.cli import main

    monkeypatch.setenv("VIDEDIT_PROGRESS", "0")
    out = tmp_path / "r.mp4"
    rc = main(["restyle", os.path.join(SAMPLES, "shapes.mp4"), "--pipeline", tiny["recipe"], "--prompt", "red",
               "--max-frames", "6", "--shared-noise", "-o", str(out), "--preview", str(tmp_path / "side.mp4")])
    _, err = capfd.readouterr()
    assert rc == 0, err
    info = probe(out)
    assert info.frame_count == 6 and info.has_audio and (info.width, info.height) == (64, 64)
    assert probe(tmp_path / "side.mp4").width == 128
    from videdit.provenance import verify

    cred = verify(out).credentials  # every restyled file carries Content Credentials
    assert cred.status == "valid" and cred.claims["action"] == "c2pa.edited"
    assert cred.claims["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert cred.claims["recipe"] == "tiny" and cred.claims["prompt"] == "red"
    assert cred.claims["watermark"]["embedded"] is True
    assert cred.claims["ingredients"] == [{"title": "shapes.mp4", "relationship": "parentOf"}]


@pytest.mark.parametrize("args, code, text", [
    (["--pipeline", "nope"], 2, "unknown pipeline"),
    (["--pipeline", SAMPLES], 2, "samples: directory is not a diffusers pipeline (it has no model_index.json)"),
    (["--strength", "0"], 2, "--strength"),
    (["--prompt", ""], 2, "--prompt or a --ref-image"),
    (["--consistency", "sideways"], 2, "sideways"),
    (["--window", "3"], 2, "--window applies to --consistency window; this run uses sparse-causal"),
    (["--structure-scale", "1,2"], 2, "--structure-scale: give one value for canny"),
    (["--offload"], 2, "--offload needs a CUDA device"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], 2, "--device"),
])
def test_cli_restyle_errors_leave_nothing(tiny, tmp_path, capfd, args, code, text):
    from videdit.cli import main

    base = ["restyle", os.path.join(SAMPLES, "shapes.mp4"), "-o", str(tmp_path / "x.mp4"), "--prompt", "red",
            "--pipeline", tiny["recipe"]]
    rc = main(base + args)
    _, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code and len(lines) == 1 and text in lines[0], lines
    assert os.listdir(tmp_path) == []


def test_cli_missing_input_video(tiny, tmp_path, capfd):
    from videdit.cli import main

    rc = main(["restyle", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "x.mp4"), "--prompt", "red",
               "--pipeline", tiny["recipe"]])
    assert rc == InputError.exit_code and os.listdir(tmp_path) == []


def test_vae_tiling_option_runs(tiny, frames):
    from videdit.api import load_pipeline

    pipe = load_pipeline(tiny["recipe"], device="cpu", vae_tiling=True)
    assert pipe.components.vae.use_tiling
    out = pipe.restyle(frames_video(frames[:2]), "red")
    assert out.frames.shape == (2, 64, 64, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offload_on_cuda_matches_plain_cuda(tiny, frames):
    from videdit.api import load_pipeline

    plain = load_pipeline(tiny["recipe"], device="cuda").restyle(frames_video(frames[:2]), "red", seed=1)
    off = load_pipeline(tiny["recipe"], device="cuda", offload=True).restyle(frames_video(frames[:2]), "red", seed=1)
    assert np.abs(plain.frames.astype(int) - off.frames).max() <= 1


def test_unknown_words_warning_from_declared_vocabulary(tiny, frames, caplog):
    import json
    import logging

    path = os.path.join(tiny["base"], "tokenizer", "known_words.json")
    pipe = tiny["pipe"]
    assert pipe.unknown_words("a red castle") == []  # no declared vocabulary: open vocabulary
    with open(path, "w") as f:
        json.dump(["a", "red", "circle"], f)
    try:
        assert pipe.unknown_words("A red castle, red turret") == ["castle", "turret"]
        with caplog.at_level(logging.WARNING, logger="videdit"):
            pipe.restyle(frames_video(frames[:1]), "a red castle")
        assert any("'castle'" in r.getMessage() for r in caplog.records)
        caplog.clear()
        from videdit.errors import InputError

        with caplog.at_level(logging.WARNING, logger="videdit"), pytest.raises(InputError, match="no such file"):
            pipe.restyle(os.path.join(tiny["base"], "missing.mp4"), "a red castle")
        assert not any("'castle'" in r.getMessage() for r in caplog.records)  # the input's error alone
    finally:
        os.remove(path)


def test_a_prompt_past_the_text_encoders_length_warns_what_it_drops(tiny, caplog):
    import logging

    from videdit.core.conditioning import encode_prompt

    c = tiny["pipe"].components
    fits = "red " * (c.tokenizer.model_max_length - 2)  # BOS and EOS take the other two positions
    with caplog.at_level(logging.WARNING, logger="videdit"):
        encode_prompt(c.tokenizer, c.text_encoder, fits, guidance=1.0)
        assert not caplog.records
        long = encode_prompt(c.tokenizer, c.text_encoder, fits + "blue circle", guidance=1.0)
    assert len(caplog.records) == 1 and "'blue circle'" in caplog.records[0].getMessage()
    # Truncation is what diffusers does: the dropped words change nothing.
    assert torch.equal(long.cond, encode_prompt(c.tokenizer, c.text_encoder, fits, guidance=1.0).cond)


def test_the_readmes_python_api_names_exist_and_one_shot_restyle_runs(tiny, frames):
    import re

    import videdit

    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        readme = f.read()
    used = set(re.findall(r"\bvidedit\.([a-z_]+)\(", readme))
    assert {"restyle", "generate", "load_pipeline", "verify"} <= used
    assert [n for n in sorted(used) if not callable(getattr(videdit, n, None))] == []
    out = videdit.restyle(frames_video(frames[:2]), "red", pipeline=tiny["recipe"], device="cpu", seed=3)
    again = videdit.restyle(frames_video(frames[:2]), "red", pipeline=tiny["pipe"], seed=3)
    assert out.frames.shape == (2, 64, 64, 3) and np.array_equal(out.frames, again.frames)


def test_restyle_refuses_inputs_it_would_misread(tiny, frames):
    # A bare array has no frame rate, and reader options on decoded frames were silently ignored.
    pipe = tiny["pipe"]
    with pytest.raises(UsageError, match="videdit.Video"):
        pipe.restyle(frames[:2], "red")
    with pytest.raises(UsageError, match="max_frames: frame selection applies when reading a file"):
        pipe.restyle(frames_video(frames[:3]), "red", max_frames=1)
    assert len(pipe.restyle(frames_video(frames[:2]), "red", max_frames=None)) == 2


def test_a_misspelt_option_names_the_nearest_one(tiny, frames):
    with pytest.raises(UsageError, match=r"unknown option 'stregth' \(did you mean 'strength'\?\).*max_frames"):
        tiny["pipe"].restyle(frames_video(frames[:1]), "red", stregth=0.5)


def test_api_misuse_gets_videdit_errors_not_deep_tracebacks(tiny, frames):
    """What a plugin calling the Python API gets wrong is a UsageError naming the option, raised before any
    model work: an empty or NaN-rate Video, an array reference image (ill-typed, or for a recipe without an
    IP-Adapter), a dtype the loaded pipeline does not run in, an output for the streaming call, a bad kind."""
    import videdit
    from videdit.api import load_pipeline
    from videdit.io import Video

    pipe = tiny["pipe"]
    with pytest.raises(UsageError, match="holds no frames"):
        Video(frames[:0], 8.0)
    for fps in (float("nan"), float("inf"), "24"):
        with pytest.raises(UsageError, match="Video.fps must be a finite number > 0"):
            Video(frames, fps)
    clip = frames_video(frames[:2])
    with pytest.raises(UsageError, match="has no IP-Adapter"):
        pipe.restyle(clip, "red", ref_image=frames[0])
    with pytest.raises(UsageError, match=r"give a path or an \(H, W, 3\) uint8 RGB array, not \(64, 64, 3\) float64"):
        pipe.restyle(clip, "red", ref_image=frames[0] / 255.0)
    with pytest.raises(UsageError, match="dtype: 'bf16' is chosen when the pipeline is loaded"):
        pipe.restyle(clip, "red", dtype="bf16")
    with pytest.raises(UsageError, match="dtype: 'bf16' is chosen when the pipeline is loaded"):
        videdit.restyle(clip, "red", pipeline=pipe, dtype="bf16")
    with pytest.raises(UsageError, match="restyle_stream yields frames and writes nothing"):
        next(pipe.restyle_stream(clip, "red", output="x.mp4"))
    with pytest.raises(UsageError, match="kind: 'bogus' unknown"):
        load_pipeline(tiny["recipe"], kind="bogus")
    a = pipe.restyle(clip, "red", dtype="fp32", device="cpu", seed=2).frames  # what it runs: accepted
    assert np.array_equal(a, pipe.restyle(clip, "red", seed=2).frames)
