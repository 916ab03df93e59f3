#!/usr/bin/env bash
# The GPU figures of issue 22 in one command, on the lent GPU machine (bench/README.md, "GPU
# figures", has the `run` call). From the repository root, after bench/gpu_wheels.sh filled
# .whl/ and gpu_data/ on the development machine:
#
#     OUT=/some/folder bash bench/gpu_figures.sh [--quick]      # OUT unset: ./out
#
# Steps, each under its own `timeout`, each run whatever the others did (exit codes recorded):
#   setup           .whl/site.tar.xz unpacked to /tmp/site (python 3.12 only), aigcguard
#                   installed there from the checkout unless importable; nvidia-smi, torch.cuda
#   pytest_cuda     tests/test_watermark.py -k "cuda or device" (the CUDA tests: embed on CUDA
#                   as on the CPU, tilemark's read-out on CUDA as on the CPU; device choice)
#   check_cuda      bench/check_speed.py --n 48 --device cuda   (skipped without CUDA)
#   check_cpu       bench/check_speed.py --n 48 --device cpu    (the anchor: same machine, run)
#   batch_check     `aigc batch check --ray-address none` over 24 1024-pixel JPEGs, on cuda (when
#                   present) and cpu: whole commands, and a one-picture command to take the
#                   start-up out; whether both devices gave the same verdicts
#   watermark_speed bench/watermark_speed.py --repeats 2 (adds the CUDA rows itself); last, as
#                   the longest (imwatermark's per-image loops, rivaGan, 18 fresh processes;
#                   about 4 minutes expected there): it gets what is left of the budget
# Pictures come from ./gpu_data (AIGC_KODAK_DIR, AIGC_WILD_DIR) when it is there. STEPS="a b"
# runs only the steps named (default: all; setup always runs).
#
# In $OUT, at most 8 files (what a `run` call brings back): summary.md (machine, each step's
# exit code and time), gpu_figures.log (everything printed), pytest_cuda.txt,
# check_speed_cuda.md, check_speed_cpu.md, batch_check.md, watermark_speed.md, and raw.tar.gz
# (each bench's markdown and JSON), rewritten after every step, so a run cut short still
# brings back what was done.
#
# Exits 1 when a step failed, timed out or found the budget spent (the others still ran).
#
# --quick: tiny sizes (n = 4, watermark_speed --quick --repeats 1) to try the script on a
# machine without a GPU in a few minutes; CUDA steps are skipped there. BUDGET_S (default
# 480 s) bounds the whole run: a step starts only with 20 s left and gets at most what is left.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (use --quick)" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/gpu-figures.XXXXXX)
mkdir -p "$WORK/results"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
BUDGET_S=${BUDGET_S:-480}
STEPS=${STEPS:-pytest_cuda check_cuda check_cpu batch_check watermark_speed}
DEADLINE=$((SECONDS + BUDGET_S))
if ((QUICK)); then N=4 BATCH_N=4; else N=48 BATCH_N=24; fi

exec > >(tee -a "$OUT/gpu_figures.log") 2>&1
echo "== gpu_figures.sh $(date -u +%FT%TZ) quick=$QUICK budget=${BUDGET_S}s out=$OUT"

ROWS=()
FAILED=()
HEADER=""
summary() {
    {
        echo "# GPU figures ($(date -u +%FT%TZ)$( ((QUICK)) && echo ', quick run'))"
        echo
        echo "$HEADER"
        echo
        echo "| step | exit | seconds | note |"
        echo "|---|---|---|---|"
        printf '%s\n' "${ROWS[@]}"
        echo
        echo "exit 124: the step's timeout; skipped: see the note. Log: gpu_figures.log."
    } >"$OUT/summary.md"
    # the benches' markdown and JSON, packed so $OUT never holds more than 8 files
    tar -czf "$OUT/raw.tar.gz" -C "$WORK/results" . 2>/dev/null
}

