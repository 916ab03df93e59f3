"""Which registered works does this image copy? Search, normalised scores, verdicts, evidence.

    index = SimilarityIndex.create("refs", descriptor="vlad")
    index.add([Reference(path="works/a.jpg", title="Dawn", creator="Ann")])
    for result in index.search(["upload.jpg"]):
        print(result.to_json())          # path, matches: id, title, creator, score, verdict...

A :class:`SimilarityIndex` is a :class:`~aigcguard.provenance.similarity.stores.Store` (vectors
and metadata) plus the descriptor named in the store, the thresholds for that descriptor, and
geometric verification of the best candidates against the reference files.

Scores. ``cosine`` is the exact similarity of the query's and the work's vectors (a mirrored
query is also tried for descriptors that need it). ``score`` is the cosine less the mean of the
query's ten best cosines against a background set of unrelated pictures (SSCD's score
normalisation: a query that resembles everything gets less credit): the store's own
(``aigc index background``), else the one the descriptor ships (``vlad``); without either, and
for hashes, ``score`` is the cosine.

Verdicts, from strongest: ``exact`` (the same file bytes), ``copy`` (local features of the
reference are found in the query by RANSAC: the copied region is reported), ``near_duplicate``
(score at or above the calibrated copy threshold, without geometric confirmation),
``similar`` (score at or above the similar threshold), ``none``. Each match says what
geometric verification found (``verification``: ``verified``, ``failed`` with its
``inliers``, or ``not_run``); a failed one is never a ``copy``, and it may need a higher score
to be a ``near_duplicate`` (``Thresholds.copy_failed``). Thresholds come from the store's own
calibration (``calibration.json``, written by ``aigc eval copy --calibrate``), else the table
shipped for the descriptor, which also gives each level's false-match rate measured on
unrelated pairs held out of its calibration (``Match.false_match_rate``); without either, only
``exact``, ``copy`` and ``none`` are given.
"""

from __future__ import annotations

import csv
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

import aigcguard.provenance.similarity.verify as V
from aigcguard.fileio import atomic_write, file_sha256
from aigcguard.imageio import ImageLoadError, load_image
from aigcguard.provenance.similarity.descriptors import (
    DEFAULT_DESCRIPTOR,
    Descriptor,
    create_descriptor,
)
from aigcguard.provenance.similarity.stores import (
    NewWork,
    Store,
    StoreError,
    Work,
    create_store,
    is_local,
    open_store,
)
from aigcguard.results import NOT_JSON, JsonResult, error_text

VERDICTS = ("exact", "copy", "near_duplicate", "similar", "none")
CALIBRATION_FILE = "similarity_calibration.json"  # shipped, per descriptor
STORE_CALIBRATION = "calibration.json"  # a store's own, beside its data
STORE_BACKGROUND = "background.npy"  # a store's own background set (score normalisation)
BACKGROUND_K = 10
#: candidates per query checked with local features (each costs a feature match)
VERIFY_TOP = 3


#: What geometric verification said about a match: ``verified`` (enough inliers on a
#: well-formed model: a copy), ``failed`` (it ran and found too few), ``not_run`` (switched
#: off, the reference file unreadable, or a candidate below both the best VERIFY_TOP and the
#: near_duplicate level).
VERIFICATION = ("verified", "failed", "not_run")


@dataclass(frozen=True)
class LevelRate(JsonResult):
    """How often unrelated pairs reach a verdict level (or a stronger one): ``false_matches``
    of ``pairs`` held out of the calibration, the rate and its 95% Clopper-Pearson interval."""

    rate: float
    low: float
    high: float
    pairs: int
    false_matches: int

    @classmethod
    def from_dict(cls, d: dict) -> LevelRate:
        rate, low, high = (float(d[k]) for k in ("rate", "low", "high"))
        return cls(rate, low, high, int(d["pairs"]), int(d["false_matches"]))


