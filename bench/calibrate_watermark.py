"""Measure the watermark false-positive rate on unmarked photos; write the shipped table.

    python bench/calibrate_watermark.py [--keys 2000] [--variants 24] [--out FILE.json]

Images: the Kodak suite from ../shared/data/photos/kodak (if present) and scikit-image's
photos, each as is and as ``--variants`` random crops (50-100% of each side) and rescales
(0.4x-1.6x), none of them marked. Every image is tested against ``--keys`` random keys: the
frame read from an image does not depend on the key, so each (image, key) pair is one trial of
"would this unmarked image pass as marked with this key". A soft method (tilemark) searches
with the key, so each of its trials is a whole detection and it gets ``--soft-keys`` keys per
image. The known-mark scan (SD, SDXL) has no key and is tested once per image.

The result goes to ``data/watermark_calibration.json`` (what ``aigc watermark methods`` prints)
and a markdown table to stdout.

tilemark's trials are whole searches (about 0.3 s each on the 2-core development machine), so
its large calibration is built up over runs:

    python bench/calibrate_watermark.py --only tilemark --variants 24 --soft-keys 10 \
        --workers 2 --accumulate bench/results/tilemark_trials

keeps every trial (image, key, p) under the folder, per fingerprint of the detector's code,
and summarises all trials kept for the current code; each run draws fresh keys (a run stopped
early keeps what it measured; ``--soft-keys 0`` only summarises).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import gzip
import hashlib
import json
import multiprocessing
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.watermark import (
    DEFAULT_P_THRESHOLD,
    detect_known,
    dwt,
    get_method,
    list_methods,
    tilemark,
)
from aigcguard.watermark.calibration import CALIBRATION_VERSION
from aigcguard.watermark.payload import SYNC_BITS, binomial_sf, frame_layout, signed_sum_sf

ROOT = Path(__file__).resolve().parents[1]
# Flat and synthetic pictures (text, a colour wheel, a scanned page) are where a detector is
# most likely to see structure that is not there: calibrate on them too.
CALIBRATION_PHOTOS = (*common.SKIMAGE_PHOTOS, "text", "colorwheel", "page")
LEVELS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def base_photos() -> list[common.Photo]:
    photos = []
    if common.kodak_available():
        photos += common.load_kodak()
    else:
        print(
            f"note: {common.missing_kodak_message()} Calibrating on scikit-image only.",
            file=sys.stderr,
        )
    return photos + common.load_skimage(CALIBRATION_PHOTOS)


def variants(arr: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random crops and rescales, alternating; every result keeps at least 128 px a side."""
    out = []
    im = Image.fromarray(arr)
    w, h = im.size
    for i in range(n):
        if i % 2 == 0:
            cw, ch = (int(s * rng.uniform(0.5, 1.0)) for s in (w, h))
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            v = im.crop((int(x0), int(y0), int(x0) + cw, int(y0) + ch))
        else:
            f = rng.uniform(0.4, 1.6)
            v = im.resize((max(128, int(w * f)), max(128, int(h * f))), Image.BICUBIC)
        if min(v.size) >= 128:
            out.append(np.asarray(v))
    return out


#: tilemark modules that do not compute a p-value: embedding, its SSIM guard and the
#: package's re-exports (the gate does: it decides which families are judged)
_NOT_SEARCH = frozenset({"__init__.py", "embedding.py", "ssim_guard.py"})
#: what of method.py does count: the budget shares and the functions calibration calls
_METHOD_PARTS = frozenset({"all_families", "judged_families", "_kept", "_judged", "FORMAT_SHARES"})
#: how a kept trial's p-value was made (its fourth column): ``gated``, by the detector as it
#: ships (the searched families only where the gate finds the template, at the geometries
#: where it finds it); ``full``, by every family whatever the gate says (trials made before
#: the gate, three columns). The gated search is not a subset of the full one (a family's
#: screened pairs are the most extreme of those it scored), so the rate is of gated trials
#: alone; full ones are counted apart
KINDS = ("gated", "full")


