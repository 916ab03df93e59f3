"""Watermark robustness: aigcguard against invisible-watermark 0.2.0 under common edits.

    python bench/watermark_robustness.py [--quick] [--out bench/results/watermark_robustness.md]

One table: a row per method (aigcguard tilemark, dwtdct and dwtdctsvd, keyed; imwatermark
dwtDct, dwtDctSvd and rivaGan), a column per attack, each cell "bit accuracy / detection rate" over
the test photos (Kodak and scikit-image), plus PSNR and SSIM of the clean marked images.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.perturb import ATTACK_NOTES, ATTACKS
from aigcguard.watermark import api, detect, dwt, embed, get_method
from aigcguard.watermark import payload as P

KEY = "bench"
MESSAGE = b"Bench!42"  # 8 bytes = the 64-bit payload
RIVA_MESSAGE = MESSAGE[:4]  # rivaGan carries exactly 32 bits
P_THRESHOLD = 1e-6
#: Short side of every test image at least this: the half-size attack must leave imwatermark
#: at least 256 x 256 pixels, which it refuses to go below.
MIN_SHORT = 512
MAX_LONG = 1024
QUICK_SKIMAGE = ("astronaut", "coffee", "chelsea")


def bits_of(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(bool)


# ----------------------------------------------------------------------------------- methods

#: (payload bits matched, detected, p-value, payload shown) for one image
Read = tuple[int, bool, float, bool]


class Ours:
    """aigcguard, keyed: detection from the key's 64 sync bits alone (message not given)."""

    def __init__(self, method: str):
        self.method = method
        self.label = f"aigcguard {method} (keyed)"
        self.n_bits = P.PAYLOAD_BITS
        self.expected = P.message_bits(MESSAGE)

    def embed(self, images: list[np.ndarray]) -> list[np.ndarray]:
        marked = embed(
            [common.to_tensor(a) for a in images],
            message=MESSAGE,
            key=KEY,
            method=self.method,
            device="cpu",
        )
        return [common.from_tensor(t) for t in marked]

    def read(self, images: list[np.ndarray]) -> list[Read]:
        """(payload bits matched, detected, p-value, payload shown) per image."""
        tensors = [common.to_tensor(a) for a in images]
        m = get_method(self.method)
        if m.soft:
            return [self._read_soft(m, t) for t in tensors]
        results = detect(tensors, key=KEY, method=self.method, device="cpu")
        out = []
        for t, r in zip(tensors, results, strict=True):
            ones, total = m.read_votes(t[None].float(), P.SYNC_BITS + P.PAYLOAD_BITS)
            bits = dwt.votes_to_bits(ones, total)
            _, payload_bits = P.split_frames(bits, KEY)
            matched = int((payload_bits[0] == self.expected).sum())
            out.append((matched, bool(r.detected), float(r.p_value), r.payload is not None))
        return out

    def _read_soft(self, m, t: torch.Tensor) -> Read:
        # One read gives both the verdict (as ``detect`` judges it) and the decoded payload,
        # which is compared even when the mark is not detected.
        reading = m.read_soft(t[None], KEY)[0]
        verdict = api._judge_soft(reading, KEY, m.name, P_THRESHOLD)
        payload_bits = reading.payload ^ P.frame_layout(KEY).keystream
        matched = int((payload_bits == self.expected).sum())
        return matched, verdict.detected, verdict.p_value, verdict.payload is not None


