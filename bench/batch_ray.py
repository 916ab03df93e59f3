"""Ray local mode against one process: `aigc batch describe|detect` over the same pictures.

Makes N pictures (default 2,000) from the shared Kodak photos: random crops of 256-512 px,
some mirrored, JPEG 90, the way uploads arrive. Then runs each job as a whole command (start-up,
Ray's start and the actors' model loading included) with ``--ray-address none`` (this process,
the library's loop) and ``--ray-address local`` (Ray Data on this machine), in turn, and checks
that both wrote the same rows. Prints a markdown table (throughput, ratio, identical rows).

    python bench/batch_ray.py [--count 2000] [--repeat 2] [--work DIR] [--out F.md]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def make_pictures(folder: Path, count: int, seed: int = 0) -> None:
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photos = [arr for _, arr in common.load_kodak()]
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side_h, side_w = (int(rng.integers(256, min(h, 512) + 1)) for _ in range(2))
        side_w = min(side_w, w)
        y, x = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
        crop = photo[y : y + side_h, x : x + side_w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{i:05d}.jpg", quality=90)


def run(task: str, source: Path, out: Path, address: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["aigc", "batch", task, str(source), "--out", str(out), "--ray-address", address]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def same_rows(a: Path, b: Path) -> tuple[bool, str]:
    import pyarrow.parquet as pq

    left = sorted(pq.read_table(a).to_pylist(), key=lambda r: r["path"])
    right = sorted(pq.read_table(b).to_pylist(), key=lambda r: r["path"])
    if len(left) != len(right):
        return False, f"{len(left)} rows against {len(right)}"
    differ = sum(x != y for x, y in zip(left, right, strict=True))
    return differ == 0, f"{len(left) - differ} of {len(left)} rows identical"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", default="detect,describe")
    parser.add_argument("--work", type=Path, default=Path("/tmp/aigc-batch-bench"))
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args()
    if warning := common.busy_warning():
        print(f"warning: {warning}", file=sys.stderr)
    raw = {"machine": common.machine_info(), "count": args.count, "runs": {}}
    source = args.work / f"pictures-{args.count}"
    make_pictures(source, args.count)
    rows = []
    for task in args.tasks.split(","):
        times: dict[str, list[float]] = {"none": [], "local": []}
        for _ in range(args.repeat):
            for address in times:  # in turn, so drift in the machine's speed hits both
                out = args.work / f"out-{task}-{address}"
                times[address].append(run(task, source, out, address))
                print(f"{task} {address}: {times[address][-1]:.1f} s", file=sys.stderr)
        raw["runs"][task] = times
        identical, detail = same_rows(
            args.work / f"out-{task}-none", args.work / f"out-{task}-local"
        )
        here, ray = (statistics.median(times[a]) for a in ("none", "local"))
        rows.append(
            [
                f"`aigc batch {task}`",
                f"{args.count / here:.1f} ({here:.1f} s)",
                f"{args.count / ray:.1f} ({ray:.1f} s)",
                f"{here / ray:.2f}",
                ("yes: " if identical else "NO: ") + detail,
            ]
        )
    header = [
        "job",
        "one process: img/s (wall)",
        "Ray local: img/s (wall)",
        "Ray / one process",
        "same rows",
    ]
    common.write_outputs("batch_ray", common.markdown_table(header, rows), raw, args.out, False)


if __name__ == "__main__":
    main()
