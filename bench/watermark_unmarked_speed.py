"""How fast tilemark says "no mark" (issue 22): detection on pictures that carry none, the case
a platform meets on nearly every upload, beside imwatermark's dwtDct decoder on the same
pictures, with the share of pictures whose gate opened (the full search ran) and the
pictures wrongly detected (must be 0).

    python bench/watermark_unmarked_speed.py [--n 48] [--out FILE.md]

Pictures: ``n`` of ../shared/data/wild (``watermark_robustness.load_wild``: real photos and
generated pictures, one per source or generator in turn; never marked here), resized and
centre-cropped to 512 x 512 and 1024 x 1024 beforehand (as bench/watermark_speed.py does).
aigcguard detects with a key of its own, batch by batch (16 at 512, 4 at 1024, the batches
of bench/watermark_speed.py); imwatermark decodes one BGR array at a time. Each
implementation runs in a fresh process; one warm-up batch, then every picture once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from watermark_robustness import load_wild
from watermark_speed import isolated

KEY = "unmarked bench"
BATCH = {512: 16, 1024: 4}


def ours(arrays: list[np.ndarray], side: int) -> dict:
    from aigcguard.watermark import detect
    from aigcguard.watermark.tilemark import working_whitened, worth_searching

    x = torch.stack([common.to_tensor(a) for a in arrays])
    batch = BATCH[side]
    detect(x[:batch], key=KEY)  # warm-up
    start = time.perf_counter()
    results = [r for i in range(0, len(x), batch) for r in detect(x[i : i + batch], key=KEY)]
    seconds = time.perf_counter() - start
    opened = sum(worth_searching(working_whitened(img[None])[0]) for img in x)
    return {
        "seconds": seconds,
        "gate_open": int(opened),
        "detected": sum(r.detected for r in results),
    }


def imwatermark(arrays: list[np.ndarray]) -> dict:
    from imwatermark import WatermarkDecoder

    decoder = WatermarkDecoder("bytes", 64)
    bgrs = [common.to_bgr(a) for a in arrays]
    decoder.decode(bgrs[0], "dwtDct")
    start = time.perf_counter()
    for b in bgrs:
        decoder.decode(b, "dwtDct")
    return {"seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=48, help="wild pictures per size")
    parser.add_argument("--out", help="write the markdown table here (and the JSON next to it)")
    args = parser.parse_args(argv)
    common.require_imwatermark()
    pictures = load_wild(args.n)
    rows, raw = [], {"machine": common.machine_info(), "n": len(pictures), "sizes": {}}
    for side in (512, 1024):
        arrays = [common.square(a, side) for _, a in pictures]
        mine = isolated(ours, arrays, side)
        theirs = isolated(imwatermark, arrays)
        n = len(arrays)
        raw["sizes"][side] = {"aigcguard": mine, "imwatermark": theirs}
        for label, r in (
            ("tilemark, aigcguard (cpu)", mine),
            ("dwtDct, imwatermark 0.2.0", theirs),
        ):
            rows.append(
                [
                    f"{side}x{side}",
                    label,
                    n,
                    f"{n / r['seconds']:.1f}",
                    f"{1000 * r['seconds'] / n:.1f}",
                    f"{theirs['seconds'] / r['seconds']:.2f}x",
                    f"{r['gate_open']}/{n}" if "gate_open" in r else "",
                    f"{r['detected']}/{n}" if "detected" in r else "",
                ]
            )
    info = raw["machine"]
    header = [
        "size",
        "implementation",
        "pictures",
        "images/s",
        "ms/image",
        "speed vs dwtDct",
        "gate open",
        "detected",
    ]
    md = common.markdown_table(header, rows)
    md += (
        f"\n\n- Machine: {info.get('cpu_model', '?')}, torch {info.get('torch', '?')}; "
        "no CUDA rows (no GPU on this machine).\n- Pictures never marked: a detection "
        "would be a false positive. `gate open`: pictures whose key-free first look found "
        "enough template to run the full search (watermark/tilemark/gate.py).\n"
    )
    common.write_outputs("watermark_unmarked_speed", md, raw, args.out, quick=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