# step NAME CAP LOGFILE|"" COMMAND...: run COMMAND under `timeout` (at most CAP seconds and what
# is left of the budget), its output into the log (and LOGFILE), and record the exit code.
step() {
    local name=$1 cap=$2 logfile=$3 rc start left note=""
    shift 3
    [[ " $STEPS " == *" $name "* ]] || return 0
    left=$((DEADLINE - SECONDS))
    if ((left < 20)); then
        echo "== $name: skipped, ${left}s of the budget left"
        ROWS+=("| $name | skipped | 0 | budget spent |")
        FAILED+=("$name")
        summary
        return
    fi
    ((cap > left)) && cap=$left
    echo "== $name (timeout ${cap}s): $*"
    start=$SECONDS
    if [[ -n $logfile ]]; then
        timeout -k 10 "$cap" "$@" 2>&1 | tee "$OUT/$logfile"
        rc=${PIPESTATUS[0]}
        note=$(tail -1 "$OUT/$logfile" | tr -d '|=')
    else
        timeout -k 10 "$cap" "$@"
        rc=$?
    fi
    echo "== $name: exit $rc after $((SECONDS - start))s"
    ROWS+=("| $name | $rc | $((SECONDS - start)) | $note |")
    ((rc == 0)) || FAILED+=("$name")
    summary
}

skip() {
    [[ " $STEPS " == *" $1 "* ]] || return 0
    echo "== $1: skipped ($2)"
    ROWS+=("| $1 | skipped | 0 | $2 |")
    summary
}

# the step's markdown from the work folder to $OUT
keep() { [[ -f $WORK/results/$1 ]] && cp "$WORK/results/$1" "$OUT/$1"; }

# ------------------------------------------------------------------------------------ setup
start=$SECONDS
setup_note=""
if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    mkdir -p /tmp/site
    if [[ -f .whl/site.tar.xz ]]; then
        "$PY" -c 'import tarfile; tarfile.open(".whl/site.tar.xz").extractall("/tmp/site", filter="data")' &&
            setup_note="unpacked .whl/site.tar.xz ($(tr '\n' ' ' <.whl/site.txt 2>/dev/null))"
    elif compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl && setup_note="installed .whl/*.whl"
    else
        setup_note="no .whl/ (run bench/gpu_wheels.sh where pip works)"
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
    setup_note="$("$PY" -V): .whl is for python 3.12, this environment's packages are used"
fi
if ! "$PY" -c 'import aigcguard' 2>/dev/null; then
    # the folders map into the package `aigcguard` (pyproject.toml): let setuptools do it, or
    # copy them the same way when the image's setuptools cannot
    if "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --target /tmp/site . >"$WORK/pip-aigcguard.txt" 2>&1; then
        setup_note+="; aigcguard installed to /tmp/site"
    else
        tail -5 "$WORK/pip-aigcguard.txt"
        mkdir -p /tmp/site/aigcguard
        cp -r core/. /tmp/site/aigcguard/
        for d in cli data detectors provenance service watermark; do cp -r "$d" /tmp/site/aigcguard/; done
        setup_note+="; aigcguard copied to /tmp/site (pip could not build it)"
    fi
fi
echo "aigcguard: $("$PY" -c 'import aigcguard; print(aigcguard.__file__)' 2>&1)"
[[ -d gpu_data/kodak ]] && export AIGC_KODAK_DIR=$ROOT/gpu_data/kodak
[[ -d gpu_data/wild ]] && export AIGC_WILD_DIR=$ROOT/gpu_data/wild
echo "pictures: Kodak ${AIGC_KODAK_DIR:-(bench/common.py default)}, wild ${AIGC_WILD_DIR:-(default)}"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
fi
TORCH_INFO=$("$PY" - <<'EOF'
import os, platform, torch

line = f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs"
line += f" ({torch.get_num_threads()} torch threads)"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    line += (
        f"; CUDA {torch.version.cuda}: {p.name}, {p.total_memory / 2**30:.0f} GiB, "
        f"{p.multi_processor_count} SMs, compute capability {p.major}.{p.minor}"
    )
else:
    line += "; no CUDA"
print(line)
EOF
)
echo "$TORCH_INFO"
HEADER="Machine: $TORCH_INFO."
CUDA=0
"$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null && CUDA=1
ROWS+=("| setup | 0 | $((SECONDS - start)) | $setup_note |")
summary

# ------------------------------------------------------------------------------------ steps
step pytest_cuda 90 pytest_cuda.txt \
    "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_watermark.py -k "cuda or device"

if ((CUDA)); then
    step check_cuda 90 "" "$PY" bench/check_speed.py --n "$N" --device cuda \
        --out "$WORK/results/check_speed_cuda.md"
    keep check_speed_cuda.md
else
    skip check_cuda "no CUDA"
