"""Adding a batch task: its own class, plus one registration.

A toy task that writes each picture's size (and a label given as an option) is registered
with one decorator, run through ``run_batch`` in this process and through ``aigc batch toy``
(the CLI's commands and options come from the registry), then removed from the registry.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.service.batch import TASKS, BatchError, BatchTask, TaskOption, run_batch


class ToyTask(BatchTask):
    """Each picture's width and height, and ``label``."""

    task_options = (TaskOption("label", "Text written into every row."),)

    def __init__(self, *, device="auto", label: str | None = None):
        super().__init__(device=device)
        self.label = label
        self.schema = pa.schema(
            [
                ("path", pa.string()),
                ("width", pa.int64()),
                ("height", pa.int64()),
                ("label", pa.string()),
                ("error", pa.string()),
            ]
        )

    def records(self, paths):
        def size(pixels, _):
            return [tuple(x.shape[-2:]) for x in pixels]

        def row(path, hw):
            return {"path": path, "width": hw[1], "height": hw[0], "label": self.label}

        return self._each_picture(paths, size, row)


@pytest.fixture
def toy():
    # a plug-in module writes this as `@TASKS.register("toy", help=...)` above its class
    TASKS.register("toy", help="Each picture's size.")(ToyTask)
    try:
        yield
    finally:
        TASKS.remove("toy")


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 60), (50, 30)]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    (folder / "broken.png").write_bytes(b"not a picture")
    return folder


def test_a_registered_task_runs_and_goes_away_when_removed(tmp_path, folder, toy):
    report = run_batch(
        "toy", [folder], tmp_path / "out", options={"label": "x"}, ray_address="none"
    )
    assert (report.task, report.processed, list(report.failures)) == (
        "toy",
        3,
        [str(folder / "broken.png")],
    )
    got = {r["path"]: r for r in pq.read_table(tmp_path / "out").to_pylist()}
    assert got[str(folder / "p0.png")] == {
        "path": str(folder / "p0.png"),
        "width": 60,
        "height": 40,
        "label": "x",
        "error": None,
    }
    assert got[str(folder / "p1.png")]["width"] == 30
    assert json.loads((tmp_path / "out" / "_job.json").read_text()) == {
        "task": "toy",
        "options": {"label": "x"},
    }

    # the CLI offers it, with its option, from the registry alone
    args = [str(folder / "p1.png"), "--out", str(tmp_path / "cli"), "--ray-address", "none"]
    result = CliRunner().invoke(main, ["batch", "toy", *args, "--label", "y"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["processed"] == 1
    assert pq.read_table(tmp_path / "cli").column("label").to_pylist() == ["y"]
    assert "toy" in CliRunner().invoke(main, ["batch", "--help"]).stdout

    TASKS.remove("toy")
    assert "toy" not in TASKS.list()
    with pytest.raises(BatchError, match="unknown batch task 'toy'"):
        run_batch("toy", [folder], tmp_path / "again", ray_address="none")
    assert CliRunner().invoke(main, ["batch", "toy", str(folder), "--out", "x"]).exit_code == 2
