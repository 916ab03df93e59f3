"""False-match rates of the similarity verdicts at scale, and the calibration of their levels.

    python bench/near_duplicate_fmr.py [--cifake 1200] [--workers 2] [--calibrate]
                                       [--out bench/results/near_duplicate_fmr.md]

What it answers: how often does ``aigc similar`` (descriptor ``vlad``) call an *unrelated*
picture a ``copy``, a ``near_duplicate`` or ``similar`` of a registered work, and what share of
real copies does it still find at those levels?

Data (nothing copied into the project; ``../shared/data``):

- ``wild/``: 1,500 pictures, 701 real photos and 799 generated ones. Sources are put into
  groups (sources known to share pictures or scenes go together: the ImageNet samples, the
  EXIF test-file collections, the image-matching demos, ...; :data:`SOURCE_GROUPS`), and the
  groups into two halves of about equal size per label (:func:`split_groups`): the
  **calibration** half and the **held-out** half.
- ``cifake/cifake_25k.zip``: a seeded sample (``--cifake``, half REAL, half FAKE), alternately
  into the two halves; every other picture is used at its own 32 x 32 pixels (a thumbnail), the
  others enlarged 8x to 256 x 256 (bicubic), since 32 px is below what local features are made
  for. They are queries only.
- Kodak (24) and scikit-image (14) photos: the references of the held-out index, and, through
  the eight edits of ``copyeval.EDITS``, the 304 true copies whose recall is reported (the
  copies of ``bench/copy_detection.py``, seed 0), in the held-out index and in that bench's
  own (the 38 references alone); the 50 edited distractors of that bench (held-out half of
  ``aigc_small``) are held-out queries too.
- True copies of the calibration half (``--calibration-copies`` seeded real wild photos of it
  through the same edits), to decide there the rule for a failed verification. A copy is
  searched without the other pictures of its reference's source group (near-identical series).

Indexes: calibration = every real wild photo of the calibration half; held-out = Kodak,
scikit-image and every real wild photo of the held-out half. Unrelated pairs: every query of a
half against every reference of its index, except a picture against itself or its own source
group. A pair's score is computed exactly as ``SimilarityIndex.search`` does (cosine of the
best of query and mirrored query, less the query's background offset); geometric verification
runs where the product runs it (the best ``VERIFY_TOP`` per query, and every candidate at the
near_duplicate level); the verdict comes from ``Thresholds.grade``, the product's own rule.
Every pair is counted, also those the product would not list (it lists the best ``k``): an
upper bound on the rate it reports.

Calibration uses the calibration half only: ``copy`` (the near_duplicate level) and
``similar`` are the lowest scores whose false-match rate there has a 95% Clopper-Pearson upper
bound at most their targets (:data:`TARGETS`); ``copy_failed``, the near_duplicate level after
a failed verification, the same at a tenth of the target (:data:`FAILED_FACTOR`; the
calibration half's copies and unrelated pairs show why). The held-out half then reports each
level's rate with its 95% interval, verification on and off, and the recall of the copies; the
levels shipped before are measured on the same pairs. ``--calibrate`` writes the levels and the
held-out rates into ``data/similarity_calibration.json``.

The pictures, the split and the scoring of the pairs live in ``similarity_pairs.py``; its
cache (descriptors and verification outcomes, per codebook, under ``bench/results/raw/``,
ignored by git) makes a rerun take seconds; a first run takes about 40 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from similarity_pairs import (
    HALVES,
    Cache,
    Half,
    build_half,
    calibration_copy_items,
    cifake_items,
    copy_items,
    reference_photos,
    verify,
    vlad_descriptor,
    wild_items,
)

ROOT = Path(__file__).resolve().parents[1]

#: false-match rate each level is calibrated to (upper 95% bound on the calibration half)
TARGETS = {"near_duplicate": 1e-3, "similar": 1e-2}

#: A verification that ran and failed is evidence against a copy: a near_duplicate then needs
#: the level where unrelated pairs are this many times rarer. On the calibration half (first
#: run): of 320 copies, 11 failed verification, 10 of them scoring 0.40-0.71 (one pasted at
#: 0.10, below both levels); unrelated pairs that failed scored at most 0.30, with at most 7
#: inliers. At a tenth of the rate (score 0.18) every one of those copies stays a
#: near_duplicate and 92% of the false near_duplicates after a failed check go.
FAILED_FACTOR = 0.1

#: the vlad levels shipped before this calibration (bench/copy_detection.py's precision 0.9
#: and 0.5 on 38 references), measured on the held-out pairs for comparison (with the best
#: VERIFY_TOP verified only, and one near_duplicate level, as then)
OLD_LEVELS = (0.08088, 0.023546)


# ----------------------------------------------------------------------------- the numbers

ORDER = {v: i for i, v in enumerate(("exact", "copy", "near_duplicate", "similar", "none"))}
LEVELS = ("copy", "near_duplicate", "similar")


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact two-sided 95% interval of a binomial rate, k of n."""
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return low, high


