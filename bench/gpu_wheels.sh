#!/usr/bin/env bash
# Prepare what bench/gpu_figures.sh needs on the lent GPU machine (issue 22). Run it HERE, on
# the development machine, from the repository root: the GPU machine reaches no registry and
# sees no ../shared.
#
#     bash bench/gpu_wheels.sh [--no-wheels] [--no-data]
#
# 1. .whl/site.tar.xz (.whl is git-ignored): the packages the benches import that the device
#    image lacks, installed here by pip for the image's python3 3.12 on x86_64 (`pip install
#    --target` with the README's --python-version/--platform tags, --no-deps) and packed with
#    xz. Found by tracing the imports (PYTHONPROFILEIMPORTTIME=1) of every step of
#    gpu_figures.sh and removing what the image's package list (.library/device/KINDS.md)
#    already holds: torch, numpy, pillow, click, tqdm, opencv-python-headless, scikit-learn,
#    scikit-image, scipy, pyarrow, pandas, onnxruntime (rivaGan), requests, certifi, pytest.
#    The check's credentials signal needs c2pa-python (+ cryptography, cffi, pycparser,
#    toml); `aigc batch check` imports the similarity stores, so faiss-cpu; imwatermark needs
#    PyWavelets. open_clip, pdqhash, fastapi and ldpc are not imported by these steps. The
#    versions are those the project is tested with here. Why packed: the eight wheels weigh
#    44 MiB and a `run` call carries 64 MiB in all (tracked files: 18 MiB); unpacked and xz'd
#    they take about 27 MiB. gpu_figures.sh unpacks it to /tmp/site (python's tarfile, no
#    pip); loose wheels in .whl/ (the device README's recipe) are installed instead when there
#    is no site.tar.xz. aigcguard itself is installed there from the checkout.
# 2. gpu_data/ (git-ignored): every third Kodak PNG, 8 of the 24 (watermark_speed.py, with
#    scikit-image's 14 photos; KODAK_EVERY=1 takes all 24, 10 MiB more: too much to carry),
#    and the 48 wild pictures check_speed.py picks (watermark_robustness.load_wild) with a
#    manifest.csv of just those rows, so the benches pick the same pictures there through
#    AIGC_KODAK_DIR / AIGC_WILD_DIR; the `aigc batch check` step reads them too.
#
# What travels with a `run` call (tracked and untracked files, .whl, gpu_data) must stay under
# 64 MiB: the sizes are printed at the end. Takes about 2 minutes (mostly xz).
set -euo pipefail
cd "$(dirname "$0")/.."

wheels=1
data=1
for arg in "$@"; do
    case "$arg" in
        --no-wheels) wheels=0 ;;
        --no-data) data=0 ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (use --no-wheels, --no-data)" >&2; exit 2 ;;
    esac
done

PY=${PYTHON:-python3}
SHARED=${AIGC_SHARED_DATA:-../shared/data}

# name==version, one version of each
WHEELS=(
    c2pa-python==0.38.1
    cryptography==48.0.0
    cffi==2.0.0
    pycparser==3.0
    toml==0.10.2
    faiss-cpu==1.15.1
    invisible-watermark==0.2.0
    PyWavelets==1.9.0
)

if ((wheels)); then
    stage=$(mktemp -d /tmp/gpu-site.XXXXXX)
    trap 'rm -rf "$stage"' EXIT
    platforms=()
    for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 \
        manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
        platforms+=(--platform "${tag}_x86_64")
    done
    "$PY" -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" --target "$stage" "${WHEELS[@]}"
    rm -rf .whl
    mkdir -p .whl
    printf '%s\n' "${WHEELS[@]}" >.whl/site.txt
    echo "packing $(du -sh "$stage" | cut -f1) with xz ..."
    "$PY" -c '
import lzma, sys, tarfile

with tarfile.open(".whl/site.tar.xz", "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
    tar.add(sys.argv[1], arcname=".")
' "$stage"
    ls -l .whl
fi

if ((data)); then
    rm -rf gpu_data
    mkdir -p gpu_data/kodak gpu_data/wild
    kodak=("${AIGC_KODAK_DIR:-$SHARED/photos/kodak}"/*.png)
    for ((i = 0; i < ${#kodak[@]}; i += ${KODAK_EVERY:-3})); do
        cp "${kodak[i]}" gpu_data/kodak/
    done
    AIGC_WILD_DIR=${AIGC_WILD_DIR:-$SHARED/wild} "$PY" - <<'EOF'
import csv, os, shutil, sys
from pathlib import Path

sys.path.insert(0, "bench")
from watermark_robustness import load_wild  # the pictures check_speed.py takes

src, dst = Path(os.environ["AIGC_WILD_DIR"]), Path("gpu_data/wild")
names = {name.removeprefix("wild/") for name, _ in load_wild(48, src)}
with open(src / "manifest.csv", newline="") as f:
    reader = csv.DictReader(f)
    rows = [r for r in reader if r["file"] in names]
    fields = reader.fieldnames
for r in rows:
    (dst / r["file"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / r["file"], dst / r["file"])
with open(dst / "manifest.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
print(f"gpu_data/wild: {len(rows)} pictures")
EOF
    echo "gpu_data/kodak: $(ls gpu_data/kodak | wc -l) PNGs"
fi

mib() { awk '{s += $1} END {printf "%.1f MiB", s / 1048576}'; }
sizes() { xargs -0 -r stat -c %s 2>/dev/null | mib; }
echo "sizes: .whl $(find .whl -type f -print0 2>/dev/null | sizes)," \
    "gpu_data $(find gpu_data -type f -print0 2>/dev/null | sizes)," \
    "tracked files $(git ls-files -z | sizes)," \
    "untracked $(git ls-files -z --others --exclude-standard | sizes);" \
    "a run call carries 64 MiB at most"
