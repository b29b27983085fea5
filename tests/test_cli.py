"""The CLI contract: one-line errors with documented exit codes, no tracebacks,
no output left behind on failure, and working commands on odd-but-valid input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from videdit.cli import main
from videdit.io import probe

from videos import make_clip, malformed_corpus

# Documented in README.md ("Exit codes").
EXPECTED = {
    "missing": 3, "directory": 3, "zero-byte": 3, "text": 3, "truncated-moov-at-end": 3,
    "truncated-moov-at-start": 0, "corrupted-payload": 0, "audio-only": 3, "odd-size": 0,
    "vfr": 0, "rotated": 0, "huge-declared-size": 3,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return malformed_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("VIDEDIT_PROGRESS", "0")


def _stderr_lines(capfd) -> tuple[str, list[str]]:
    out, err = capfd.readouterr()
    return out, [ln for ln in err.splitlines() if ln.strip()]


def _assert_clean_stderr(lines, rc):
    assert not any("Traceback" in ln for ln in lines), lines
    # Only our own one-line messages reach stderr (no FFmpeg/decord log spam).
    assert all(ln.startswith("videdit: ") for ln in lines), lines
    errors = [ln for ln in lines if ln.startswith("videdit: error: ")]
    assert len(errors) == (1 if rc else 0), lines


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_info_on_malformed_corpus(corpus, case, capfd):
    rc = main(["info", corpus[case]])
    out, lines = _stderr_lines(capfd)
    assert rc == EXPECTED[case], lines
    _assert_clean_stderr(lines, rc)
    if rc:
        assert os.path.basename(corpus[case]) in lines[-1]  # names the file


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_structure_on_malformed_corpus(corpus, case, tmp_path, capfd):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "edges.mp4"
    rc = main(["structure", corpus[case], "--signal", "canny", "-o", str(target),
               "--preview", str(out_dir / "side.mp4")])
    _, lines = _stderr_lines(capfd)
    assert rc == EXPECTED[case], lines
    _assert_clean_stderr(lines, rc)
    if rc:
        assert os.listdir(out_dir) == []  # nothing half-written left behind
        return
    info = probe(target)
    assert info.frame_count > 0
    assert sorted(os.listdir(out_dir)) == ["edges.mp4", "side.mp4"]
    if case in ("corrupted-payload", "truncated-moov-at-start"):  # read, but the user hears of the damage
        assert any(os.path.basename(corpus[case]) in ln and ("damaged" in ln or "truncated" in ln) for ln in lines), lines
    if case == "rotated":
        assert (info.width, info.height) == (96, 160)
    if case == "odd-size":
        assert probe(corpus[case]).width == 255
        assert (info.width, info.height) == (256, 142)  # padded to even for yuv420p
    if case == "vfr":
        assert info.duration == pytest.approx(5.0, abs=0.05) and not info.vfr
    if case == "truncated-moov-at-start":
        assert any("truncated" in ln for ln in lines)


def test_structure_keeps_audio_and_range(tmp_path, capfd):
    src = make_clip(tmp_path / "a.mp4", seconds=2)
    target = tmp_path / "e.mp4"
    assert main(["structure", src, "-o", str(target), "--start", "0.5", "--end", "1.5", "--max-side", "64"]) == 0
    info = probe(target)
    assert info.frame_count == 24 and (info.width, info.height) == (64, 40)
    assert info.has_audio and abs(info.audio_duration - 1.0) <= 1 / 24
    assert "audio kept" in capfd.readouterr().out


def test_refuses_to_overwrite_input(tmp_path, capfd):
    src = make_clip(tmp_path / "a.mp4", seconds=1)
    size = os.path.getsize(src)
    rc = main(["structure", src, "-o", src])
    _, lines = _stderr_lines(capfd)
    assert rc == 5 and "refusing to overwrite the input" in lines[-1]
    assert os.path.getsize(src) == size and sorted(os.listdir(tmp_path)) == ["a.mp4"]


@pytest.mark.parametrize("argv, code, text", [
    (["structure", "X", "-o", "y.mp4", "--signal", "nope"], 2, "canny"),
    (["structure", "X", "-o", "y.mp4", "--structure-detail", "9"], 2, "--structure-detail: must be"),
    (["restyle", "X", "-o", "y.mp4", "--seed", str(2**63)], 2, "--seed: must be a whole number in [0, 2^63 - 1]"),
    (["restyle", "X", "-o", "y.mp4", "--structure-scale", "1,nan"], 2, "--structure-scale: each scale must be in"),
    (["restyle", "X", "-o", "y.mp4", "--structure-scale", "-0.5"], 2, "(got -0.5)"),
    (["restyle", "X", "-o", "y.mp4", "--structure", " , "], 2, "--structure: names no signal"),
    (["restyle", "X", "-o", "y.mp4", "--structure", "canny,canny"], 2, "'canny' is named twice"),
    (["restyle", "X", "-o", "y.mp4", "--ref-image", "."], 3, ".: is a directory, not a reference image"),
    (["structure", "X", "-o", "y.xyz"], 2, "unknown output format"),
    (["structure", "X", "-o", "y.mp4", "--stride", "0"], 2, "--stride"),
    (["structure", "X", "-o", "y.mp4", "--preview", "y.mp4"], 5, "preview would overwrite the output"),
    (["info"], 2, "Missing argument"),
    (["frobnicate"], 2, "No such command"),
])
def test_usage_errors(tmp_path, capfd, argv, code, text):
    src = make_clip(tmp_path / "a.mp4", seconds=0.5, audio=False)
    argv = [src if a == "X" else str(tmp_path / a) if a.startswith("y.") else a for a in argv]
    rc = main(argv)
    _, lines = _stderr_lines(capfd)
    assert rc == code
    assert len(lines) == 1 and text in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]


def test_info_json(tmp_path, capfd):
    src = make_clip(tmp_path / "a.mp4", seconds=1)
    assert main(["info", src, "--json"]) == 0
    out, _ = _stderr_lines(capfd)
    d = json.loads(out)
    assert d["frame_count"] == 24 and d["width"] == 160 and d["has_audio"] is True


def test_metrics_command(tmp_path, capfd):
    src = make_clip(tmp_path / "a.mp4", seconds=0.5, audio=False)
    assert main(["metrics", src, src, "--json"]) == 0
    out, _ = _stderr_lines(capfd)
    d = json.loads(out)
    # A video against itself scores exactly its own floor, and keeps all its edges.
    assert d["warp_error"] == pytest.approx(d["warp_error_floor"]) and d["warp_error_ratio"] == pytest.approx(1.0)
    assert d["structure_fidelity"] == pytest.approx(1.0)


def test_metrics_reports_the_output_s_own_size_and_refuses_frames_too_small_for_flow(tmp_path, capfd):
    src = make_clip(tmp_path / "a.mp4", seconds=0.5, audio=False)
    small = make_clip(tmp_path / "b.mp4", size="80x48", seconds=0.5, audio=False)
    assert main(["metrics", src, small, "--json"]) == 0
    d = json.loads(_stderr_lines(capfd)[0])
    assert (d["source_size"], d["output_size"]) == ([160, 96], [80, 48])  # compared at the source's, reported as is
    tiny = make_clip(tmp_path / "c.mp4", size="8x8", seconds=0.5, audio=False)
    assert main(["metrics", tiny, tiny]) == 2
    _, lines = _stderr_lines(capfd)
    assert lines == [f"videdit: error: {tiny}: frames of 8x8 are too small for optical flow (at least 12 px a "
                     "side); give a larger --size"]
    assert main(["verify", tiny]) == 0  # the watermark's motion vote skips frames flow cannot take


def test_console_script_entry_point_runs(tmp_path):
    """The real process: exit code and a single stderr line, no traceback."""
    r = subprocess.run([sys.executable, "-m", "videdit", "info", str(tmp_path / "none.mp4")],
                       capture_output=True, text=True)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [f"videdit: error: {tmp_path / 'none.mp4'}: no such file"]


def test_global_flags_work_after_the_subcommand(tmp_path, capfd, monkeypatch):
    from videdit.errors import InputError

    monkeypatch.setenv("VIDEDIT_PROGRESS", "1")  # -q sets it to 0 for the process; restored after the test
    src = make_clip(tmp_path / "a.mp4", seconds=0.5)  # has audio, which a GIF cannot hold: a warning
    assert main(["structure", src, "-o", str(tmp_path / "e.gif")]) == 0
    out, err = capfd.readouterr()
    assert "holds no audio" in err and "audio kept" not in out  # the summary does not claim it either
    assert main(["structure", src, "-o", str(tmp_path / "q.gif"), "-q"]) == 0
    assert capfd.readouterr().err == ""
    for argv in (["info", str(tmp_path / "none.mp4"), "--debug"], ["--debug", "info", str(tmp_path / "none.mp4")]):
        # --debug before or after the subcommand adds the traceback; the exit code stays the error's own
        assert main(argv) == InputError.exit_code
        err = capfd.readouterr().err
        assert "Traceback" in err and "InputError" in err and err.rstrip().endswith("none.mp4: no such file")


def test_metrics_streams_a_damaged_file(corpus, capfd):
    bad = corpus["truncated-moov-at-start"]  # its index lists twice the frames its data holds
    rc = main(["metrics", bad, bad, "--json"])
    out, lines = _stderr_lines(capfd)
    _assert_clean_stderr(lines, rc)
    d = json.loads(out)
    assert rc == 0 and d["frames"] >= 24 and d["warp_error_ratio"] == pytest.approx(1.0)
    assert d["structure_fidelity"] == pytest.approx(1.0)


def test_sigterm_mid_write_leaves_no_partial_file(tmp_path, capfd, monkeypatch):
    import signal

    from videdit.io.write import VideoWriter

    src = make_clip(tmp_path / "a.mp4", seconds=2)
    write, calls = VideoWriter.write, []

    def write_then_get_killed(self, frames):
        write(self, frames)
        calls.append(len(frames))
        if len(calls) == 2:  # the temporary output exists by now
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(VideoWriter, "write", write_then_get_killed)
    before = signal.getsignal(signal.SIGTERM)
    rc = main(["structure", src, "-o", str(tmp_path / "e.mp4")])
    _, lines = _stderr_lines(capfd)
    assert rc == 143 and lines == ["videdit: terminated"] and len(calls) >= 2
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]  # no output, no hidden temporary
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back


def test_summary_line_counts_frames_in_words(tmp_path, capfd):
    src = make_clip(tmp_path / "a.mp4", seconds=0.5, audio=False)
    assert main(["structure", src, "-o", str(tmp_path / "one.mp4"), "--max-frames", "1"]) == 0
    assert "(1 frame, " in capfd.readouterr().out
    assert main(["structure", src, "-o", str(tmp_path / "two.mp4"), "--max-frames", "2"]) == 0
    assert "(2 frames, " in capfd.readouterr().out
