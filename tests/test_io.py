"""Reading, planning and writing video: timing, audio, sizes, streaming, atomicity."""

from __future__ import annotations

import os

import numpy as np
import pytest

from videdit.errors import InputError, OutputError, UsageError
from videdit.io import AudioSource, VideoWriter, iter_video, probe, read_video, write_video
from videdit.io.write import Outputs
from videdit.options import ReadOptions

from videos import make_clip, make_vfr


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("io") / "clip.mp4", seconds=2.0, fps=24)


def test_probe_reports_what_ffmpeg_wrote(clip):
    info = probe(clip)
    assert (info.width, info.height) == (160, 96)
    assert info.frame_count == 48
    assert info.fps == pytest.approx(24.0)
    assert info.duration == pytest.approx(2.0, abs=1e-3)
    assert info.has_audio and info.audio_codec == "aac"
    assert not info.vfr and info.rotation == 0 and info.damage is None
    assert info.timestamps[0] == 0 and len(info.timestamps) == 48


def test_decord_and_pyav_agree(clip):
    a = read_video(clip, backend="decord")
    b = read_video(clip, backend="av")
    assert a.frames.shape == b.frames.shape == (48, 96, 160, 3)
    # Both decode the same H.264 stream; only colour conversion rounding may differ.
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 1.0


def test_streaming_yields_bounded_chunks_equal_to_whole_read(clip):
    stream = iter_video(clip, chunk=10)
    chunks = list(stream)
    assert [len(c) for c in chunks] == [10, 10, 10, 10, 8]
    assert np.array_equal(np.concatenate(chunks), read_video(clip).frames)


def test_frame_range_in_seconds_and_frames(clip):
    by_time = read_video(clip, start=0.5, end=1.0)
    by_frame = read_video(clip, start="12f", end="24f")
    assert len(by_time) == len(by_frame) == 12
    assert by_time.start == pytest.approx(0.5) and by_frame.start == pytest.approx(0.5)
    assert np.array_equal(by_time.frames, by_frame.frames)
    assert np.array_equal(by_frame.frames, read_video(clip).frames[12:24])


def test_stride_fps_and_max_frames(clip):
    full = read_video(clip).frames
    s = read_video(clip, stride=3)
    assert len(s) == 16 and s.fps == pytest.approx(8.0) and np.array_equal(s.frames, full[::3])
    r = read_video(clip, fps=12)
    assert len(r) == 24 and r.fps == 12 and np.array_equal(r.frames, full[::2])
    up = read_video(clip, fps=48, max_frames=10)
    assert len(up) == 10 and np.array_equal(up.frames[0], up.frames[1])  # each frame shown twice


def test_resize_keeps_aspect_and_multiple(clip):
    v = read_video(clip, max_side=64, max_frames=2)
    assert (v.width, v.height) == (64, 40)  # 160x96 -> 64x38.4 -> multiple of 8
    v = read_video(clip, size="80x48", max_frames=2)
    assert (v.width, v.height) == (80, 48)
    assert ReadOptions(max_side=512).target_size(1920, 1080) == (512, 288)
    assert ReadOptions(max_side=512, multiple=64).target_size(1920, 1080) == (512, 256)


@pytest.mark.parametrize("kw, match", [
    ({"stride": 0}, "--stride"), ({"fps": -1}, "--fps"), ({"size": "12by4"}, "--size"),
    ({"start": "abc"}, "--start"), ({"start": 2, "end": 1}, "--end"),
    ({"size": "64x64", "max_side": 64}, "exclude"), ({"start": "1.5f"}, "whole"),
])
def test_bad_read_options_name_the_option(kw, match):
    with pytest.raises(UsageError, match=match):
        ReadOptions(**kw)


def test_start_past_end_is_a_usage_error(clip):
    with pytest.raises(UsageError, match="past the end"):
        read_video(clip, start=10)


def test_round_trip_keeps_count_fps_and_audio(clip, tmp_path):
    v = read_video(clip)
    out = write_video(v, tmp_path / "rt.mp4")
    info = probe(out)
    assert info.frame_count == 48
    assert abs(info.fps - 24.0) <= 0.01
    assert info.has_audio
    assert abs(info.audio_duration - info.duration) <= 1 / 24
    back = read_video(out).frames.astype(int)
    assert np.abs(back - v.frames).mean() < 3.0  # crf 18: visually lossless


def test_trimmed_range_trims_audio_too(clip, tmp_path):
    v = read_video(clip, start=0.5, end=1.25)
    info = probe(write_video(v, tmp_path / "trim.mp4"))
    assert info.frame_count == 18
    assert abs(info.audio_duration - 0.75) <= 1 / 24