def detector_version(root: Path = ROOT) -> str:
    """A fingerprint of the code a tilemark p-value comes from (the search modules of the
    tilemark package, ``all_families`` and its shares, and the payload bound), comments and
    docstrings left out: accumulated trials count only while it is unchanged (or carry over
    when a rerun reproduces them, :func:`carry`)."""
    digest = hashlib.sha256()
    sources = sorted((root / "watermark" / "tilemark").glob("*.py"))
    for path in [*sources, root / "watermark" / "payload.py"]:
        if path.name in _NOT_SEARCH:
            continue
        tree = ast.parse(path.read_text())
        if path.name == "method.py":
            tree.body = [node for node in tree.body if _top_name(node) in _METHOD_PARTS]
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(body, list)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        digest.update(path.name.encode() + b"\0" + ast.dump(tree).encode())
    return digest.hexdigest()[:16]


def _top_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        return getattr(node.targets[0], "id", None)
    return None


def _tilemark_image(
    job: tuple[str, torch.Tensor, list[str], str | None], kind: str = "gated"
) -> list[float]:
    """One image's trials (every key on one PictureMemo), appended to ``out`` as they come
    (name, key, p, kind per line) so that a run cut short keeps what it measured."""
    name, img, keys, out = job
    torch.set_num_threads(1)
    w = tilemark.working_whitened(img[None])[0]
    memo = tilemark.PictureMemo(w)
    families = tilemark.judged_families if kind == "gated" else tilemark.all_families
    p = []
    for key in keys:
        p.append(min(1.0, min(f.p_value for f in families(w, key, memo=memo))))
        if out is not None:
            with open(out, "a") as handle:
                handle.write(f"{name}\t{key}\t{p[-1]!r}\t{kind}\n")
    return p


def soft_trials(
    images: list[torch.Tensor],
    names: list[str],
    method: str,
    keys: list[str],
    workers: int = 1,
    accumulate: Path | None = None,
) -> dict:
    """A soft method's search depends on the key, so every (image, key) is a full detection.
    tilemark's key-free work (whitening, candidates, folds, chip maps) is done once per
    image and kept for its keys (``PictureMemo``): the p-values are the ones ``detect``
    gives (tested), in a fraction of the time. ``accumulate``: a folder where every trial is
    kept, per detector version; the summary then covers every trial kept there for the
    current code (runs add up, with fresh keys each)."""
    m = get_method(method)
    if not isinstance(m, tilemark.TileMark):
        p = []
        for img in images:
            for key in keys:
                reading = m.read_soft(img[None], key)[0]
                p.append(min(1.0, signed_sum_sf(reading.evidence) * reading.trials))
        return summarise(torch.tensor(p, dtype=torch.float64), len(images), len(keys))
    out_dir = None
    if accumulate is not None:
        out_dir = accumulate / detector_version()
        out_dir.mkdir(parents=True, exist_ok=True)
        # to the microsecond: two runs in one second (fast when gates stay shut) never share
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        pack(out_dir)  # what earlier runs left (a stopped run's files stay plain text)
        if not keys:  # --soft-keys 0: summarise what is kept, try nothing new
            return summarise_kept(out_dir)
        pid_file = out_dir / f"{stamp}.pid"
        write_atomic(pid_file, str(os.getpid()))
    jobs = [
        (name, img, keys, None if out_dir is None else str(out_dir / f"{stamp}-{i % workers}.tsv"))
        for i, (name, img) in enumerate(zip(names, images, strict=True))
    ]
    p = []
    with multiprocessing.get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
        for i, got in enumerate(pool.imap(_tilemark_image, jobs, chunksize=1)):
            p += got
            if (i + 1) % 50 == 0:
                print(f"  {method}: {i + 1}/{len(images)} images", file=sys.stderr)
    if out_dir is None:
        return summarise(torch.tensor(p, dtype=torch.float64), len(images), len(keys))
    pid_file.unlink(missing_ok=True)
    pack(out_dir)
    return summarise_kept(out_dir)


def pack(folder: Path) -> None:
    """Gzip every finished run's trials (about a third of the size); atomically, so a pack
    that stops half way loses nothing. A run still going (its ``STAMP.pid`` names a live
    process) is left alone: it is still appending to its files."""
    for path in sorted(folder.glob("*.tsv")):
        if _running(folder / (path.name.rsplit("-", 1)[0] + ".pid")):
            continue
        packed = path.with_name(path.name + ".gz")
        tmp = packed.with_name("." + packed.name)
        with open(tmp, "wb") as raw:
            if packed.exists():  # never overwrite kept trials: gzip members concatenate
                raw.write(packed.read_bytes())
            with open(path, "rb") as src, gzip.open(raw, "wb") as dst:
                dst.write(src.read())
        os.replace(tmp, packed)
        path.unlink()
    for pid_file in folder.glob("*.pid"):  # left by runs that were stopped
        if not _running(pid_file):
            pid_file.unlink(missing_ok=True)