@dataclass(frozen=True)
class Thresholds(JsonResult):
    """Score levels for the verdicts: ``copy`` (near_duplicate without geometric evidence)
    and ``similar``; ``copy_failed``, the near_duplicate level when verification ran and
    failed (None: the same as ``copy``); ``precision`` is what ``copy`` was calibrated to
    (a store's own calibration), ``source`` where the levels came from.

    The shipped table also says how often unrelated pairs reach each level (``copy``,
    ``near_duplicate``, ``similar``), measured on pairs held out of the calibration:
    ``false_match`` as ``search`` grades them with verification on, and
    ``false_match_unverified`` by score alone (verification off, or no reference file)."""

    copy: float | None
    similar: float | None
    precision: float | None = None
    source: str = "none"
    copy_failed: float | None = None
    false_match: dict[str, LevelRate] = field(default_factory=dict, compare=False)
    false_match_unverified: dict[str, LevelRate] = field(default_factory=dict, compare=False)

    def grade(self, score: float, verification: str, *, same_bytes: bool = False) -> str:
        """The verdict of one candidate: the same bytes are ``exact``; geometric evidence
        alone makes a ``copy``; a failed verification is never raised to ``copy`` and needs
        ``copy_failed`` (when set) for ``near_duplicate``; then the ``similar`` level."""
        if verification not in VERIFICATION:
            raise ValueError(f"verification must be one of {VERIFICATION}, not {verification!r}")
        if same_bytes:
            return "exact"
        if verification == "verified":
            return "copy"
        level = self.copy
        if verification == "failed" and self.copy_failed is not None:
            level = self.copy_failed
        if level is not None and score >= level:
            return "near_duplicate"
        if self.similar is not None and score >= self.similar:
            return "similar"
        return "none"

    def rate_of(self, verdict: str, verification: str) -> LevelRate | None:
        """The measured false-match rate of the level a match reached: by score alone when
        verification did not run; None for ``exact``, ``none`` and levels not measured."""
        if verdict not in ("copy", "near_duplicate", "similar"):
            return None
        if verification == "not_run" and verdict in self.false_match_unverified:
            return self.false_match_unverified[verdict]
        return self.false_match.get(verdict)


@dataclass(frozen=True)
class Match(JsonResult):
    id: int
    path: str
    title: str | None
    creator: str | None
    licence: str | None
    score: float
    cosine: float
    verdict: str
    inliers: int | None  # None: not checked (see VERIFICATION)
    flipped: bool
    region: list[list[float]] | None  # the work's outline in the query, when verified
    verification: str = "not_run"  # one of VERIFICATION; "failed" comes with its inliers
    # share of unrelated pairs that reach this verdict, measured on pairs held out of the
    # calibration (the shipped table), and its 95% interval; None for exact, none, or a
    # store calibrated without such a measurement
    false_match_rate: float | None = None
    false_match_ci95: list[float] | None = None
    # the local-feature check behind the verdict, for evidence pictures; not in the JSON
    evidence: V.Verification | None = field(
        default=None, repr=False, compare=False, metadata=NOT_JSON
    )

    @property
    def verification_note(self) -> str:
        """What the local-feature check found, for renderers: ``verification: failed, 3
        inliers``, ``verification: verified, 212 inliers``, ``verification: not run``."""
        if self.verification == "not_run" or self.inliers is None:
            return "verification: not run"
        return f"verification: {self.verification}, {self.inliers} inliers"


@dataclass(frozen=True)
class QueryResult(JsonResult):
    path: str
    verdict: str  # the strongest verdict among the matches
    matches: list[Match]


@dataclass(frozen=True)
class Reference:
    """A work to register: its file and what is known about it."""

    path: str
    title: str | None = None
    creator: str | None = None
    licence: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class AddReport(JsonResult):
    added: list[int]
    skipped: list[str]  # already registered (same path and bytes)
    errors: list[str]  # "path: reason"


def _unreadable(path: str | os.PathLike, exc: ImageLoadError | OSError) -> str:
    """The message for a file that could not be hashed or decoded: its path, then why."""
    if isinstance(exc, ImageLoadError):
        return str(exc)
    return f"{path}: {exc.strerror or exc}"


