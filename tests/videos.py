"""Test videos made with the ffmpeg binary directly (not with videdit's writer), so
reader tests do not trust the code they test."""

from __future__ import annotations

import os
import random
import subprocess

import imageio_ffmpeg

FF = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path, *, size="160x96", fps=24, seconds=2.0, audio=True, src="testsrc2", extra=()) -> str:
    """A test-pattern clip (H.264 yuv420p mp4) with a sine audio track by default."""
    args = ["-f", "lavfi", "-i", f"{src}=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    ffmpeg(*args, "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra, os.fspath(path))
    return os.fspath(path)


def make_vfr(path) -> str:
    """3 s of 30 fps source retimed: 1 s at 30 fps, 3 s at 10 fps, 1 s at 30 fps (90 frames, 5 s)."""
    expr = "if(lt(N,30),N/30,if(lt(N,60),1+(N-30)/10,4+(N-60)/30))/TB"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x96:rate=30:duration=3", "-vf", f"setpts='{expr}'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", os.fspath(path))
    return os.fspath(path)


def malformed_corpus(root) -> dict[str, str]:
    """Every kind of bad input the reader must survive; name -> path."""
    root = os.fspath(root)
    p = lambda name: os.path.join(root, name)  # noqa: E731
    good = make_clip(p("good.mp4"), seconds=4)
    faststart = p("faststart.mp4")
    ffmpeg("-i", good, "-c", "copy", "-movflags", "+faststart", faststart)
    data, fast = open(good, "rb").read(), open(faststart, "rb").read()
    files = {"missing": p("missing.mp4"), "directory": p("a-directory.mp4")}
    os.mkdir(files["directory"])
    files["zero-byte"] = p("empty.mp4")
    open(files["zero-byte"], "wb").close()
    files["text"] = p("notes.mp4")
    with open(files["text"], "w") as f:
        f.write("this is not a video\n" * 20)
    files["truncated-moov-at-end"] = p("trunc-end.mp4")
    open(files["truncated-moov-at-end"], "wb").write(data[: len(data) // 2])
    files["truncated-moov-at-start"] = p("trunc-start.mp4")
    open(files["truncated-moov-at-start"], "wb").write(fast[: len(fast) // 2])
    bad, rng = bytearray(fast), random.Random(0)
    for i in range(len(bad) // 3, 2 * len(bad) // 3, 97):
        bad[i] = rng.randrange(256)
    files["corrupted-payload"] = p("corrupt.mp4")
    open(files["corrupted-payload"], "wb").write(bytes(bad))
    files["audio-only"] = p("audio.m4a")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", files["audio-only"])
    files["odd-size"] = p("odd.mov")  # PNG codec keeps 255x141 exactly (x264 would crop it)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=256x144:rate=24:duration=1", "-vf", "scale=255:141",
           "-c:v", "png", files["odd-size"])
    files["vfr"] = make_vfr(p("vfr.mp4"))
    files["rotated"] = p("rotated.mp4")
    ffmpeg("-display_rotation", "90", "-i", good, "-c", "copy", files["rotated"])
    files["huge-declared-size"] = p("huge.y4m")
    with open(files["huge-declared-size"], "wb") as f:
        f.write(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    return files
