"""Watermark embed and detect speed: aigcguard against invisible-watermark 0.2.0.

    python bench/watermark_speed.py [--quick] [--out bench/results/watermark_speed.md]

Images per second at 512 x 512 (batch of 64; 16 for tilemark and rivaGan) and 1024 x 1024
(batch of 16; 4 for tilemark and rivaGan), compute only:
the images are decoded and resized beforehand. aigcguard takes the whole batch as one uint8
tensor (on the CPU, and on the GPU when CUDA is available, inputs already on the GPU);
imwatermark takes one BGR array at a time, so its time is the loop over the batch, with the
RGB -> BGR conversion done beforehand. One warm-up call, then the median of the repeats.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.watermark import detect, embed

KEY = "bench"
MESSAGE = b"Bench!42"  # 8 bytes: 64 payload bits for aigcguard, 64 bits for imwatermark
RIVA_MESSAGE = b"Riva"  # rivaGan carries 32 bits
# (ours, imwatermark's counterpart, largest batch per side): the robust pair runs on a
# smaller batch because rivaGan takes about a second per image and tilemark's geometry
# search about as long to detect.
METHODS = (
    ("tilemark", "rivaGan", {512: 16, 1024: 4}),
    ("dwtdct", "dwtDct", {}),
    ("dwtdctsvd", "dwtDctSvd", {}),
)


def make_batch(photos: list[common.Photo], side: int, n: int) -> list[np.ndarray]:
    """``n`` side x side RGB arrays: the photos resized and centre-cropped, cycled."""
    squares = [common.square(arr, side) for _, arr in photos[: min(n, len(photos))]]
    return [squares[i % len(squares)] for i in range(n)]


def time_embed_detect(do_embed, detect_marked, repeats: int, device: str = "cpu"):
    """Median times of ``do_embed()`` and of ``detect_marked(marked)``; also the detections."""
    t_embed, embed_times = common.time_median(do_embed, repeats, device)
    marked = do_embed()
    t_detect, detect_times = common.time_median(lambda: detect_marked(marked), repeats, device)
    timing = {
        "embed_s": t_embed,
        "embed_times_s": embed_times,
        "detect_s": t_detect,
        "detect_times_s": detect_times,
    }
    return timing, detect_marked(marked)


def bench_ours(x: torch.Tensor, method: str, device: str, repeats: int) -> dict:
    x = x.to(device)
    timing, results = time_embed_detect(
        lambda: embed(x, message=MESSAGE, key=KEY, method=method, device=device),
        lambda marked: detect(marked, key=KEY, method=method, device=device),
        repeats,
        device,
    )
    ok = sum(
        r.detected and r.payload is not None and bytes.fromhex(r.payload) == MESSAGE
        for r in results
    )
    return {**timing, "read_back": ok}


def bench_imwatermark(bgrs: list[np.ndarray], method: str, repeats: int) -> dict:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    message = RIVA_MESSAGE if method == "rivaGan" else MESSAGE
    if method == "rivaGan":
        WatermarkEncoder.loadModel()
        WatermarkDecoder.loadModel()
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", message)
    decoder = WatermarkDecoder("bytes", 8 * len(message))
    timing, decoded = time_embed_detect(
        lambda: [encoder.encode(b, method) for b in bgrs],
        lambda marked: [decoder.decode(b, method) for b in marked],
        repeats,
    )
    return {**timing, "read_back": sum(d == message for d in decoded)}


def isolated(fn, *args):
    """Run one measurement in a fresh process. Measured in one process, our torch code ran
    50% slower right after imwatermark's numpy loops (allocator and thread-pool state left
    behind), so each implementation gets a clean process, as it would in production."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, fewer repeats")
    parser.add_argument("--out", help="write the markdown table here (and the JSON next to it)")
    parser.add_argument("--repeats", type=int, help="timed repeats after the warm-up")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU rows")
    args = parser.parse_args(argv)

    common.require_imwatermark()
    photos = common.load_kodak() + common.load_skimage()
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [(512, 8), (1024, 2)] if args.quick else [(512, 64), (1024, 16)]
    devices = ["cpu"]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append("cuda")
    info = common.machine_info()
    busy = common.busy_warning()
    if busy:
        print(f"WARNING: {busy}", file=sys.stderr)
    threads = info["torch_threads"]

    raw: dict = {
        "benchmark": "watermark_speed",
        "quick": args.quick,
        "repeats": repeats,
        "warmup": 1,
        "key": KEY,
        "message": MESSAGE.hex(),
        "machine": info,
        "busy_warning": busy,
        "results": [],
    }
    rows = []
    for side, full_batch in sizes:
        for ours_name, im_name, caps in METHODS:
            batch = min(full_batch, caps.get(side, full_batch))
            arrays = make_batch(photos, side, batch)
            x = torch.stack([common.to_tensor(a) for a in arrays])
            bgrs = [common.to_bgr(a) for a in arrays]
            print(f"[{side}x{side} x{batch}] imwatermark {im_name} ...", file=sys.stderr)
            ref = isolated(bench_imwatermark, bgrs, im_name, repeats)
            entries = [("imwatermark 0.2.0 (per image)", "cpu", im_name, ref)]
            for dev in devices:
                print(
                    f"[{side}x{side} x{batch}] aigcguard {ours_name} on {dev} ...", file=sys.stderr
                )
                res = isolated(bench_ours, x, ours_name, dev, repeats)
                label = (
                    f"aigcguard ({dev}, {threads} threads)" if dev == "cpu" else "aigcguard (cuda)"
                )
                entries.append((label, dev, ours_name, res))
            for op in ("embed", "detect"):
                ref_ips = batch / ref[f"{op}_s"]
                for label, dev, name, res in entries:
                    ips = batch / res[f"{op}_s"]
                    raw["results"].append(
                        {
                            "op": op,
                            "size": side,
                            "batch": batch,
                            "method": name,
                            "implementation": label,
                            "device": dev,
                            "median_s": res[f"{op}_s"],
                            "times_s": res[f"{op}_times_s"],
                            "images_per_s": ips,
                            "speedup_vs_imwatermark": ips / ref_ips,
                            "read_back": f"{res['read_back']}/{batch}",
                        }
                    )
                    rows.append(
                        [
                            op,
                            f"{side}x{side}",
                            batch,
                            name,
                            label,
                            f"{ips:.1f}",
                            f"{1000 / ips:.2f}",
                            f"{ips / ref_ips:.1f}x",
                            f"{res['read_back']}/{batch}",
                        ]
                    )

    gpu = f", GPU: {info['gpu']}" if "cuda" in devices else ", no CUDA"
    title = "## Watermark speed" + (" (quick run)" if args.quick else "")
    table = common.markdown_table(
        [
            "op",
            "size",
            "batch",
            "method",
            "implementation",
            "images/s",
            "ms/image",
            "speed-up vs imwatermark",
            "marks read back",
        ],
        rows,
    )
    notes = [
        *([f"**Warning**: {busy}."] if busy else []),
        f"Machine: {info['cpu_model']} ({info['cpu_count']} CPUs), torch {info['torch']} with "
        f"{threads} threads{gpu}; OpenCV {info.get('opencv')} "
        f"({info.get('opencv_threads')} threads), invisible-watermark "
        f"{info['invisible_watermark']}.",
        f"Compute only: inputs are decoded, resized and centre-cropped beforehand (Kodak and "
        f"scikit-image photos, cycled to fill the batch). One warm-up call, then the median of "
        f"{repeats} timed calls over the whole batch.",
        "aigcguard: `embed`/`detect` on the whole uint8 batch, key "
        f"`{KEY}` (64 sync + 64 payload bits per frame); on CUDA the inputs are already on the "
        "GPU and the clock stops after `torch.cuda.synchronize()`.",
        "imwatermark: a Python loop of `WatermarkEncoder.encode` / `WatermarkDecoder.decode` "
        "over the batch, one BGR image at a time, 64-bit message (rivaGan: 32 bits, its ONNX "
        "model loaded before the clock starts); the RGB -> BGR conversion is "
        "done before the clock starts.",
        "Each implementation, method and size is timed in a fresh process: in one shared "
        "process our torch code ran about 50% slower right after imwatermark's numpy loops.",
        "speed-up = images/s divided by imwatermark's images/s for the same method, operation "
        "and size. marks read back: aigcguard, detected with the right payload; imwatermark, "
        "decoded bytes equal to the message.",
    ]
    markdown = "\n".join([title, "", table, "", *[f"- {n}" for n in notes]])
    common.write_outputs("watermark_speed", markdown, raw, args.out, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