def test_vfr_keeps_timing_on_a_constant_grid(tmp_path):
    src = make_vfr(tmp_path / "vfr.mp4")
    info = probe(src)
    assert info.vfr and info.frame_count == 90
    v = read_video(src)
    assert v.fps == pytest.approx(30.0)
    out = probe(write_video(v, tmp_path / "cfr.mp4"))
    assert not out.vfr
    assert out.duration == pytest.approx(5.0, abs=1 / 30)
    # The frame shown at t=2.5 s is source frame 30 + 15 = 45 (10 fps section).
    import av

    with av.open(src) as c:  # the raw 90 source frames, decoded independently
        src_frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(src_frames) == 90
    i = int(np.argmin([np.abs(f.astype(int) - v.frames[75].astype(int)).mean() for f in src_frames]))
    assert i == 45
    r = read_video(src, fps=10)
    assert len(r) == 50 and r.fps == 10


def test_writer_is_atomic_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous contents")
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 10) as w:
            w.write(frames)
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_writer_refuses_to_overwrite_input(clip):
    v = read_video(clip, max_frames=2)
    before = os.path.getsize(clip)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        write_video(v, clip)
    assert os.path.getsize(clip) == before


def test_writer_pads_odd_sizes_and_other_formats(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (6, 141, 255, 3), dtype=np.uint8)
    info = probe(write_video(frames, tmp_path / "odd.mp4", fps=12))
    assert (info.width, info.height) == (256, 142) and info.frame_count == 6
    for name in ("a.webm", "a.gif", "a.mkv"):
        assert probe(write_video(frames[:, :140, :254], tmp_path / name, fps=12)).frame_count == 6
    png_dir = write_video(frames, str(tmp_path / "pngs") + os.sep, fps=12)
    assert sorted(os.listdir(png_dir))[:3] == [".videdit-frames", "000001.png", "000002.png"]
    with pytest.raises(UsageError, match="unknown output format"):
        write_video(frames, tmp_path / "a.xyz", fps=12)


def test_a_png_sequence_output_never_replaces_other_files(tmp_path, monkeypatch):
    """A PNG sequence replaces its whole directory, so it goes only where nothing else would be lost: a new
    or empty directory, or one holding just the frames of an earlier videdit run (a rerun, which may be
    shorter); never over a folder of the user's own frames, an input inside it, or the current directory."""
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    out = tmp_path / "frames"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match=r"frames: directory holds files a PNG sequence would replace \(such as notes"):
        write_video(frames, str(out) + os.sep, fps=12)
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    (out / "notes.txt").unlink()
    write_video(frames, str(out) + os.sep, fps=12)
    write_video(frames[:2], str(out) + os.sep, fps=12)  # a rerun replaces the earlier frames
    assert sorted(os.listdir(out)) == [".videdit-frames", "000001.png", "000002.png"]
    with pytest.raises(OutputError, match="frames: holds the input .*000002.png"):
        write_video(frames, str(out) + os.sep, fps=12, protect=[out / "000002.png"])
    mine = tmp_path / "mine"  # the user's own frames, named as ffmpeg names them
    mine.mkdir()
    (mine / "000001.png").write_bytes(b"user's frame")
    with pytest.raises(OutputError, match="mine: directory holds files"):
        write_video(frames, str(mine) + os.sep, fps=12)
    assert (mine / "000001.png").read_bytes() == b"user's frame"
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(OutputError, match="file: is a file, not a directory"):
        write_video(frames, str(tmp_path / "file") + os.sep, fps=12)
    assert (tmp_path / "file").read_text() == "keep me"
    os.symlink(out, tmp_path / "link")
    write_video(frames[:1], str(tmp_path / "link") + os.sep, fps=12)  # through a link: the link stays one
    assert os.path.islink(tmp_path / "link") and sorted(os.listdir(out)) == [".videdit-frames", "000001.png"]
    assert sorted(os.listdir(tmp_path)) == ["file", "frames", "link", "mine"]
    with pytest.raises(OutputError, match="side.mp4: is inside .*frames/, the PNG-sequence output"):
        Outputs(str(out) + os.sep, out / "side.mp4", 12)  # the swap at the end would sweep the preview away
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(OutputError, match="is the current directory"):
        write_video(frames, "." + os.sep, fps=12)


def test_a_failed_preview_leaves_an_existing_output_as_it_was(tmp_path):
    """Output and preview are both finished before either replaces its target: if one fails, neither
    earlier file is touched."""
    out = tmp_path / "out.mp4"
    out.write_bytes(b"earlier output")
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(OutputError, match="prev.mp4: encoding failed"):
        with Outputs(out, tmp_path / "prev.mp4", 12) as outs:
            outs.write(frames, frames)
            outs.writers[1]._stop_pump()
            outs.writers[1].proc.kill()  # the preview's encoder dies: as a full disk would end it
    assert out.read_bytes() == b"earlier output"
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_audio_from_another_source(clip, tmp_path):
    frames = np.zeros((24, 32, 32, 3), np.uint8)
    info = probe(write_video(frames, tmp_path / "a.mp4", fps=24, audio=AudioSource(clip, 0.5, 1.0)))
    assert info.has_audio and abs(info.audio_duration - 1.0) <= 1 / 24


