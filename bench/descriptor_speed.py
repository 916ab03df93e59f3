"""Throughput of the similarity descriptors, images per second.

    python bench/descriptor_speed.py [--images 48] [--repeats 3] [--device auto] [--out FILE.md]

Images: Kodak photos (scikit-image's when Kodak is absent) cut to 512 x 512. Each descriptor
embeds the whole set ``--repeats`` times in batches of 16; the table gives the median. CLIP
rows use randomly initialised weights of the named architecture: the cost of a forward pass
does not depend on the weights, and nothing is downloaded here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.provenance.similarity.descriptors import create_descriptor

SPECS = ("vlad", "pdq", "clip:ViT-B-32/random")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--specs", default=",".join(SPECS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    photos = common.load_kodak() if common.kodak_available() else common.load_skimage()
    tiles = [common.square(arr, 512) for _, arr in photos]
    images = [common.to_tensor(tiles[i % len(tiles)]) for i in range(args.images)]
    busy = common.busy_warning()
    rows = []
    for spec in args.specs.split(","):
        emb = create_descriptor(spec, args.device)
        device = getattr(emb, "device", torch.device("cpu"))

        def embed_all(emb=emb):
            for start in range(0, len(images), 16):
                emb.describe(images[start : start + 16])

        median, _ = common.time_median(embed_all, args.repeats, device)
        rate = len(images) / median
        rows.append([spec, str(device), emb.dim, f"{rate:.1f}"])
        print(f"{spec}: {rate:.1f} img/s", file=sys.stderr)
    info = common.machine_info()
    markdown = "\n".join(
        [
            "## Embedding throughput (512 x 512)",
            "",
            common.markdown_table(["descriptor", "device", "dim", "images / s"], rows),
            "",
            f"- {args.images} images, batches of 16, median of {args.repeats} runs. "
            f"Machine: {info['cpu_model']}, torch {info['torch']}.",
            *([f"- Warning: {busy}"] if busy else []),
        ]
    )
    common.print_markdown(markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
