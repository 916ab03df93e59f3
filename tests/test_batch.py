"""Batch jobs: listings, Parquet rows equal to the CLI's JSON, resuming, and Ray local mode."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.service.batch import (
    JOB_FILE,
    LOCK_FILE,
    BatchError,
    list_sources,
    run_batch,
)
from tests.helpers import to_tensor


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, photos) -> Path:
    """Nine small photo crops (PNG and JPEG) and one file that is not an image."""
    folder = tmp_path_factory.mktemp("pictures")
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "clock", "brick"]
    for i in range(9):
        arr = photos[names[i % len(names)]]
        crop = arr[i * 7 : i * 7 + 96 + 8 * i, i * 5 : i * 5 + 128]
        suffix = ".png" if i % 2 else ".jpg"
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"p{i}{suffix}", quality=92)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def rows(dest: Path) -> dict[str, dict]:
    table = pq.read_table(dest)  # the whole folder as one dataset, as a reader would see it
    out = {}
    for row in table.to_pylist():
        assert row["path"] not in out, f"{row['path']} written twice"
        out[row["path"]] = row
    return out


def assert_row_is(row: dict, record: dict, path: str) -> None:
    """A Parquet row holds the CLI's JSON record (path made absolute), the rest empty."""
    record = {**record, "path": path}
    assert {k: row[k] for k in record} == record
    assert all(row[k] is None for k in set(row) - set(record))


def cli_json(args: list[str]) -> dict[str, dict]:
    result = CliRunner().invoke(main, args)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {os.path.abspath(r["path"]): r for r in lines}


# ----------------------------------------------------------------------------- listings


