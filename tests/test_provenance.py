"""Provenance (issue 6): watermark robustness, C2PA credentials, verify, writer hook, safety checker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from videos import FF

import videdit
from videdit.errors import MissingWeightsError, UsageError, VideditError
from videdit.provenance import Provenance
from videdit.provenance.watermark import decode_payload, detect, detect_file, embed, encode_payload


def ff(*args):
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Every test gets its own config dir (so its own installation key) and no user key."""
    monkeypatch.setenv("VIDEDIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("VIDEDIT_C2PA_KEY", raising=False)
    monkeypatch.delenv("VIDEDIT_C2PA_CERT", raising=False)
    return tmp_path / "config"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A clean 256x256 2 s clip, and the same written with provenance (watermark + C2PA)."""
    root = tmp_path_factory.mktemp("prov")
    saved = os.environ.get("VIDEDIT_CONFIG_DIR")
    os.environ["VIDEDIT_CONFIG_DIR"] = str(root / "config")  # module scope: restored below
    try:
        # A realistic sample (not ffmpeg's testsrc: its 54 % saturated channel values clip the mark).
        src = str(root / "src.mp4")
        shutil.copy(os.path.join(os.path.dirname(__file__), "..", "samples", "shapes.mp4"), src)
        prov = Provenance(action="edited", recipe="test-recipe", prompt="a watercolor fox", source=src)
        marked = videdit.write_video(videdit.read_video(src), root / "marked.mp4", provenance=prov)
    finally:
        if saved is None:
            del os.environ["VIDEDIT_CONFIG_DIR"]
        else:
            os.environ["VIDEDIT_CONFIG_DIR"] = saved
    return {"root": root, "src": src, "marked": marked, "prov": prov}


def test_payload_crc_roundtrip():
    bits = encode_payload("0badc0de")
    assert bits.shape == (48,)
    soft = 2.0 * bits - 1
    assert decode_payload(soft) == "0badc0de"
    soft[7] = -0.1 * soft[7]  # one weak wrong bit: the Chase step repairs it
    assert decode_payload(soft) == "0badc0de"
    wrong = 2.0 * bits - 1
    wrong[[1, 9, 20, 33]] *= -1  # four confident errors: rejected, never a wrong id
    assert decode_payload(wrong) is None
    with pytest.raises(ValueError):
        encode_payload("xyz")


def test_embed_is_invisible_and_detected_in_memory():
    rng = np.random.default_rng(0)
    base = rng.integers(40, 215, (1, 24, 32, 3)).astype(np.float32)
    import cv2

    frames = np.stack([cv2.resize(base[0], (256, 192), interpolation=cv2.INTER_CUBIC)] * 24).astype(np.uint8)
    frames = np.stack([np.roll(f, 9 * i, axis=1) for i, f in enumerate(frames)])  # moving content
    marked = embed(frames, "12345678")
    psnr = 10 * np.log10(255 ** 2 / np.mean((marked.astype(float) - frames) ** 2))
    assert psnr >= 40.0
    hit = detect(marked)
    assert hit.detected and hit.payload_id == "12345678"
    assert abs(hit.scale - 1.0) < 0.02
    assert hit.score >= hit.threshold + 2  # a margin, not just over the line
    assert not detect(frames).detected


def test_motion_vote_reads_a_mark_dragged_along_with_the_content():
    """A strong re-encode carries a static mark along with moving content (P-frames copy
    it from the previous frame, moved); only a fraction g stays put. Simulated here
    exactly, on dense texture: the motion-compensated vote must find the mark far above
    the frame average (where the texture and the dragged copies are noise), and nothing
    on the unmarked clip."""
    import cv2

    rng = np.random.default_rng(1)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (192, 512)).astype(np.float32), (0, 0), 1.5)
    tex = (128 + (tex - tex.mean()) * 3).clip(20, 235)
    n, v, g = 24, 2, 0.15  # frames, pan in px per frame, static fraction of the mark
    clean = np.stack([np.roll(tex, -v * t, axis=1)[:, :256] for t in range(n)])
    mark = embed(np.full((1, 192, 256), 128, np.uint8), "12345678")[0].astype(np.float32) - 128
    wide = np.pad(mark, ((0, 0), (0, 256)), mode="wrap")
    dragged = np.stack([np.roll(wide, -v * t, axis=1)[:, :256] for t in range(n)])
    frames = (clean + (1 - g) * dragged + g * mark).round().clip(0, 255).astype(np.uint8)
    hit = detect(frames)
    assert hit.detected and set(hit.votes) == {"all", "first", "motion", "combined"}
    assert hit.score == max(hit.votes.values())
    # Measured 18.2 vs 9.5; a wrong adjoint (d + warp(d)) gives 14.0, no flow far less.
    assert hit.votes["motion"] >= hit.threshold + 6 and hit.votes["motion"] >= hit.votes["all"] + 6
    miss = detect(clean.round().astype(np.uint8))
    assert not miss.detected and max(miss.votes.values()) < miss.threshold - 2


@pytest.mark.slow
@pytest.mark.parametrize("attack", [
    ["-c:v", "libx264", "-crf", "28"],
    ["-vf", "scale=128:128", "-c:v", "libx264"],
    ["-vf", "crop=204:204", "-c:v", "libx264"],  # centre crop to 80 %: the tile grid shifts and rescales
    ["-c:v", "libx265", "-x265-params", "log-level=error"],  # H.265 at its default CRF 28
])
def test_watermark_survives_attack(clips, attack, tmp_path):
    out = str(tmp_path / "attacked.mp4")
    ff("-i", clips["marked"], *attack, "-pix_fmt", "yuv420p", "-an", out)
    r = detect_file(out)
    assert r.detected, r
    clean = str(tmp_path / "clean.mp4")
    ff("-i", clips["src"], *attack, "-pix_fmt", "yuv420p", "-an", clean)
    assert not detect_file(clean).detected


def test_signed_file_verifies_with_untrusted_cert_reported(clips, monkeypatch):
    monkeypatch.setenv("VIDEDIT_CONFIG_DIR", str(clips["root"] / "config"))  # the key that signed it
    rep = videdit.verify(clips["marked"])
    c = rep.credentials
    assert c.status == "valid" and not c.trusted and c.this_installation
    assert "untrusted certificate" in c.summary
    assert c.claims["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert c.claims["action"] == "c2pa.edited"
    assert c.claims["recipe"] == "test-recipe" and c.claims["prompt"] == "a watercolor fox"
    assert c.claims["software_agent"] == {"name": "videdit", "version": videdit.__version__}
    assert c.claims["ingredients"] == [{"title": "src.mp4", "relationship": "parentOf"}]
    assert rep.watermark.detected and rep.watermark.payload_id == clips["prov"].payload_id
    assert rep.ids_match is True


def test_byte_edit_reports_tampered(clips, tmp_path):
    data = bytearray(open(clips["marked"], "rb").read())
    at = data.find(b"mdat") + 400
    data[at: at + 32] = bytes(b ^ 0x5A for b in data[at: at + 32])
    bad = tmp_path / "edited.mp4"
    bad.write_bytes(bytes(data))
    rep = videdit.verify(bad)
    assert rep.credentials.status == "tampered"
    assert any("mismatch" in f for f in rep.credentials.failures)


def test_remux_strips_manifest_but_watermark_remains(clips, tmp_path):
    out = str(tmp_path / "remux.mp4")
    ff("-i", clips["marked"], "-c", "copy", out)
    rep = videdit.verify(out)
    assert rep.credentials.status == "absent"
    assert rep.watermark.detected
    assert "no Content Credentials" in rep.verdict


def test_credentials_are_read_by_container_not_by_file_name(clips, tmp_path):
    # WebM cannot carry a C2PA manifest: "unsupported", never "tampered", and the mark still speaks.
    webm = videdit.write_video(videdit.read_video(clips["src"], max_frames=24), tmp_path / "o.webm",
                               provenance=clips["prov"])
    rep = videdit.verify(webm)
    assert rep.credentials.status == "unsupported" and rep.watermark.detected
    assert "cannot carry Content Credentials" in rep.verdict and "altered" not in rep.verdict
    shutil.copy(webm, tmp_path / "webm-named.mp4")
    assert videdit.verify(tmp_path / "webm-named.mp4").credentials.status == "unsupported"
    # A signed MP4 under another name is still read as MP4.
    shutil.copy(clips["marked"], tmp_path / "renamed.bin")
    assert videdit.verify(tmp_path / "renamed.bin").credentials.status == "valid"


def test_prompt_withheld_and_no_watermark_recorded(tmp_path):
    frames = np.full((8, 96, 128, 3), 120, np.uint8)
    prov = Provenance(recipe="r", prompt="secret prompt", include_prompt=False, watermark=False)
    out = videdit.write_video(frames, tmp_path / "o.mp4", fps=8, provenance=prov)
    rep = videdit.verify(out)
    assert rep.credentials.claims["prompt"] is None and rep.credentials.claims["prompt_withheld"] is True
    assert "secret prompt" not in open(out, "rb").read().decode("latin-1")
    assert rep.credentials.claims["watermark"]["embedded"] is False
    assert rep.credentials.claims["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert not rep.watermark.detected


def test_a_signing_key_that_cannot_be_made_fails_before_any_frame(tmp_path, monkeypatch):
    from videdit.io import VideoWriter

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("VIDEDIT_CONFIG_DIR", str(tmp_path / "afile" / "config"))  # under a file: mkdir fails
    with pytest.raises(VideditError, match="signing key"):
        VideoWriter(tmp_path / "o.mp4", 8, provenance=Provenance())  # at open, not after hours of frames
    assert sorted(os.listdir(tmp_path)) == ["afile"]
    VideoWriter(tmp_path / "o.webm", 8, provenance=Provenance()).abort()  # no credentials in WebM: no key needed


def test_signing_failure_leaves_nothing(tmp_path, monkeypatch):
    key = tmp_path / "bad-key.pem"
    key.write_text("not a key")
    monkeypatch.setenv("VIDEDIT_C2PA_KEY", str(key))
    monkeypatch.setenv("VIDEDIT_C2PA_CERT", str(key))
    out = tmp_path / "out" / "o.mp4"
    with pytest.raises(VideditError) as err:
        videdit.write_video(np.zeros((4, 64, 64, 3), np.uint8), out, fps=4, provenance=Provenance())
    assert "\n" not in str(err.value)
    assert os.listdir(out.parent) == []
    # An existing target is left exactly as it was.
    out.write_bytes(b"old")
    with pytest.raises(VideditError):
        videdit.write_video(np.zeros((4, 64, 64, 3), np.uint8), out, fps=4, provenance=Provenance())
    assert out.read_bytes() == b"old" and os.listdir(out.parent) == ["o.mp4"]


def test_provenance_validation():
    with pytest.raises(UsageError):
        Provenance(action="edited")
    with pytest.raises(UsageError):
        Provenance(action="painted")
    with pytest.raises(UsageError):
        Provenance(payload_id="XYZ")


def test_cli_verify_json(clips, tmp_path, capsys):
    from videdit.cli import main

    assert main(["verify", clips["marked"], "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["credentials"]["status"] == "valid" and d["watermark"]["detected"] is True
    assert main(["verify", clips["src"]]) == 0  # a verdict of "nothing found" is still a report
    text = capsys.readouterr().out
    assert "absent" in text and "not detected" in text
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    assert main(["verify", str(junk)]) == 3
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 3


def test_cli_verify_reads_the_watermark_of_a_png_sequence(clips, tmp_path, capsys):
    """A PNG-sequence output carries the watermark only; verify takes its directory and finds it."""
    from videdit.cli import main

    frames = tmp_path / "frames"
    videdit.write_video(videdit.read_video(clips["src"]), str(frames) + os.sep, provenance=clips["prov"])
    capsys.readouterr()
    assert main(["verify", str(frames), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["credentials"]["status"] == "unsupported" and d["watermark"]["detected"] is True
    assert d["watermark"]["payload_id"] == clips["prov"].payload_id


def test_user_key_pair_is_used(tmp_path, monkeypatch, clips):
    from videdit.provenance import credentials

    folder = tmp_path / "user"
    folder.mkdir()
    credentials._make_installation_key(folder)
    monkeypatch.setenv("VIDEDIT_C2PA_KEY", str(folder / "key.pem"))
    monkeypatch.setenv("VIDEDIT_C2PA_CERT", str(folder / "cert.pem"))
    assert credentials.signing_material()[3] == "user"
    out = videdit.write_video(np.full((4, 64, 64, 3), 90, np.uint8), tmp_path / "u.mp4", fps=4, provenance=Provenance())
    rep = videdit.verify(out)
    assert rep.credentials.status == "valid" and not rep.credentials.this_installation
    assert not (tmp_path / "config" / "c2pa").exists()  # no installation key was made


def _tiny_checker(tmp_path):
    """A random StableDiffusionSafetyChecker from the real SD 1.5 config, shrunk."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    here = os.path.dirname(__file__)
    cfg = json.load(open(os.path.join(here, "hub_configs", "runwayml--stable-diffusion-v1-5", "safety_checker", "config.json")))
    assert cfg["model_type"] == "clip"
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    cfg["text_config"].update(small)
    cfg["vision_config"].update(small, image_size=32, patch_size=8)
    cfg["projection_dim"] = 16
    for k in ("_commit_hash", "_name_or_path", "architectures", "transformers_version"):
        cfg.pop(k, None)
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(CLIPConfig(text_config=cfg["text_config"], vision_config=cfg["vision_config"],
                                                      projection_dim=16))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    checker.save_pretrained(tmp_path / "checker" / "safety_checker")
    processor.save_pretrained(tmp_path / "checker" / "feature_extractor")
    return tmp_path / "checker"


def test_safety_checker_replaces_flagged_frames(tmp_path, caplog):
    import torch

    from videdit.provenance.safety import SafetyFilter

    sf = SafetyFilter.from_pretrained(_tiny_checker(tmp_path))
    frames = np.random.default_rng(1).integers(0, 255, (3, 48, 48, 3)).astype(np.uint8)
    with torch.no_grad():  # nothing is flagged: every concept threshold is above any cosine
        sf.checker.concept_embeds_weights.fill_(2.0)
        sf.checker.special_care_embeds_weights.fill_(2.0)
    out, flagged = sf.filter(frames)
    assert flagged == [] and np.array_equal(out, frames)
    # Make concept 0 the embedding of frame 1 with a threshold just under its self-similarity.
    pixels = sf.processor(images=[frames[1]], return_tensors="pt").pixel_values
    with torch.no_grad():
        emb = sf.checker.visual_projection(sf.checker.vision_model(pixels)[1])[0]
        sf.checker.concept_embeds[0] = emb
        sf.checker.concept_embeds_weights[0] = 0.99  # scores are rounded to 3 decimals
    with caplog.at_level("WARNING", logger="videdit"):
        out, flagged = sf.filter(frames)
    assert 1 in flagged
    assert not out[1].any() and np.array_equal(out[0], frames[0]) == (0 not in flagged)
    assert frames[1].any()  # the input was not modified
    assert "safety checker flagged" in caplog.text


def test_safety_checker_missing_weights(tmp_path):
    from videdit.provenance.safety import SafetyFilter

    with pytest.raises(MissingWeightsError) as err:
        SafetyFilter.from_pretrained(tmp_path / "nothing-here")
    assert "\n" not in str(err.value)


def test_bench_design_override_is_typed_and_restored():
    """`python -m videdit.provenance.bench --validation --set ...` tries a design and puts the shipped one back."""
    from videdit.provenance import bench, watermark

    band, lags, patterns = watermark.BAND, watermark.MOTION_LAGS, watermark._patterns().copy()
    with bench.design(**bench._parse_set(["BAND=1,8", "MOTION_LAGS=1,2", "STRENGTH=1.5"])):
        assert watermark.BAND == (1.0, 8.0) and watermark.MOTION_LAGS == (1, 2)
        assert all(isinstance(k, int) for k in watermark.MOTION_LAGS)  # frame lags index lists
        assert not np.allclose(watermark._patterns(), patterns)
        frames = np.full((2, 96, 96, 3), 128, np.uint8)
        assert np.std(embed(frames, "12345678").astype(float)) < 2.0  # STRENGTH read at call time
    assert watermark.BAND == band and watermark.MOTION_LAGS == lags
    assert np.allclose(watermark._patterns(), patterns)
    for bad in (["NOPE=1"], ["BAND=wide"]):
        with pytest.raises(SystemExit):
            bench._parse_set(bad)


def test_bench_x264_options_reach_the_writers_command_and_are_restored(tmp_path):
    """The subme table of `--cost-only` writes through the real writer with one x264 option changed."""
    from videdit.io import VideoWriter
    from videdit.provenance import bench

    def command():
        return VideoWriter(tmp_path / "o.mp4", 30)._command(64, 48, False)

    plain = command()
    assert "-x264-params" not in plain
    with bench.x264_options(**{"x264-params": "subme=6"}):
        inside = command()
        assert inside[inside.index("-x264-params") + 1] == "subme=6"
        assert "-crf" in inside  # the writer's own options stay
    after = command()
    assert "-x264-params" not in after and len(after) == len(plain)  # (the temporary name differs)


def test_an_image_sequence_source_is_the_edit_s_ingredient(tmp_path, monkeypatch):
    """A restyle read from an image-sequence directory records it as the parent ingredient (its first
    frame's bytes, the directory's name), and the credentials verify."""
    from PIL import Image

    monkeypatch.setenv("VIDEDIT_CONFIG_DIR", str(tmp_path / "config"))
    seq = tmp_path / "shot-010"
    seq.mkdir()
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(seq / f"{i:03d}.png")
    prov = Provenance(action="edited", recipe="r", prompt="p", source=str(seq))
    out = videdit.write_video(videdit.read_video(seq), tmp_path / "o.mp4", provenance=prov)
    rep = videdit.verify(out).credentials
    assert rep.status == "valid" and rep.claims["action"] == "c2pa.edited"
    assert rep.claims["ingredients"] == [{"title": "shot-010", "relationship": "parentOf"}]