class Imwatermark:
    """invisible-watermark; it thresholds nothing, so the binomial rule is applied to its bits."""

    def __init__(self, method: str):
        from imwatermark import WatermarkDecoder, WatermarkEncoder

        self.method = method
        self.label = f"imwatermark {method}"
        message = RIVA_MESSAGE if method == "rivaGan" else MESSAGE
        self.expected = bits_of(message)
        self.n_bits = len(self.expected)
        if method == "rivaGan":
            WatermarkEncoder.loadModel()
        self.encoder = WatermarkEncoder()
        self.encoder.set_watermark("bytes", message)
        self.decoder = WatermarkDecoder("bits", self.n_bits)

    def embed(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [common.from_bgr(self.encoder.encode(common.to_bgr(a), self.method)) for a in images]

    def read(self, images: list[np.ndarray]) -> list[Read]:
        out = []
        for a in images:
            h, w = a.shape[:2]
            if h * w < 256 * 256:
                raise SystemExit(f"{w}x{h} is below imwatermark's 256x256 minimum; raise MIN_SHORT")
            bits = np.asarray(self.decoder.decode(common.to_bgr(a), self.method)).astype(bool)
            matched = int((bits == self.expected).sum())
            p = P.binomial_sf(matched, self.n_bits)
            out.append((matched, p <= P_THRESHOLD, p, p <= P_THRESHOLD))
        return out


# ------------------------------------------------------------------------------------- data


def load_images(quick: bool) -> tuple[list[common.Photo], list[str]]:
    notes = []
    if common.kodak_available():
        kodak = common.load_kodak(limit=3 if quick else None)
    else:
        msg = common.missing_kodak_message() + " Falling back to the scikit-image photos only."
        print(f"WARNING: {msg}", file=sys.stderr)
        notes.append(f"**Kodak photos missing**: scikit-image photos only ({msg})")
        kodak = []
    names = QUICK_SKIMAGE if quick else common.SKIMAGE_PHOTOS
    if quick and not kodak:
        names = common.SKIMAGE_PHOTOS[:6]
    photos = kodak + common.load_skimage(names)
    photos = [(n, common.fit_size(a, MIN_SHORT, MAX_LONG)) for n, a in photos]
    return photos, notes


def load_wild(n: int, root: Path = common.WILD_DIR) -> list[common.Photo]:
    """``n`` pictures from the wild set, held out from the 38 photos the marks were tuned on:
    real and generated alternately, each time from the next source or generator in turn (the
    first of its files in name order), so as many kinds as ``n`` allows are there."""
    manifest = root / "manifest.csv"
    if not manifest.exists():
        raise common.MissingDataError(
            f"{manifest} not found: --wild needs ../shared/data/wild (or AIGC_WILD_DIR)"
        )
    groups: dict[str, dict[str, list[str]]] = {"real": {}, "ai": {}}
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            side = "real" if row["label"] == "real" else "ai"
            group = row["source"] if side == "real" else row["generator"]
            groups[side].setdefault(group, []).append(row["file"])
    queues = {side: [sorted(f) for _, f in sorted(g.items())] for side, g in groups.items()}
    picked: list[str] = []
    turn = 0
    while len(picked) < n and any(any(q) for q in queues.values()):
        for side in ("real", "ai"):
            lists = [q for q in queues[side] if q]
            if lists and len(picked) < n:
                picked.append(lists[turn % len(lists)].pop(0))
        turn += 1
    out = []
    for name in picked:
        with Image.open(root / name) as im:
            out.append((f"wild/{name}", np.asarray(im.convert("RGB"), dtype=np.uint8)))
    return out


def riva_subset(photos: list[common.Photo], n: int) -> list[int]:
    """``n`` indices spread evenly over the Kodak photos (all 768 x 512, so rivaGan's time is
    predictable), or over all photos when there are no Kodak ones."""
    pool = [i for i, (name, _) in enumerate(photos) if name.startswith("kodak/")]
    pool = pool or list(range(len(photos)))
    if n >= len(pool):
        return pool
    return (
        [pool[round(k * (len(pool) - 1) / max(1, n - 1))] for k in range(n)] if n > 1 else pool[:1]
    )


def quality(originals: list[np.ndarray], marked: list[np.ndarray]) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [
        peak_signal_noise_ratio(o, m, data_range=255)
        for o, m in zip(originals, marked, strict=True)
    ]
    ssim = [
        structural_similarity(o, m, channel_axis=2, data_range=255)
        for o, m in zip(originals, marked, strict=True)
    ]
    return float(np.mean(psnr)), float(np.mean(ssim))


# ------------------------------------------------------------------------------------- main


def run_method(method, photos: list[common.Photo], indices: list[int]) -> dict:
    originals = [photos[i][1] for i in indices]
    t0 = time.perf_counter()
    marked = method.embed(originals)
    psnr, ssim = quality(originals, marked)
    per_attack = {}
    for attack_name, attack in ATTACKS:
        # The seed is the photo's index, so every method sees the same noise on a photo.
        attacked = [attack(m, i) for m, i in zip(marked, indices, strict=True)]
        reads = method.read(attacked)
        accs = [matched / method.n_bits for matched, *_ in reads]
        per_attack[attack_name] = {
            "bit_accuracy": float(np.mean(accs)),
            "detection_rate": float(np.mean([d for _, d, _, _ in reads])),
            # a payload is shown when detected (tilemark: and its payload_error <= 1%)
            "payload_shown_rate": float(np.mean([s for *_, s in reads])),
            "wrong_payloads_shown": sum(s and mt < method.n_bits for mt, _, _, s in reads),
            "per_image": [
                {
                    "image": photos[i][0],
                    "bits_matched": mt,
                    "detected": d,
                    "p_value": p,
                    "payload_shown": s,
                }
                for i, (mt, d, p, s) in zip(indices, reads, strict=True)
            ],
        }
    elapsed = time.perf_counter() - t0
    print(f"  {method.label}: {len(indices)} images, {elapsed:.1f} s", file=sys.stderr)
    return {
        "method": method.label,
        "bits": method.n_bits,
        "images": [photos[i][0] for i in indices],
        "psnr_db": psnr,
        "ssim": ssim,
        "attacks": per_attack,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~6 photos instead of 38")
    parser.add_argument("--out", help="write the markdown table here (and the JSON next to it)")
    parser.add_argument(
        "--riva-images",
        type=int,
        help="photos rivaGan runs on (about 4 s per decode here): default 6, --quick 2",
    )
    parser.add_argument("--no-rivagan", action="store_true", help="leave rivaGan out")
    parser.add_argument(
        "--wild",
        type=int,
        metavar="N",
        help="run on N pictures of ../shared/data/wild instead (real and generated, one per "
        "source or generator in turn): pictures the marks were not tuned on",
    )
    parser.add_argument(
        "--only", help="comma-separated row labels to run (substring match), e.g. tilemark"
    )
    args = parser.parse_args(argv)

    common.require_imwatermark()
    photos, notes = load_images(args.quick)
    if args.wild:
        photos = load_wild(args.wild)
        notes.append(
            f"Held-out pictures: {len(photos)} from ../shared/data/wild (`--wild`), real and "
            "generated alternately, one per source or generator in turn; not the 38 photos "
            "the marks were tuned on."
        )
    all_idx = list(range(len(photos)))
    n_riva = args.riva_images if args.riva_images is not None else (2 if args.quick else 6)

    methods = [
        (Ours("tilemark"), all_idx),
        (Ours("dwtdct"), all_idx),
        (Ours("dwtdctsvd"), all_idx),
        (Imwatermark("dwtDct"), all_idx),
        (Imwatermark("dwtDctSvd"), all_idx),
    ]
    riva_note = None
    if args.no_rivagan:
        riva_note = "rivaGan left out (`--no-rivagan`)."
    else:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if not args.quick:
                raise SystemExit(
                    "onnxruntime is not installed, so imwatermark's rivaGan cannot run: "
                    "pip install onnxruntime (or pass --no-rivagan)"
                ) from None
            riva_note = "rivaGan skipped: onnxruntime is not installed."
        else:
            riva_idx = riva_subset(photos, n_riva)
            methods.append((Imwatermark("rivaGan"), riva_idx))
            if len(riva_idx) < len(photos):
                riva_note = (
                    f"rivaGan runs on {len(riva_idx)} of the {len(photos)} photos "
                    f"({', '.join(photos[i][0] for i in riva_idx)}): its ONNX model takes "
                    f"seconds per image on a CPU."
                )
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        methods = [(m, i) for m, i in methods if any(w in m.label for w in wanted)]
        notes.append(f"Partial run: only {', '.join(m.label for m, _ in methods)}.")
    if riva_note:
        print(f"NOTE: {riva_note}", file=sys.stderr)
        notes.append(riva_note)

    info = common.machine_info()
    print(f"{len(photos)} photos, {len(ATTACKS)} attacks", file=sys.stderr)
    results = [run_method(m, photos, idx) for m, idx in methods]

    attack_names = [name for name, _ in ATTACKS]
    header = ["method", "bits", "images", *attack_names, "PSNR dB", "SSIM"]
    rows = []
    for r in results:
        cells = [
            f"{r['attacks'][a]['bit_accuracy']:.3f} / {r['attacks'][a]['detection_rate']:.2f}"
            for a in attack_names
        ]
        rows.append(
            [
                r["method"],
                r["bits"],
                len(r["images"]),
                *cells,
                f"{r['psnr_db']:.1f}",
                f"{r['ssim']:.4f}",
            ]
        )

    sizes = sorted({f"{a.shape[1]}x{a.shape[0]}" for _, a in photos})
    need = {n: P.min_matches(n, P_THRESHOLD) for n in sorted({r["bits"] for r in results} | {64})}
    footnotes = [
        "Cells: bit accuracy / detection rate, averaged over the photos.",
        "Bit accuracy: share of the embedded message bits read back correctly. aigcguard: the "
        f"64 payload bits of the keyed frame (key `{KEY}`, message `{MESSAGE.decode()}`), read "
        "even when the mark is not detected (tilemark: after decoding its rate-1/2 code; DWT: "
        "majority vote); imwatermark: the bits its decoder returns (64-bit message, 32 bits "
        "for rivaGan).",
        "Detection rate: share of photos where the mark is found at p <= 1e-6. aigcguard: "
        "`detect(...).detected`, a blind test (message not given) on what the key alone "
        "fixes: tilemark, its 128 known chips (the bound on the signed soft read-outs, "
        "times the placements its search could pick over their share of the false-positive "
        "budget); DWT, the 64 sync bits (binomial). "
        "imwatermark thresholds nothing, so the same binomial rule is applied to its decoded "
        "bits against the embedded message: p = P(X >= matched), X ~ Binomial(bits, 1/2) "
        f"(needs {', '.join(f'{v}/{k}' for k, v in need.items())} bits). This is generous "
        "to imwatermark: it needs the message to be known in advance, which a real detector "
        "does not have.",
        (
            f"Pictures: {len(photos)} from ../shared/data/wild "
            f"({sum('/real/' in n for n, _ in photos)} real, "
            f"{sum('/ai/' in n for n, _ in photos)} generated), as stored. Sizes: "
            f"{', '.join(sizes)}."
            if args.wild
            else f"Photos: {len(photos)} "
            f"({sum(n.startswith('kodak/') for n, _ in photos)} Kodak, "
            f"{sum(n.startswith('skimage/') for n, _ in photos)} scikit-image; grayscale ones "
            f"repeated to RGB), resized (bicubic) so the short side is at least {MIN_SHORT} and, "
            f"where possible, the long side at most {MAX_LONG}, so that the half-size attack "
            f"still leaves imwatermark its 256x256 minimum. Sizes: {', '.join(sizes)}."
        ),
        "PSNR and SSIM (`skimage.metrics`, `channel_axis=2`, `data_range=255`): clean marked "
        "image against the original, averaged over the photos.",
        *ATTACK_NOTES,
        f"Machine: {info['cpu_model']}, torch {info['torch']}, invisible-watermark "
        f"{info['invisible_watermark']}.",
    ]
    payload_rows = [
        [
            r["method"],
            *[
                f"{att['payload_shown_rate']:.2f} ({att['wrong_payloads_shown']})"
                for att in (r["attacks"][a] for a in attack_names)
            ],
        ]
        for r in results
        if "tilemark" in r["method"]
    ]
    payload_part = []
    if payload_rows:
        payload_part = [
            "",
            "Payload shown by `detect` (detected, and its estimated `payload_error` at most "
            "1%), with the number of wrong payloads shown in brackets:",
            "",
            common.markdown_table(["method", *attack_names], payload_rows),
        ]
    title = "## Watermark robustness" + (" (quick run)" if args.quick else "")
    markdown = "\n".join(
        [
            title,
            "",
            common.markdown_table(header, rows),
            *payload_part,
            "",
            *[f"- {n}" for n in notes + footnotes],
        ]
    )
    raw = {
        "benchmark": "watermark_robustness",
        "quick": args.quick,
        "key": KEY,
        "message": MESSAGE.hex(),
        "p_threshold": P_THRESHOLD,
        "photos": [{"name": n, "width": a.shape[1], "height": a.shape[0]} for n, a in photos],
        "attacks": attack_names,
        "notes": notes,
        "machine": info,
        "results": results,
        "median_seconds_per_method": statistics.median(r["seconds"] for r in results),
    }
    common.write_outputs("watermark_robustness", markdown, raw, args.out, args.quick)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