def test_listings_resolve_relative_paths_and_keep_order(tmp_path, pictures):
    files = sorted(str(p) for p in pictures.iterdir())
    (tmp_path / "list.txt").write_text(
        "# uploads of the day\n" + "\n".join(os.path.relpath(f, tmp_path) for f in files[:3])
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    pq.write_table(pa.table({"path": files[3:6], "other": [1, 2, 3]}), manifests / "a.parquet")
    (manifests / "b.csv").write_text("id,path\n1," + files[6] + "\n2," + files[0] + "\n")
    got = list_sources([tmp_path / "list.txt", manifests, files[1]])
    assert got == files[:7]  # files[0] and files[1] again are listed once
    assert list_sources([pictures]) == files  # a folder of images is a folder of images


def test_a_listing_without_a_path_column_names_the_file(tmp_path):
    bad = tmp_path / "wrong.csv"
    bad.write_text("file,size\na.png,3\n")
    with pytest.raises(BatchError, match=r"wrong\.csv.*no 'path' column.*file, size"):
        list_sources([bad])
    with pytest.raises(BatchError, match=r"missing\.txt: cannot read"):
        list_sources([tmp_path / "missing.txt"])


# ------------------------------------------------------------------- rows equal the CLI's


def test_detect_rows_are_the_cli_json_and_bad_files_are_rows_too(tmp_path, pictures):
    report = run_batch("detect", [pictures], tmp_path / "out", ray_address="none", batch_size=4)
    assert (report.listed, report.processed, report.skipped) == (10, 10, 0)
    broken = str(pictures / "broken.png")
    assert list(report.failures) == [broken]
    got = rows(tmp_path / "out")
    assert "not a recognised image format" in got[broken]["error"]
    expected = cli_json(["detect", str(pictures)])
    assert len(expected) == 10  # the CLI's error line too
    for path, record in expected.items():
        assert_row_is(got[path], record, path)


def test_watermark_rows_find_the_mark_with_its_payload(tmp_path, photos):
    from aigcguard.watermark import embed

    folder = tmp_path / "in"
    folder.mkdir()
    pixels = photos["astronaut"][:256, :256]
    marked = embed([to_tensor(pixels)], [b"batch-01"])[0]
    Image.fromarray(marked.permute(1, 2, 0).numpy()).save(folder / "marked.png")
    Image.fromarray(np.ascontiguousarray(pixels)).save(folder / "plain.png")
    run_batch("watermark", [folder], tmp_path / "out", ray_address="none")
    got = rows(tmp_path / "out")
    assert got[str(folder / "marked.png")]["detected"] is True
    assert got[str(folder / "marked.png")]["payload_text"] == "batch-01"
    assert got[str(folder / "plain.png")]["detected"] is False
    expected = cli_json(["watermark", "detect", str(folder)])
    for path, record in expected.items():
        assert_row_is(got[path], record, path)


@pytest.mark.parametrize("spec", ["vlad", "pdq"])
def test_embed_rows_hold_the_embedders_vectors(tmp_path, pictures, spec):
    from aigcguard.imageio import load_image
    from aigcguard.provenance.similarity.descriptors import create_descriptor

    run_batch("embed", [pictures], tmp_path / spec, options={"embedder": spec}, ray_address="none")
    got = rows(tmp_path / spec)
    path = str(pictures / "p3.png")
    expected = create_descriptor(spec).describe([load_image(path).pixels])[0]
    assert got[path]["embedder"] == spec
    if spec == "pdq":
        assert got[path]["hash"] == bytes(expected).hex() and "vector" not in got[path]
    else:
        assert np.array_equal(np.array(got[path]["vector"], np.float32), expected)


def test_check_rows_carry_the_verdict_and_each_signal(tmp_path, pictures):
    run_batch("check", [pictures / "p1.png"], tmp_path / "out", ray_address="none")
    [row] = rows(tmp_path / "out").values()
    summary = json.loads(row["summary"])
    assert row["verdict"] == summary["verdict"] in ("likely_generated", "no_evidence")
    assert json.loads(row["detector"])["model"] == "default"  # a 96-px crop: the CIFAKE net
    credentials = json.loads(row["credentials"])
    assert credentials["state"] == "absent" and credentials["declarations"] is None
    assert {"integrity", "standing", "manifests"} <= set(credentials)


# ------------------------------------------------------------------------------ resuming


def test_a_rerun_skips_what_is_written_and_redoes_a_damaged_part(tmp_path, pictures):
    files = sorted(str(p) for p in pictures.iterdir())
    dest = tmp_path / "out"
    assert files[0].endswith("broken.png")
    first = run_batch("detect", files[1:5], dest, ray_address="none", batch_size=2, rows_per_file=2)
    assert first.processed == 4 and len(list(dest.glob("part-*.parquet"))) == 2
    second = run_batch("detect", [pictures], dest, ray_address="none")
    assert (second.skipped, second.processed) == (4, 6)
    assert list(second.failures) == [str(pictures / "broken.png")]
    assert len(rows(dest)) == 10
    # a part file damaged after it was written is moved aside and its rows are redone
    part = sorted(dest.glob("part-*.parquet"))[0]
    lost = set(pq.read_table(part).column("path").to_pylist())
    part.write_bytes(part.read_bytes()[:100])
    third = run_batch("detect", [pictures], dest, ray_address="none")
    assert third.processed == len(lost) and len(third.damaged) == 1
    assert (dest / f"_damaged-{part.name}").exists()
    assert len(rows(dest)) == 10  # the moved-aside file is out of the dataset
    # a run with nothing left to do writes nothing
    assert run_batch("detect", [pictures], dest, ray_address="none").processed == 0


def test_an_output_folder_holds_one_job(tmp_path, pictures):
    dest = tmp_path / "out"
    run_batch("detect", [pictures / "p1.png"], dest, ray_address="none", options={"key": None})
    assert json.loads((dest / JOB_FILE).read_text()) == {"task": "detect", "options": {}}
    with pytest.raises(BatchError, match="holds the results of another job"):
        run_batch("detect", [pictures], dest, ray_address="none", options={"model": "spectral"})
    with pytest.raises(BatchError, match="holds the results of another job"):
        run_batch("embed", [pictures], dest, ray_address="none")
    with open(dest / LOCK_FILE) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(BatchError, match="another batch job is writing there now"):
            run_batch("detect", [pictures], dest, ray_address="none")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BatchError, match="must be a folder"):
        run_batch("detect", [pictures], tmp_path / "file", ray_address="none")


