"""Fine-tune every videdit-mini stage on one GPU within a fixed wall-time budget.

    python -m videdit.mini.gpu --minutes 8.5 --pack out/gpu      # on a machine with CUDA

The stages are the ones of ``python -m videdit.mini.train`` (same code, ``--device cuda``,
bf16 autocast, pools rendered by ``--workers`` processes), started from the shipped
components (``--init-from``) and scheduled so the GPU and the CPU cores stay busy:

1. in parallel: the three training pools are rendered and cached, and a smoke run of
   every stage (a few steps on tiny pools) checks the whole chain before the budget
   is spent -- if it fails, nothing else runs;
2. ``text-unet`` (image UNet + text encoder) beside ``t2v`` (the UNet3D);
3. when the UNet is done: ``controlnet-edges`` and ``ip-adapter`` (both need the new
   UNet) beside the still-running ``t2v``; or, with ``--joint-cn P`` (the default), the
   edge ControlNet trains inside the ``text-unet`` stage for the whole budget and no
   IP-Adapter is trained (it would need the finished UNet); ``--cross-frame P`` (default
   0.5) puts that fraction of the UNet's steps on 3-frame camera moves under sparse-causal attention,
   ``--top-attention`` gives the UNet attention at its first level (the shipped one has it);
4. every stage stops at the same deadline (``--until``, its learning rate annealed to it);
   the components are exported (fp16 safetensors) and, with ``--pack``, tarred for the trip back.

``--t2v-only`` trains the t2v model alone (all workers render its pool); ``--t2v-positions both`` runs
two t2v fine-tunes side by side on one pool, without and with frame positions in the temporal attention
(``core.attention.TemporalPositionProcessor``), packed as ``mini-t2v.tar`` and ``mini-t2v-pos.tar``;
``--t2v-train both`` likewise compares the full fine-tune with one of the temporal layers and text
cross-attention alone (``mini-t2v-tt.tar``).

To ship the result: ``tar -xf out/gpu/mini.tar -C pipelines/videdit-mini`` (likewise ``mini-ip.tar``),
``tar -xf out/gpu/mini-t2v.tar -C pipelines/videdit-mini-t2v``, then ``make eval-mini``.

The shipped ``controlnet-depth`` is not retrained here (no recipe uses it). Every
child's output is in ``<work>/<name>.out``; the last lines of a failing one are printed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from .loop import Log
from .train import OUT
from .train_t2v import OUT_T2V

STAGES_A = ("text-unet", "t2v")


def _cmd(stage: str, work: Path, common: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "videdit.mini.train", "--stage", stage, "--work", str(work), *common, *extra]


class Runner:
    """Child processes with their output in ``<work>/<name>.out``; ``wait`` reports failures."""

    def __init__(self, work: Path):
        self.work, self.procs, self.outs = work, {}, {}

    def start(self, name: str, cmd: list[str]) -> None:
        self.outs[name] = open(self.work / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=self.outs[name], stderr=subprocess.STDOUT)
        print(f"[{time.strftime('%H:%M:%S')}] started {name}", flush=True)

    def wait(self, *names: str) -> list[str]:
        """Wait for ``names``; the ones that failed (their output's tail printed)."""
        failed = []
        for n in names:
            rc = self.procs[n].wait()
            self.outs[n].close()
            print(f"[{time.strftime('%H:%M:%S')}] {n} exited {rc}", flush=True)
            if rc:
                failed.append(n)
                lines = (self.work / f"{n}.out").read_text(errors="replace").splitlines()
                print("\n".join(f"  {n}| {line}" for line in lines[-25:]), flush=True)
        return failed

    def kill(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()


def run(args) -> int:
    t0 = time.time()
    end = t0 + args.minutes * 60 - args.reserve
    work, smoke = args.work, args.work / "smoke"
    for d in (work, smoke):
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "vae").exists():  # the VAE is not retrained: the pools are encoded with the shipped one
            shutil.copytree(OUT / "vae", d / "vae")
    obj = ["--objective", args.objective] if args.objective else []
    common = ["--device", args.device, "--seed", "0", *obj, "--save-every", "100000", "--pool", str(args.pool),
              "--palettes", "4", "--t2v-pool", str(args.t2v_pool), "--t2v-frames", "16", "--ip-pool", str(args.ip_pool)]
    tiny = ["--device", args.device, *obj, "--pool", "8", "--palettes", "2", "--t2v-pool", "4", "--t2v-frames", "16",
            "--ip-pool", "8", "--batch", "4", "--t2v-batch", "2", "--unet-steps", "3", "--cn-steps", "3",
            "--t2v-steps", "3", "--ip-steps", "3", "--no-export"]
    r = Runner(work)
    image = not args.t2v_only
    w = max(1, args.workers // 3) if image else args.workers
    variants = t2v_variants(work, args.t2v_positions, args.t2v_train)
    if image:
        r.start("pool-image", _cmd("text-unet", work, common, "--prepare", "--workers", str(w)))
    r.start("pool-t2v", _cmd("t2v", work, common, "--prepare", "--workers", str(w), "--base", str(OUT)))
    if image and not args.joint_cn:
        r.start("pool-ip", _cmd("ip-adapter", work, common, "--prepare", "--workers", str(w), "--base", str(work)))
    joint = ((["--joint-cn", str(args.joint_cn)] if args.joint_cn else [])
             + (["--top-attention"] if args.top_attention else [])
             + (["--cross-frame", str(args.cross_frame), "--cross-frame-span", str(args.cross_frame_span)]
                if args.cross_frame else [])
             + (["--teacher-distill", args.teacher_distill] if args.teacher_distill else [])
             + (["--camera-pixels"] if args.camera_pixels else [])
             + (["--camera-speed", str(args.camera_speed)] if args.camera_speed != 1 else [])
             + (["--train-only", args.train_only] if args.train_only != "all" else []))
    if image:
        r.start("smoke-text-unet", _cmd("text-unet", smoke, tiny, "--init-from", str(OUT), *joint))
    r.start("smoke-t2v", _cmd("t2v", smoke, tiny, "--init-from", str(OUT_T2V), "--base", str(OUT),
                              *variants[-1][2]))  # the last variant's flags: frame positions where any has them
    failed = r.wait("smoke-text-unet") if image else []
    if image and not failed and not args.joint_cn:
        r.start("smoke-cn", _cmd("controlnet-edges", smoke, tiny, "--init-from", str(OUT)))
        r.start("smoke-ip", _cmd("ip-adapter", smoke, tiny, "--base", str(smoke)))
        failed = r.wait("smoke-cn", "smoke-ip")
    failed += r.wait("smoke-t2v") if not failed else []
    if failed:
        r.kill()
        print(f"smoke run failed ({', '.join(failed)}): nothing trained", flush=True)
        return 1
    failed = r.wait(*[n for n in ("pool-image", "pool-t2v", "pool-ip") if n in r.procs])
    if failed:
        r.kill()
        return 1

    now = time.time()
    t1 = end if args.joint_cn else now + args.unet_share * (end - now)
    print(f"training: {'text-unet until +%.0f s, the rest' % (t1 - t0) if image else 't2v'} until "
          f"+{end - t0:.0f} s", flush=True)
    for name, vwork, extra in variants:
        if vwork != work:  # a second variant: its own checkpoints, the same pool and VAE
            vwork.mkdir(parents=True, exist_ok=True)
            for part in ("vae", "t2v-pool.npz"):
                if not (vwork / part).exists():
                    (vwork / part).symlink_to((work / part).resolve())
        r.start(name, _cmd("t2v", vwork, common, "--init-from", str(OUT_T2V), "--base", str(OUT), "--until",
                           str(end), "--t2v-batch", str(args.t2v_batch), "--t2v-lr", str(args.t2v_lr), "--t2v-steps",
                           "10000000", "--t2v-text-aux", str(args.t2v_text_aux), "--no-export", *extra))
    failed = []
    if image:
        r.start("text-unet", _cmd("text-unet", work, common, "--init-from", str(OUT), "--until", str(t1), "--batch",
                                  str(args.batch), "--unet-lr", str(args.unet_lr), "--unet-steps", "10000000",
                                  "--no-export", *joint))
        failed = r.wait("text-unet")
        if not failed and not args.joint_cn:
            r.start("controlnet-edges", _cmd("controlnet-edges", work, common, "--init-from", str(OUT), "--until",
                                             str(end), "--batch", str(args.batch), "--cn-lr", str(args.cn_lr),
                                             "--cn-steps", "10000000", "--no-export"))
            r.start("ip-adapter", _cmd("ip-adapter", work, common, "--base", str(work), "--until", str(end), "--batch",
                                       str(args.batch), "--ip-lr", str(args.ip_lr), "--ip-steps", "10000000",
                                       "--no-export"))
            failed += r.wait("controlnet-edges", "ip-adapter")
    failed += r.wait(*[name for name, _, _ in variants])
    print(f"training done at +{time.time() - t0:.0f} s; failed: {failed or 'none'}", flush=True)
    if args.pack:
        pack(work, args.pack, variants)
    return 1 if failed else 0


def t2v_variants(work: Path, positions: str = "off", train: str = "all") -> list[tuple[str, Path, list[str]]]:
    """The t2v runs: ``(name, work folder, extra flags)``. ``positions`` / ``train`` ``both``: a second
    run side by side (same pool, same deadline), with frame positions (``t2v-pos``) or training only
    the temporal layers and text cross-attention (``t2v-tt``), so one GPU run compares them."""
    if positions == "both" and train == "both":
        raise SystemExit("--t2v-positions both and --t2v-train both: one comparison per run")
    base = (["--t2v-positions"] if positions == "on" else []) + (
        ["--t2v-train", "temporal-text"] if train == "temporal-text" else [])
    variants = [("t2v", work, base)]
    if positions == "both":
        variants.append(("t2v-pos", work / "t2v-pos", base + ["--t2v-positions"]))
    if train == "both":
        variants.append(("t2v-tt", work / "t2v-tt", base + ["--t2v-train", "temporal-text"]))
    return variants


def pack(work: Path, dest: Path, variants=None) -> None:
    """Export what was trained and tar it in pieces small enough to travel (<= 16 MiB each):
    ``mini.tar``, ``mini-ip.tar``, and one ``<variant>.tar`` per t2v run (``mini-t2v.tar``, ``mini-t2v-pos.tar``,
    ``mini-t2v-tt.tar``)."""
    from . import train
    from .train_ip import export_ip
    from .train_t2v import export_t2v

    dest.mkdir(parents=True, exist_ok=True)
    variants = variants or t2v_variants(work, "off")
    exp, log = work / "export", Log(work, "export")
    tars: dict[str, tuple[Path, list[str]]] = {}
    if (work / "unet").is_dir():
        train.export(log, work, exp / "videdit-mini")
        tars["mini.tar"] = (exp / "videdit-mini", [p for p in ("unet", "text_encoder", "tokenizer", "controlnet-edges",
                                                              "scheduler") if (exp / "videdit-mini" / p).is_dir()])
    if (work / "ip-adapter").is_dir():
        export_ip(log, work, exp / "videdit-mini")
        tars["mini-ip.tar"] = (exp / "videdit-mini", ["ip-adapter"])
    for name, vwork, _ in variants:
        if (vwork / "t2v-unet").is_dir():
            export_t2v(log, vwork, exp / f"videdit-mini-{name}", OUT)
            tars[f"mini-{name}.tar"] = (exp / f"videdit-mini-{name}", ["unet", "text_encoder", "tokenizer",
                                                                       "scheduler"])
    for name, (root, dirs) in tars.items():
        with tarfile.open(dest / name, "w") as tar:
            for d in dirs:
                tar.add(root / d, arcname=d)
    logs = [*work.glob("*.log"), *work.glob("*.out"), work / "results.json",
            *[vwork / "t2v.log" for _, vwork, _ in variants if vwork != work]]
    with tarfile.open(dest / "logs.tar", "w") as tar:
        for f in sorted(logs):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(work)))
    for f in sorted(dest.iterdir()):
        print(f"packed {f.name}: {f.stat().st_size / 2**20:.1f} MiB", flush=True)
    for f in sorted(logs):  # the summary: each stage's last lines
        if f.suffix == ".log" and f.is_file():
            done = [line for line in f.read_text().splitlines() if "done at" in line or "pool:" in line]
            print("\n".join(f"{f.relative_to(work)}: {line}" for line in done[-2:]), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m videdit.mini.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=8.5, help="wall time of the whole run, export included")
    ap.add_argument("--reserve", type=float, default=45, help="seconds kept for the export at the end")
    ap.add_argument("--work", type=Path, default=Path("/tmp/videdit-mini-gpu"))
    ap.add_argument("--pack", type=Path, default=None, help="write the trained components here as tar files")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=15, help="CPU processes rendering the pools, all together")
    ap.add_argument("--pool", type=int, default=24000, help="scenes in the image pool (x 4 palettes)")
    ap.add_argument("--t2v-pool", type=int, default=16000, help="16-frame clips in the t2v pool")
    ap.add_argument("--ip-pool", type=int, default=40000)
    ap.add_argument("--batch", type=int, default=256, help="images per step of the image stages")
    ap.add_argument("--t2v-batch", type=int, default=32, help="16-frame clips per t2v step")
    ap.add_argument("--unet-share", type=float, default=0.45,
                    help="fraction of the training time for the image UNet (the ControlNet and IP-Adapter "
                    "train on it afterwards)")
    ap.add_argument("--joint-cn", type=float, default=0.5,
                    help="train the edge ControlNet inside the text-unet stage on this fraction of samples "
                    "(0: the separate controlnet-edges and ip-adapter stages after the UNet)")
    ap.add_argument("--top-attention", action="store_true",
                    help="give the image UNet attention at its first level (new blocks start as the identity)")
    ap.add_argument("--cross-frame", type=float, default=0.5,
                    help="fraction of the image UNet's steps on 3-frame camera moves with sparse-causal attention")
    ap.add_argument("--cross-frame-span", type=int, default=2,
                    help="camera-move clips are frames 0, j - 1, j of the move, j up to this (train's flag)")
    ap.add_argument("--teacher-distill", nargs="?", const="all", choices=["all", "images"], default=None,
                    help="the image UNet learns from the frozen shipped model instead of the data (train's flag; "
                    "'images': on single images only; see the videdit-mini card's twelfth and thirteenth sessions)")
    ap.add_argument("--train-only", choices=["all", "self-attention"], default="all",
                    help="which parameters of the image UNet and ControlNet train (train's flag)")
    ap.add_argument("--camera-speed", type=float, default=1.0, help="scale of the camera moves (train's flag)")
    ap.add_argument("--camera-pixels", action="store_true",
                    help="camera moves made in pixels, each frame encoded and edge-detected on its own (train's flag)")
    ap.add_argument("--objective", choices=("eps", "v"), default=None,
                    help="what the UNets learn to predict (default: that of the shipped weights)")
    ap.add_argument("--unet-lr", type=float, default=4e-4)
    ap.add_argument("--cn-lr", type=float, default=5e-4)
    ap.add_argument("--t2v-lr", type=float, default=3e-4)
    ap.add_argument("--t2v-text-aux", type=float, default=0.1,
                    help="weight of the t2v stage's auxiliary motion-word loss on the text encoder (0: off; "
                    "see the t2v model card's tenth session)")
    ap.add_argument("--ip-lr", type=float, default=1e-3)
    ap.add_argument("--t2v-only", action="store_true", help="train only the t2v model (no image stages)")
    ap.add_argument("--t2v-positions", choices=("off", "on", "both"), default="off",
                    help="sinusoidal frame positions in the t2v model's temporal attention (both: two t2v runs, "
                    "without and with, packed as mini-t2v.tar and mini-t2v-pos.tar)")
    ap.add_argument("--t2v-train", choices=("all", "temporal-text", "both"), default="all",
                    help="which t2v parameters train (temporal-text: temporal layers and text cross-attention; "
                    "both: two t2v runs, packed as mini-t2v.tar and mini-t2v-tt.tar)")
    args = ap.parse_args(argv)
    t2v_variants(args.work, args.t2v_positions, args.t2v_train)  # refuses two comparisons before anything starts
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
