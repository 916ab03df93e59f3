"""One-off measurement of the spectral baseline (aigcguard.detectors.spectral) on CIFAKE.

    python bench/spectral_probe.py [--zip ../shared/data/cifake/cifake_25k.zip] [--out FILE.md]

CIFAKE (32 x 32 JPEGs, REAL/*.jpg and FAKE/*.jpg) is read straight from the zip, never
extracted. Per class, a seeded shuffle of the names gives 5,000 training, 2,000 validation and
2,000 test images. C of the logistic regression is chosen on validation AUC from a small grid;
the calibration (``fit_calibration``, target FPR 5%) is fitted on the validation split; the
test split is scored once. Also: spectrum-only and DCT-only ablations, and the feature time
per image at 512 x 512 (scikit-image photos), batched and one at a time.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    busy_warning,
    load_skimage,
    machine_info,
    markdown_table,
    square,
    time_median,
    to_tensor,
)

from aigcguard.detectors.base import fit_calibration
from aigcguard.detectors.spectral import RADIAL_BINS, SpectralDetector, spectral_features

ROOT = Path(__file__).resolve().parents[1]
CIFAKE = ROOT.parent / "shared" / "data" / "cifake" / "cifake_25k.zip"
SPLITS = {"train": 5000, "val": 2000, "test": 2000}


def load_cifake(path: Path, seed: int) -> dict[str, tuple[list[torch.Tensor], np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {k: ([], []) for k in SPLITS}
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for label, cls in ((0, "REAL"), (1, "FAKE")):
            files = sorted(n for n in names if n.startswith(cls + "/") and n.endswith(".jpg"))
            files = [files[i] for i in rng.permutation(len(files))]
            start = 0
            for split, n in SPLITS.items():
                for name in files[start : start + n]:
                    with Image.open(io.BytesIO(zf.read(name))) as im:
                        arr = np.asarray(im.convert("RGB"))
                    out[split][0].append(to_tensor(arr))
                    out[split][1].append(label)
                start += n
    return {k: (imgs, np.array(labels)) for k, (imgs, labels) in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zip", default=str(CIFAKE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the markdown here and the numbers beside it")
    args = ap.parse_args()
    warning = busy_warning()
    if warning:
        print("warning:", warning, file=sys.stderr)

    t0 = time.perf_counter()
    data = load_cifake(Path(args.zip), args.seed)
    t_load = time.perf_counter() - t0
    feats, t_feat = {}, {}
    for split, (imgs, _) in data.items():
        t0 = time.perf_counter()
        feats[split] = spectral_features(imgs)
        t_feat[split] = (time.perf_counter() - t0) / len(imgs)
    y = {k: v[1] for k, v in data.items()}
    print(
        f"loaded in {t_load:.1f} s; features {1e3 * t_feat['train']:.3f} ms/image at 32x32",
        file=sys.stderr,
    )

    # C on validation AUC
    grid = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        det = SpectralDetector.fit_features(feats["train"], y["train"], C=c, seed=args.seed)
        grid[c] = roc_auc_score(y["val"], det.scores_from_features(feats["val"]))
    best_c = max(grid, key=grid.get)
    det = SpectralDetector.fit_features(feats["train"], y["train"], C=best_c, seed=args.seed)
    det.calibration = fit_calibration(
        det.scores_from_features(feats["val"]), y["val"], target_fpr=0.05
    )
    raw = det.scores_from_features(feats["test"])
    p = det.calibration.probability(raw)
    yt = y["test"]
    res = {
        "C_grid_val_auc": grid,
        "C": best_c,
        "test_auc": roc_auc_score(yt, raw),
        "test_acc_at_0.5": float(((p >= 0.5) == yt).mean()),
        "train_acc_at_0.5": float(
            (
                (det.calibration.probability(det.scores_from_features(feats["train"])) >= 0.5)
                == y["train"]
            ).mean()
        ),
        "threshold_at_val_fpr_5%": det.calibration.threshold,
        "test_fpr_at_threshold": float((p[yt == 0] >= det.calibration.threshold).mean()),
        "test_tpr_at_threshold": float((p[yt == 1] >= det.calibration.threshold).mean()),
        "calibration": det.calibration.to_dict(),
    }
    # ablations: one feature family alone
    ablations = {
        "spectrum_only": slice(0, RADIAL_BINS),
        "dct_only": slice(RADIAL_BINS, None),
        "without_dct_sparsity": slice(0, RADIAL_BINS + 64),
    }
    for name, cols in ablations.items():
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=best_c, max_iter=5000))
        pipe.fit(feats["train"][:, cols], y["train"])
        res[f"test_auc_{name}"] = roc_auc_score(yt, pipe.decision_function(feats["test"][:, cols]))

    # speed at 512 x 512, with torch's default threads and with one (on a machine whose cores
    # are busy, torch's threads wait for each other and one thread is much faster)
    photos = [to_tensor(square(arr, 512)) for _, arr in load_skimage()][:16]
    default_threads = torch.get_num_threads()
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        batch_s, _ = time_median(lambda: spectral_features(photos), 5)
        single_s, _ = time_median(lambda: [spectral_features([im]) for im in photos[:4]], 5)
        res[f"ms_per_image_512_batch16_threads{threads}"] = 1e3 * batch_s / len(photos)
        res[f"ms_per_image_512_single_threads{threads}"] = 1e3 * single_s / 4
    torch.set_num_threads(default_threads)
    res["ms_per_image_32_features"] = 1e3 * t_feat["train"]
    res["machine"] = machine_info()
    res["busy_warning"] = warning

    rows = [
        ["test AUC (2,000 + 2,000)", f"{res['test_auc']:.4f}"],
        ["test accuracy at p >= 0.5 (calibrated on val)", f"{res['test_acc_at_0.5']:.4f}"],
        ["train accuracy at p >= 0.5", f"{res['train_acc_at_0.5']:.4f}"],
        [
            "test FPR / TPR at the val-5%-FPR threshold",
            f"{res['test_fpr_at_threshold']:.3f} / {res['test_tpr_at_threshold']:.3f}",
        ],
        ["test AUC, spectrum features only", f"{res['test_auc_spectrum_only']:.4f}"],
        ["test AUC, DCT features only", f"{res['test_auc_dct_only']:.4f}"],
        [
            "test AUC, without the DCT sparsity features",
            f"{res['test_auc_without_dct_sparsity']:.4f}",
        ],
        [
            "C (val AUC grid: " + ", ".join(f"{c:g}: {a:.4f}" for c, a in grid.items()) + ")",
            f"{best_c:g}",
        ],
        ["features, ms/image at 32x32 (batched)", f"{res['ms_per_image_32_features']:.3f}"],
    ]
    rows += [
        [
            f"features, ms/image at 512x512, {what}, {k.rsplit('threads', 1)[1]} torch thread(s)",
            f"{v:.2f}",
        ]
        for k, v in res.items()
        if k.startswith("ms_per_image_512")
        for what in ["batch of 16" if "batch16" in k else "one at a time"]
    ]
    md = (
        f"CIFAKE spectral baseline, {res['machine']['cpu_count']} CPUs "
        f"({res['machine']['cpu_model']}), torch threads {res['machine']['torch_threads']}\n\n"
        + markdown_table(["measure", "value"], rows)
    )
    print(md)
    if args.out:
        out = Path(args.out)
        out.write_text(md + "\n")
        out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    else:
        print(json.dumps(res, indent=2, default=float), file=sys.stderr)


if __name__ == "__main__":
    main()
