"""Train the default real-versus-generated detector on CIFAKE; write it to data/.

    python bench/train_detector.py [--epochs 15] [--inputs npr+rgb]
                                   [--out data/detector_npr.pt] [--device auto]

CIFAKE (../shared/data/cifake/cifake_25k.zip, read in place): 25,000 real CIFAR-10 pictures and
25,000 Stable Diffusion 1.4 pictures, 32 x 32. Split by a hash of each file name: 20% test
(about 10,000, never used here), 8% validation (calibration and the threshold), the rest
training. Resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aigcguard.detectors.data import read_cifake, split_names
from aigcguard.detectors.npr import TrainConfig, train_npr
from aigcguard.device import pick_device

ROOT = Path(__file__).resolve().parents[1]
CIFAKE = ROOT.parent / "shared" / "data" / "cifake" / "cifake_25k.zip"
#: test, validation, training shares: the test share is what bench/detector_eval.py scores
SPLITS = (0.20, 0.08, 0.72)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--inputs", choices=["npr", "npr+rgb"], default="npr+rgb")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "detector_npr.pt")
    args = ap.parse_args()
    if not CIFAKE.is_file():
        print(f"error: {CIFAKE} is missing", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    images, labels, names = read_cifake(CIFAKE)
    _, val, train = split_names(names, SPLITS)
    print(
        f"CIFAKE: {len(images)} pictures read in {time.perf_counter() - t0:.0f} s; "
        f"{len(train)} training, {len(val)} validation",
        file=sys.stderr,
    )
    cfg = TrainConfig(epochs=args.epochs, batch=args.batch, seed=args.seed, inputs=args.inputs)
    det = train_npr(
        [images[i] for i in train],
        labels[train],
        [images[i] for i in val],
        labels[val],
        out=args.out,
        cfg=cfg,
        device=pick_device(args.device),
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(
        f"wrote {args.out}: calibration {det.calibration.to_dict()}, "
        f"{det.training['seconds']:.0f} s of training"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
