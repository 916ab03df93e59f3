"""The Milvus store against the FAISS store: same copy-detection figures, search latency.

    python bench/milvus_vs_faiss.py [--descriptors vlad,pdq] [--n 100000] [--out FILE.md]

1. Copy detection: the benchmark of bench/copy_detection.py (same references, queries and
   seed) run once on a FAISS store and once on a Milvus Lite store, per descriptor; the figures
   must be equal (both stores score from the stored raw vectors).
2. Latency: ``--n`` synthetic 512-d vectors (bench/similarity_index.py's generator) in a FAISS
   store (exact search up to 250,000) and a Milvus Lite store (FLAT); single-query search
   (k = 10), p50/p95 over 200 queries after 20 warm-up, recall@10 against exact search, and
   the time to add the vectors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from copy_detection import load_sets, run
from similarity_index import DIM, Generator, exact_top, perturb

from aigcguard.provenance.similarity import copyeval
from aigcguard.provenance.similarity.stores import FaissStore, MilvusStore, NewWork


def _works(start: int, n: int) -> list[NewWork]:
    return [NewWork(path=f"v{i}", sha256=f"{i:064x}") for i in range(start, start + n)]


def latency(n: int, folder: Path) -> list[list[str]]:
    corpus = Generator(seed=0)
    rng = np.random.default_rng(1)
    data = corpus.rows(0, n)
    picks = rng.choice(n, 200, replace=False)
    queries = perturb(data[picks], 0.8, rng).astype(np.float32)
    truth = exact_top(data, queries, 10)
    rows = []
    for name, make in (
        ("FAISS (exact)", lambda: FaissStore.create(folder / "faiss", embedder="s", dim=DIM)),
        (
            "Milvus Lite (FLAT)",
            lambda: MilvusStore.create(
                f"milvus-lite://{folder}/m.db/vectors", embedder="s", dim=DIM
            ),
        ),
    ):
        store = make()
        t0 = time.perf_counter()
        for start in range(0, n, 10_000):
            store.add(_works(start, min(10_000, n - start)), data[start : start + 10_000])
        store.search(queries[0], k=10)  # the first search after adds seals them (Milvus)
        add_s = time.perf_counter() - t0
        for q in queries[:20]:
            store.search(q, k=10)
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            [hits] = store.search(q, k=10)
            times.append(time.perf_counter() - t)
            found.append([h.work.id - 1 for h in hits])  # ids start at 1, rows at 0
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        store.close()
        rows.append(
            [
                name,
                f"{n:,}",
                f"{add_s:.0f}",
                f"{1e3 * np.percentile(times, 50):.2f}",
                f"{1e3 * np.percentile(times, 95):.2f}",
                f"{recall:.3f}",
            ]
        )
        print(rows[-1], file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--descriptors", default="vlad,pdq")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-copy", action="store_true", help="latency only")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.no_copy:
            refs, distractors = load_sets()
            queries = copyeval.build_queries(refs, distractors, seed=args.seed)
        for spec in [] if args.no_copy else args.descriptors.split(","):
            for name in ("FAISS", "Milvus Lite"):
                store = None if name == "FAISS" else f"milvus-lite://{tmp}/{spec}.db/refs"
                r = run(spec, refs, queries, tmp, store=store)
                rows.append(
                    [
                        spec,
                        name,
                        f"{r.descriptor.muap:.3f}",
                        f"{r.descriptor.recall_at_p90:.3f}",
                        f"{r.verified.muap:.3f}",
                        f"{r.verified.recall_at_p90:.3f}",
                        f"{r.seconds_per_query:.2f}",
                    ]
                )
                print(rows[-1], file=sys.stderr)
        lat = latency(args.n, tmp)
    info = common.machine_info()
    markdown = "\n".join(
        [
            "### Copy detection on both stores",
            "",
            common.markdown_table(
                [
                    "descriptor",
                    "store",
                    "muAP",
                    "recall @ P90",
                    "muAP, verified",
                    "recall @ P90, verified",
                    "s / query",
                ],
                rows,
            ),
            "",
            f"### Search latency at {args.n:,} vectors (512-d, k = 10, one query at a time)",
            "",
            common.markdown_table(
                ["store", "vectors", "add (s)", "p50 (ms)", "p95 (ms)", "recall@10"], lat
            ),
            "",
            f"{info['cpu_model']}, CPU; Milvus Lite in-process (pymilvus "
            f"{common.package_version('pymilvus')}, "
            f"milvus-lite {common.package_version('milvus-lite')}).",
        ]
    )
    common.print_markdown(markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