def read_metadata_csv(path: str | os.PathLike) -> dict[str, Reference]:
    """Metadata for ``add``: a CSV with a ``path`` column and any of ``title``, ``creator``,
    ``licence`` (or ``license``), ``source``; paths relative to the CSV's folder. Keyed by
    resolved path."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ValueError(f"{path}: needs a 'path' column, has {reader.fieldnames}")
            out = {}
            for n, row in enumerate(reader, start=2):
                if not row.get("path"):
                    raise ValueError(f"{path}: line {n} has no path")
                full = (path.parent / row["path"]).resolve()
                out[str(full)] = Reference(
                    path=str(full),
                    title=row.get("title") or None,
                    creator=row.get("creator") or None,
                    licence=row.get("licence") or row.get("license") or None,
                    source=row.get("source") or None,
                )
            return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read metadata CSV ({exc})") from None


@lru_cache(maxsize=1)
def _shipped_calibration() -> dict:
    try:
        text = resources.files("aigcguard.data").joinpath(CALIBRATION_FILE).read_text("utf-8")
    except FileNotFoundError:
        return {}
    return json.loads(text)


def save_calibration(store_path: str | os.PathLike, thresholds: Thresholds, **about) -> Path:
    """Write a store's own thresholds (what ``_thresholds_for`` reads first), atomically;
    ``about`` adds fields saying where they came from."""
    target = Path(store_path) / STORE_CALIBRATION
    data = {
        "copy": thresholds.copy,
        "similar": thresholds.similar,
        "precision": thresholds.precision,
    }
    with atomic_write(target) as f:
        f.write(json.dumps({**data, **about}, indent=1).encode())
    return target


def _thresholds_for(store_path: Path | None, descriptor: Descriptor) -> Thresholds:
    """The store's own calibration (a file in its directory), else the shipped one."""
    own = None if store_path is None else store_path / STORE_CALIBRATION
    if own is not None and own.is_file():
        try:
            data = json.loads(own.read_text("utf-8"))
            return Thresholds(data["copy"], data["similar"], data.get("precision"), source=str(own))
        except (ValueError, KeyError) as exc:
            raise StoreError(f"{own}: unreadable calibration ({exc})") from None
    entry = _shipped_calibration().get("embedders", {}).get(_calibration_key(descriptor))
    if entry:
        return Thresholds(
            entry["copy"],
            entry["similar"],
            entry.get("precision"),
            source=CALIBRATION_FILE,
            copy_failed=entry.get("copy_failed"),
            false_match=_rates(entry.get("false_match")),
            false_match_unverified=_rates(entry.get("false_match_unverified")),
        )
    return Thresholds(None, None)


def _rates(table: dict | None) -> dict[str, LevelRate]:
    return {level: LevelRate.from_dict(rate) for level, rate in (table or {}).items()}


def _calibration_key(descriptor: Descriptor) -> str:
    codebook = getattr(descriptor, "codebook_id", None)
    return f"{descriptor.spec}@{codebook}" if codebook else descriptor.spec


