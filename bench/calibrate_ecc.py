"""Measure how often a tilemark payload decodes wrong, by the SNR its known chips show.

    python bench/calibrate_ecc.py [--reads 60000] [--workers 2] [--out FILE.json]

Random messages go through the rate-1/2 code and a Gaussian channel at true SNRs drawn
uniformly from 0.6 to 2.4 (the coded chips' strength off the known chips' by a relative
``ecc.MISMATCH`` standard deviation, as real read-outs are), with 128 known chips beside
them, exactly as tilemark reads a
frame (``aigcguard.watermark.ecc.read``: LLRs and SNR estimated from the known chips, OSD
decoding, the consistency check). Reads are binned by the *estimated* SNR, the only one a
reader has; per bin the table keeps the consistent reads, the wrong ones among them, and the
one-sided 95% Clopper-Pearson upper bound on their rate; a bin's bound also bounds every
higher bin (errors fall as SNR rises), so the table keeps the running minimum.

The result goes to ``data/ecc_frame_errors.json`` (what ``detect`` reports as
``payload_error``) and a markdown summary to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import beta

from aigcguard.watermark import ecc
from aigcguard.watermark.tilemark import N_PILOT, SYNC_BITS

ROOT = Path(__file__).resolve().parents[1]
KNOWN_CHIPS = N_PILOT + SYNC_BITS
SNR_RANGE = (0.6, 2.4)
BIN = 0.05
TABLE_FROM = 0.8  # below this a read is reported as unreadable (error 1)


def _chunk(args: tuple[int, int]) -> list[tuple[float, bool, bool]]:
    seed, n = args
    snrs = np.random.default_rng(seed).uniform(*SNR_RANGE, n)
    return [
        (r.snr, r.consistent, r.error == 1.0) for r in ecc.simulate_reads(snrs, KNOWN_CHIPS, seed)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=60000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--out", type=Path, default=ROOT / "data" / ecc.FRAME_ERRORS_FILE)
    args = ap.parse_args()

    chunks = [(args.seed + i, args.reads // 20) for i in range(20)]
    with ProcessPoolExecutor(args.workers) as pool:
        reads = [r for part in pool.map(_chunk, chunks) for r in part]
    snr = np.array([r[0] for r in reads])
    consistent = np.array([r[1] for r in reads])
    wrong = np.array([r[2] for r in reads])

    edges = np.round(np.arange(TABLE_FROM, SNR_RANGE[1] - BIN / 2, BIN), 4)
    rows = []
    for lo in edges:
        sel = consistent & (snr >= lo) & (snr < lo + BIN)
        n, k = int(sel.sum()), int((wrong & sel).sum())
        upper = 1.0 if n == 0 or k == n else float(beta.ppf(0.95, k + 1, n - k))
        rows.append((float(lo), n, k, upper))
    upper = np.minimum.accumulate(np.array([r[3] for r in rows]))

    caught = int((wrong & ~consistent).sum())
    table = {
        "created": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "code_seed": ecc._SEED,
        "osd_order": ecc.CODE_BITS - ecc.MESSAGE_BITS,
        "mismatch": ecc.MISMATCH,
        "known_chips": KNOWN_CHIPS,
        "reads": len(reads),
        "true_snr_range": list(SNR_RANGE),
        "wrong": int(wrong.sum()),
        "wrong_caught_by_consistency": caught,
        "correct_flagged_by_consistency": int((~wrong & ~consistent).sum()),
        "snr": [r[0] for r in rows],
        "consistent_reads": [r[1] for r in rows],
        "wrong_reads": [r[2] for r in rows],
        "error_upper95": [float(u) for u in upper],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as f:
        json.dump(table, f, indent=1)
    os.replace(f.name, args.out)

    print(
        f"{len(reads)} simulated reads, {int(wrong.sum())} wrong; the consistency check caught "
        f"{caught} of them and flagged {table['correct_flagged_by_consistency']} correct ones.\n"
    )
    print("| estimated SNR | consistent reads | wrong | payload_error (95% upper) |")
    print("|---|---:|---:|---:|")
    for (lo, n, k, _), u in zip(rows, upper, strict=True):
        print(f"| {lo:.2f}-{lo + BIN:.2f} | {n} | {k} | {u:.2g} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