def _running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return pid != os.getpid()


class _Serial:
    """The Pool interface, in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, jobs, chunksize=1):
        return map(fn, jobs)


def read_kept(folder: Path) -> list[tuple[str, str, float, str]]:
    """Every complete (name, key, p, kind) line kept in ``folder`` (:data:`KINDS`; a line of
    three columns was made before the gate: ``full``)."""
    out = []
    for path in sorted([*folder.glob("*.tsv"), *folder.glob("*.tsv.gz")]):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            text = handle.read()
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                parts.append("full")
            if len(parts) == 4 and parts[3] in KINDS:  # else cut short by a stopped run
                out.append((parts[0], parts[1], float(parts[2]), parts[3]))
    return out


def carry(
    old: Path, new: Path, images: dict[str, torch.Tensor], n_verify: int, seed: int
) -> list[str]:
    """Carry the trials kept under an older detector version into ``new`` when a rerun of
    ``n_verify`` of them, drawn at random, gives exactly the p-values kept (a refactor that
    changed the code's fingerprint but not its results). Returns the mismatches (nothing is
    carried then)."""
    pack(old)  # a stopped run's plain files: what is copied is the packed ones
    kept = read_kept(old)
    if not kept:
        return [f"{old}: no trials kept there"]
    rng = np.random.default_rng(seed)
    picks = [kept[i] for i in rng.choice(len(kept), min(n_verify, len(kept)), replace=False)]
    bad = []
    for name, key, p, kind in picks:
        if name not in images:
            bad.append(f"{name}: not among this run's images (other --variants or photos?)")
            continue
        again = _tilemark_image((name, images[name], [key], None), kind)[0]
        if again != p:
            bad.append(f"{name} key {key}: kept p {p!r}, now {again!r}")
    if bad:
        return bad
    new.mkdir(parents=True, exist_ok=True)
    for path in sorted(old.glob("*.tsv.gz")):
        target = new / f"carried-{old.name}-{path.name}"
        tmp = target.with_name("." + target.name)
        tmp.write_bytes(path.read_bytes())
        os.replace(tmp, target)
    note = (
        f"trials of detector version {old.name} carried here on "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}: {len(picks)} of "
        f"{len(kept)} rerun with this version gave the same p-values exactly\n"
    )
    write_atomic(new / f"carried-{old.name}.txt", note)
    return []


def summarise_kept(folder: Path) -> dict:
    """The rate of the detector as it ships over the ``gated`` trials kept in ``folder``
    (one detector version), with every kind's count in ``trials_by_kind``."""
    kept = read_kept(folder)
    gated = [k for k in kept if k[3] == "gated"]
    if not gated:
        raise SystemExit(f"{folder}: no trials of the shipped detector kept for this version yet")
    names, keys = {k[0] for k in gated}, {k[1] for k in gated}
    p = torch.tensor([k[2] for k in gated], dtype=torch.float64)
    out = summarise(p, len(names), len(keys))
    out["detector_version"] = folder.name
    out["trials_by_kind"] = {kind: sum(k[3] == kind for k in kept) for kind in KINDS}
    return out


def keyed_trials(images: list[torch.Tensor], method: str, keys: list[str]) -> dict:
    """Matched sync bits for every (image, key): one frame read per image, judged per key."""
    m = get_method(method)
    length = frame_layout(keys[0]).length
    reads = []
    for img in images:
        ones, total = m.read_votes(img[None].float(), length)
        reads.append(dwt.votes_to_bits(ones, total)[0])
    bits = torch.stack(reads)  # N x L
    sync_pos = torch.stack([frame_layout(k).order[:SYNC_BITS] for k in keys])  # K x S
    sync = torch.stack([frame_layout(k).sync for k in keys])  # K x S
    matched = (bits[:, sync_pos] == sync[None]).sum(dim=2)  # N x K
    sf = torch.tensor(
        [binomial_sf(k, SYNC_BITS) for k in range(SYNC_BITS + 1)], dtype=torch.float64
    )
    p = sf[matched]
    return summarise(p.flatten(), n_images=len(images), n_keys=len(keys))