class SimilarityIndex:
    def __init__(self, store: Store, descriptor: Descriptor):
        if not isinstance(store, Store):
            raise TypeError(f"{type(store).__name__} does not implement the Store protocol")
        self.store = store
        self.descriptor = descriptor
        where = store.info().path
        # a store's own calibration and background set live in its directory; a store
        # behind a URI (Milvus) has none yet and uses the descriptor's shipped ones
        self.local = is_local(where)
        self.path = Path(where) if self.local else where
        self.thresholds = _thresholds_for(self.path if self.local else None, descriptor)
        self._background = self._load_background(descriptor)
        self._ref_features: OrderedDict[int, V.Features | None] = OrderedDict()

    # ------------------------------------------------------------------------- lifecycle

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        descriptor: str = DEFAULT_DESCRIPTOR,
        index_type: str | None = None,
        device: str | torch.device | None = "auto",
    ) -> SimilarityIndex:
        emb = create_descriptor(descriptor, device)
        store = create_store(
            path,
            embedder=emb.spec,
            dim=emb.dim,
            binary=emb.binary,
            index_type=index_type,
        )
        return cls(store, emb)

    @classmethod
    def open(cls, path: str | os.PathLike, *, device="auto") -> SimilarityIndex:
        store = open_store(path)
        return cls(store, create_descriptor(store.info().embedder, device))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SimilarityIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------------------- writing

    def add(self, references: Sequence[Reference], *, batch: int = 32) -> AddReport:
        """Describe and register works, ``batch`` per transaction, so an interruption keeps every
        batch already committed. Unreadable files and files the descriptor cannot describe are
        reported in ``errors`` and skipped; a file already registered (same path and bytes)
        is skipped."""
        added: list[int] = []
        skipped: list[str] = []
        errors: list[str] = []
        for start in range(0, len(references), batch):
            works, images = [], []
            for ref in references[start : start + batch]:
                try:
                    digest = file_sha256(ref.path)
                    if any(w.path == ref.path for w in self.store.find(sha256=digest)):
                        skipped.append(ref.path)
                        continue
                    images.append(load_image(ref.path).pixels)
                except (ImageLoadError, OSError) as exc:
                    errors.append(_unreadable(ref.path, exc))
                    continue
                works.append(
                    NewWork(
                        path=ref.path,
                        sha256=digest,
                        title=ref.title,
                        creator=ref.creator,
                        licence=ref.licence,
                        source=ref.source,
                    )
                )
            if not works:
                continue
            vectors = self.descriptor.describe(images)
            keep = [i for i in range(len(works)) if self.descriptor.binary or vectors[i].any()]
            for i in sorted(set(range(len(works))) - set(keep)):
                errors.append(f"{works[i].path}: no local features to describe (a flat picture?)")
            if keep:
                added += self.store.add([works[i] for i in keep], vectors[keep])
        return AddReport(added=added, skipped=skipped, errors=errors)

    def set_background(self, images: Sequence[torch.Tensor]) -> int:
        """Embed unrelated pictures as this store's background set for score normalisation
        (replacing the descriptor's shipped one); returns how many were usable. Written
        atomically beside the store's data."""
        if self.descriptor.binary:
            raise ValueError(
                f"{self.descriptor.spec} compares hashes by Hamming distance; "
                "score normalisation needs float vectors"
            )
        if not self.local:
            raise ValueError(
                f"{self.path}: a Milvus store has no background set of its own yet; it uses "
                f"the descriptor's shipped one"
            )
        vectors = self.descriptor.describe(images)
        vectors = vectors[np.abs(vectors).sum(axis=1) > 0]
        if len(vectors) < BACKGROUND_K:
            raise ValueError(
                f"a background needs at least {BACKGROUND_K} usable pictures, got {len(vectors)}"
            )
        with atomic_write(self.path / STORE_BACKGROUND) as f:
            np.save(f, vectors.astype(np.float16))
        self._background = vectors.astype(np.float32)
        return len(vectors)

    def _load_background(self, descriptor: Descriptor) -> np.ndarray | None:
        own = self.path / STORE_BACKGROUND if self.local else None
        if own is not None and own.is_file():
            try:
                data = np.load(own, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as exc:
                raise StoreError(f"{own}: unreadable background set ({exc})") from None
            if data.ndim != 2 or data.shape[1] != descriptor.dim:
                raise StoreError(f"{own}: background vectors are not {descriptor.dim}-d")
            return data
        shipped = getattr(descriptor, "background", None)
        return None if shipped is None else np.asarray(shipped, np.float32)

    def remove(self, ids: Sequence[int]) -> int:
        for i in ids:
            self._ref_features.pop(i, None)
        return self.store.remove(ids)

    # --------------------------------------------------------------------------- queries

    def search(
        self,
        images: Sequence[torch.Tensor],
        *,
        paths: Sequence[str] | None = None,
        sha256: Sequence[str | None] | None = None,
        k: int = 5,
        verify: bool = True,
    ) -> list[QueryResult]:
        """Best ``k`` works per query image (uint8 RGB 3 x H x W), strongest verdict first.
        ``sha256`` (of the query files, when there are files) makes ``exact`` possible."""
        n = len(images)
        paths = list(paths) if paths is not None else [f"<image {i}>" for i in range(n)]
        digests = list(sha256) if sha256 is not None else [None] * n
        if n == 0 or self.store.info().count == 0:
            return [QueryResult(p, "none", []) for p in paths]
        depth = max(k, VERIFY_TOP) * 2
        vectors = self.descriptor.describe(images)
        candidates = self._candidates(vectors, depth, flipped=False)
        if self.descriptor.mirror_sensitive:
            mirrored = self.descriptor.describe([im.flip(-1) for im in images])
            for best, extra in zip(
                candidates, self._candidates(mirrored, depth, flipped=True), strict=True
            ):
                for wid, item in extra.items():
                    if wid not in best or item[1] > best[wid][1]:
                        best[wid] = item
        offsets = self._background_offsets(vectors)
        results = []
        for i in range(n):
            ranked = sorted(candidates[i].values(), key=lambda c: -c[1])
            matches = self._judge(images[i], digests[i], ranked, offsets[i], k, verify)
            verdict = next((v for v in VERDICTS if any(m.verdict == v for m in matches)), "none")
            results.append(QueryResult(paths[i], verdict, matches))
        return results

    def search_files(self, files: Sequence[str | os.PathLike], **kw) -> list[QueryResult | str]:
        """``search`` on files; an unreadable file gives its error message instead, and so does
        one whose search raised (an unexpected exception named: ``PATH: internal error:
        TypeName: ...``), so a batch goes on past it."""
        out: list[QueryResult | str] = []
        for f in files:
            try:
                image = load_image(f).pixels
                digest = file_sha256(f)
            except (ImageLoadError, OSError) as exc:
                out.append(_unreadable(f, exc))
                continue
            try:  # the error boundary of one picture
                out.append(self.search([image], paths=[str(f)], sha256=[digest], **kw)[0])
            except Exception as exc:
                out.append(f"{f}: {error_text(exc)}")
        return out

    # -------------------------------------------------------------------------- internals

    def _candidates(self, vectors: np.ndarray, depth: int, *, flipped: bool):
        """Per query: {work id: (work, cosine, flipped)}; a zero vector (no features) has none."""
        out = [{} for _ in range(len(vectors))]
        live = [i for i in range(len(vectors)) if self.descriptor.binary or vectors[i].any()]
        if not live:
            return out
        for i, hits in zip(live, self.store.search(vectors[live], k=depth), strict=True):
            out[i] = {h.work.id: (h.work, h.score, flipped) for h in hits}
        return out

    def _background_offsets(self, vectors: np.ndarray) -> np.ndarray:
        if self._background is None or self.descriptor.binary:
            return np.zeros(len(vectors))
        sims = vectors.astype(np.float32) @ self._background.T
        k = min(BACKGROUND_K, sims.shape[1])
        return np.sort(sims, axis=1)[:, -k:].mean(axis=1)

    def _judge(self, image, digest, ranked, offset, k, verify) -> list[Match]:
        t = self.thresholds
        query_features = None
        matches = []
        for rank, (work, cosine, flipped) in enumerate(ranked):
            score = float(cosine - offset)
            evidence = None
            # The best few are checked whatever their score: a picture pasted into another
            # scores low globally, and only local features show the copied region. So is any
            # candidate at the near_duplicate level, so that a near_duplicate is always one
            # the local features did not confirm, or could not check (no reference file,
            # verification off): never one they were not asked about.
            if verify and (rank < VERIFY_TOP or (t.copy is not None and score >= t.copy)):
                if query_features is None:
                    query_features = V.extract(image)
                ref = self._reference_features(work)
                if ref is not None:
                    evidence = V.verify_features(query_features, ref)
            verified = evidence is not None and evidence.verified
            checked = "not_run" if evidence is None else "verified" if verified else "failed"
            verdict = t.grade(
                score, checked, same_bytes=digest is not None and digest == work.sha256
            )
            rate = t.rate_of(verdict, checked)
            matches.append(
                Match(
                    id=work.id,
                    path=work.path,
                    title=work.title,
                    creator=work.creator,
                    licence=work.licence,
                    score=round(score, 6),
                    cosine=round(float(cosine), 6),
                    verdict=verdict,
                    inliers=None if evidence is None else evidence.inliers,
                    flipped=bool(evidence.flipped if verified else flipped),
                    region=evidence.query_region if verified else None,
                    verification=checked,
                    false_match_rate=None if rate is None else rate.rate,
                    false_match_ci95=None if rate is None else [rate.low, rate.high],
                    evidence=evidence,
                )
            )
        order = {v: i for i, v in enumerate(VERDICTS)}
        matches.sort(key=lambda m: (order[m.verdict], -m.score))
        return matches[:k]

    def _reference_features(self, work: Work) -> V.Features | None:
        if work.id in self._ref_features:
            self._ref_features.move_to_end(work.id)
            return self._ref_features[work.id]
        try:
            feats = V.extract(load_image(work.path).pixels)
        except (ImageLoadError, OSError):
            feats = None  # moved or deleted since it was registered: no geometric evidence
        self._ref_features[work.id] = feats
        if len(self._ref_features) > 64:  # about 3 MB each at 1024 px
            self._ref_features.popitem(last=False)
        return feats

    def match_picture(self, query: torch.Tensor, match: Match) -> np.ndarray:
        """Side-by-side evidence picture of a query and one matched work (its local-feature
        check is reused when the search made one)."""
        reference = load_image(match.path).pixels
        evidence = match.evidence if match.evidence is not None else V.verify(query, reference)
        return V.match_picture(query, reference, evidence)
