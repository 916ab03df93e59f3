"""The similarity store: exact results, removal, binary codes, bad input, crash safety and the
approximate path. Small random vectors in pytest's tmp_path; each test runs in about a second."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pytest

from aigcguard.provenance.similarity.stores import (
    STORE_FORMAT,
    FaissStore,
    Hit,
    NewWork,
    StoreError,
    StoreInfo,
    Work,
    catalogue,
    faiss_files,
    faiss_policy,
    faiss_store,
)
from aigcguard.provenance.similarity.stores.faiss_policy import default_index_type


def sha(i: int) -> str:
    return hashlib.sha256(b"work %d" % i).hexdigest()


def new_works(n: int, start: int = 0) -> list[NewWork]:
    return [
        NewWork(path=f"refs/{i}.jpg", sha256=sha(i), title=f"Work {i}", creator="A. Painter")
        for i in range(start, start + n)
    ]


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def manifold(rng: np.random.Generator, n: int, d: int, rank: int = 8) -> np.ndarray:
    """Vectors near a low-dimensional subspace, like image embeddings: an inverted index
    finds real neighbours in them (isotropic random vectors have none)."""
    basis, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((d, rank)))
    x = rng.standard_normal((n, rank)) @ basis.T + 0.05 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def perturb(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.05) -> np.ndarray:
    y = x + sigma * rng.standard_normal(x.shape).astype(np.float32)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def brute_force(data: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    scores = queries.astype(np.float64) @ data.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(scores, order, 1)


def index_generation(path) -> int:
    return json.loads((path / "index.json").read_text())["generation"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def filled(tmp_path, rng):
    """A float store of 300 works (dim 32), closed; with its vectors and ids."""
    path = tmp_path / "store"
    data = unit(rng, 300, 32)
    with FaissStore.create(path, embedder="test:32", dim=32) as store:
        ids = store.add(new_works(300), data)
    return path, data, np.array(ids)


# ------------------------------------------------------------------------ create, open, info


def test_create_open_round_trip_and_info(tmp_path, rng):
    path = tmp_path / "refs"
    with FaissStore.create(path, embedder="clip:ViT-B-32/openai", dim=16) as store:
        info = store.info()
        assert isinstance(info, StoreInfo)
        assert (info.format, info.embedder, info.dim, info.binary, info.count) == (
            STORE_FORMAT,
            "clip:ViT-B-32/openai",
            16,
            False,
            0,
        )
        assert info.index_type == "IDMap2,Flat" and info.index_type_requested == "auto"
        assert info.index_on_gpu == (faiss.get_num_gpus() > 0)
        ids = store.add(new_works(5), unit(rng, 5, 16))
        assert ids == [1, 2, 3, 4, 5]
    with FaissStore.open(path) as store:
        info2 = store.info()
        assert info2.count == 5 and info2.created == info.created
        assert info2.size_bytes > 0 and info2.path == str(path)
        json.dumps(info2.to_dict())  # plain JSON
    assert sorted(p.name for p in path.iterdir()) == ["index.1.faiss", "index.json", "works.sqlite"]


def test_create_refuses_existing_store_and_non_empty_dir(tmp_path):
    FaissStore.create(tmp_path / "a", embedder="e", dim=8).close()
    with pytest.raises(StoreError, match="already exists"):
        FaissStore.create(tmp_path / "a", embedder="e", dim=8)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        FaissStore.create(tmp_path / "b", embedder="e", dim=8)
    FaissStore.create(tmp_path / "c", embedder="e", dim=8).close()  # an empty directory is fine


def test_create_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="multiple of 8"):
        FaissStore.create(tmp_path / "a", embedder="pdq", dim=250, binary=True)
    with pytest.raises(ValueError, match="not a faiss factory string"):
        FaissStore.create(tmp_path / "b", embedder="e", dim=8, index_type="IVF-nonsense")
    with pytest.raises(ValueError, match="nprobe"):
        FaissStore.create(
            tmp_path / "c", embedder="e", dim=8, index_type="HNSW8", search_params="nprobe=4"
        )
    with pytest.raises(ValueError, match="embedder"):
        FaissStore.create(tmp_path / "d", embedder="", dim=8)
    assert not any(tmp_path.iterdir())  # nothing half-made


def test_index_type_is_normalised_to_carry_ids(tmp_path):
    with FaissStore.create(tmp_path / "h", embedder="e", dim=8, index_type="HNSW8") as store:
        assert store.info().index_type_requested == "IDMap2,HNSW8"
    with FaissStore.create(
        tmp_path / "i", embedder="e", dim=8, index_type="IDMap2,IVF16,Flat"
    ) as s:
        assert s.info().index_type_requested == "IVF16,Flat"  # IVF keeps its own ids


# ---------------------------------------------------------------------------- add and search


def test_search_returns_exact_neighbours_and_scores(filled, rng):
    path, data, ids = filled
    queries = np.concatenate([perturb(data[:10], rng, 0.3), unit(rng, 10, 32)])
    want_ids, want_scores = brute_force(data, ids, queries, 7)
    with FaissStore.open(path) as store:
        hits = store.search(queries, k=7)
    assert len(hits) == 20
    for row, wid, wscore in zip(hits, want_ids, want_scores, strict=True):
        assert [h.work.id for h in row] == wid.tolist()
        np.testing.assert_allclose([h.score for h in row], wscore, atol=1e-6)
        assert all(h.hamming is None for h in row)
    top = hits[0][0]
    assert top.work == Work(
        id=int(ids[0]),
        path="refs/0.jpg",
        sha256=sha(0),
        title="Work 0",
        creator="A. Painter",
        added=top.work.added,
    )
    as_json = json.loads(top.to_json())
    assert as_json["work"]["path"] == "refs/0.jpg" and as_json["score"] == pytest.approx(top.score)


def test_search_edge_cases(tmp_path, rng):
    with FaissStore.create(tmp_path / "s", embedder="e", dim=8) as store:
        assert store.search(unit(rng, 2, 8), k=3) == [[], []]  # empty store
        store.add(new_works(3), unit(rng, 3, 8))
        assert len(store.search(unit(rng, 1, 8)[0], k=10)[0]) == 3  # 1-d query, k > count
        with pytest.raises(ValueError, match="k must be"):
            store.search(unit(rng, 1, 8), k=0)


def test_vectors_are_normalised_and_checked(tmp_path, rng):
    with FaissStore.create(tmp_path / "s", embedder="e", dim=8) as store:
        raw = rng.standard_normal((4, 8))  # float64, not normalised: accepted, normalised
        ids = store.add(new_works(4), raw)
        np.testing.assert_allclose(
            store.vectors(ids), raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6
        )
        with pytest.raises(ValueError, match=r"expected float32 vectors of shape \(n, 8\)"):
            store.add(new_works(2), unit(rng, 2, 9))
        with pytest.raises(ValueError, match="got dtype int64"):
            store.add(new_works(2), np.ones((2, 8), dtype=np.int64))
        with pytest.raises(ValueError, match="one vector per work"):
            store.add(new_works(3), unit(rng, 2, 8))
        with pytest.raises(ValueError, match="zero vector"):
            store.add(new_works(1), np.zeros((1, 8), np.float32))
        with pytest.raises(ValueError, match="sha256"):
            store.add([NewWork(path="x.jpg", sha256="abc")], unit(rng, 1, 8))
        with pytest.raises(
            ValueError, match=r"queries: expected float32 vectors of shape \(n, 8\)"
        ):
            store.search(unit(rng, 1, 4))
        assert store.info().count == 4


def test_get_find_and_vectors(filled):
    path, data, ids = filled
    with FaissStore.open(path) as store:
        works = store.get([ids[5], ids[2]])
        assert [w.path for w in works] == ["refs/5.jpg", "refs/2.jpg"]
        assert store.find(sha256=sha(7).upper())[0].id == ids[7]
        assert store.find(path="refs/8.jpg", sha256=sha(8))[0].id == ids[8]
        assert store.find(path="refs/8.jpg", sha256=sha(9)) == []
        np.testing.assert_array_equal(store.vectors([ids[3], ids[1]]), data[[3, 1]])
        with pytest.raises(KeyError, match="9999"):
            store.get([ids[0], 9999])
        with pytest.raises(KeyError, match="9999"):
            store.vectors([9999])
        with pytest.raises(ValueError):
            store.find()


# ----------------------------------------------------------------------------------- remove


def test_remove_without_rebuild(filled, rng, monkeypatch):
    path, data, ids = filled
    gone = rng.choice(ids, 100, replace=False)
    with FaissStore.open(path) as store:
        monkeypatch.setattr(
            FaissStore, "_rebuild", lambda *a: pytest.fail("remove rebuilt the index")
        )
        assert store.remove([*gone.tolist(), 10_000, int(gone[0])]) == 100  # unknown, repeated
        assert store.remove(gone) == 0
        assert store.info().count == 200
        hits = store.search(data, k=20)
    monkeypatch.undo()
    returned = {h.work.id for row in hits for h in row}
    assert not returned & set(gone.tolist())
    keep = ~np.isin(ids, gone)
    want, _ = brute_force(data[keep], ids[keep], data[:5], 20)
    assert [[h.work.id for h in row] for row in hits[:5]] == want.tolist()

    with FaissStore.open(path) as store:  # removal survives reopening, ids are never reused
        assert store.info().count == 200
        assert not {h.work.id for row in store.search(data, k=20) for h in row} & set(gone)
        store.remove([int(ids.max())])
        assert store.add(new_works(1, 500), unit(rng, 1, 32)) == [int(ids.max()) + 1]


def test_two_handles_see_each_others_commits(filled, rng):
    path, data, ids = filled
    with FaissStore.open(path) as a, FaissStore.open(path) as b:
        v = unit(rng, 1, 32)
        (new_id,) = a.add(new_works(1, 900), v)
        assert b.search(v, k=1)[0][0].work.id == new_id
        b.remove([new_id, int(ids[0])])
        assert a.search(v, k=1)[0][0].work.id != new_id
        assert a.search(data[0], k=1)[0][0].work.id != ids[0]
        assert a.info().count == b.info().count == 299


# ----------------------------------------------------------------------------------- binary


def test_binary_store_hamming(tmp_path, rng):
    bits = 256
    codes = rng.integers(0, 256, (400, bits // 8), dtype=np.uint8)
    flips = np.zeros((5, bits), dtype=np.uint8)
    for i in range(5):
        flips[i, rng.choice(bits, 10 * (i + 1), replace=False)] = 1
    queries = codes[:5] ^ np.packbits(flips, axis=1)
    with FaissStore.create(tmp_path / "pdq", embedder="pdq", dim=bits, binary=True) as store:
        assert store.info().index_type == "IDMap2,BFlat"
        ids = np.array(store.add(new_works(400), codes))
        hits = store.search(queries, k=5)
        with pytest.raises(ValueError, match=r"uint8 binary codes of shape \(n, 32\)"):
            store.search(queries.astype(np.float32))
        with pytest.raises(ValueError, match="got shape"):
            store.add(new_works(1), codes[:1, :16])
        np.testing.assert_array_equal(store.vectors(ids[:3]), codes[:3])
    hamming = np.unpackbits(queries[:, None, :] ^ codes[None], axis=2).sum(axis=2)
    for i, row in enumerate(hits):
        assert row[0].work.id == ids[i] and row[0].hamming == 10 * (i + 1)
        assert [h.hamming for h in row] == sorted(hamming[i])[:5]
        for h in row:
            assert h.hamming == hamming[i, h.work.id - 1]
            assert h.score == pytest.approx(1 - 2 * h.hamming / bits)
        assert row[0].to_dict()["hamming"] == 10 * (i + 1)


# ------------------------------------------------------------------------------ bad stores


def test_open_missing_or_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="no such directory") as err:
        FaissStore.open(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        FaissStore.open(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a similarity store"):
        FaissStore.open(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / "works.sqlite").execute(
        "CREATE TABLE t (x)"
    ).connection.close()
    with pytest.raises(StoreError, match="not a similarity store database"):
        FaissStore.open(tmp_path / "other")


def test_format_version_mismatch(filled):
    path = filled[0]
    with sqlite3.connect(path / "works.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    conn.close()
    with pytest.raises(StoreError, match="format 99") as err:
        FaissStore.open(path)
    assert str(path / "works.sqlite") in str(err.value)


def test_corrupt_sqlite(filled):
    path = filled[0]
    (path / "works.sqlite").write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreError, match="corrupt or not an SQLite database") as err:
        FaissStore.open(path)
    assert str(path / "works.sqlite") in str(err.value)


def test_corrupt_index_file(filled):
    path = filled[0]
    index_file = path / json.loads((path / "index.json").read_text())["file"]
    index_file.write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match="corrupt index file") as err:
        FaissStore.open(path)
    assert str(index_file) in str(err.value) and "delete it to rebuild" in str(err.value)
    index_file.unlink()  # the advertised remedy: rebuilt from works.sqlite
    with FaissStore.open(path) as store:
        assert store.info().count == 300


def test_corrupt_index_state(filled):
    path = filled[0]
    (path / "index.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt index state") as err:
        FaissStore.open(path)
    assert str(path / "index.json") in str(err.value)


def test_closed_store(filled):
    store = FaissStore.open(filled[0])
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.search(filled[1][:1])


# ------------------------------------------------------------------------------ crash safety


def run_child(path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter with the store open as ``store``; the body makes it
    die with os._exit, as a killed process would (no cleanup, no rollback, no close)."""
    code = textwrap.dedent(
        f"""
        import os, hashlib
        import numpy as np
        from aigcguard.provenance.similarity.stores import FaissStore, NewWork
        from aigcguard.provenance.similarity.stores import catalogue, faiss_files
        store = FaissStore.open({str(path)!r})
        rng = np.random.default_rng(99)
        vectors = rng.standard_normal((50, 32)).astype(np.float32)
        works = [NewWork(path=f"new/{{i}}.jpg", sha256=hashlib.sha256(b"new %d" % i).hexdigest())
                 for i in range(50)]
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def child_vectors() -> np.ndarray:
    x = np.random.default_rng(99).standard_normal((50, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_crash_after_commit_before_index_write(filled):
    path, data, ids = filled
    before = index_generation(path)
    done = run_child(
        path,
        """
        faiss_files._write_index_file = lambda *a, **k: os._exit(3)
        store.add(works, vectors)
        """,
    )
    assert done.returncode == 3, done.stderr
    assert index_generation(path) == before  # the index on disk missed the commit
    with FaissStore.open(path) as store:
        assert store.info().count == 350
        hits = store.search(child_vectors(), k=1)
        assert [h[0].work.path for h in hits] == [f"new/{i}.jpg" for i in range(50)]
        assert store.search(data[:3], k=1)[0][0].work.id == ids[0]
    assert index_generation(path) > before  # and it was brought up to date


def test_crash_inside_transaction_keeps_previous_state(filled):
    path, data, ids = filled
    done = run_child(
        path,
        """
        catalogue._bump_generation = lambda *a, **k: os._exit(3)
        store.add(works, vectors)
        """,
    )
    assert done.returncode == 3, done.stderr
    assert (path / "works.sqlite-journal").exists()  # died mid-transaction: a hot journal
    with FaissStore.open(path) as store:
        assert store.info().count == 300
        assert store.find(path="new/0.jpg") == []
        assert store.search(child_vectors(), k=1)[0][0].work.path.startswith("refs/")
        assert store.add(new_works(1, 700), data[:1]) == [int(ids.max()) + 1]


def test_failed_index_write_loses_nothing(filled, monkeypatch):
    path = filled[0]
    store = FaissStore.open(path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(faiss_files, "_write_index_file", fail)
    with pytest.warns(UserWarning, match="could not write the index"):
        new = store.add(new_works(5, 500), child_vectors()[:5])
    assert store.search(child_vectors()[:5], k=1)[0][0].work.id == new[0]
    with pytest.warns(UserWarning), FaissStore.open(path) as other:  # another process sees it
        assert [h[0].work.id for h in other.search(child_vectors()[:5], k=1)] == new
    monkeypatch.undo()
    store.close()  # writes the index it owes
    assert index_generation(path) == 2


def test_exception_inside_transaction_rolls_back(filled, monkeypatch):
    path, data, ids = filled
    with FaissStore.open(path) as store:

        def boom(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(catalogue, "_bump_generation", boom)
        with pytest.raises(RuntimeError, match="boom"):
            store.add(new_works(5, 500), child_vectors()[:5])
        with pytest.raises(RuntimeError, match="boom"):
            store.remove(ids[:5])
        monkeypatch.undo()
        assert store.info().count == 300
        assert store.find(path="refs/500.jpg") == []
        assert store.search(data[:5], k=1)[0][0].work.id == ids[0]
        assert store.add(new_works(1, 600), child_vectors()[:1]) == [int(ids.max()) + 1]


def test_lagging_index_is_replayed_not_rebuilt(filled, monkeypatch, rng):
    path, data, ids = filled
    monkeypatch.setattr(faiss_store, "_PERSIST_SMALL_BYTES", 0)  # write lazily, as for big stores
    store = FaissStore.open(path)
    store.add(new_works(10, 500), unit(rng, 10, 32))  # 10 < 25% of 300: not written yet
    store.remove(ids[:3])
    assert index_generation(path) == 1
    monkeypatch.setattr(
        FaissStore, "_rebuild", lambda *a: pytest.fail("rebuilt instead of replayed")
    )
    with FaissStore.open(path) as other:  # as if `store` had died here
        assert other.info().count == 307
        assert other.search(data[0], k=1)[0][0].work.id != ids[0]
    monkeypatch.undo()
    store.close()


# ------------------------------------------------------------------------ approximate index


def test_ivf_recall_and_exact_scores(tmp_path, rng):
    n, d = 20_000, 64
    data = manifold(rng, n, d)
    with FaissStore.create(tmp_path / "ivf", embedder="e", dim=d, index_type="IVF128,SQ8") as store:
        ids = np.array(store.add(new_works(2000), data[:2000]))
        # too few vectors to train 128 lists: exact search until there are
        assert store.info().index_type == "IDMap2,Flat"
        ids = np.concatenate([ids, store.add(new_works(n - 2000, 2000), data[2000:])])
        info = store.info()
        assert (info.index_type, info.index_type_requested) == ("IVF128,SQ8", "IVF128,SQ8")
        assert info.search_params == "nprobe=16"
        queries = np.concatenate(
            [perturb(data[rng.choice(n, 100)], rng, 0.02), manifold(rng, 100, d)]
        )
        hits = store.search(queries, k=10)
        want, _ = brute_force(data, ids, queries, 10)
        recall = np.mean(
            [len({h.work.id for h in row} & set(w)) / 10 for row, w in zip(hits, want, strict=True)]
        )
        assert recall >= 0.95
        for row, q in zip(hits, queries, strict=True):
            got = np.array([h.score for h in row])
            np.testing.assert_allclose(got, data[[h.work.id - 1 for h in row]] @ q, atol=1e-5)
            assert (np.diff(got) <= 0).all()  # best first
        assert store.search(queries[:5], k=10, params="nprobe=128")  # per-call override
        store.remove(ids[:10])  # IVF removes in place
        assert store.info().index_type == "IVF128,SQ8"
        assert not {h.work.id for row in store.search(data[:10], k=5) for h in row} & set(ids[:10])
    with FaissStore.open(tmp_path / "ivf") as store:
        assert store.info().index_type == "IVF128,SQ8" and store.info().count == n - 10


def test_hnsw_removal_by_tombstones(tmp_path, rng):
    data = unit(rng, 600, 16)
    with FaissStore.create(tmp_path / "h", embedder="e", dim=16, index_type="HNSW16") as store:
        ids = np.array(store.add(new_works(600), data))
        store.remove(ids[:30])  # HNSW cannot remove: tombstones, filtered at re-scoring
        assert store._index.ntotal == 600
        hits = store.search(data[:40], k=5)
        assert not {h.work.id for row in hits for h in row} & set(ids[:30])
        assert [row[0].work.id for row in hits[30:]] == ids[30:40].tolist()
        store.remove(ids[30:90])  # past 10% tombstones: rebuilt without them
        assert store._index.ntotal == 510
        assert store.info().index_type == "IDMap2,HNSW16"


def test_auto_policy_switches_index_with_size(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(faiss_policy, "EXACT_MAX_FLOAT", 2000)  # a small threshold to cross
    data = manifold(rng, 5000, 32)
    with FaissStore.create(tmp_path / "auto", embedder="e", dim=32) as store:
        ids = np.array(store.add(new_works(1500), data[:1500]))
        assert store.info().index_type == "IDMap2,Flat"
        ids = np.concatenate([ids, store.add(new_works(3500, 1500), data[1500:])])
        assert store.info().index_type == default_index_type(5000, 32, False) == "IVF64,SQ8"
        assert store.search(data[7], k=1)[0][0].work.id == ids[7]
        store.remove(ids[:3000])  # 2000 left: still approximate (no flip-flop at the line)
        assert store.info().index_type == "IVF64,SQ8"
        store.remove(ids[3000:4500])  # 500 < half the threshold: exact again
        assert store.info().index_type == "IDMap2,Flat"
        assert store.search(data[4600], k=1)[0][0].work.id == ids[4600]


def test_default_index_type_policy():
    assert default_index_type(0, 512, False) == "IDMap2,Flat"
    assert default_index_type(faiss_policy.EXACT_MAX_FLOAT, 512, False) == "IDMap2,Flat"
    assert default_index_type(faiss_policy.EXACT_MAX_FLOAT + 1, 512, False).endswith(",SQ8")
    assert default_index_type(1_000_000, 512, False) == "IVF1024,SQ8"
    assert default_index_type(10_000_000, 512, False) == "IVF4096,SQ8"
    assert default_index_type(50_000_000, 512, False) == "IVF8192,PQ64"
    assert default_index_type(50_000_000, 100, False) == "IVF8192,PQ10"
    assert default_index_type(10_000_000, 256, True) == "IDMap2,BFlat"
    assert default_index_type(20_000_000, 256, True) == "BIVF4096"
    for spec, dim, binary in [
        ("IVF1024,SQ8", 512, False),
        ("IVF8192,PQ64", 512, False),
        ("IDMap2,BFlat", 256, True),
        ("BIVF4096", 256, True),
    ]:
        assert faiss_policy.normalise_index_type(spec, dim, binary) == spec  # valid, as stored
    with pytest.raises(ValueError):
        default_index_type(10, 0, False)


def test_hit_is_frozen():
    hit = Hit(work=Work(id=1, path="a", sha256=sha(1)), score=0.5)
    with pytest.raises(AttributeError):
        hit.score = 1.0  # type: ignore[misc]
    assert hit.to_dict() == {"work": hit.work.to_dict(), "score": 0.5, "hamming": None}
    assert os.fspath(hit.work.path) == "a"