def test_the_job_record_keeps_a_fingerprint_of_the_key_not_the_key(tmp_path, pictures):
    dest = tmp_path / "out"
    run_batch("watermark", [pictures / "p1.png"], dest, ray_address="none", options={"key": "s3"})
    from aigcguard.provenance.credentials.ledger import key_fingerprint

    record = (dest / JOB_FILE).read_text()
    assert '"s3"' not in record and f"key_id:{key_fingerprint('s3')}" in record


def test_a_job_that_cannot_start_says_why_and_leaves_no_record(tmp_path, pictures):
    not_a_store = tmp_path / "empty"
    not_a_store.mkdir()
    with pytest.raises(BatchError, match="not a similarity store"):
        run_batch("check", [pictures], tmp_path / "a", options={"index": str(not_a_store)})
    # passes the driver's checks, fails in the worker: reported, and no job record is kept,
    # so the corrected command may use the same folder
    missing = f"milvus-lite://{tmp_path}/none.db/refs"
    with pytest.raises(BatchError, match=r"the check job failed: .*no aigc-guard store"):
        run_batch(
            "check", [pictures], tmp_path / "b", options={"index": missing}, ray_address="none"
        )
    assert not (tmp_path / "b" / JOB_FILE).exists()
    run_batch("check", [pictures / "p1.png"], tmp_path / "b", ray_address="none")


# ----------------------------------------------------------------------------------- CLI


def test_cli_summarises_reports_failures_and_exits_1(tmp_path, pictures):
    result = CliRunner().invoke(
        main,
        ["batch", "detect", str(pictures), "--out", str(tmp_path / "o"), "--ray-address", "none"],
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["processed"], summary["failed"]) == (10, 1)
    assert "broken.png" in result.stderr and "1 of 10 inputs failed" in result.stderr
    again = CliRunner().invoke(
        main,
        ["batch", "detect", str(pictures), "--out", str(tmp_path / "o"), "--ray-address", "none"],
    )
    assert again.exit_code == 0 and json.loads(again.stdout)["skipped"] == 10


