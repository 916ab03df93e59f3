"""A DISC-style copy-detection benchmark: edited copies of reference works among distractors.

Queries are references put through the edits copies get on the web (crops, rescales, JPEG,
colour changes, overlays, mirroring, rotation, pasting into another picture, a combination),
plus distractor pictures that copy nothing (edited too, so the edit is no give-away). Every
query is searched in an index of the references; the predictions of all queries are pooled and
ranked, as in the DISC 2021 challenge:

- ``muap``: micro-average precision over the pooled ranking (recall over the queries that do
  copy a reference);
- ``recall_at_p90``: the largest recall reached while precision is at least 0.9;
- ``accuracy_at_1``: share of copying queries whose best match is the right reference.

Two rankings are scored: by the descriptor's ``score`` alone, and with geometric evidence
(verified matches first, then by score).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from aigcguard.provenance.similarity.index import Reference
from aigcguard.results import JsonResult

Array = np.ndarray


def _pil(a: Array) -> Image.Image:
    return Image.fromarray(a)


def _jpeg(im: Image.Image, quality: int) -> Array:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return np.asarray(out.convert("RGB"))


def _crop(im: Image.Image, frac: float, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    cw, ch = max(16, int(w * frac)), max(16, int(h * frac))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def _overlay(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    im = im.copy()
    draw = ImageDraw.Draw(im)
    w, h = im.size
    for _ in range(3):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([x, y, x + w // 5, y + h // 6], fill=colour)
    draw.text((w // 10, h // 2), "SHARED  #viral  follow for more", fill=(255, 255, 255))
    return im


def _paste(im: Image.Image, host: Image.Image, rng: np.random.Generator) -> Image.Image:
    host = host.convert("RGB").resize((768, 512))
    part = im.copy()
    part.thumbnail((384, 384))
    x = int(rng.integers(0, host.width - part.width + 1))
    y = int(rng.integers(0, host.height - part.height + 1))
    host.paste(part, (x, y))
    return host


def _crop_aspect_jpeg(im, host, rng):
    return _jpeg(_crop(im, 0.7, rng).resize((400, 300)), 70)


def _downscale_jpeg(im, host, rng):
    return _jpeg(im.resize((max(16, im.width // 3), max(16, im.height // 3))), 50)


def _colour(im, host, rng):
    return np.asarray(ImageEnhance.Color(ImageEnhance.Contrast(im).enhance(1.4)).enhance(0.2))


def _overlaid(im, host, rng):
    return np.asarray(_overlay(im, rng))


def _mirror_crop(im, host, rng):
    return np.asarray(_crop(im, 0.84, rng).transpose(Image.FLIP_LEFT_RIGHT))


def _rotate(im, host, rng):
    return np.asarray(im.rotate(10, expand=True))


def _pasted(im, host, rng):
    return _jpeg(_paste(im, host, rng), 80)


def _combined(im, host, rng):
    edited = ImageEnhance.Brightness(_crop(im, 0.9, rng)).enhance(1.2)
    return _jpeg(edited.filter(ImageFilter.GaussianBlur(1)), 60)


#: (name, edit(image, host picture for pastes, rng) -> H x W x 3 array), in report order
EDITS: list[tuple[str, Callable[[Image.Image, Image.Image, np.random.Generator], Array]]] = [
    ("crop 50% + aspect + JPEG 70", _crop_aspect_jpeg),
    ("downscale 1/3 + JPEG 50", _downscale_jpeg),
    ("contrast + desaturate", _colour),
    ("overlay boxes + text", _overlaid),
    ("mirror + crop 70%", _mirror_crop),
    ("rotate 10°", _rotate),
    ("pasted into another picture", _pasted),
    ("crop 80% + bright + blur + JPEG 60", _combined),
]


@dataclass(frozen=True)
class CopyQuery:
    name: str
    image: Array  # H x W x 3 uint8
    truth: str | None  # the reference it copies, None for a distractor
    edit: str


def build_queries(
    references: Sequence[tuple[str, Array]],
    distractors: Sequence[tuple[str, Array]],
    *,
    seed: int = 0,
) -> list[CopyQuery]:
    """Every reference through every edit, and every distractor through one edit each.
    Pastes go into a random distractor (a grey canvas when there are none)."""
    if not references:
        raise ValueError("the benchmark needs at least one reference picture")
    rng = np.random.default_rng(seed)
    canvas = np.full((512, 768, 3), 128, np.uint8)
    queries = []
    for name, arr in references:
        for edit, fn in EDITS:
            host = distractors[int(rng.integers(len(distractors)))][1] if distractors else canvas
            queries.append(
                CopyQuery(f"{name} | {edit}", fn(_pil(arr), _pil(host), rng), name, edit)
            )
    for i, (name, arr) in enumerate(distractors):
        edit, fn = EDITS[i % len(EDITS)]
        if edit.startswith("pasted"):
            edit, fn = EDITS[0]
        queries.append(CopyQuery(f"{name} | {edit}", fn(_pil(arr), _pil(arr), rng), None, edit))
    return queries


@dataclass(frozen=True)
class RankingScores(JsonResult):
    muap: float
    recall_at_p90: float
    accuracy_at_1: float


@dataclass(frozen=True)
class CopyReport(JsonResult):
    embedder: str
    references: int
    queries: int
    distractor_queries: int
    descriptor: RankingScores  # ranked by score alone
    verified: RankingScores  # verified matches first, then by score
    accuracy_by_edit: dict[str, float]
    #: score levels at which the pooled descriptor ranking reaches 90% and 50% precision
    score_at_p90: float | None
    score_at_p50: float | None
    seconds_per_query: float

    def markdown(self) -> str:
        """Both rankings as a table, and what was measured (``aigc eval copy``'s output)."""
        rows = [("descriptor score", self.descriptor), ("with verification", self.verified)]
        return (
            "| ranking | muAP | recall @ P90 | accuracy @ 1 |\n|---|---|---|---|\n"
            + "".join(
                f"| {name} | {r.muap:.3f} | {r.recall_at_p90:.3f} | {r.accuracy_at_1:.3f} |\n"
                for name, r in rows
            )
            + f"\n{self.embedder}: {self.references} references, {self.queries} queries "
            f"({self.distractor_queries} distractors), {self.seconds_per_query:.2f} s per query."
        )


def ranking_scores(predictions: Sequence[tuple[float, bool]], positives: int) -> RankingScores:
    """DISC metrics from pooled (score, correct) predictions; ``positives``: copying queries."""
    if not predictions or positives == 0:
        return RankingScores(0.0, 0.0, 0.0)
    order = sorted(predictions, key=lambda p: -p[0])
    correct = np.array([c for _, c in order], float)
    tp = np.cumsum(correct)
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / positives
    muap = float(np.sum(precision * correct) / positives)
    ok = precision >= 0.9
    return RankingScores(
        muap=round(muap, 4),
        recall_at_p90=round(float(recall[ok].max()) if ok.any() else 0.0, 4),
        accuracy_at_1=0.0,  # needs per-query top 1s: filled in by ``evaluate``
    )


def _score_at_precision(predictions: Sequence[tuple[float, bool]], target: float) -> float | None:
    """The lowest score s such that predictions scoring >= s are at least ``target`` precise."""
    order = sorted(predictions, key=lambda p: -p[0])
    tp = np.cumsum([c for _, c in order])
    precision = tp / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    return float(order[ok.max()][0]) if len(ok) else None


def evaluate(
    index, queries: Sequence[CopyQuery], ref_ids: dict[str, int], *, k: int = 5
) -> CopyReport:
    """Search every query in ``index`` (which holds the references; ``ref_ids``: reference
    name -> work id) and score the pooled predictions."""
    plain, verified = [], []
    top1_plain: dict[str, list[bool]] = {}
    top1_verified: list[bool] = []
    positives = sum(q.truth is not None for q in queries)
    t0 = time.perf_counter()
    for q in queries:
        image = torch.from_numpy(np.ascontiguousarray(q.image.transpose(2, 0, 1)))
        [result] = index.search([image], k=k)
        want = ref_ids.get(q.truth) if q.truth else None
        for m in result.matches:
            ok = want is not None and m.id == want
            plain.append((m.score, ok))
            # Geometric evidence outranks any descriptor score (scores are below 2).
            verified.append((m.score + (10.0 if m.verdict == "copy" else 0.0), ok))
        if want is not None:
            by_score = max(result.matches, key=lambda m: m.score, default=None)
            top1_plain.setdefault(q.edit, []).append(by_score is not None and by_score.id == want)
            # ``matches`` come strongest verdict first: the verified ranking's top 1.
            top1_verified.append(bool(result.matches) and result.matches[0].id == want)
    elapsed = (time.perf_counter() - t0) / max(1, len(queries))
    hits = [h for v in top1_plain.values() for h in v]
    desc = ranking_scores(plain, positives)
    ver = ranking_scores(verified, positives)
    return CopyReport(
        embedder=index.descriptor.spec,
        references=len(ref_ids),
        queries=len(queries),
        distractor_queries=len(queries) - positives,
        descriptor=RankingScores(desc.muap, desc.recall_at_p90, _mean(hits)),
        verified=RankingScores(ver.muap, ver.recall_at_p90, _mean(top1_verified)),
        accuracy_by_edit={e: _mean(v) for e, v in top1_plain.items()},
        score_at_p90=_score_at_precision(plain, 0.9),
        score_at_p50=_score_at_precision(plain, 0.5),
        seconds_per_query=round(elapsed, 4),
    )


def register_and_evaluate(
    index, references: Sequence[Reference], queries: Sequence[CopyQuery], *, k: int = 5
) -> tuple[CopyReport, list[str]]:
    """The whole evaluation on an empty ``index``: register ``references`` (their ``title``
    is the name queries point to), keep the queries whose reference could be registered, and
    :func:`evaluate` them. Returns the report and one message per reference that was skipped
    (``aigc eval copy`` and ``bench/copy_detection.py`` both run this)."""
    added = index.add(list(references))
    ids = {w.title: w.id for w in index.store.get(added.added)}
    kept = [q for q in queries if q.truth is None or q.truth in ids]
    return evaluate(index, kept, ids, k=k), [str(e) for e in added.errors]


def _mean(values: Sequence[bool]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0
