"""Evaluate a detector: CIFAKE's held-out test split, the re-encoded aigc_small set, speed.

    python bench/detector_eval.py [--model default] [--out FILE.md]

- CIFAKE: the test split of bench/train_detector.py (20% of the archive by file-name hash,
  about 10,000 pictures never used in training or calibration), clean and under JPEG 90/75/50
  and resize x0.5 (``aigcguard.perturb.PERTURBATIONS``).
- aigc_small: all 100 pictures, both classes brought to the same size and encoding (short
  side resized to 512, centre crop 512 x 512, JPEG 90) so that neither size nor file format can
  give the answer away; and "size-matched", every picture first brought to the generated
  files' 559 px and JPEG 75 (see ``reencoded``); same perturbations. 100 pictures: a rough
  figure. Skipped for a detector trained on aigc_small (bench/train_spectral.py reports its
  cross-validated figures).
- Speed: images per second at 512 x 512 on this machine (batches of 32).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from train_detector import CIFAKE, SPLITS

from aigcguard.detectors import api
from aigcguard.detectors.data import read_cifake, split_names
from aigcguard.detectors.metrics import evaluate, markdown_table
from aigcguard.perturb import jpeg

AIGC_SMALL = common.ROOT.parent / "shared" / "data" / "aigc_small"


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, np.uint8)).permute(2, 0, 1)


#: aigc_small's generated files are all 559 x 559 JPEG (quality about 75, 4:2:0); its photos
#: are 723 to 3996 pixels wide with the same encoding
AI_FILES = (559, 75)


def reencoded(
    path: Path, side: int = 512, quality: int = 90, presize: tuple[int, int] | None = None
) -> torch.Tensor:
    """The evaluation protocol: short side resized to ``side``, centre crop, JPEG ``quality``.
    With ``presize`` (side, quality) every picture is first brought to that size and encoding
    ("size-matched"): resizing the photos by 1.4 to 7.8 and the generated pictures by 0.92
    would otherwise leave a trace of the original size (sharpness, chroma resolution) that a
    detector can learn instead of what generation does."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    if presize is not None:
        arr = jpeg(common.square(arr, presize[0]), presize[1])
    return _tensor(jpeg(common.square(arr, side), quality))


def aigc_small(presize: tuple[int, int] | None = None) -> tuple[list, list, list[str]]:
    """aigc_small under the protocol: (real tensors, generated tensors, paths real then ai)."""
    real = sorted(p for p in (AIGC_SMALL / "real").iterdir() if p.is_file())
    fake = sorted(p for p in (AIGC_SMALL / "ai").iterdir() if p.is_file())
    return (
        [reencoded(p, presize=presize) for p in real],
        [reencoded(p, presize=presize) for p in fake],
        [str(p) for p in real + fake],
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    detector = api.load(args.model, device=args.device)
    parts = [f"## Detector `{detector.spec}` ({detector.kind})", ""]

    if CIFAKE.is_file():
        images, labels, names = read_cifake(CIFAKE)
        test = split_names(names, SPLITS)[0]
        real = [_tensor(images[i]) for i in test if labels[i] == 0]
        fake = [_tensor(images[i]) for i in test if labels[i] == 1]
        t0 = time.perf_counter()
        results = evaluate(detector, real, fake)
        parts += [
            f"### CIFAKE test split ({len(real)} real, {len(fake)} generated, 32 x 32)",
            "",
            markdown_table(results),
            "",
            f"({time.perf_counter() - t0:.0f} s)",
            "",
        ]
        print("\n".join(parts[-6:]), file=sys.stderr)
    else:
        parts += [f"CIFAKE not found at {CIFAKE}: skipped.", ""]

    trained_on_aigc = (getattr(detector, "training", None) or {}).get("data") == "aigc_small"
    if trained_on_aigc:
        parts += ["aigc_small: skipped, the detector was trained on it (see its CV figures).", ""]
    elif AIGC_SMALL.is_dir():
        for presize, what in ((None, "same size"), (AI_FILES, "size-matched")):
            real, fake, _ = aigc_small(presize)
            results = evaluate(detector, real, fake)
            parts += [
                f"### aigc_small, re-encoded, {what} ({len(real)} real, {len(fake)} "
                "generated; 512 x 512 centre crops, JPEG 90"
                + (", every picture first at 559 px JPEG 75" if presize else "")
                + ")",
                "",
                markdown_table(results),
                "",
            ]
            print("\n".join(parts[-4:]), file=sys.stderr)

    photos = common.load_kodak() if common.kodak_available() else common.load_skimage()
    batch = [common.to_tensor(common.square(a, 512)) for _, a in photos][:32]
    batch = (batch * 2)[:32]
    device = getattr(detector, "device", "cpu")
    median, _ = common.time_median(lambda: detector.probabilities(batch), 3, device)
    rate = len(batch) / median
    info = common.machine_info()
    parts += [
        f"Speed at 512 x 512: {rate:.1f} images/s (batches of 32, median of 3; "
        f"{info['cpu_model']}, torch {info['torch']}).",
    ]
    if (getattr(detector, "training", None) or {}).get("history"):
        hist = detector.training["history"]
        parts.append(
            f"Training: {len(hist)} epochs, {detector.training.get('seconds', 0):.0f} s; "
            f"validation AUC by epoch {[round(h['val_auc'], 4) for h in hist]}."
        )
    markdown = "\n".join(parts)
    common.print_markdown(markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