def level_for(scores: np.ndarray, target: float) -> float:
    """The lowest score level, on a 1e-4 grid, at which the share of ``scores`` (unrelated
    pairs) at or above it has a 95% upper bound at most ``target``."""
    s = np.sort(scores)[::-1]
    n = len(s)
    k = 0
    while k < n and clopper_pearson(k + 1, n)[1] <= target:
        k += 1
    # k pairs may reach the level: it must lie above the (k+1)-th highest score
    level = np.ceil(s[k] * 1e4 + 1e-6) / 1e4 if k < n else float(s[-1])
    return round(float(level), 4)


def grade_pairs(half: Half, thresholds, *, verify: bool) -> np.ndarray:
    """Every pair's verdict by the product's rule (``Thresholds.grade``); "" for non-pairs.
    ``verify=False`` is ``aigc similar --no-verify`` (or references whose files are gone)."""
    out = np.full(half.score.shape, "", dtype=object)
    for i, j in zip(*np.nonzero(np.isfinite(half.score)), strict=True):
        state = half.state[i, j] if verify else "not_run"
        out[i, j] = thresholds.grade(float(half.score[i, j]), state)
    return out


def unrelated_mask(half: Half) -> np.ndarray:
    rows = np.array([q.kind != "copy" for q in half.queries])
    return np.isfinite(half.score) & rows[:, None]


def rate_table(verdicts: np.ndarray, mask: np.ndarray) -> dict[str, dict]:
    """Per level: unrelated pairs that reach it or a stronger verdict."""
    rank = np.vectorize(lambda v: ORDER.get(v, 9))(verdicts[mask])
    n = int(mask.sum())
    out = {}
    for level in LEVELS:
        k = int((rank <= ORDER[level]).sum())
        low, high = clopper_pearson(k, n)
        out[level] = {"rate": k / n, "low": low, "high": high, "pairs": n, "false_matches": k}
    return out