def test_no_cluster_at_auto_is_a_clear_error(tmp_path, pictures, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    import ray

    if ray.is_initialized() or Path("/tmp/ray/ray_current_cluster").exists():
        pytest.skip("a Ray cluster is running here: `auto` would find it")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(BatchError, match="no Ray cluster reachable at 'auto'"):
        run_batch("detect", [pictures / "p1.png"], tmp_path / "out", ray_address="auto")
    assert not (tmp_path / "out" / JOB_FILE).exists()


def test_ray_that_cannot_start_is_a_clear_error(tmp_path, pictures, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    import ray

    if ray.is_initialized():
        pytest.skip("Ray is already running in this process")
    # a setting Ray refuses while it starts its head node: stands for any start-up failure
    monkeypatch.setenv("RAY_gcs_storage", "rocksdb")
    monkeypatch.delenv("RAY_gcs_storage_path", raising=False)
    with pytest.raises(BatchError, match=r"Ray could not start at 'local'.*--ray-address none"):
        run_batch("detect", [pictures / "p1.png"], tmp_path / "out", ray_address="local")
    assert not ray.is_initialized()
    assert not (tmp_path / "out" / JOB_FILE).exists()


def test_cli_refuses_unknown_options_before_starting(tmp_path, pictures):
    for args, message in [
        (["detect", "--model", "nope.pt"], "neither a shipped name nor a file"),
        (["embed", "--embedder", "nope"], "unknown descriptor"),
        (["check", "--ledger-missing"], "No such option"),
    ]:
        cmd, *rest = args
        result = CliRunner().invoke(
            main, ["batch", cmd, str(pictures), "--out", str(tmp_path / cmd), *rest]
        )
        assert result.exit_code != 0 and message in result.output + result.stderr
        assert not (tmp_path / cmd / JOB_FILE).exists()


# ------------------------------------------------------------------------- Ray local mode


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    # as run_batch does for local mode: Ray's 30 s wait for its control server can run out on
    # a busy machine (seen here with a benchmark running beside the tests)
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    try:
        # a small object store: the blocks here are a few paths, and Ray's default (30% of the
        # memory left) can leave too little for tasks in a memory-limited CI container
        ray.init(
            num_cpus=2,
            object_store_memory=128 * 2**20,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="warning",
        )
    except Exception as exc:  # Ray's start-up raises many kinds; the reason is what matters
        ray.shutdown()
        pytest.skip(f"Ray could not start a local cluster on this machine: {exc!r}")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_rows_equal_in_process_rows(tmp_path, pictures, local_ray):
    here = run_batch("detect", [pictures], tmp_path / "here", ray_address="none", batch_size=3)
    on_ray = run_batch("detect", [pictures], tmp_path / "ray", ray_address="local", batch_size=3)
    assert on_ray.engine == "ray (local)" and on_ray.workers == 2
    assert on_ray.failures == here.failures
    assert rows(tmp_path / "ray") == rows(tmp_path / "here")
    # each actor wrote its own part files; a re-run on Ray skips them all
    again = run_batch("detect", [pictures], tmp_path / "ray", ray_address="local")
    assert (again.skipped, again.processed) == (10, 0)


@pytest.mark.slow
def test_ray_reports_a_worker_that_cannot_start(tmp_path, pictures, local_ray):
    missing = f"milvus-lite://{tmp_path}/none.db/refs"
    with pytest.raises(
        BatchError, match=r"the check job failed: milvus-lite://.*no aigc-guard store"
    ):
        run_batch("check", [pictures], tmp_path / "out", options={"index": missing})
    assert not (tmp_path / "out" / JOB_FILE).exists()


@pytest.mark.slow
def test_ray_resumes_a_partial_output_and_runs_check(tmp_path, pictures, local_ray):
    files = sorted(str(p) for p in pictures.iterdir())
    dest = tmp_path / "out"
    run_batch("check", files[1:6], dest, ray_address="none")
    report = run_batch("check", [pictures], dest, ray_address="local", batch_size=2)
    assert (report.skipped, report.processed) == (5, 5)
    got = rows(dest)
    assert len(got) == 10 and got[str(pictures / "broken.png")]["error"]
    assert all(r["verdict"] for p, r in got.items() if not p.endswith("broken.png"))


def test_actors_take_gpus_when_the_cluster_has_them():
    from aigcguard.service.batch import CheckTask, DetectTask, EmbedTask, actor_placement

    cpus = {"CPU": 16.0}
    gpus = {"CPU": 16.0, "GPU": 2.0}
    # one actor per CPU, one CPU each, no more actors than batches of work
    assert actor_placement(DetectTask, cpus, device="auto", batches=100) == (16, {"num_cpus": 1})
    assert actor_placement(DetectTask, cpus, device="auto", batches=3) == (3, {"num_cpus": 1})
    assert actor_placement(DetectTask, cpus, device="auto", batches=100, workers=4)[0] == 4
    assert actor_placement(DetectTask, cpus, device="auto", batches=100, workers=64)[0] == 16
    # GPUs: one actor per GPU, or two on each with half a GPU
    assert actor_placement(DetectTask, gpus, device="auto", batches=100) == (
        2,
        {"num_gpus": 1.0, "num_cpus": 1},
    )
    assert actor_placement(CheckTask, gpus, device="auto", batches=100, gpus_per_worker=0.5) == (
        4,
        {"num_gpus": 0.5, "num_cpus": 1},
    )
    # --device cpu keeps actors off the GPUs; work without torch models never asks for one
    assert actor_placement(DetectTask, gpus, device="cpu", batches=100) == (16, {"num_cpus": 1})
    vlad, clip = {"embedder": "vlad"}, {"embedder": "clip:ViT-B-32/openai"}
    assert actor_placement(EmbedTask, gpus, device="auto", batches=100, options=vlad)[0] == 16
    assert actor_placement(EmbedTask, gpus, device="auto", batches=100, options=clip)[0] == 2


# --------------------------------------------------- describe, formerly embed (one release)


def test_cli_describe_writes_descriptors(tmp_path, pictures):
    out = tmp_path / "d"
    args = [str(pictures), "--out", str(out), "--ray-address", "none", "--descriptor", "pdq"]
    result = CliRunner().invoke(main, ["batch", "describe", *args])
    assert result.exit_code == 1  # broken.png
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["task"], summary["processed"], summary["failed"]) == ("describe", 10, 1)
    got = rows(out)
    assert got[str(pictures / "p3.png")]["embedder"] == "pdq"  # the column keeps its name
    assert len(got[str(pictures / "p3.png")]["hash"]) == 64
    assert json.loads((out / JOB_FILE).read_text()) == {
        "task": "describe",
        "options": {"descriptor": "pdq"},
    }
    assert "deprecated" not in result.stderr


def test_cli_embed_still_works_and_says_it_is_deprecated(tmp_path, pictures):
    args = [str(pictures), "--ray-address", "none"]
    old = CliRunner().invoke(
        main, ["batch", "embed", *args, "--out", str(tmp_path / "old"), "--embedder", "pdq"]
    )
    new = CliRunner().invoke(
        main, ["batch", "describe", *args, "--out", str(tmp_path / "new"), "--descriptor", "pdq"]
    )
    assert "aigc batch embed is deprecated; use aigc batch describe" in old.stderr
    assert old.exit_code == new.exit_code == 1  # broken.png, in both
    assert rows(tmp_path / "old") == rows(tmp_path / "new")
    assert (tmp_path / "old" / JOB_FILE).read_text() == (tmp_path / "new" / JOB_FILE).read_text()
    assert "embed" not in CliRunner().invoke(main, ["batch", "--help"]).stdout  # hidden


def test_run_batch_embed_warns_and_describes(tmp_path, pictures):
    with pytest.warns(DeprecationWarning, match="'embed' is deprecated; use 'describe'"):
        report = run_batch(
            "embed",
            [pictures / "p1.png"],
            tmp_path / "o",
            options={"embedder": "pdq"},
            ray_address="none",
        )
    assert report.task == "describe" and report.processed == 1
    assert json.loads((tmp_path / "o" / JOB_FILE).read_text())["options"] == {"descriptor": "pdq"}


@pytest.mark.parametrize(("old_options", "descriptor"), [({"embedder": "pdq"}, "pdq"), ({}, None)])
def test_a_folder_written_by_batch_embed_resumes_under_describe(
    tmp_path, pictures, old_options, descriptor
):
    dest = tmp_path / "out"
    run_batch(
        "describe",
        [pictures / "p1.png"],
        dest,
        options={"descriptor": descriptor},
        ray_address="none",
    )
    # the job record as the last release wrote it: task `embed`, option `embedder`, and no
    # option at all for the default descriptor
    (dest / JOB_FILE).write_text(json.dumps({"task": "embed", "options": old_options}))
    again = run_batch(
        "describe",
        [pictures / "p1.png", pictures / "p3.png"],
        dest,
        options={"descriptor": descriptor},
        ray_address="none",
    )
    assert (again.skipped, again.processed) == (1, 1)
    with pytest.raises(BatchError, match="holds the results of another job"):
        run_batch("describe", [pictures], dest, options={"descriptor": "clip"}, ray_address="none")


def test_describe_reads_the_descriptor_under_either_key():
    from aigcguard.service.batch import DescribeTask, EmbedTask, actor_placement

    gpus = {"CPU": 16.0, "GPU": 2.0}
    clip = {"descriptor": "clip:ViT-B-32/openai"}
    assert EmbedTask is DescribeTask
    assert actor_placement(DescribeTask, gpus, device="auto", batches=100, options=clip)[0] == 2
    options = {"embedder": "pdq"}
    DescribeTask.validate(options)
    assert options == {"descriptor": "pdq"}
    with pytest.raises(BatchError, match="unknown descriptor 'nope'"):
        DescribeTask.validate({"descriptor": "nope"})
