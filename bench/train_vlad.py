"""Train the offline default copy-detection descriptor: a RootSIFT codebook and PCA whitening.

    python bench/train_vlad.py [--k 64] [--dim 512] [--views 14] [--out data/vlad_sift.npz]

Training images: the first half (sorted by name) of ``../shared/data/aigc_small/ai`` and of
``.../real`` (50 pictures); the second half is kept out for the copy-detection benchmark's
distractors, and the benchmark's references (Kodak, scikit-image) are never seen. Each picture
gives ``--views`` views: itself and random crops (40-100% of each side), rescales (0.3-1x) and
JPEG re-encodes (quality 40-95), so the whitening learns what survives those edits. k-means
(faiss) on the pooled descriptors gives the codebook; PCA on the views' VLAD vectors gives the
projection, stored as float16 to keep the shipped file small; the views' final descriptors are
kept as the background set for score normalisation.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aigcguard.provenance.similarity import descriptors as E

ROOT = Path(__file__).resolve().parents[1]
AIGC_SMALL = ROOT.parent / "shared" / "data" / "aigc_small"


def training_paths(root: Path = AIGC_SMALL) -> list[Path]:
    """The first half of each class, by name; the rest is the benchmark's."""
    paths = []
    for sub in ("ai", "real"):
        files = sorted(p for p in (root / sub).iterdir() if p.is_file())
        paths += files[: len(files) // 2]
    return paths


def held_out_paths(root: Path = AIGC_SMALL) -> list[Path]:
    paths = []
    for sub in ("ai", "real"):
        files = sorted(p for p in (root / sub).iterdir() if p.is_file())
        paths += files[len(files) // 2 :]
    return paths


def _load(path: Path, max_side: int = 1024) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side))
        return np.asarray(im)


def views(arr: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = [arr]
    h, w = arr.shape[:2]
    for _ in range(n - 1):
        fy, fx = rng.uniform(0.4, 1.0, 2)
        ch, cw = max(32, int(h * fy)), max(32, int(w * fx))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        s = rng.uniform(0.3, 1.0)
        im = Image.fromarray(arr[y : y + ch, x : x + cw])
        im = im.resize((max(32, int(cw * s)), max(32, int(ch * s))), Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(40, 96)))
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--views", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "data" / E.VLAD_FILE)
    args = ap.parse_args()
    if not AIGC_SMALL.is_dir():
        print(f"error: training data {AIGC_SMALL} is missing", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    paths = training_paths()
    descs = [E.root_sift(v) for p in paths for v in views(_load(p), args.views, rng)]
    print(
        f"{len(paths)} pictures, {len(descs)} views, {sum(map(len, descs))} descriptors "
        f"({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr,
    )
    arrays = E.train_vlad(descs, k=args.k, dim=args.dim, seed=args.seed)
    arrays["projection"] = arrays["projection"].astype(np.float16)
    # The training views, described with the final codebook, are the background set that
    # score normalisation compares each query with.
    E.save_codebook(arrays, args.out)
    emb = E.VladDescriptor(str(args.out))
    arrays["background"] = np.stack([emb.embed_descriptors(d) for d in descs]).astype(np.float16)
    arrays["trained_on"] = np.array(",".join(f"{p.parent.name}/{p.name}" for p in paths))
    E.save_codebook(arrays, args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
