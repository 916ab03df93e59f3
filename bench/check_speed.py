"""How fast ``aigc check`` answers, after start-up (issue 22): the library call the CLI, the
batch jobs and the service make (``Checker.check`` on each picture read from its file, no
index), on 1024-pixel JPEGs, beside a plain decode of the same files in the same run.

    python bench/check_speed.py [--n 48] [--device auto] [--out bench/results/check_speed.md]

Pictures: ``n`` of ../shared/data/wild (``watermark_robustness.load_wild``: real photos and
generated pictures in turn; none carries our mark), resized and centre-cropped to 1024 x 1024
and written as JPEG quality 90 beforehand. One warm-up check, then every picture once; the
time of each signal is taken from a profile of a second pass. ``--device`` is the Checker's
(the detector's and the watermark readers'); the pictures are decoded on the CPU either way, as
``aigc check --device`` does. The GPU machine runs this on cuda and on cpu in one go
(bench/gpu_figures.sh).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from watermark_robustness import load_wild

SIDE = 1024


def where(device, gpu: str | None) -> str:
    """Where the checks ran, for the table's notes."""
    if device.type == "cuda":
        return f"checks on {device} ({gpu}), pictures decoded on the CPU"
    return f"checks on the CPU (GPU present, not used: {gpu})" if gpu else "CPU only (no GPU)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N"
    )
    parser.add_argument("--out", help="write the markdown table here (and the JSON next to it)")
    args = parser.parse_args(argv)
    from aigcguard.device import pick_device
    from aigcguard.imageio import load_image
    from aigcguard.service.check import Checker
    from aigcguard.service.check.signals import SIGNALS
    from aigcguard.watermark.tilemark import working_whitened, worth_searching

    try:
        device = pick_device(args.device)  # before any work: CUDA asked for and absent
    except ValueError as exc:
        parser.error(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="check-speed-"))
    files = []
    for i, (_, arr) in enumerate(load_wild(args.n)):
        path = folder / f"{i:03d}.jpg"
        Image.fromarray(common.square(arr, SIDE)).save(path, quality=90)
        files.append(path)
    start = time.perf_counter()
    pictures = [load_image(f).pixels for f in files]
    decode_s = time.perf_counter() - start
    checker = Checker(device=str(device))
    checker.check(pictures[0], str(files[0]), on_disk=True)  # warm-up: models loaded
    start = time.perf_counter()
    verdicts = [checker.check(load_image(f).pixels, str(f), on_disk=True) for f in files]
    check_s = time.perf_counter() - start
    profile = cProfile.Profile()
    profile.enable()
    for f in files:
        checker.check(load_image(f).pixels, str(f), on_disk=True)
    profile.disable()
    stats = pstats.Stats(profile).stats
    signals = {
        fn: ct
        for (path, _, fn), (_, _, _, ct, _) in stats.items()
        if path.endswith("signals.py") and fn in SIGNALS
    }
    opened = sum(worth_searching(working_whitened(p[None])[0]) for p in pictures)
    n = len(files)
    rows = [
        ["plain decode (load_image)", f"{n / decode_s:.1f}", f"{1000 * decode_s / n:.1f}", "1x"],
        [
            "check, no index (Checker.check)",
            f"{n / check_s:.1f}",
            f"{1000 * check_s / n:.1f}",
            f"{check_s / decode_s:.0f}x",
        ],
    ]
    md = common.markdown_table(["step", "pictures/s", "ms/picture", "time vs decode"], rows)
    md += "\n\nTime per picture by signal (a profiled second pass, profiler overhead included):\n\n"
    md += common.markdown_table(
        ["signal", "ms/picture"],
        [[k, f"{1000 * v / n:.1f}"] for k, v in sorted(signals.items(), key=lambda kv: -kv[1])],
    )
    info = common.machine_info()
    md += (
        f"\n\n- {n} wild pictures at {SIDE} x {SIDE}, JPEG 90; our mark's gate opened on "
        f"{opened} of them (the full search ran); verdicts: "
        f"{', '.join(sorted({v.summary.verdict for v in verdicts}))}.\n"
        f"- Machine: {info['cpu_model']}, {info['cpu_count']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads); {where(device, info['gpu'])}.\n"
    )
    raw = {"n": n, "device": str(device), "decode_s": decode_s, "check_s": check_s}
    raw["gate_open"] = int(opened)
    raw["signals_s"] = signals
    common.write_outputs("check_speed", md, {**raw, "machine": info}, args.out, quick=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
