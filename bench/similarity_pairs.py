"""The pairs of the similarity false-match bench (``near_duplicate_fmr.py``): which pictures,
split how, scored and verified as the product does, with a cache.

Pictures come from ``../shared/data`` (nothing is copied into the project): the wild set split
by source group into a calibration and a held-out half, a CIFAKE sample, Kodak and
scikit-image, and the edited copies of ``copyeval.EDITS``. Each is an :class:`Item` with a
recipe a worker process loads it by. :func:`build_half` scores every query of a half against
every reference of its index exactly as ``SimilarityIndex.search`` does; :func:`verify` adds
what geometric verification finds where the product runs it. Descriptors and verification
outcomes are cached under ``bench/results/raw/near_duplicate_fmr/`` (ignored by git), per
codebook.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import common
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CIFAKE_ZIP = SHARED / "cifake" / "cifake_25k.zip"
CACHE_DIR = common.RESULTS_DIR / "raw" / "near_duplicate_fmr"

#: Sources that share pictures or scenes, kept together: in one half, and never paired with
#: each other (a multi-view set's frames, the same ImageNet or COCO demo picture in two
#: repositories, the same EXIF test files copied between libraries are related, not
#: unrelated). Decided from the sources' descriptions before any score was seen.
SOURCE_GROUPS = {
    "imagenet samples": ["EliSchwartz/imagenet-sample-images", "ajschumacher/imagen"],
    "exif test files": [
        "Exiv2/exiv2",
        "MikeKovarik/exifr",
        "exif-js/exif-js",
        "hMatoba/Piexif",
        "lovell/sharp",
        "drewnoakes/metadata-extractor-images",
        "drewnoakes/digicam_corpus",
    ],
    "image matching demos": [
        "cvg/LightGlue",
        "cvg/Hierarchical-Localization",
        "magicleap/SuperGluePretrainedNetwork",
    ],
    "openMVG": ["openMVG/ImageDataset_SceauxCastle", "openMVG/SfM_quality_evaluation"],
    "alicevision": ["alicevision/dataset_buddha", "alicevision/dataset_monstree"],
    "lane lines": ["udacity/CarND-Advanced-Lane-Lines", "udacity/CarND-LaneLines-P1"],
    "super-resolution sets": ["JingyunLiang/SwinIR", "jbhuang0604/SelfExSR"],
    "coco demos": [
        "CMU-Perceptual-Computing-Lab/openpose",
        "open-mmlab/mmpose",
        "facebookresearch/Detectron",
        "pjreddie/darknet",
        "facebookresearch/segment-anything",
    ],
    "gpt-4o galleries": ["jamez-bondos/awesome-gpt4o-images", "songguoxs/gpt4o-image-prompts"],
    "nano banana galleries": [
        "PicoTrex/Awesome-Nano-Banana-images",
        "ZizheRuan/awesome-nano-banana-pro-prompts-and-examples",
        "aimikoda/awesome-nano-banana-pro",
    ],
    "midjourney galleries": [
        "Pixmind-io/awesome-midjourney-v7-example-prompts",
        "cheekymohnkey/midjourney-profile-tester",
    ],
    "sd 3.5 galleries": ["EnragedAntelope/Artists-SD35L", "EnragedAntelope/Styles-SD35L"],
}
_GROUP_OF = {s: g for g, sources in SOURCE_GROUPS.items() for s in sources}

HALVES = ("calibration", "held_out")


@dataclass(frozen=True)
class Item:
    """One picture of the bench. ``recipe`` says how a worker loads it (files are read by the
    product's loader, as ``aigc similar`` would)."""

    key: str
    kind: str  # wild-real, wild-ai, cifake-32, cifake-256, kodak, skimage, copy, aigc_small
    group: str  # source group: a picture is never paired with its own group
    half: str
    recipe: tuple
    truth: str | None = None  # for a copy: the key of the reference it copies
    edit: str | None = None


# -------------------------------------------------------------------------------- the data


def wild_items() -> list[Item]:
    manifest = common.WILD_DIR / "manifest.csv"
    if not manifest.is_file():
        raise common.MissingDataError(
            f"{manifest} not found: the wild pictures are read from ../shared/data/wild "
            "(or AIGC_WILD_DIR)"
        )
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    halves = split_groups(rows)
    items = []
    for r in rows:
        group = _GROUP_OF.get(r["source"], r["source"])
        items.append(
            Item(
                key=f"wild/{r['file']}",
                kind=f"wild-{r['label']}",
                group=group,
                half=halves[group],
                recipe=("file", str(common.WILD_DIR / r["file"])),
            )
        )
    return items


def split_groups(rows: list[dict]) -> dict[str, str]:
    """Source groups into two halves of about equal picture count, per label: largest group
    first, each into the half with fewer pictures so far (ties: calibration)."""
    sizes: dict[tuple[str, str], int] = Counter()
    for r in rows:
        sizes[(r["label"], _GROUP_OF.get(r["source"], r["source"]))] += 1
    halves: dict[str, str] = {}
    for label in sorted({label for label, _ in sizes}):
        load = dict.fromkeys(HALVES, 0)
        groups = sorted(((n, g) for (lab, g), n in sizes.items() if lab == label), reverse=True)
        for n, g in groups:
            half = min(HALVES, key=lambda h: (load[h], HALVES.index(h)))
            halves[g] = half
            load[half] += n
    return halves


def cifake_items(n: int, seed: int) -> list[Item]:
    """``n`` CIFAKE pictures (half REAL, half FAKE), seeded; alternately calibration and
    held-out, and within each half alternately 32 px and 256 px."""
    if n <= 0:
        return []
    if not CIFAKE_ZIP.is_file():
        raise common.MissingDataError(f"{CIFAKE_ZIP} not found (../shared/data/cifake)")
    with zipfile.ZipFile(CIFAKE_ZIP) as z:
        names = sorted(z.namelist())
    rng = np.random.default_rng(seed)
    items = []
    for label in ("REAL", "FAKE"):
        pool = [x for x in names if x.startswith(label + "/")]
        chosen = sorted(rng.choice(len(pool), n // 2, replace=False))
        for i, j in enumerate(chosen):
            half = HALVES[i % 2]
            side = 32 if (i // 2) % 2 == 0 else 256
            items.append(
                Item(
                    key=f"cifake/{pool[j]}@{side}",
                    kind=f"cifake-{side}",
                    group="cifake",
                    half=half,
                    recipe=("cifake", pool[j], side),
                )
            )
    return items


def reference_photos() -> list[Item]:
    """Kodak and scikit-image: references of the held-out index."""
    if not common.kodak_available():
        raise common.MissingDataError(common.missing_kodak_message())
    items = [
        Item(f"kodak/{p.stem}", "kodak", "kodak", "held_out", ("file", str(p)))
        for p in sorted(common.KODAK_DIR.glob("*.png"))
    ]
    items += [
        Item(f"skimage/{name}", "skimage", "skimage", "held_out", ("skimage", name))
        for name in common.SKIMAGE_PHOTOS
    ]
    return items


def copy_items() -> list[Item]:
    """The copy benchmark's queries (bench/copy_detection.py, seed 0): 304 edited copies of
    the 38 references, and its 50 edited distractors (unrelated)."""
    out = []
    for i, q in enumerate(_copy_queries()):
        key = f"copybench/{q.name}#{_pixels_id(q.image)}"
        if q.truth is None:
            out.append(Item(key, "aigc_small", "aigc_small", "held_out", ("copy", i)))
        else:
            out.append(Item(key, "copy", "copy", "held_out", ("copy", i), q.truth, q.edit))
    return out


def _pixels_id(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]


def calibration_copy_items(items: list[Item], n_refs: int, seed: int) -> list[Item]:
    """True copies for the calibration half (to decide the rule for a failed verification
    there, not on the held-out copies): ``n_refs`` seeded real wild photos of the calibration
    half through the eight edits, pasted ones into seeded generated pictures of that half."""
    global _CAL_COPIES
    rng = np.random.default_rng(seed)
    real = [it for it in items if it.half == "calibration" and it.kind == "wild-real"]
    ai = [it for it in items if it.half == "calibration" and it.kind == "wild-ai"]
    refs = [real[i] for i in sorted(rng.choice(len(real), n_refs, replace=False))]
    hosts = [ai[i] for i in sorted(rng.choice(len(ai), n_refs, replace=False))]
    from aigcguard.provenance.similarity import copyeval

    queries = copyeval.build_queries(
        [(r.key, load(r.recipe)) for r in refs],
        [(h.key, load(h.recipe)) for h in hosts],
        seed=seed,
    )
    _CAL_COPIES = [q for q in queries if q.truth is not None]
    group = {r.key: r.group for r in refs}
    # A copy is searched without the other pictures of its reference's source group: those
    # hold series of near-identical shots (colour charts, video frames, multi-view sets),
    # which would be right answers too.
    return [
        Item(
            f"calcopy/{q.name}#{_pixels_id(q.image)}",
            "copy",
            group[q.truth],
            "calibration",
            ("calcopy", i),
            q.truth,
            q.edit,
        )
        for i, q in enumerate(_CAL_COPIES)
    ]


_COPIES = None
_CAL_COPIES = None


def _copy_queries():
    global _COPIES
    if _COPIES is None:
        from copy_detection import load_sets

        from aigcguard.provenance.similarity import copyeval

        refs, distractors = load_sets()
        _COPIES = copyeval.build_queries(refs, distractors, seed=0)
    return _COPIES


def load(recipe: tuple) -> np.ndarray:
    """H x W x 3 uint8 pixels of an item."""
    kind = recipe[0]
    if kind == "file":
        from aigcguard.imageio import load_image

        return load_image(recipe[1]).pixels.permute(1, 2, 0).numpy()
    if kind == "skimage":
        return dict(common.load_skimage([recipe[1]]))[f"skimage/{recipe[1]}"]
    if kind == "cifake":
        with zipfile.ZipFile(CIFAKE_ZIP) as z, Image.open(io.BytesIO(z.read(recipe[1]))) as im:
            im = im.convert("RGB")
            if recipe[2] != im.width:
                im = im.resize((recipe[2], recipe[2]), Image.BICUBIC)
            return np.asarray(im)
    if kind == "copy":
        return np.ascontiguousarray(_copy_queries()[recipe[1]].image)
    if kind == "calcopy":
        return np.ascontiguousarray(_CAL_COPIES[recipe[1]].image)
    raise ValueError(f"unknown recipe {recipe}")


# ----------------------------------------------------------------------- workers and cache


def _worker_init() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


_DESCRIPTOR = None
_REF_FEATURES: dict[str, object] = {}


def vlad_descriptor():
    global _DESCRIPTOR
    if _DESCRIPTOR is None:
        from aigcguard.provenance.similarity.descriptors import create_descriptor

        _DESCRIPTOR = create_descriptor("vlad", "cpu")
    return _DESCRIPTOR


def describe_task(item: Item) -> tuple[str, np.ndarray, np.ndarray]:
    """The item's vector and its mirror's, as ``SimilarityIndex.search`` computes them."""
    import torch

    arr = load(item.recipe)
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    d = vlad_descriptor()
    return item.key, d.describe([t])[0], d.describe([t.flip(-1)])[0]


def verify_task(task: tuple[Item, list[Item]]) -> list[tuple[str, str, int, bool, bool]]:
    """Geometric verification of a query against its best candidates, as the product runs
    it: (query key, reference key, inliers, verified, flipped) per candidate."""
    import aigcguard.provenance.similarity.verify as V

    query, refs = task
    qf = V.extract(load(query.recipe))
    out = []
    for ref in refs:
        if ref.key not in _REF_FEATURES:
            if len(_REF_FEATURES) > 500:
                _REF_FEATURES.pop(next(iter(_REF_FEATURES)))
            _REF_FEATURES[ref.key] = V.extract(load(ref.recipe))
        v = V.verify_features(qf, _REF_FEATURES[ref.key])
        out.append((query.key, ref.key, int(v.inliers), bool(v.verified), bool(v.flipped)))
    return out


def _pool_map(fn, tasks, workers: int, label: str):
    """``fn`` over ``tasks`` in ``workers`` processes (in this one for 1), yielding results
    as they come, with progress on stderr."""
    t0 = time.perf_counter()
    if workers <= 1:
        _worker_init()
        results = map(fn, tasks)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers, initializer=_worker_init)
        results = pool.imap(fn, tasks, chunksize=4)
    try:
        for i, r in enumerate(results, 1):
            if i % 100 == 0 or i == len(tasks):
                rate = i / (time.perf_counter() - t0)
                print(f"  {label}: {i}/{len(tasks)} ({rate:.1f}/s)", file=sys.stderr)
            yield r
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _source_id(module: str) -> str:
    """A short hash of a module's source: cached results go stale when it changes."""
    import importlib

    path = importlib.import_module(module).__file__
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]


class Cache:
    """Vectors (per codebook and descriptor code) and verification outcomes (per verification
    code) under bench/results/raw; saved atomically every so often, so an interrupted run
    keeps what it computed. Pictures are keyed by file, or by content for edited copies."""

    def __init__(self, codebook: str):
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        described = _source_id("aigcguard.provenance.similarity.descriptors")
        verified = _source_id("aigcguard.provenance.similarity.verify")
        self.vec_path = CACHE_DIR / f"vectors-{codebook}-{described}.npz"
        self.ver_path = CACHE_DIR / f"verify-{verified}.json"
        self.vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.verified: dict[str, list] = {}
        if self.vec_path.is_file():
            with np.load(self.vec_path, allow_pickle=False) as z:
                for k, v, m in zip(z["keys"], z["plain"], z["mirror"], strict=True):
                    self.vectors[str(k)] = (v, m)
        if self.ver_path.is_file():
            self.verified = json.loads(self.ver_path.read_text())

    def save(self) -> None:
        from aigcguard.fileio import atomic_write

        keys = sorted(self.vectors)
        if keys:
            with atomic_write(self.vec_path) as f:
                np.savez(
                    f,
                    keys=np.array(keys),
                    plain=np.stack([self.vectors[k][0] for k in keys]),
                    mirror=np.stack([self.vectors[k][1] for k in keys]),
                )
        with atomic_write(self.ver_path) as f:
            f.write(json.dumps(self.verified).encode())


def pair_key(q: str, r: str) -> str:
    return f"{q}|{r}"


# ------------------------------------------------------------------------------- the pairs


@dataclass
class Half:
    """One index and its queries, with every pair's score and (after :func:`verify`) what
    geometric verification found."""

    name: str
    refs: list[Item]
    queries: list[Item]
    score: np.ndarray  # queries x refs; -inf where not a pair (itself, its own group)
    cosine: np.ndarray
    rank: np.ndarray  # the reference's rank by cosine among the query's candidates
    state: np.ndarray | None = None  # "verified" / "failed" / "not_run" per pair
    inliers: np.ndarray | None = None  # -1 where not run


REFERENCE_KINDS = ("wild-real", "kodak", "skimage")


def build_half(
    name: str,
    items: list[Item],
    cache: Cache,
    workers: int,
    *,
    ref_kinds: tuple[str, ...] = REFERENCE_KINDS,
    query_kinds: tuple[str, ...] | None = None,
) -> Half:
    """The index of a half (its pictures of ``ref_kinds``) and its queries (all its pictures,
    or those of ``query_kinds``), scored as ``SimilarityIndex.search`` scores them."""
    refs = [it for it in items if it.half == name and it.kind in ref_kinds]
    queries = [
        it for it in items if it.half == name and (query_kinds is None or it.kind in query_kinds)
    ]
    todo = list({it.key: it for it in refs + queries if it.key not in cache.vectors}.values())
    if todo:
        for n, (key, v, m) in enumerate(_pool_map(describe_task, todo, workers, f"{name} vectors")):
            cache.vectors[key] = (v, m)
            if n % 500 == 499:
                cache.save()
        cache.save()
    # the product skips references without features
    refs = [r for r in refs if cache.vectors[r.key][0].any()]
    R = np.stack([cache.vectors[r.key][0] for r in refs]).astype(np.float32)
    P = np.stack([cache.vectors[q.key][0] for q in queries]).astype(np.float32)
    M = np.stack([cache.vectors[q.key][1] for q in queries]).astype(np.float32)
    offsets = _offsets(P)
    plain, mirror = P @ R.T, M @ R.T
    # a query (or its mirror) without features has no candidates
    plain[~P.any(axis=1)] = -np.inf
    mirror[~M.any(axis=1)] = -np.inf
    cosine = np.maximum(plain, mirror)
    excluded = np.array(
        [
            [q.key == r.key or (q.group == r.group and q.truth != r.key) for r in refs]
            for q in queries
        ]
    )
    cosine[excluded] = -np.inf
    score = cosine - offsets[:, None]
    order = np.argsort(-cosine, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(len(queries))[:, None], order] = np.arange(len(refs))[None, :]
    return Half(name, refs, queries, score, cosine, rank)


def verify(half: Half, cache: Cache, workers: int, level: float | None) -> Half:
    """``half`` with the verification outcomes the product would have: it checks the best
    ``VERIFY_TOP`` candidates of each query and every candidate scoring at or above ``level``
    (the near_duplicate level; None: the best ones only, as before this calibration)."""
    from aigcguard.provenance.similarity.index import VERIFY_TOP

    run = np.isfinite(half.score) & (half.rank < VERIFY_TOP)
    if level is not None:
        run |= np.isfinite(half.score) & (half.score >= level)
    tasks = []
    for i, q in enumerate(half.queries):
        need = [
            half.refs[j]
            for j in np.nonzero(run[i])[0]
            if pair_key(q.key, half.refs[j].key) not in cache.verified
        ]
        if need:
            tasks.append((q, need))
    if tasks:
        label = f"{half.name} verification"
        for n, out in enumerate(_pool_map(verify_task, tasks, workers, label)):
            for qk, rk, inliers, ok, flipped in out:
                cache.verified[pair_key(qk, rk)] = [inliers, ok, flipped]
            if n % 200 == 199:
                cache.save()
        cache.save()
    state = np.full(half.score.shape, "not_run", dtype=object)
    inliers = np.full(half.score.shape, -1, dtype=np.int32)
    for i, j in zip(*np.nonzero(run), strict=True):
        inl, ok, _ = cache.verified[pair_key(half.queries[i].key, half.refs[j].key)]
        state[i, j] = "verified" if ok else "failed"
        inliers[i, j] = inl
    return dataclasses.replace(half, state=state, inliers=inliers)


def _offsets(vectors: np.ndarray) -> np.ndarray:
    """The background offsets ``SimilarityIndex`` takes off each query's cosines."""
    from aigcguard.provenance.similarity.index import BACKGROUND_K

    background = np.asarray(vlad_descriptor().background, np.float32)
    sims = vectors @ background.T
    return np.sort(sims, axis=1)[:, -BACKGROUND_K:].mean(axis=1)
