"""Where tilemark is weak: per-chip SNR and strength at the found placement, by photo and attack.

    python bench/tilemark_snr.py [--images grass,gravel,kodak/05] [--attacks none,JPEG 50]

For each photo (the robustness bench's photos and sizes, key ``bench``) the mark is embedded,
each attack applied, and the detector's own search run (``tilemark.locate``). At the hypothesis
``detect`` would judge (of each family's best, the one with the smallest p-value) it prints the
*strength* t (the known chips' signed sum over its norm: the p-value's statistic), their
per-chip SNR (mean over standard deviation), the p-value (a detection needs p <= 1e-6; at that
level the searched families need t >= 7.34 upright, 7.81 turned, the as-embedded family 6.17)
and, unless upright, the family (a: as embedded, t: turned). A change to embedding or
whitening can be judged on these numbers in a minute, before the full robustness run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from watermark_robustness import load_images

from aigcguard.watermark import embed
from aigcguard.watermark import tilemark as tm

KEY, MESSAGE = "bench", b"Bench!42"


def strength_and_snr(pixels: torch.Tensor) -> tuple[float, float, float, str]:
    """(strength, per-chip SNR, p-value, family) at the hypothesis ``detect`` judges."""
    w = tm.working_whitened(pixels[None])[0]
    judged = min(tm.read_families(w, KEY), key=lambda r: r.p_value)
    known = judged.known
    snr = float(known.mean() / known.std())
    return judged.geometry.strength, snr, min(1.0, judged.p_value), judged.family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images",
        default="skimage/grass,skimage/gravel,skimage/immunohistochemistry,"
        "kodak/05,kodak/13,skimage/astronaut",
        help="comma-separated photo names, as the robustness table's notes list them",
    )
    parser.add_argument(
        "--attacks", default="none,JPEG 50,bright x1.3,rotate 5°,JPEG75+crop5%+bright1.2"
    )
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args()
    wanted = args.images.split(",")
    photos = [(n, a) for n, a in load_images(quick=False)[0] if n in wanted]
    attacks = [(n, f) for n, f in common.ATTACKS if n in args.attacks.split(",")]
    rows = []
    for i, (name, arr) in enumerate(photos):
        marked = common.from_tensor(embed([common.to_tensor(arr)], [MESSAGE], key=KEY)[0])
        cells = []
        for _, attack in attacks:
            t, snr, p, family = strength_and_snr(common.to_tensor(attack(marked, i)))
            tag = "" if family == "upright" else " " + family[0]
            cells.append(f"{t:.2f} ({snr:.2f}) {p:.0e}{tag}")
        rows.append([name, *cells])
        print(name, *cells, file=sys.stderr)
    header = [f"{n}: t (SNR) p" for n, _ in attacks]
    table = common.markdown_table(["photo", *header], rows)
    common.print_markdown(table, args.out)


if __name__ == "__main__":
    main()
