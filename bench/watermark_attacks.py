"""Watermark attacks without the key (issue 19): collusion forgery and removal, removal by a
single picture's folded estimate, and the copy attack, each judged through a real ledger.

    python bench/watermark_attacks.py [--quick] [--trials N] \
        [--out bench/results/watermark_attacks.md]

The attacker has the code, many pictures marked with the victim's private key (distinct random
payloads from ``Ledger.new_payloads``, as the generation pipeline gives them) and unmarked
photos, but not the key:

1. collusion forgery: the mean high-pass residual (picture minus Gaussian blur, sigma 2, float
   RGB) of N marked pictures, added to unmarked photos at a PSNR of 35, 38, 40 dB;
2. collusion removal: the same mean subtracted from marked pictures outside the colluders;
3. estimation removal: one marked picture's residual folded onto the mark's periods (a tile,
   short side / 8; the template's, twice that; the short side) and subtracted;
4. copy attack: a denoiser's residual of one marked picture added to an unrelated photo.

Every marked picture is recorded in a ledger (temporary) with its content fingerprint, and every
attacked picture is judged by ``aigcguard.service.lookup.lookup``: "accepted as ours" is a mark
detected whose lookup is not flagged (not ``not_in_ledger`` or ``payload_unreadable``, binding
neither ``mismatch`` nor ``unverifiable``): what lets ``aigc check`` say ``generated``. Every
attack runs on both mark formats: ``legacy`` (``tilemark-legacy``, the marks made before issue
19) and ``keyed`` (``tilemark``).

Pictures: ``../shared/data/wild`` (override with ``--data`` or ``AIGC_WILD_DIR``): 512 x 512
generated pictures (``ai/``) to mark, unmarked photos (``real/``) as targets; colluders,
removal victims, copy sources and targets are disjoint, drawn with a fixed seed.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.imageio import LoadedImage
from aigcguard.provenance.credentials.ledger import Ledger, LedgerRecord, key_fingerprint
from aigcguard.service.binding import fingerprint
from aigcguard.service.lookup import lookup
from aigcguard.watermark import detect, embed, list_methods

#: the victim's private key: the attacker never uses it
KEY = "bench-attacks: the victim's private key"
SEED = 19
SIDE = 512  # the colluders' (and every picture's) size: a residual only adds to its own size
DATA_DIR = common.WILD_DIR
#: the mark formats: label -> embed method (``detect(method="tilemark")`` reads both)
FORMATS = {"legacy": "tilemark-legacy", "keyed": "tilemark"}
READ_METHOD = "tilemark"
COLLUDERS = (5, 20, 100)
FORGE_PSNR = (35.0, 38.0, 40.0)
REMOVE_PSNR = (36.0, 38.0, 40.0)
COPY_PSNR = (35.0, 38.0, 40.0)
BLUR_SIGMA = 2.0
#: periods as a fraction of the short side: the tile (8 per short side), the template's period
#: (twice the tile), and the short side itself
PERIODS = (("tile", 8), ("template", 4), ("8 tiles", 1))
DENOISERS = ("nlmeans", "median3")
#: copy sources: each residual (fastNlMeans costs ~1 s per picture here) is copied onto several
#: targets, a distinct target per trial
COPY_SOURCES = 50
#: where the targets are judged: removal keeps detection >= 0.90 at N = 20 and PSNR >= 38 dB,
#: estimation removal at PSNR >= 38 dB; forgeries and copies are accepted in 0 trials
REMOVAL_TARGET_N, DETECT_TARGET_PSNR, DETECT_TARGET = 20, 38.0, 0.90
#: seconds a 512 x 512 detection took on the 2-core CPU the defaults were sized for (the
#: pre-issue format at 77aa7ee); a run times its own formats and prints its estimate
DETECT_S = 0.6

Photo = common.Photo


# --------------------------------------------------------------------------------- attacks


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def highpass(picture: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Picture minus its Gaussian blur, float32 RGB: where a mark lives, with the texture."""
    x = picture.astype(np.float32)
    return x - cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def collusion_average(pictures: list[np.ndarray]) -> np.ndarray:
    """The mean high-pass residual of marked pictures of one size: their contents average
    out, a pattern they share stays."""
    total = np.zeros(pictures[0].shape, np.float64)
    for p in pictures:
        total += highpass(p)
    return (total / len(pictures)).astype(np.float32)