def test_missing_and_bad_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "t.mp4").write_text("hello")
    with pytest.raises(InputError, match="not a readable video"):
        read_video(tmp_path / "t.mp4")


def test_a_directory_of_images_reads_as_a_frame_sequence(tmp_path):
    """An image-sequence directory (VFX and editors' exports) is a video at 24 fps: its frames in name order,
    exactly (PNG is lossless), with frame selection; a stray image of another type is left out."""
    from PIL import Image

    from videdit.io.probe import SEQUENCE_FPS

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: is a directory without images"):
        probe(empty)
    seq = tmp_path / "shot [v2]"  # glob characters in the name are taken literally
    seq.mkdir()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (11, 24, 40, 3), dtype=np.uint8)
    for i in (3, 10, 0, 7, 1, 2, 9, 4, 8, 5, 6):  # written out of order
        Image.fromarray(frames[i]).save(seq / f"frame_{i:04d}.png")
    Image.fromarray(frames[0, :8, :8]).save(seq / "thumbnail.jpg")
    info = probe(seq)
    assert (info.frame_count, info.width, info.height, info.fps, info.has_audio) == (11, 40, 24, SEQUENCE_FPS, False)
    assert np.array_equal(read_video(seq).frames, frames)
    assert np.array_equal(read_video(seq, start="4f", end="9f").frames, frames[4:9])  # seeks into the sequence
    assert np.array_equal(read_video(seq, stride=3).frames, frames[::3])


def test_an_image_sequence_plays_at_the_given_rate_and_takes_odd_sized_images(tmp_path, caplog):
    """A sequence has no rate of its own: ``fps`` sets it (every image once, not resampled from 24 fps),
    seconds count at that rate, and an image of another size is scaled to the first's, with a warning
    naming it, instead of failing the whole read."""
    from PIL import Image

    seq = tmp_path / "seq"
    seq.mkdir()
    levels = np.arange(10, dtype=np.uint8) * 25
    for i, v in enumerate(levels):
        size = (36, 20) if i == 6 else (48, 32)
        Image.fromarray(np.full((size[1], size[0], 3), v, np.uint8)).save(seq / f"f{i:03d}.png")
    with caplog.at_level("WARNING", logger="videdit"):
        clip = read_video(seq, fps=30000 / 1001)
    assert clip.fps == pytest.approx(30000 / 1001) and clip.frames.shape == (10, 32, 48, 3)
    assert np.array_equal(clip.frames[:, 0, 0, 0], levels)  # each image once, in order
    assert "f006.png is 36x20, not 48x32" in caplog.text
    assert probe(seq, sequence_fps=12.5).fps == 12.5
    assert np.array_equal(read_video(seq, fps=10, start=0.5).frames[:, 0, 0, 0], levels[5:])


def test_an_empty_range_is_reported_as_the_user_wrote_it():
    with pytest.raises(UsageError, match=r"--end \(10f\) must come after --start \(48f\)"):
        ReadOptions(start="48f", end="10f")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_unwritable_output_directory_fails_before_any_work():
    """``os.access`` grants root everything, /proc included: the writer tries a file there when it is made,
    so the error comes before the model runs, not as 'encoding failed' after it."""
    with pytest.raises(OutputError, match="/proc/x.mp4: "):
        VideoWriter("/proc/x.mp4", 12)


def test_a_misspelt_read_option_names_the_nearest(clip):
    with pytest.raises(UsageError, match=r"unknown option 'maxframes' \(did you mean 'max_frames'\?\)"):
        read_video(clip, maxframes=2)
    assert len(read_video(clip, max_frames=2, backend="av")) == 2


def test_something_that_is_not_a_path_is_named(clip, tmp_path):
    """probe / verify / structure_video take paths (bytes too); a decoded Video or None is a UsageError
    saying what it got, and structure_video takes read options as keywords, like read_video."""
    import videdit
    from videdit.tasks import structure_video

    decoded = read_video(clip, max_frames=1)
    for call in (probe, videdit.verify):
        with pytest.raises(UsageError, match="expected a video file or image-sequence path, got Video"):
            call(decoded)
    with pytest.raises(UsageError, match="got NoneType"):
        probe(None)
    assert probe(os.fsencode(clip)).frame_count == probe(clip).frame_count
    assert structure_video(clip, tmp_path / "e.mp4", max_frames=2)["frames"] == 2
