"""Similarity store at scale: build time, memory per vector, single-query latency at a recall.

    python bench/similarity_index.py [--n 1000000] [--index-type IVF1024,SQ8] [--out FILE.md]

N synthetic 512-d vectors go into a fresh FAISS store
(``aigcguard.provenance.similarity.stores.FaissStore``) in batches of ``--batch``: the build
time covers creating the store, every SQLite commit, index training and rebuilds and the final
index write on close.
Memory per vector: the index in RAM (its serialised size) and everything on disk
(works.sqlite with the raw vectors and metadata, and the index file).

Vectors have a low intrinsic dimension, as image embeddings do (isotropic random vectors
have no neighbours worth the name and defeat every inverted index; well separated clusters
make it trivial): see :class:`Generator`. Queries, half and half: *copies*, stored vectors
perturbed to cosine 0.9 with their original (a re-encoded or lightly edited copy), and *new*
images, fresh draws from the same distribution that are not in the store.

Recall@10 is measured against exact search (numpy over all vectors) on the store's final,
re-scored hits. ``nprobe`` is raised until both query kinds reach ``--recall`` (0.95), then
single queries (``store.search(q, k=10)``: index search, fetching the candidates' raw vectors
from SQLite, exact re-scoring) are timed one by one: p50 and p99 over all queries after a
warm-up. For reference, the same for an exact in-memory faiss ``IndexFlatIP`` and for the
store's default search parameters.

The index type defaults to what the store's size policy picks for approximate search
(``IVF{nlist},SQ8``, nlist the power of two nearest sqrt(N)), even where the policy itself
would still search exactly, so that the approximate path is what gets measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import faiss

from aigcguard.provenance.similarity.stores import FaissStore, NewWork

DIM = 512
K = 10
NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


class Generator:
    """Synthetic embeddings on a low-dimensional manifold; row i depends only on (seed, i).

    x = normalise(m + A z + 0.1 e): m a direction all images share (unrelated CLIP images
    still have cosine ~0.2-0.5), z ~ N(0, I_12) mapped into 512-d by A with a decaying
    spectrum (singular values ~ 1/sqrt(i)), e isotropic noise. At 100 k vectors a new draw's
    nearest stored neighbour has cosine ~0.93, its tenth ~0.90, a random pair ~0.2, and an
    IVF index needs nprobe ~16 of 256 lists for recall@10 0.95: neither trivial (discrete
    clusters, one per list) nor hopeless (isotropic noise, no neighbours at all).
    """

    def __init__(self, seed: int = 0, rank: int = 12):
        rng = np.random.default_rng(seed)
        basis, _ = np.linalg.qr(rng.standard_normal((DIM, rank)))
        spectrum = np.arange(1, rank + 1) ** -0.5
        spectrum /= np.sqrt((spectrum**2).sum())
        self.map = (basis * spectrum).T.astype(np.float32)  # rank x DIM
        mean = rng.standard_normal(DIM).astype(np.float32)
        self.mean = 0.5 * mean / np.linalg.norm(mean)
        self.seed, self.rank = seed, rank

    def rows(self, start: int, count: int, stream: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, start])
        z = rng.standard_normal((count, self.rank)).astype(np.float32)
        noise = rng.standard_normal((count, DIM)).astype(np.float32) / math.sqrt(DIM)
        x = self.mean + z @ self.map + 0.1 * noise
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def perturb(x: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate each row away from itself so that cos(row, result) = ``cosine``."""
    noise = rng.standard_normal(x.shape).astype(np.float32)
    noise -= (noise * x).sum(axis=1, keepdims=True) * x  # orthogonal to the row
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return cosine * x + math.sqrt(1 - cosine**2) * noise


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the exact top-k inner products (numpy, in chunks)."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(data), 100_000):
        s = queries @ data[start : start + 100_000].T
        s = np.concatenate([best_s, s], axis=1)
        i = np.concatenate(
            [
                best_i,
                np.broadcast_to(
                    np.arange(start, start + s.shape[1] - k), (len(queries), s.shape[1] - k)
                ),
            ],
            axis=1,
        )
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall(hits: list[list], truth_ids: np.ndarray) -> float:
    got = [{h.work.id for h in row} for row in hits]
    return float(
        np.mean([len(g & set(t.tolist())) / len(t) for g, t in zip(got, truth_ids, strict=True)])
    )


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def time_single(search, queries: np.ndarray, warmup: int = 20) -> list[float]:
    for q in queries[:warmup]:
        search(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t0)
    return times


