"""Which FAISS index a store uses, and when it is built again.

One faiss factory string describes a whole index (``IDMap2,Flat``, ``IVF1024,SQ8``,
``IDMap2,BFlat``); the ``auto`` policy picks one by corpus size (:func:`default_index_type`),
a store may fix its own. This module knows the strings, the search parameters that go with
them (``nprobe=..``, ``efSearch=..``), how many vectors a trainable index needs, and when the
store should rebuild (:func:`should_rebuild`). It holds no state: the store does.
"""

from __future__ import annotations

import math
import re

import faiss

#: Float stores use an exact index up to this many vectors. Exact search at 512-d scans
#: 2 KiB per vector per query: measured about 70 ms per query at 100k on the 2-core machine,
#: so a million would take most of a second. Beyond it, IVF with 8-bit scalar codes (d bytes
#: a vector; candidates re-scored exactly, recall@10 >= 0.95 measured), and beyond
#: ``PQ_ABOVE`` product quantisation (d/8 bytes), where SQ8 would need > 5 GB RAM.
EXACT_MAX_FLOAT = 250_000
PQ_ABOVE = 10_000_000
#: Binary codes are 32 bytes (PDQ) and compared by popcount, so exact search stays cheap for
#: ten times longer: 10 M x 256 bits is 320 MB scanned per query.
EXACT_MAX_BINARY = 10_000_000

# k-means wants ~39 points per list at least (faiss warns below) and gains little above ~64.
_TRAIN_MIN_PER_LIST = 39
_TRAIN_MAX_PER_LIST = 64
_TRAIN_MIN_OTHER = 10_000  # a trainable index without lists (PQ, OPQ): enough for 256 centroids
_TRAIN_MAX_OTHER = 65_536
#: An IVF index is retrained (rebuilt) when the store has grown this many times past the
#: size it was trained at: centroids learnt on the first works drift from the collection.
_RETRAIN_GROWTH = 4
#: Indexes that cannot remove (HNSW) keep removed ids as tombstones, dropped at re-scoring;
#: past this fraction of the index the index is rebuilt.
_TOMBSTONE_MAX = 0.10


def _nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest sqrt(n), 64..65536."""
    return int(min(65536, max(64, 2 ** round(math.log2(max(n, 1)) / 2))))


def default_index_type(n: int, dim: int, binary: bool) -> str:
    """The faiss factory string the store uses for ``n`` vectors (the ``auto`` policy).

    Float vectors (inner product): ``IDMap2,Flat`` (exact) up to ``EXACT_MAX_FLOAT`` (1 M);
    then ``IVF{nlist},SQ8`` (d bytes a vector) up to ``PQ_ABOVE`` (10 M); then
    ``IVF{nlist},PQ{m}`` with m = d/8 sub-quantisers. Binary codes (Hamming): ``IDMap2,BFlat``
    up to ``EXACT_MAX_BINARY`` (10 M), then ``BIVF{nlist}``. nlist is the power of two nearest
    sqrt(n). All of these remove by id without a rebuild; every score is re-computed exactly.
    """
    if n < 0 or dim <= 0:
        raise ValueError(f"need n >= 0 and dim > 0, got n={n}, dim={dim}")
    if binary:
        return "IDMap2,BFlat" if n <= EXACT_MAX_BINARY else f"BIVF{_nlist(n)}"
    if n <= EXACT_MAX_FLOAT:
        return "IDMap2,Flat"
    if n <= PQ_ABOVE:
        return f"IVF{_nlist(n)},SQ8"
    m = max(s for s in range(1, max(1, dim // 8) + 1) if dim % s == 0)
    return f"IVF{_nlist(n)},PQ{m}"


def exact_type(binary: bool) -> str:
    return "IDMap2,BFlat" if binary else "IDMap2,Flat"


def make_index(spec: str, dim: int, binary: bool):
    if binary:
        return faiss.index_binary_factory(dim, spec)
    return faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)


def ivf_of(index, binary: bool):
    """The inverted-file index inside ``index``, or None."""
    if binary:
        if isinstance(index, faiss.IndexBinaryIDMap):
            index = faiss.downcast_IndexBinary(index.index)
        return index if isinstance(index, faiss.IndexBinaryIVF) else None
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw_of(index, binary: bool):
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexBinaryIDMap)):
        index = (faiss.downcast_IndexBinary if binary else faiss.downcast_index)(index.index)
    return getattr(index, "hnsw", None)


def faiss_message(exc: BaseException) -> str:
    """faiss errors start with the C++ function and source line; keep what follows."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", text)