def per_query(verdicts: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Per level: share of unrelated queries with at least one false match."""
    rows = mask.any(axis=1)
    rank = np.vectorize(lambda v: ORDER.get(v, 9))(np.where(mask, verdicts, "none"))
    return {lvl: float((rank[rows] <= ORDER[lvl]).any(axis=1).mean()) for lvl in LEVELS}


def copy_recall(half: Half, verdicts: np.ndarray, k: int = 5) -> dict:
    """Share of the half's true copies whose reference the product lists (best ``k`` by
    verdict, then score) at each level or stronger; per edit at copy-or-near_duplicate."""
    ref_index = {r.key: j for j, r in enumerate(half.refs)}
    got: dict[str, list] = {lvl: [] for lvl in LEVELS}
    by_edit: dict[str, list] = {}
    states = Counter()
    missed = []
    for i, q in enumerate(half.queries):
        if q.kind != "copy":
            continue
        j = ref_index.get(q.truth)
        listed = False
        if j is not None and np.isfinite(half.score[i, j]):
            cand = np.nonzero(np.isfinite(half.score[i]))[0]
            order = sorted(cand, key=lambda c: (ORDER[verdicts[i, c]], -half.score[i, c]))
            listed = j in order[:k]
            states[str(half.state[i, j])] += 1
        v = verdicts[i, j] if listed else "none"
        for lvl in LEVELS:
            got[lvl].append(ORDER[v] <= ORDER[lvl])
        by_edit.setdefault(q.edit, []).append(ORDER[v] <= ORDER["near_duplicate"])
        if ORDER[v] > ORDER["near_duplicate"]:
            inl = int(half.inliers[i, j]) if j is not None else -1
            missed.append(
                {
                    "query": q.key,
                    "edit": q.edit,
                    "verdict": v,
                    "inliers": inl,
                    "rank": int(half.rank[i, j]) if j is not None else None,
                    "score": round(float(half.score[i, j]), 4) if j is not None else None,
                }
            )
    n = len(got["copy"])
    return {
        "copies": n,
        "recall": {lvl: float(np.mean(got[lvl])) if n else 0.0 for lvl in LEVELS},
        "by_edit": {e: float(np.mean(v)) for e, v in by_edit.items()},
        "truth_verification": dict(states),
        "missed": missed,
    }


def calibrate(scored: Half, cache: Cache, workers: int) -> tuple[object, dict]:
    """The levels, from the calibration half only, and what decided the failed-verification
    rule there."""
    from aigcguard.provenance.similarity.index import Thresholds

    unrelated = scored.score[unrelated_mask(scored)]
    copy = level_for(unrelated, TARGETS["near_duplicate"])
    similar = level_for(unrelated, TARGETS["similar"])
    strict = level_for(unrelated, TARGETS["near_duplicate"] * FAILED_FACTOR)
    cal = verify(scored, cache, workers, copy)
    options = {
        "same level": Thresholds(copy, similar, copy_failed=None),
        "stricter level": Thresholds(copy, similar, copy_failed=strict),
    }
    mask = unrelated_mask(cal)
    failed = mask & (cal.state == "failed")
    ref_index = {r.key: j for j, r in enumerate(cal.refs)}
    failed_copies = []
    for i, q in enumerate(cal.queries):
        j = ref_index.get(q.truth) if q.kind == "copy" else None
        if j is not None and cal.state[i, j] == "failed":
            failed_copies.append(
                {
                    "edit": q.edit,
                    "inliers": int(cal.inliers[i, j]),
                    "score": round(float(cal.score[i, j]), 4),
                }
            )
    evidence = {
        "levels": {"copy": copy, "similar": similar, "copy_failed": strict},
        "unrelated_failed_pairs": int(failed.sum()),
        "unrelated_failed_max_score": round(float(cal.score[failed].max()), 4),
        "unrelated_failed_max_inliers": int(cal.inliers[failed].max()),
        "unrelated_failed_at_or_above": {
            str(t): int((cal.score[failed] >= t).sum()) for t in (copy, strict)
        },
        "failed_copies": sorted(failed_copies, key=lambda c: c["score"]),
        "options": {},
    }
    for name, t in options.items():
        verdicts = grade_pairs(cal, t, verify=True)
        evidence["options"][name] = {
            "copy_failed": t.copy_failed,
            "false_match": rate_table(verdicts, mask),
            "recall": copy_recall(cal, verdicts)["recall"],
        }
    return options["stricter level"], evidence


def report(half: Half, t) -> dict:
    """False-match rates (verification on, as the product runs, and off), per query kind,
    per query, and the recall of the half's copies, at thresholds ``t``."""
    mask = unrelated_mask(half)
    on = grade_pairs(half, t, verify=True)
    off = grade_pairs(half, t, verify=False)
    kinds = sorted({q.kind for q in half.queries if q.kind != "copy"})
    by_kind = {}
    for kind in kinds:
        rows = np.array([q.kind == kind for q in half.queries])
        by_kind[kind] = {
            "queries": int(rows.sum()),
            "false_match": rate_table(on, mask & rows[:, None]),
        }
    ran = mask & (half.state != "not_run")
    return {
        "thresholds": {"copy": t.copy, "copy_failed": t.copy_failed, "similar": t.similar},
        "unrelated_verified": {
            "pairs": int(ran.sum()),
            "verified": int((mask & (half.state == "verified")).sum()),
            "max_inliers": int(half.inliers[ran].max()) if ran.any() else None,
        },
        "references": len(half.refs),
        "unrelated_queries": int(mask.any(axis=1).sum()),
        "false_match": rate_table(on, mask),
        "false_match_unverified": rate_table(off, mask),
        "queries_with_a_false_match": per_query(on, mask),
        "by_kind": by_kind,
        "recall": copy_recall(half, on),
        "recall_unverified": copy_recall(half, off),
    }