def fold_estimate(residual: np.ndarray, period: int) -> np.ndarray:
    """The residual averaged over every ``period`` x ``period`` tile (from the top-left
    corner), repeated back over the picture: the part of it that repeats with that period."""
    h, w = residual.shape[:2]
    ph, pw = min(period, h), min(period, w)
    acc = np.zeros((ph, pw, *residual.shape[2:]), np.float64)
    count = np.zeros((ph, pw) + (1,) * (residual.ndim - 2), np.float64)
    for y in range(0, h, ph):
        for x in range(0, w, pw):
            block = residual[y : y + ph, x : x + pw]
            acc[: block.shape[0], : block.shape[1]] += block
            count[: block.shape[0], : block.shape[1]] += 1
    mean = acc / count
    reps = (-(-h // ph), -(-w // pw)) + (1,) * (residual.ndim - 2)
    return np.tile(mean, reps)[:h, :w].astype(np.float32)


def denoise_residual(marked: np.ndarray, denoiser: str) -> np.ndarray:
    """What a denoiser takes out of a marked picture (float32 RGB): the mark, and noise."""
    if denoiser == "nlmeans":
        bgr = common.to_bgr(marked)
        clean = common.from_bgr(cv2.fastNlMeansDenoisingColored(bgr, None, 5, 5, 7, 21))
    elif denoiser == "median3":
        clean = cv2.medianBlur(np.ascontiguousarray(marked), 3)
    else:
        raise ValueError(f"unknown denoiser {denoiser!r}; choose from {', '.join(DENOISERS)}")
    return marked.astype(np.float32) - clean.astype(np.float32)


def add_at_psnr(base: np.ndarray, delta: np.ndarray, target: float) -> tuple[np.ndarray, float]:
    """``base + s * delta`` rounded to uint8, with ``s`` chosen so its PSNR against ``base``
    is ``target`` dB (after rounding and clipping; within 0.01 dB unless clipping forbids);
    returns the picture and the PSNR it has."""
    rms = float(np.sqrt(np.mean(delta.astype(np.float64) ** 2)))
    if rms == 0:
        raise ValueError("the perturbation is zero: nothing to scale to a PSNR")
    # Dithered rounding (a fixed offset per pixel, under half a level): a residual of whole
    # numbers (a denoiser's, the difference of two uint8 pictures) would otherwise round all
    # alike, and the PSNR jump by 0.6 dB where the scale crosses a half (seen at 35 dB).
    x = base + np.random.default_rng(SEED).uniform(-0.49, 0.49, base.shape).astype(np.float32)
    s, lo, hi = 255.0 * 10 ** (-target / 20) / rms, 0.0, math.inf
    best: tuple[np.ndarray, float] | None = None
    for _ in range(40):
        out = np.clip(np.rint(x + s * delta), 0, 255).astype(np.uint8)
        got = psnr(out, base)
        if best is None or abs(got - target) < abs(best[1] - target):
            best = out, got
        if abs(got - target) < 0.01:
            break
        lo, hi = (s, hi) if got > target else (lo, s)
        # PSNR falls 20 dB a decade of scale; where rounding or clipping bend that so the
        # step leaves the bracket, halve the bracket instead
        step = s * 10 ** ((min(got, 99.0) - target) / 20)
        s = step if lo < step < hi else (lo + hi) / 2 if math.isfinite(hi) else 2 * s
    return best


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a rate of ``k`` in ``n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


# ------------------------------------------------------------------------------------ plan

NONE, FORGE, REMOVE, ESTIMATE, COPY = (
    "marked, no attack",
    "collusion forgery",
    "collusion removal",
    "estimation removal",
    "copy attack",
)
FORGERIES = (FORGE, COPY)  # judged by "accepted as ours"; the others by detection
#: --attacks names
ATTACK_NAMES = {
    "none": NONE,
    "forgery": FORGE,
    "removal": REMOVE,
    "estimation": ESTIMATE,
    "copy": COPY,
}


@dataclass(frozen=True)
class Row:
    """One table row: an attack at one strength, run on ``trials`` distinct pictures."""

    attack: str
    strength: str
    trials: int
    psnr: float | None = None
    n: int | None = None  # colluders
    fold: int | None = None  # the period is the short side / fold
    denoiser: str | None = None
    target: str | None = None  # the target this row is judged on


def plan(
    colluders, trials: int, detect_trials: int, accept_trials: int, denoisers=DENOISERS
) -> list[Row]:
    """Every row of one format. Rows a target is judged on get more trials: the strongest
    forgery (most colluders, 35 dB) and copies at 35 dB get ``accept_trials`` (0 accepted of
    200 bounds the rate below 1.9%), the weakest removals the targets name (N = 20 at 38 dB;
    estimation at 38 dB) ``detect_trials``; a weaker attack of the same kind gets ``trials``."""
    most, accept = max(colluders), "accepted in 0 trials"
    detection = f"detection >= {DETECT_TARGET:.2f}"
    rows = [Row(NONE, "-", trials)]
    for n, db in product(colluders, FORGE_PSNR):
        k = accept_trials if n == most and db == min(FORGE_PSNR) else trials
        rows.append(Row(FORGE, f"{db:g} dB", k, db, n=n, target=accept if n == most else None))
    for n, db in product(colluders, REMOVE_PSNR):
        judged = n == REMOVAL_TARGET_N and db >= DETECT_TARGET_PSNR
        k = detect_trials if judged and db == DETECT_TARGET_PSNR else trials
        rows.append(Row(REMOVE, f"{db:g} dB", k, db, n=n, target=detection if judged else None))
    for (name, fold), db in product(PERIODS, REMOVE_PSNR):
        k = detect_trials if db == DETECT_TARGET_PSNR else trials
        strength = f"{name} ({SIDE // fold} px), {db:g} dB"
        judged = detection if db >= DETECT_TARGET_PSNR else None
        rows.append(Row(ESTIMATE, strength, k, db, fold=fold, target=judged))
    for denoiser, db in product(denoisers, COPY_PSNR):
        k = accept_trials if db == min(COPY_PSNR) else trials
        rows.append(Row(COPY, f"{denoiser}, {db:g} dB", k, db, denoiser=denoiser, target=accept))
    return rows


@dataclass(frozen=True)
class Needs:
    colluders: int
    victims: int
    sources: int
    targets: int


def needs(rows: list[Row], copy_sources: int) -> Needs:
    def most(*attacks):
        return max((r.trials for r in rows if r.attack in attacks), default=0)

    return Needs(
        colluders=max((r.n or 0 for r in rows), default=0),
        victims=most(NONE, REMOVE, ESTIMATE),
        sources=min(copy_sources, most(COPY)),
        targets=most(FORGE, COPY),
    )


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Roles:
    """Disjoint sets of pictures: generated ones to mark, unmarked photos as targets."""

    colluders: list[Photo]
    victims: list[Photo]
    sources: list[Photo]
    targets: list[Photo]


def _pick(root: Path, folder: str, n: int, rng: np.random.Generator) -> list[Photo]:
    """``n`` SIDE x SIDE pictures from ``root/folder``, in a seeded random order."""
    paths = sorted(
        p for p in (root / folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    out = []
    for i in rng.permutation(len(paths)):
        if len(out) == n:
            break
        with Image.open(paths[i]) as im:
            if im.size == (SIDE, SIDE):
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
                out.append((paths[i].relative_to(root).as_posix(), rgb))
    if len(out) < n:
        raise common.MissingDataError(
            f"{root / folder}: {len(out)} pictures of {SIDE} x {SIDE}, this run needs {n} "
            f"(fewer trials with --trials/--detect-trials/--accept-trials)"
        )
    return out


def load_roles(root: Path, need: Needs) -> Roles:
    if not (root / "ai").is_dir() or not (root / "real").is_dir():
        raise common.MissingDataError(
            f"pictures not found in {root} (expected ai/ and real/ folders: the shared data "
            f"folder ../shared/data/wild relative to the project root). Mount the shared folder, "
            f"or point --data or AIGC_WILD_DIR at a folder with ai/ and real/ subfolders."
        )
    rng = np.random.default_rng(SEED)
    ai = _pick(root, "ai", need.colluders + need.victims + need.sources, rng)
    a, b = need.colluders, need.colluders + need.victims
    return Roles(ai[:a], ai[a:b], ai[b:], _pick(root, "real", need.targets, rng))


# ------------------------------------------------------------------------------------- run


@dataclass
class Marked:
    """One format's marked pictures (the originals are the roles')."""

    colluders: list[np.ndarray]
    victims: list[np.ndarray]
    sources: list[np.ndarray]


def mark(photos: list[Photo], method: str, ledger: Ledger) -> list[np.ndarray]:
    """Mark like the generation pipeline (a fresh payload each) and record every picture with
    its content fingerprint."""
    if not photos:
        return []
    key_id = key_fingerprint(KEY)
    payloads = ledger.new_payloads(len(photos), key_id=key_id)
    marked = embed(
        [common.to_tensor(a) for _, a in photos],
        [bytes.fromhex(p) for p in payloads],
        key=KEY,
        method=method,
        device="cpu",
    )
    records = [
        LedgerRecord(
            payload=p,
            key_id=key_id,
            method=method,
            generator="bench",
            path=name,
            binding=fingerprint(t),
        )
        for p, t, (name, _) in zip(payloads, marked, photos, strict=True)
    ]
    ledger.record(records)
    return [common.from_tensor(t) for t in marked]


def judge(pictures: list[np.ndarray], names: list[str], ledger: Ledger) -> list[dict]:
    """The ledger lookup of each attacked picture, as the service makes it."""
    loaded = [
        LoadedImage(source=f"attacked:{n}", pixels=common.to_tensor(p), format=None, mode="RGB")
        for n, p in zip(names, pictures, strict=True)
    ]
    out = []
    for look in lookup(loaded, ledger, key=KEY, method=READ_METHOD, device="cpu"):
        det = look.watermark
        state = None if look.binding is None else look.binding.state
        # as the check's verdict rules: only a record of this very picture (binding match)
        # lets a private-key mark decide; a mismatch is a possible forgery, and a mark the
        # ledger cannot place or compare (unverifiable) is weak evidence, never "generated"
        flagged = look.state in ("not_in_ledger", "payload_unreadable") or state in (
            "mismatch",
            "unverifiable",
        )
        out.append(
            {
                "detected": bool(det.detected),
                "p_value": float(det.p_value),
                "format": det.format,
                "state": look.state,
                "binding": state,
                "flagged": flagged,
                "accepted": bool(det.detected) and not flagged,
            }
        )
    return out


class Attacker:
    """Builds a row's attacked pictures from one format's marked pictures."""

    def __init__(self, roles: Roles, marked: Marked, colluders):
        self.roles, self.marked = roles, marked
        self.averages = {n: collusion_average(marked.colluders[:n]) for n in colluders}
        self._residuals: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, row: Row, i: int) -> tuple[str, np.ndarray, float]:
        """(name, attacked picture, its PSNR) of trial ``i``; the PSNR is against the picture
        attacked (for the unattacked row: the marked picture against its original)."""
        if row.attack == NONE:
            name, original = self.roles.victims[i]
            return name, self.marked.victims[i], psnr(self.marked.victims[i], original)
        if row.attack in (FORGE, COPY):
            name, base = self.roles.targets[i]
        else:
            name, base = self.roles.victims[i][0], self.marked.victims[i]
        if row.attack == FORGE:
            delta = self.averages[row.n]
        elif row.attack == REMOVE:
            delta = -self.averages[row.n]
        elif row.attack == ESTIMATE:
            delta = -fold_estimate(highpass(base), min(base.shape[:2]) // row.fold)
        else:
            delta = self._copy_residual(row.denoiser, i % len(self.marked.sources))
        picture, got = add_at_psnr(base, delta, row.psnr)
        return name, picture, got

    def _copy_residual(self, denoiser: str, j: int) -> np.ndarray:
        if not any(k[0] == denoiser for k in self._residuals):
            self._residuals.clear()  # rows come denoiser by denoiser: keep one's residuals
        key = (denoiser, j)
        if key not in self._residuals:
            self._residuals[key] = denoise_residual(self.marked.sources[j], denoiser)
        return self._residuals[key]


class Progress:
    """Detections done of those planned, with the time left at the rate so far."""

    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()

    def step(self, n: int, line: str) -> None:
        self.done += n
        spent = time.perf_counter() - self.t0
        left = spent / max(1, self.done) * (self.total - self.done)
        print(
            f"  [{self.done}/{self.total}, {spent / 60:.1f} min, ~{left / 60:.1f} min left] {line}",
            file=sys.stderr,
        )


def summarise(fmt: str, row: Row, names, psnrs, judged: list[dict], seconds: float) -> dict:
    n = len(judged)
    detected = sum(j["detected"] for j in judged)
    accepted = sum(j["accepted"] for j in judged)
    finite = [p for p in psnrs if math.isfinite(p)]
    return {
        "format": fmt,
        "attack": row.attack,
        "colluders": row.n,
        "strength": row.strength,
        "psnr_target": row.psnr,
        "target": row.target,
        "trials": n,
        "psnr_mean": float(np.mean(finite)) if finite else None,
        "psnr_min": float(np.min(finite)) if finite else None,
        "detected": detected,
        "detection_rate": detected / n if n else None,
        "detection_ci95": wilson(detected, n),
        "accepted": accepted,
        "accepted_ci95": wilson(accepted, n),
        "flagged": sum(j["flagged"] for j in judged),
        "states": dict(Counter(j["state"] for j in judged)),
        "bindings": dict(Counter(str(j["binding"]) for j in judged if j["binding"])),
        "formats_read": dict(Counter(j["format"] for j in judged if j["format"])),
        "seconds": seconds,
        "per_trial": [
            {"picture": name, "psnr": p, **j}
            for name, p, j in zip(names, psnrs, judged, strict=True)
        ],
    }


def run_format(
    fmt: str, method: str, roles: Roles, rows: list[Row], ledger, progress
) -> list[dict]:
    t0 = time.perf_counter()
    marked = Marked(
        *(mark(getattr(roles, r), method, ledger) for r in ("colluders", "victims", "sources"))
    )
    colluders = sorted({r.n for r in rows if r.n})
    attacker = Attacker(roles, marked, colluders)
    print(f"[{fmt}] marked and recorded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    out = []
    for row in rows:
        t0 = time.perf_counter()
        names, pictures, psnrs = zip(*(attacker(row, i) for i in range(row.trials)), strict=True)
        judged = []
        for s in range(0, row.trials, 25):  # a chunk at a time: bounded memory, steady progress
            judged += judge(list(pictures[s : s + 25]), list(names[s : s + 25]), ledger)
        r = summarise(fmt, row, names, psnrs, judged, time.perf_counter() - t0)
        out.append(r)
        n = f" N={row.n}" if row.n else ""
        accepted = f", accepted as ours {r['accepted']}" if row.attack in FORGERIES else ""
        progress.step(
            row.trials,
            f"{fmt} {row.attack}{n} {row.strength}: detected {r['detected']}/{r['trials']}"
            + accepted,
        )
    return out


# ---------------------------------------------------------------------------------- output


def _rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]" if n else "-"


def table(results: list[dict]) -> str:
    header = [
        "format",
        "attack",
        "N",
        "strength",
        "trials",
        "PSNR mean / min",
        "detected [95% CI]",
        "accepted as ours",
        "lookup states",
        "read as",
    ]
    rows = []
    for r in results:
        accepted = "-"
        if r["attack"] in FORGERIES:
            accepted = f"{r['accepted']}/{r['trials']} (<= {r['accepted_ci95'][1]:.3f})"
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        if r["bindings"]:
            states += "; binding " + ", ".join(f"{k} {v}" for k, v in sorted(r["bindings"].items()))
        psnrs = "-" if r["psnr_mean"] is None else f"{r['psnr_mean']:.2f} / {r['psnr_min']:.2f}"
        rows.append(
            [
                r["format"],
                r["attack"],
                r["colluders"] or "-",
                r["strength"],
                r["trials"],
                psnrs,
                _rate(r["detected"], r["trials"]),
                accepted,
                states,
                ", ".join(f"{k} {v}" for k, v in sorted(r["formats_read"].items())) or "-",
            ]
        )
    return common.markdown_table(header, rows)


def targets(results: list[dict]) -> list[str]:
    """One line per format and target: met or not, from the rows the target names."""
    lines = []
    for fmt in dict.fromkeys(r["format"] for r in results):
        for attack in (FORGE, REMOVE, ESTIMATE, COPY):
            judged = [
                r for r in results if r["format"] == fmt and r["attack"] == attack and r["target"]
            ]
            if not judged:
                continue
            if attack in FORGERIES:
                bad = sum(r["accepted"] for r in judged)
                total = sum(r["trials"] for r in judged)
                ok, what = bad == 0, f"{bad} of {total} accepted as ours"
            else:
                worst = min(judged, key=lambda r: r["detection_rate"])
                ok = all(r["detection_rate"] >= DETECT_TARGET for r in judged)
                n = f"N={worst['colluders']}, " if worst["colluders"] else ""
                what = (
                    f"lowest detection {worst['detection_rate']:.2f} (95% lower bound "
                    f"{worst['detection_ci95'][0]:.2f}; {n}{worst['strength']})"
                )
            lines.append(
                f"{fmt}, {attack} ({judged[0]['target']}): {'met' if ok else 'NOT met'}: {what}"
            )
    return lines


def commit() -> str:
    """The checkout's commit, ``+dirty`` with uncommitted changes to tracked files."""

    def git(*a):
        return subprocess.run(
            ["git", *a], cwd=common.ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + (
            "+dirty" if git("status", "--porcelain", "-uno") else ""
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-3 trials a row (for the test)")
    parser.add_argument("--trials", type=int, help="trials of an ordinary row (default 25)")
    parser.add_argument(
        "--detect-trials", type=int, help="trials of a row a detection target is judged on (80)"
    )
    parser.add_argument(
        "--accept-trials", type=int, help="trials of a row a forgery target is judged on (200)"
    )
    parser.add_argument(
        "--colluders", default=",".join(map(str, COLLUDERS)), help="N values, comma-separated"
    )
    parser.add_argument("--formats", default=",".join(FORMATS), help="mark formats to attack")
    parser.add_argument(
        "--attacks", default=",".join(ATTACK_NAMES), help="attacks to run (a partial run)"
    )
    parser.add_argument(
        "--denoisers", default=",".join(DENOISERS), help="the copy attack's denoisers"
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder with ai/ and real/")
    parser.add_argument("--out", help="write the markdown table here (and the JSON next to it)")
    parser.add_argument(
        "--plan", action="store_true", help="print the rows, trials and time estimate; run nothing"
    )
    args = parser.parse_args(argv)
    quick = {"trials": 1, "detect_trials": 2, "accept_trials": 3}
    full = {"trials": 25, "detect_trials": 80, "accept_trials": 200}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.colluders = tuple(int(v) for v in args.colluders.split(",") if v.strip())
    args.attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    args.denoisers = tuple(d.strip() for d in args.denoisers.split(",") if d.strip())
    unknown = (
        (set(args.formats.split(",")) - set(FORMATS))
        | (set(args.attacks) - set(ATTACK_NAMES))
        | (set(args.denoisers) - set(DENOISERS))
    )
    if unknown or not args.attacks or not args.denoisers or min(args.colluders, default=0) < 1:
        parser.error(
            f"--formats takes {', '.join(FORMATS)}; --attacks {', '.join(ATTACK_NAMES)}; "
            f"--denoisers {', '.join(DENOISERS)}; --colluders positive integers"
        )
    return args


def pick_formats(wanted: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The formats to run whose embed method is registered, and a note for each skipped."""
    registered = set(list_methods())
    chosen, notes = [], []
    for fmt in wanted.split(","):
        method = FORMATS[fmt]
        if method in registered:
            chosen.append((fmt, method))
        else:
            notes.append(f"**{fmt} format skipped**: `{method}` is not a registered method here.")
            print(f"NOTE: {notes[-1]}", file=sys.stderr)
    if not chosen:
        raise SystemExit(f"none of the formats {wanted} can be embedded here")
    return chosen, notes


def footnotes(args, rows: list[Row], roles: Roles, info: dict, stamp: str) -> list[str]:
    counts = sorted({r.trials for r in rows}, reverse=True)
    return [
        f"Key: a private key the attacker never uses (`{KEY}`); every marked picture has a "
        f"fresh random payload from `Ledger.new_payloads` and a ledger record with its content "
        f"fingerprint (`service.binding.fingerprint`). Pictures: {SIDE} x {SIDE}; "
        f"{len(roles.colluders)} colluders (N = the first N), {len(roles.victims)} removal "
        f"victims, {len(roles.sources)} copy sources (generated, `{args.data}/ai`) and "
        f"{len(roles.targets)} unmarked targets (`{args.data}/real`), disjoint, seed {SEED}.",
        f"Trials a row: {', '.join(map(str, counts))}: {args.accept_trials} where a forgery "
        f"target is judged at its strongest attack (most colluders at {min(FORGE_PSNR):g} dB, "
        f"copies at {min(COPY_PSNR):g} dB), {args.detect_trials} where a detection target is "
        f"judged at its weakest point ({DETECT_TARGET_PSNR:g} dB), {args.trials} elsewhere. "
        f"Each trial is a distinct picture attacked (copy: {len(roles.sources)} sources cycled "
        f"over distinct targets).",
        f"Residual: picture minus its Gaussian blur (sigma {BLUR_SIGMA:g}) on float RGB. "
        f"Strength: the attack's perturbation scaled so the attacked picture, rounded to "
        f"uint8, has that PSNR against the picture attacked (forgery and copy: the unmarked "
        f"target; removal: the marked picture). The unattacked row's PSNR is the mark's own.",
        "Estimation removal folds one marked picture's residual onto a period from the "
        "top-left corner (the mean of every period x period tile, repeated) and subtracts it: "
        "a tile (short side / 8), the template's period (twice a tile), the short side.",
        "Copy: the residual of a denoiser on one marked picture: `nlmeans` is "
        "`cv2.fastNlMeansDenoisingColored(h=5, hColor=5, 7, 21)`, `median3` a 3 x 3 median.",
        "Detected: `detect(method='tilemark')` at its default p <= 1e-6, Wilson 95% interval. "
        "Accepted as ours: detected, and `service.lookup.lookup` does not flag it (state "
        "`not_in_ledger` or `payload_unreadable`, or binding `mismatch` or `unverifiable`): "
        "what lets `aigc check` say `generated` (an unverifiable binding is weak evidence, "
        "`likely_generated` at most); its bracket is the "
        "Wilson upper bound of the rate. Attacked pictures are judged as pixels (no file, "
        "no re-encoding). Payloads are random (as the pipeline's), so reruns vary slightly.",
        f"Machine: {info['cpu_model']} ({info['cpu_count']} CPUs), torch {info['torch']}; "
        f"commit {stamp}.",
    ]


def seconds_per_detection(method: str) -> float:
    """One detection's time here: a textured SIDE x SIDE picture marked with ``method``."""
    rng = np.random.default_rng(SEED)
    cells = rng.integers(0, 256, (SIDE // 8, SIDE // 8, 3), dtype=np.uint8)
    picture = np.asarray(Image.fromarray(cells).resize((SIDE, SIDE), Image.BICUBIC))
    marked = embed([common.to_tensor(picture)], bytes(8), key=KEY, method=method, device="cpu")
    t0 = time.perf_counter()
    detect(marked, key=KEY, method=READ_METHOD, device="cpu")
    return time.perf_counter() - t0


def estimate(rows: list[Row], formats: list[tuple[str, str]], timed: bool) -> str:
    """The detections the run makes and the time they take here: one detection timed per
    format (``timed``), else at :data:`DETECT_S`."""
    per_format = sum(r.trials for r in rows)
    if timed:
        seconds = {fmt: seconds_per_detection(method) for fmt, method in formats}
    else:
        seconds = {fmt: DETECT_S for fmt, _ in formats}
    minutes = per_format * sum(seconds.values()) / 60
    sources = needs(rows, COPY_SOURCES).sources * len(formats)
    return (
        f"{len(rows)} rows x {len(formats)} formats = {per_format * len(formats)} detections "
        f"({', '.join(f'{f} {t:.2f} s' for f, t in seconds.items())} a detection"
        f"{' here' if timed else ', assumed'}): about {minutes:.0f} min, plus "
        f"~{sources * 1.1 / 60:.0f} min of fastNlMeans on {sources} copy sources and the "
        f"binding checks (the defaults were sized for {DETECT_S} s a detection)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    formats, notes = pick_formats(args.formats)
    rows = plan(args.colluders, args.trials, args.detect_trials, args.accept_trials, args.denoisers)
    chosen = {ATTACK_NAMES[a] for a in args.attacks}
    if len(chosen) < len(ATTACK_NAMES):
        rows = [r for r in rows if r.attack in chosen]
        notes.append(f"Partial run: {', '.join(args.attacks)} only.")
    if args.denoisers != DENOISERS:
        notes.append(f"Copy attack with {', '.join(args.denoisers)} only.")
    total = sum(r.trials for r in rows) * len(formats)
    print(estimate(rows, formats, timed=not args.quick), file=sys.stderr)
    if args.plan:
        for r in rows:
            n = f" N={r.n}" if r.n else ""
            print(f"  {r.attack}{n} {r.strength}: {r.trials} trials", file=sys.stderr)
        return 0
    roles = load_roles(args.data, needs(rows, COPY_SOURCES))
    info, stamp = common.machine_info(), commit()
    progress = Progress(total)
    results = []
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "ledger.sqlite") as ledger:
        for fmt, method in formats:
            results += run_format(fmt, method, roles, rows, ledger, progress)
    elapsed = time.perf_counter() - progress.t0
    title = "## Watermark attacks without the key" + (" (quick run)" if args.quick else "")
    markdown = "\n".join(
        [
            title,
            "",
            table(results),
            "",
            "Targets (issue 19):",
            "",
            *[f"- {t}" for t in targets(results)],
            "",
            *[f"- {n}" for n in [*notes, *footnotes(args, rows, roles, info, stamp)]],
            f"- Run time: {elapsed / 60:.1f} min for {total} detections.",
        ]
    )
    raw = {
        "benchmark": "watermark_attacks",
        "quick": args.quick,
        "commit": stamp,
        "machine": info,
        "seed": SEED,
        "formats": dict(formats),
        "notes": notes,
        "seconds": elapsed,
        "results": results,
    }
    common.write_outputs("watermark_attacks", markdown, raw, args.out, args.quick)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
