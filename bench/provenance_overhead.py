"""What provenance costs per picture: labelling, C2PA signing (thumbnail off and on), verifying.

    python bench/provenance_overhead.py [--repeats 5] [--out FILE.md]

For each size (512 and 1024 px squares of Kodak or scikit-image photos) and format (PNG,
JPEG 90), the median wall time of: writing the file (the baseline every pipeline pays),
writing the GB 45438 / IPTC label into it, signing it with C2PA (ES256, the development CA;
thumbnail off, the default, and on), and verifying the signed file. Each step works on its own
copy so one step's output never feeds the next timing. The overhead column is label + sign
(thumbnail off) as a share of writing the file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.imageio import save_image
from aigcguard.provenance.credentials import c2pa as credentials
from aigcguard.provenance.credentials import labels
from aigcguard.provenance.credentials.dev_ca import make_dev_ca


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    photos = common.load_kodak() if common.kodak_available() else common.load_skimage()
    work = Path(tempfile.mkdtemp(prefix="aigc-prov-bench-"))
    try:
        ca = make_dev_ca(work / "ca")
        rows = [
            "| Picture | Write file (ms) | + label (ms) | + sign, no thumbnail (ms) | "
            "+ sign, thumbnail (ms) | verify (ms) | label + sign / write |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for side in (512, 1024):
            pixels = common.to_tensor(common.square(photos[0][1], side))
            for fmt, suffix in (("png", ".png"), ("jpeg", ".jpg")):
                plain = work / f"plain{suffix}"
                write, _ = common.time_median(
                    lambda plain=plain, fmt=fmt, px=pixels: save_image(
                        px, plain, format=fmt, quality=90
                    ),
                    args.repeats,
                )
                labelled = work / f"labelled{suffix}"

                def label(src=plain, dst=labelled):
                    labels.write_label(src, dst, producer="bench", produce_id="0011223344556677")

                t_label, _ = common.time_median(label, args.repeats)

                def sign(thumbnail, src=labelled, suffix=suffix):
                    credentials.sign(
                        src,
                        work / f"signed{suffix}",
                        cert_chain=ca.chain,
                        key=ca.key,
                        soft_binding=("tilemark", "0011223344556677"),
                        thumbnail=thumbnail,
                    )

                t_sign, _ = common.time_median(lambda: sign(False), args.repeats)
                t_thumb, _ = common.time_median(lambda: sign(True), args.repeats)
                sign(False)
                signed = work / f"signed{suffix}"
                t_verify, _ = common.time_median(
                    lambda signed=signed: credentials.verify(signed, trust_anchors=[ca.ca]),
                    args.repeats,
                )
                rows.append(
                    f"| {side} x {side} {fmt.upper()} | {write * 1e3:.1f} | "
                    f"{t_label * 1e3:.1f} | {t_sign * 1e3:.1f} | {t_thumb * 1e3:.1f} | "
                    f"{t_verify * 1e3:.1f} | {(t_label + t_sign) / write:.2f} |"
                )
                print(rows[-1], file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = common.machine_info()
    markdown = "\n".join(
        [
            *rows,
            "",
            f"Median of {args.repeats} runs after a warm-up; {info['cpu_model']}, "
            f"c2pa-python {common.package_version('c2pa-python')}.",
        ]
    )
    common.print_markdown(markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