fi
step check_cpu 120 "" "$PY" bench/check_speed.py --n "$N" --device cpu \
    --out "$WORK/results/check_speed_cpu.md"
keep check_speed_cpu.md

cat >"$WORK/batch_check.py" <<'EOF'
"""`aigc batch check` on cuda (when present) and cpu: N pictures (1024 x 1024 JPEG 90 made from
the wild set, as check_speed.py), whole commands with --ray-address none, and a one-picture
command on each device to take the start-up (imports, models) out of the rate."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, "bench")
import common
from watermark_robustness import load_wild

n, work, out = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
devices = (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
pictures, one = work / "pictures", work / "one"
pictures.mkdir(parents=True)
one.mkdir()
for i, (_, arr) in enumerate(load_wild(n)):
    Image.fromarray(common.square(arr, 1024)).save(pictures / f"{i:03d}.jpg", quality=90)
shutil.copy(pictures / "000.jpg", one)
main = "import sys; from aigcguard.cli import main; sys.argv[0] = 'aigc'; main()"
aigc = [sys.executable, "-c", main]


def run(source, dest, device):
    cmd = [*aigc, "batch", "check", str(source), "--out", str(dest), "--ray-address", "none"]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "--device", device], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"{device}: exit {done.returncode}\n{done.stderr[-3000:]}", file=sys.stderr)
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {"seconds": seconds, "exit": done.returncode, "report": report}


def verdicts(dest):
    import pyarrow.parquet as pq

    rows = pq.read_table(dest, columns=["path", "verdict"]).to_pylist()
    return {Path(r["path"]).name: r["verdict"] for r in rows}


raw, rows, failed = {"n": n, "machine": common.machine_info(), "runs": {}}, [], 0
for device in devices:
    first = run(one, work / f"one-{device}", device)
    whole = run(pictures, work / f"all-{device}", device)
    raw["runs"][device] = {"one": first, "all": whole}
    failed += first["exit"] != 0 or whole["exit"] != 0
    extra = whole["seconds"] - first["seconds"]  # n - 1 more pictures, start-up the same
    job_s = whole["report"].get("seconds")
    rows.append([
        device, n, f"{whole['seconds']:.1f}", f"{first['seconds']:.1f}",
        f"{(n - 1) / extra:.2f}" if extra > 0 and n > 1 else "n/a",
        job_s, f"{n / job_s:.2f}" if job_s else "n/a",
        f"{whole['report'].get('failed', '?')} / exit {whole['exit']}",
    ])
same = ""
if len(devices) == 2 and not failed:
    a, b = (verdicts(work / f"all-{d}") for d in devices)
    agree = sum(a[k] == b.get(k) for k in a)
    raw["same_verdicts"] = agree
    same = f"- Verdicts equal on cuda and cpu for {agree} of {len(a)} pictures.\n"
md = "## aigc batch check, cuda vs cpu\n\n" + common.markdown_table(
    ["device", "pictures", "command s", "1-picture command s", "pictures/s after start-up",
     "job's own s", "pictures/s in the job's own s", "failed / exit"], rows)
md += (
    f"\n\n- `aigc batch check DIR --out DEST --ray-address none --device D` (this process, no"
    f" Ray), batch size 32, no index or ledger; {n} wild pictures at 1024 x 1024, JPEG 90."
    f"\n- pictures/s after start-up = (n - 1) / (command s - 1-picture command s); the job's"
    f" own s is the summary's `seconds` (models loaded, pictures read, checked, written).\n"
    + same
)
common.write_outputs("batch_check", md, raw, out, quick=False)
sys.exit(1 if failed else 0)
EOF
step batch_check 150 "" "$PY" "$WORK/batch_check.py" "$BATCH_N" "$WORK/batch" \
    "$WORK/results/batch_check.md"
keep batch_check.md

if ((QUICK)); then ws_args=(--quick --repeats 1); else ws_args=(--repeats 2); fi
step watermark_speed 330 "" "$PY" bench/watermark_speed.py "${ws_args[@]}" \
    --out "$WORK/results/watermark_speed.md"
keep watermark_speed.md

echo "== done in ${SECONDS}s; $OUT: $(ls "$OUT" | tr '\n' ' ')"
cat "$OUT/summary.md"
rm -rf "$WORK"
if ((${#FAILED[@]})); then
    echo "failed: ${FAILED[*]}"
    exit 1
fi