def summarise(p: torch.Tensor, n_images: int, n_keys: int) -> dict:
    trials = int(p.numel())
    fp = int((p <= DEFAULT_P_THRESHOLD).sum())
    return {
        "p_threshold": DEFAULT_P_THRESHOLD,
        "images": n_images,
        "keys": n_keys,
        "trials": trials,
        "false_positives": fp,
        "fpr": fp / trials,
        # exact one-sided 95% upper bound on the rate (Clopper-Pearson)
        "fpr_upper95": float(beta.ppf(0.95, fp + 1, trials - fp)),
        "rate_at_p": {f"{lvl:g}": float((p <= lvl).double().mean()) for lvl in LEVELS},
        "smallest_p": float(p.min()),
    }


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--variants", type=int, default=24)
    parser.add_argument(
        "--soft-keys",
        type=int,
        default=3,
        help="keys per image for soft methods (tilemark), whose every trial is a full search",
    )
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "watermark_calibration.json")
    parser.add_argument(
        "--only",
        help="comma-separated methods to measure; the others keep their entries in --out",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes for tilemark's trials (one thread each)"
    )
    parser.add_argument(
        "--accumulate",
        type=Path,
        help="keep every tilemark trial in this folder (per detector version) and summarise all "
        "of them: runs with fresh keys add up",
    )
    parser.add_argument(
        "--carry",
        metavar="VERSION",
        help="with --accumulate: carry the trials kept under this older detector version into "
        "the current one if --carry-verify of them, rerun, give exactly the same p-values",
    )
    parser.add_argument("--carry-verify", type=int, default=40)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    images, names = [], []
    for name, arr in base_photos():
        for j, v in enumerate([arr, *variants(arr, args.variants, rng)]):
            images.append(common.to_tensor(v))
            names.append(f"{name}#{j}")
    keys = [os.urandom(16).hex() for _ in range(args.keys)]
    if args.carry:
        if args.accumulate is None:
            parser.error("--carry needs --accumulate")
        bad = carry(
            args.accumulate / args.carry,
            args.accumulate / detector_version(),
            dict(zip(names, images, strict=True)),
            args.carry_verify,
            args.seed,
        )
        if bad:
            print("not carried: the rerun trials differ:\n  " + "\n  ".join(bad), file=sys.stderr)
            raise SystemExit(1)
        print(f"carried the trials of {args.carry} into {detector_version()}", file=sys.stderr)
    print(f"{len(images)} unmarked images x {len(keys)} keys", file=sys.stderr)

    # tilemark-legacy only writes the older format; reading is tilemark's detector, calibrated
    # under tilemark
    wanted = (
        args.only.split(",") if args.only else [m for m in list_methods() if m != "tilemark-legacy"]
    )
    methods = {
        m: soft_trials(images, names, m, keys[: args.soft_keys], args.workers, args.accumulate)
        if get_method(m).soft
        else keyed_trials(images, m, keys)
        for m in wanted
    }
    previous = json.loads(args.out.read_text()) if args.only and args.out.exists() else None
    if previous is not None:  # a partial run keeps the entries it did not redo
        methods = {**previous["methods"], **methods}
        known_entry = previous["known_marks"]
    else:
        known = detect_known(images)
        known_p = torch.tensor([r.p_value for r in known], dtype=torch.float64)
        known_entry = summarise(known_p, n_images=len(images), n_keys=1)
    table = {
        "version": CALIBRATION_VERSION,
        "created": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "sources": sorted({n.split("#")[0].split("/")[0] for n in names}),
        "base_images": len({n.split("#")[0] for n in names}),
        "methods": methods,
        "known_marks": known_entry,
    }
    write_atomic(args.out, json.dumps(table, indent=2) + "\n")

    print(
        "| test | trials | detected at p<=1e-6 | 95% upper bound | rate at p<=1e-2 | at p<=1e-3 |"
    )
    print("|---|---|---|---|---|---|")
    rows = [*methods.items(), ("known marks (SD v1, SDXL)", table["known_marks"])]
    for name, e in rows:
        print(
            f"| {name} | {e['trials']:,} | {e['false_positives']} | {e['fpr_upper95']:.1e} | "
            f"{e['rate_at_p']['0.01']:.4f} | {e['rate_at_p']['0.001']:.5f} |"
        )


if __name__ == "__main__":
    main()