def normalise_index_type(spec: str, dim: int, binary: bool) -> str:
    """Check ``spec`` builds and give it ids: non-IVF indexes get an ``IDMap2,`` wrapper (they
    have no ids of their own); IVF keeps ids itself, and IDMap around it would break removal."""
    spec = spec.strip()
    try:
        index = make_index(spec, dim, binary)
    except RuntimeError as exc:
        kind = "binary" if binary else "float"
        raise ValueError(
            f"index_type {spec!r} is not a faiss factory string for {kind} vectors of "
            f"dimension {dim}: {faiss_message(exc)}"
        ) from None
    wrapped = isinstance(index, (faiss.IndexIDMap, faiss.IndexBinaryIDMap))
    if ivf_of(index, binary) is not None:
        return spec.split(",", 1)[1] if wrapped else spec
    return spec if wrapped else f"IDMap2,{spec}"


def check_search_params(params: str, requested: str, dim: int, binary: bool) -> None:
    """Raise ValueError now, not at search time, when ``params`` do not suit the approximate
    index the store will use (``requested``, or what ``auto`` picks past exact search)."""
    limit = EXACT_MAX_BINARY if binary else EXACT_MAX_FLOAT
    spec = default_index_type(limit + 1, dim, binary) if requested == "auto" else requested
    apply_params(make_index(spec, dim, binary), params, binary)


def min_train(index, binary: bool) -> int:
    if index.is_trained:
        return 0
    ivf = ivf_of(index, binary)
    return _TRAIN_MIN_PER_LIST * ivf.nlist if ivf is not None else _TRAIN_MIN_OTHER


def max_train(index, binary: bool) -> int:
    ivf = ivf_of(index, binary)
    return _TRAIN_MAX_PER_LIST * ivf.nlist if ivf is not None else _TRAIN_MAX_OTHER


def wanted_type(requested: str, count: int, dim: int, binary: bool) -> str:
    """The index type a build of ``count`` vectors should use: the requested (or ``auto``)
    one once there are enough vectors to train it, exact search until then."""
    spec = default_index_type(count, dim, binary) if requested == "auto" else requested
    probe = make_index(spec, dim, binary)
    return spec if count >= min_train(probe, binary) else exact_type(binary)


def should_rebuild(
    index,
    *,
    current: str,
    requested: str,
    count: int,
    dim: int,
    binary: bool,
    trained_count: int,
    tombstones: int,
) -> bool:
    """Whether the index (of type ``current``, trained on ``trained_count`` vectors, with
    ``tombstones`` removed ids still inside) should be built again for ``count`` vectors."""
    wanted = wanted_type(requested, count, dim, binary)
    rebuild = tombstones > _TOMBSTONE_MAX * max(1, index.ntotal)
    if wanted != current:
        exact = exact_type(binary)
        if requested != "auto" or current == exact:
            rebuild = True  # a requested index became trainable, or the store outgrew exact
        elif wanted == exact:
            # shrunk back: only well below the threshold, so a store hovering around it
            # does not flip between index types
            limit = EXACT_MAX_BINARY if binary else EXACT_MAX_FLOAT
            rebuild = rebuild or count < limit // 2
        # approximate -> approximate with other lists: left to the growth rule below
    # retrain on a larger sample while that still adds points per list (auto: nlist grows)
    grown = count >= _RETRAIN_GROWTH * max(1, trained_count)
    if grown and ivf_of(index, binary) is not None:
        cap = max_train(index, binary)
        rebuild = rebuild or requested == "auto" or trained_count < cap
    return rebuild


def default_search_params(index, binary: bool) -> str:
    """nprobe: 1/32 of the lists, at least 16 (the candidates are re-ranked exactly, so the
    lists scanned decide recall, not the codes). efSearch 128 for HNSW."""
    ivf = ivf_of(index, binary)
    if ivf is not None:
        return f"nprobe={min(ivf.nlist, max(16, ivf.nlist // 32))}"
    if _hnsw_of(index, binary) is not None:
        return "efSearch=128"
    return ""


def _parse_params(params: str) -> list[tuple[str, float]]:
    out = []
    for item in filter(None, (p.strip() for p in params.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(
                f"search params {params!r}: expected name=value pairs such as 'nprobe=32'"
            ) from None
    return out


def apply_params(index, params: str, binary: bool, gpu: bool = False) -> None:
    if not params:
        return
    if not binary:
        space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
        try:
            space.set_index_parameters(index, params)
        except RuntimeError as exc:
            raise ValueError(f"search params {params!r}: {faiss_message(exc)}") from None
        return
    for name, value in _parse_params(params):  # faiss has no ParameterSpace for binary
        ivf, hnsw = ivf_of(index, True), _hnsw_of(index, True)
        if name == "nprobe" and ivf is not None:
            ivf.nprobe = int(value)
        elif name == "efSearch" and hnsw is not None:
            hnsw.efSearch = int(value)
        else:
            raise ValueError(f"search params {params!r}: {name!r} does not apply to this index")