def _rate(r: dict) -> str:
    return (
        f"{r['false_matches']:,} / {r['pairs']:,} = {r['rate']:.2e} "
        f"[{r['low']:.1e}, {r['high']:.1e}]"
    )


def _missed(missed: list[dict], refs: int) -> str:
    """The copies not found at copy or near_duplicate, by why."""
    from aigcguard.provenance.similarity.index import VERIFY_TOP

    unrun = [m for m in missed if m["inliers"] < 0]
    failed = [m for m in missed if m["inliers"] >= 0]
    edits = Counter(m["edit"] for m in unrun)
    text = (
        f"Missed at copy or near_duplicate in the {refs}-reference index: {len(missed)}. "
        f"{len(unrun)} were never verified: their reference ranked below the best "
        f"{VERIFY_TOP} (ranks {min((m['rank'] for m in unrun), default=0)}-"
        f"{max((m['rank'] for m in unrun), default=0)}) and scored below the near_duplicate "
        f"level ({', '.join(f'{e}: {n}' for e, n in edits.most_common())})."
    )
    if failed:
        text += f" {len(failed)} verified and failed: " + "; ".join(
            f"{m['edit']} ({m['inliers']} inliers, score {m['score']}, {m['verdict']})"
            for m in failed
        )
    return text + "."