def dir_sizes(path: Path) -> dict:
    sizes = {f.name: f.stat().st_size for f in path.iterdir() if f.is_file()}
    return {
        "total": sum(sizes.values()),
        "sqlite": sum(v for k, v in sizes.items() if k.startswith("works.sqlite")),
        "index_file": sum(v for k, v in sizes.items() if k.endswith(".faiss")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the store")
    parser.add_argument("--index-type", help="faiss factory string (default IVF{nlist},SQ8)")
    parser.add_argument("--batch", type=int, default=10_000, help="vectors per add() call")
    parser.add_argument("--queries", type=int, default=1000, help="queries (half copies, half new)")
    parser.add_argument("--recall", type=float, default=0.95, help="recall@10 to reach")
    parser.add_argument("--dir", help="build the store here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--out", help="write the markdown here and the JSON next to it")
    args = parser.parse_args(argv)

    n = args.n
    nlist = int(min(65536, max(64, 2 ** round(math.log2(n) / 2))))  # the store's policy
    index_type = args.index_type or f"IVF{nlist},SQ8"
    info = common.machine_info()
    info["faiss"] = faiss.__version__
    info["faiss_threads"] = faiss.omp_get_max_threads()
    busy = common.busy_warning()
    if busy:
        print(f"WARNING: {busy}", file=sys.stderr)

    gen = Generator()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="simbench-"))
    store_path = root / "store"
    data = np.empty((n, DIM), dtype=np.float32)  # kept for the exact ground truth

    print(f"building {n} x {DIM} ({index_type}) in {store_path}", file=sys.stderr)
    t0 = time.perf_counter()
    store = FaissStore.create(store_path, embedder="synthetic:512", dim=DIM, index_type=index_type)
    for start in range(0, n, args.batch):
        count = min(args.batch, n - start)
        data[start : start + count] = gen.rows(start, count)
        works = [
            NewWork(path=f"synthetic/{i:08d}.jpg", sha256=hashlib.sha256(b"%d" % i).hexdigest())
            for i in range(start, start + count)
        ]
        store.add(works, data[start : start + count])
        done = start + count
        if done % (10 * args.batch) == 0 or done == n:
            print(f"  {done} added, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    store.close()
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    store = FaissStore.open(store_path)
    open_s = time.perf_counter() - t0
    store_info = store.info()
    index_ram = int(faiss.serialize_index(store._index).nbytes)  # the index as held in memory
    sizes = dir_sizes(store_path)

    # ids are assigned 1..n in order, so row i of `data` is work i + 1
    rng = np.random.default_rng(1)
    half = args.queries // 2
    copies = perturb(data[rng.choice(n, half, replace=False)], 0.9, rng)
    new = gen.rows(0, args.queries - half, stream=1)
    queries = {"copy": copies, "new": new}
    truth = {kind: exact_top(data, q, K) + 1 for kind, q in queries.items()}
    all_q = np.concatenate([copies, new])

    def recalls(params: str | None) -> dict:
        return {
            kind: recall(store.search(q, K, params=params), truth[kind])
            for kind, q in queries.items()
        }

    sweep = []
    chosen = None
    for nprobe in NPROBES:
        if nprobe > nlist and index_type.startswith("IVF"):
            break
        r = recalls(f"nprobe={nprobe}")
        sweep.append({"nprobe": nprobe, **{f"recall_{k}": v for k, v in r.items()}})
        print(f"  nprobe={nprobe}: recall {r}", file=sys.stderr)
        if min(r.values()) >= args.recall:
            chosen = nprobe
            break
    if chosen is None:
        print(f"WARNING: recall@{K} {args.recall} not reached", file=sys.stderr)
        chosen = sweep[-1]["nprobe"]

    params = f"nprobe={chosen}"
    # exact scores: every hit's score is the inner product of the raw vectors
    check = store.search(all_q[:50], K, params=params)
    score_error = max(
        abs(h.score - float(data[h.work.id - 1] @ q))
        for row, q in zip(check, all_q[:50], strict=True)
        for h in row
    )
    tuned = percentiles(time_single(lambda q: store.search(q, K, params=params), all_q))
    default_params = store_info.search_params
    default_recall = recalls(None)
    default_lat = percentiles(
        time_single(lambda q: store.search(q, K), all_q[: min(len(all_q), 300)])
    )

    flat = faiss.IndexFlatIP(DIM)
    flat.add(data)
    flat_lat = percentiles(
        time_single(lambda q: flat.search(q[None], K), all_q[: min(len(all_q), 100)], warmup=3)
    )
    flat.reset()  # free its copy of the vectors
    store.close()

    rows = [
        [
            f"store `{index_type}`, tuned",
            params,
            f"{min(sweep[-1]['recall_copy'], sweep[-1]['recall_new']):.3f}",
            f"{tuned['p50_ms']:.2f}",
            f"{tuned['p99_ms']:.2f}",
        ],
        [
            f"store `{index_type}`, default params",
            default_params,
            f"{min(default_recall.values()):.3f}",
            f"{default_lat['p50_ms']:.2f}",
            f"{default_lat['p99_ms']:.2f}",
        ],
        [
            "exact faiss `IndexFlatIP` in RAM (reference)",
            "",
            "1.000",
            f"{flat_lat['p50_ms']:.2f}",
            f"{flat_lat['p99_ms']:.2f}",
        ],
    ]
    per = 1 / n
    summary = [
        ["vectors", f"{n:,} x {DIM}"],
        [
            f"build (create, add in batches of {args.batch}, close)",
            f"{build_s:.1f} s ({n / build_s:,.0f} vectors/s)",
        ],
        ["open", f"{open_s:.2f} s"],
        ["index RAM per vector", f"{index_ram * per:.0f} B"],
        ["disk per vector (total)", f"{sizes['total'] * per:.0f} B"],
        ["  works.sqlite per vector", f"{sizes['sqlite'] * per:.0f} B"],
        ["  index file per vector", f"{sizes['index_file'] * per:.0f} B"],
        ["max |score - exact inner product|", f"{score_error:.1e}"],
        [
            "peak RSS of the benchmark process",
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
        ],
    ]
    markdown = "\n".join(
        [
            f"## Similarity store, {n:,} synthetic {DIM}-d vectors",
            "",
            common.markdown_table(["", ""], summary),
            "",
            f"Single queries (k={K}, {len(all_q)} queries: half copies at cosine 0.9, half new); "
            f"recall@{K} is the lower of the two query kinds.",
            "",
            common.markdown_table(["search", "params", f"recall@{K}", "p50 ms", "p99 ms"], rows),
            "",
            f"{info['cpu_model']}, {info['cpu_count']} CPUs, faiss {faiss.__version__} "
            f"({info['faiss_threads']} threads)" + (f". **{busy}**" if busy else ""),
        ]
    )
    raw = {
        "benchmark": "similarity_index",
        "n": n,
        "dim": DIM,
        "k": K,
        "index_type": index_type,
        "batch": args.batch,
        "queries": {kind: len(q) for kind, q in queries.items()},
        "copy_cosine": 0.9,
        "target_recall": args.recall,
        "build_s": build_s,
        "open_s": open_s,
        "index_ram_bytes": index_ram,
        "disk_bytes": sizes,
        "bytes_per_vector": {"index_ram": index_ram * per, "disk": sizes["total"] * per},
        "sweep": sweep,
        "tuned": {"params": params, **tuned},
        "default": {"params": default_params, "recall": default_recall, **default_lat},
        "exact_flat_in_ram": flat_lat,
        "max_score_error": score_error,
        "store_info": store_info.to_dict(),
        "machine": info,
        "busy_warning": busy,
    }
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown + "\n")
        json_path = out.with_suffix(".json")
    else:
        common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        json_path = common.RESULTS_DIR / "similarity_index.json"
    json_path.write_text(json.dumps(raw, indent=2, default=float) + "\n")
    print(f"\n(raw numbers: {json_path})", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(store_path)
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
