"""The Milvus store (via Milvus Lite) gives what the FAISS store gives on the same data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")

from aigcguard.provenance.similarity.stores import FaissStore, NewWork, StoreError
from aigcguard.provenance.similarity.stores.milvus import MilvusStore, is_milvus_uri


def _works(n: int, offset: int = 0) -> list[NewWork]:
    return [
        NewWork(path=f"w{i}.jpg", sha256=f"{i:064x}", title=f"Work {i}", creator="Ann")
        for i in range(offset, offset + n)
    ]


def test_same_answers_as_the_faiss_store(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 32)).astype(np.float32)
    queries = vecs[:20] + 0.3 * rng.normal(size=(20, 32)).astype(np.float32)
    uri = f"milvus-lite://{tmp_path}/refs.db/works"
    assert is_milvus_uri(uri) and not is_milvus_uri(str(tmp_path))
    with (
        MilvusStore.create(uri, embedder="test", dim=32) as ms,
        FaissStore.create(tmp_path / "faiss", embedder="test", dim=32) as fs,
    ):
        assert ms.add(_works(300), vecs) == fs.add(_works(300), vecs)
        for a, b in zip(ms.search(queries, k=5), fs.search(queries, k=5), strict=True):
            assert [h.work.id for h in a] == [h.work.id for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
            # metadata too; `added` is each store's own clock, a second apart at times
            assert replace(a[0].work, added=None) == replace(b[0].work, added=None)
        assert ms.remove([1, 2, 999]) == 2 == fs.remove([1, 2, 999])
        assert all(h.work.id not in (1, 2) for h in ms.search(vecs[1], k=10)[0])
        assert ms.find(sha256=f"{5:064x}")[0].title == "Work 5"
        np.testing.assert_allclose(ms.vectors([5])[0], fs.vectors([5])[0], atol=1e-6)
        with pytest.raises(KeyError, match="no work with id 1"):
            ms.get([1])
        assert ms.info().count == 298 and ms.info().embedder == "test"
    # reopened: the settings and the id counter survive; removed ids are never reused
    with MilvusStore.open(uri) as again:
        assert again.add(_works(1, 300), vecs[:1]) == [301]


def test_binary_codes_score_like_hamming(tmp_path):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(50, 32), dtype=np.uint8)  # 256-bit, as PDQ
    uri = f"milvus-lite://{tmp_path}/pdq.db/hashes"
    with (
        MilvusStore.create(uri, embedder="pdq", dim=256, binary=True) as ms,
        FaissStore.create(tmp_path / "faiss", embedder="pdq", dim=256, binary=True) as fs,
    ):
        ms.add(_works(50), codes)
        fs.add(_works(50), codes)
        q = codes[7].copy()
        q[0] ^= 0b1011  # three bits off
        [mh] = ms.search(q, k=3)
        [fh] = fs.search(q, k=3)
        assert mh[0].work.id == 8 and mh[0].hamming == 3 == fh[0].hamming
        assert [h.score for h in mh] == pytest.approx([h.score for h in fh])
        np.testing.assert_array_equal(ms.vectors([8]), codes[7:8])


def test_errors_name_the_store(tmp_path):
    with pytest.raises(StoreError, match="no aigc-guard store"):
        MilvusStore.open(f"milvus-lite://{tmp_path}/x.db/missing")
    with pytest.raises(StoreError, match="COLLECTION"):
        MilvusStore.open("milvus-lite://nothing")
    uri = f"milvus-lite://{tmp_path}/y.db/works"
    MilvusStore.create(uri, embedder="t", dim=4).close()
    with pytest.raises(StoreError, match="already exists"):
        MilvusStore.create(uri, embedder="t", dim=4)
    with MilvusStore.open(uri) as s, pytest.raises(ValueError, match="N x 4"):
        s.add(_works(1), np.ones((1, 5), np.float32))


def test_cli_build_similar_and_export_on_milvus(tmp_path, photos):
    import json

    from click.testing import CliRunner
    from PIL import Image

    from aigcguard.cli import main

    works = tmp_path / "works"
    works.mkdir()
    for name in ("astronaut", "coffee", "rocket"):
        Image.fromarray(photos[name]).save(works / f"{name}.png")
    query = tmp_path / "q.jpg"
    Image.fromarray(photos["coffee"][40:360, 60:500]).save(query, quality=80)
    runner = CliRunner()
    lite = f"milvus-lite://{tmp_path}/m.db/refs"
    r = runner.invoke(main, ["index", "build", str(works), "--index", lite, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["similar", str(query), "--index", lite, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    on_milvus = json.loads(r.stdout.splitlines()[0])
    assert on_milvus["verdict"] == "copy" and on_milvus["matches"][0]["path"].endswith("coffee.png")
    # the same works in a FAISS store, exported: the same answer, ids kept
    faiss_dir = tmp_path / "faiss"
    runner.invoke(main, ["index", "build", str(works), "--index", str(faiss_dir)])
    exported = f"milvus-lite://{tmp_path}/e.db/refs"
    r = runner.invoke(main, ["index", "export", "--index", str(faiss_dir), "--to", exported])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["works"] == 3
    r1 = runner.invoke(main, ["similar", str(query), "--index", str(faiss_dir)])
    r2 = runner.invoke(main, ["similar", str(query), "--index", exported])
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert [m["id"] for m in a["matches"]] == [m["id"] for m in b["matches"]]
    assert [m["verdict"] for m in a["matches"]] == [m["verdict"] for m in b["matches"]]
    assert [m["score"] for m in a["matches"]] == pytest.approx(
        [m["score"] for m in b["matches"]], abs=1e-5
    )
    r = runner.invoke(main, ["index", "export", "--index", str(faiss_dir), "--to", exported])
    assert r.exit_code != 0 and "already exists" in r.output


def test_a_store_written_by_another_process_is_searchable(tmp_path):
    """Milvus leaves a collection another process wrote "released" until it is loaded."""
    import subprocess
    import sys

    uri = f"milvus-lite://{tmp_path}/p.db/works"
    script = (
        "import numpy as np\n"
        "from aigcguard.provenance.similarity.stores import MilvusStore, NewWork\n"
        f"s = MilvusStore.create({uri!r}, embedder='t', dim=8)\n"
        "v = np.eye(8, dtype=np.float32)\n"
        "s.add([NewWork(f'w{i}', f'{i:064x}') for i in range(8)], v)\n"
        "s.close()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with MilvusStore.open(uri) as store:
        [hits] = store.search(np.eye(8, dtype=np.float32)[3], k=2)
        assert hits[0].work.id == 4 and hits[0].score == pytest.approx(1.0)