def markdown(raw: dict) -> str:
    held, old = raw["held_out"], raw["held_out_old_levels"]
    ev, t = raw["calibration"], held["thresholds"]
    lines = [
        "## False matches of the similarity verdicts (vlad)",
        "",
        f"Levels chosen on the calibration half ({raw['calibration_pairs']:,} unrelated pairs): "
        f"near_duplicate at score {t['copy']} (verification not run) and {t['copy_failed']} "
        f"(verification ran and failed), similar at {t['similar']}. Before: "
        f"{old['thresholds']['copy']} and {old['thresholds']['similar']}.",
        "",
        f"Held-out half: {held['references']} references (Kodak, scikit-image, real wild "
        f"photos of the held-out sources), {held['unrelated_queries']:,} unrelated queries; "
        "false matches / unrelated pairs = rate [95% Clopper-Pearson interval], a pair "
        "counted at its verdict or any stronger one:",
        "",
    ]
    header = [
        "level",
        "verification on (aigc similar)",
        "verification off (--no-verify)",
        "queries with one, on",
        "old levels, on",
    ]
    rows = []
    for lvl in LEVELS:
        off = held["false_match_unverified"][lvl]
        rows.append(
            [
                lvl,
                _rate(held["false_match"][lvl]),
                _rate(off) if lvl != "copy" else "(no copy without verification)",
                f"{held['queries_with_a_false_match'][lvl]:.3f}",
                _rate(old["false_match"][lvl]),
            ]
        )
    ran = held["unrelated_verified"]
    lines += [
        common.markdown_table(header, rows),
        "",
        f"Geometric verification ran on {ran['pairs']:,} of the unrelated pairs (the best "
        f"candidates of each query, and those at the near_duplicate level): {ran['verified']} "
        f"verified, at most {ran['max_inliers']} inliers (a copy needs 12).",
        "",
        "By kind of query (held-out, verification on):",
        "",
    ]
    rows = [
        [
            kind,
            v["queries"],
            _rate(v["false_match"]["near_duplicate"]),
            _rate(v["false_match"]["similar"]),
        ]
        for kind, v in held["by_kind"].items()
    ]
    lines += [common.markdown_table(["queries", "n", "near_duplicate", "similar"], rows), ""]
    rec, rec_off, rec_old = held["recall"], held["recall_unverified"], old["recall"]
    small = raw["copy_benchmark_index"]

    def row(name, r, off=False):
        first = "-" if off else f"{r['recall']['copy']:.3f}"
        return [name, first, *(f"{r['recall'][lvl]:.3f}" for lvl in LEVELS[1:])]

    lines += [
        f"Recall of the {rec['copies']} edited copies of the 38 Kodak / scikit-image references "
        "(the copy benchmark's, seed 0): the reference listed in the best 5 at each level or "
        f"stronger; in the held-out index ({held['references']} references) and in the copy "
        f"benchmark's own ({small['references']} references):",
        "",
        common.markdown_table(
            [
                "index, levels, verification",
                "copy",
                "copy or near_duplicate",
                "similar or stronger",
            ],
            [
                row(f"{held['references']}, new, on", rec),
                row(f"{held['references']}, new, off", rec_off, off=True),
                row(f"{held['references']}, old, on", rec_old),
                row(f"{small['references']}, new, on", small["recall"]),
                row(f"{small['references']}, new, off", small["recall_unverified"], off=True),
            ],
        ),
        "",
        "Copy or near_duplicate per edit (new levels, verification on):",
        "",
        common.markdown_table(
            list(rec["by_edit"]), [[f"{v:.2f}" for v in rec["by_edit"].values()]]
        ),
        "",
        _missed(rec["missed"], held["references"]),
        "",
        "### The rule for a failed verification (measured on the calibration half)",
        "",
        f"Unrelated pairs whose verification ran and failed: {ev['unrelated_failed_pairs']:,}, "
        f"at most {ev['unrelated_failed_max_inliers']} inliers, scores up to "
        f"{ev['unrelated_failed_max_score']}; at or above each level: "
        + ", ".join(f"{k}: {v}" for k, v in ev["unrelated_failed_at_or_above"].items())
        + f". Copies of the calibration half ({raw['calibration_copies']}) whose verification "
        f"failed: {len(ev['failed_copies'])}, scores "
        + ", ".join(str(c["score"]) for c in ev["failed_copies"])
        + ".",
        "",
        common.markdown_table(
            [
                "failed verification needs",
                "near_duplicate rate, calibration",
                "copy or near_duplicate recall, calibration copies",
            ],
            [
                [
                    f"{name} ({o['copy_failed'] or t['copy']})",
                    _rate(o["false_match"]["near_duplicate"]),
                    f"{o['recall']['near_duplicate']:.3f}",
                ]
                for name, o in ev["options"].items()
            ],
        ),
        "",
        f"- Machine: {raw['machine']['cpu_model']}, {raw['machine']['cpu_count']} CPUs, CPU "
        f"only; {raw['seconds']:.0f} s (descriptors and verifications cached: "
        f"{raw['cached']}).",
    ]
    return "\n".join(lines)


def write_calibration(raw: dict) -> Path:
    from aigcguard.fileio import atomic_write
    from aigcguard.provenance.similarity.descriptors import create_descriptor
    from aigcguard.provenance.similarity.index import CALIBRATION_FILE, _calibration_key

    path = ROOT / "data" / CALIBRATION_FILE
    table = json.loads(path.read_text()) if path.exists() else {"version": 1, "embedders": {}}
    held, t = raw["held_out"], raw["held_out"]["thresholds"]
    small = raw["copy_benchmark_index"]

    def recall(r: dict) -> dict:
        return {
            "references": r["references"],
            "copies": r["recall"]["copies"],
            "copy": round(r["recall"]["recall"]["copy"], 4),
            "copy_or_near_duplicate": round(r["recall"]["recall"]["near_duplicate"], 4),
            "similar_or_stronger": round(r["recall"]["recall"]["similar"], 4),
        }

    table["embedders"][_calibration_key(create_descriptor("vlad", "cpu"))] = {
        "copy": t["copy"],
        "copy_failed": t["copy_failed"],
        "similar": t["similar"],
        "precision": None,
        "targets": {
            "near_duplicate": TARGETS["near_duplicate"],
            "near_duplicate_failed": TARGETS["near_duplicate"] * FAILED_FACTOR,
            "similar": TARGETS["similar"],
        },
        "false_match": {lvl: _rounded(held["false_match"][lvl]) for lvl in LEVELS},
        "false_match_unverified": {
            lvl: _rounded(held["false_match_unverified"][lvl]) for lvl in LEVELS[1:]
        },
        "recall": {"held_out_index": recall(held), "copy_benchmark_index": recall(small)},
        "measured": datetime.date.today().isoformat(),
        "data": (
            "bench/near_duplicate_fmr.py. Levels: the lowest score whose false-match rate has a "
            "95% upper bound at most the target, on the calibration half: "
            f"{raw['calibration_pairs']} unrelated pairs, half the source groups of "
            "../shared/data/wild (real photos as references, every picture as a query) and half "
            "a CIFAKE sample (queries, at 32 px and enlarged to 256 px). false_match: rates on "
            f"the held-out half, {held['false_match']['similar']['pairs']} unrelated pairs (the "
            "other source groups, the other CIFAKE half, the copy benchmark's edited distractors, "
            "against Kodak, scikit-image and the held-out real photos), a pair counted at its "
            "verdict or a stronger one, verification on (as aigc similar runs) and off; 95% "
            "Clopper-Pearson intervals. Verification as aigc similar runs it: the best 3 "
            "candidates and every one at the near_duplicate level. recall: the copy benchmark's "
            "edited copies, listed in the best 5 at copy or stronger, and so on."
        ),
    }
    with atomic_write(path) as f:
        f.write((json.dumps(table, indent=1) + "\n").encode())
    return path


def _rounded(r: dict) -> dict:
    return {
        "rate": float(f"{r['rate']:.3g}"),
        "low": float(f"{r['low']:.3g}"),
        "high": float(f"{r['high']:.3g}"),
        "pairs": r["pairs"],
        "false_matches": r["false_matches"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifake", type=int, default=1200, help="CIFAKE pictures sampled (0: none)")
    ap.add_argument("--calibration-copies", type=int, default=40, help="references edited")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--calibrate", action="store_true", help="write data/similarity_calibration.json"
    )
    ap.add_argument("--out", type=Path, help="write the markdown here (JSON beside it)")
    args = ap.parse_args()
    from aigcguard.provenance.similarity.index import Thresholds

    t0 = time.perf_counter()
    items = wild_items() + cifake_items(args.cifake, args.seed) + reference_photos()
    items += copy_items() + calibration_copy_items(items, args.calibration_copies, args.seed)
    cache = Cache(vlad_descriptor().codebook_id)
    cached = f"{len(cache.vectors)} pictures, {len(cache.verified)} pairs before this run"
    cal = build_half("calibration", items, cache, args.workers)
    thresholds, evidence = calibrate(cal, cache, args.workers)
    held = build_half("held_out", items, cache, args.workers)
    # the copy benchmark's own setting: its 38 references, its copies and distractors
    small = build_half(
        "held_out",
        items,
        cache,
        args.workers,
        ref_kinds=("kodak", "skimage"),
        query_kinds=("copy", "aigc_small"),
    )
    old = Thresholds(*OLD_LEVELS)
    raw = {
        "benchmark": "near_duplicate_fmr",
        "machine": common.machine_info(),
        "targets": TARGETS,
        "failed_factor": FAILED_FACTOR,
        "calibration_pairs": int(unrelated_mask(cal).sum()),
        "calibration_copies": sum(q.kind == "copy" for q in cal.queries),
        "calibration": evidence,
        "held_out": report(verify(held, cache, args.workers, thresholds.copy), thresholds),
        "held_out_old_levels": report(verify(held, cache, args.workers, None), old),
        "copy_benchmark_index": report(
            verify(small, cache, args.workers, thresholds.copy), thresholds
        ),
        "splits": {
            h: sorted({it.group for it in items if it.half == h and it.kind.startswith("wild")})
            for h in HALVES
        },
        "cached": cached,
    }
    raw["seconds"] = time.perf_counter() - t0
    text = markdown(raw)
    common.write_outputs("near_duplicate_fmr", text, raw, args.out, quick=False)
    if args.calibrate:
        print(f"wrote {write_calibration(raw)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
