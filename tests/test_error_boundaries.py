"""One error boundary per picture: an unexpected exception on one picture becomes that
picture's error (the exception named), the batch goes on, and the exit code says "internal
error" (3) rather than "some inputs unusable" (1). A crash outside any picture is one line
naming the exception, exit 3, its traceback only with AIGC_DEBUG=1."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.imageio import ImageLoadError
from aigcguard.service.batch import (
    TASKS,
    BatchTask,
    each,
    error_text,
    is_internal_error,
    run_batch,
)
from aigcguard.service.check import Checker

#: the crash the known-mark reader had on pictures under 8 px (issue 18)
BUG = "cannot reshape tensor of 0 elements"
#: the width of the picture the patched functions fail on
BAD_WIDTH = 72


@pytest.fixture
def folder(tmp_path, photos):
    """Three photo crops; the one BAD_WIDTH wide is the one the patched code fails on."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, width in (("astronaut", 96), ("coffee", BAD_WIDTH), ("chelsea", 112)):
        arr = np.ascontiguousarray(photos[name][:80, :width])
        Image.fromarray(arr).save(folder / f"{name}.png")
    return folder


def _fails_on_bad(real):
    """``real``, raising RuntimeError(BUG) when a picture of the batch is BAD_WIDTH wide."""

    def patched(images, *args, **kwargs):
        if any(img.shape[-1] == BAD_WIDTH for img in images):
            raise RuntimeError(BUG)
        return real(images, *args, **kwargs)

    return patched


def _lines(output: str) -> dict[str, dict]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {r["path"]: r for r in records}


def _bad(folder) -> str:
    return str(folder / "coffee.png")


# ---------------------------------------------------------------------------- the helpers


def test_error_text_keeps_bad_input_messages_and_names_the_rest():
    assert error_text(ValueError("x.png: too small")) == "x.png: too small"
    assert error_text(OSError("disk full")) == "disk full"
    assert error_text(ImageLoadError("x.png", "truncated")) == "x.png: truncated"
    text = error_text(RuntimeError(BUG))
    assert text == f"internal error: RuntimeError: {BUG}" and is_internal_error(text)
    assert error_text(KeyError("k")) == "internal error: KeyError: 'k'"
    assert not is_internal_error("x.png: too small") and not is_internal_error(None)


def test_each_keeps_what_each_item_raised():
    def func(idx):
        if 1 in idx:
            raise RuntimeError("item 1")
        if 2 in idx:
            raise ValueError("item 2")
        return [i * 10 for i in idx]

    for whole in (True, False):
        out = each(func, 4, whole=whole)
        assert out[0] == 0 and out[3] == 30
        assert isinstance(out[1], RuntimeError) and isinstance(out[2], ValueError)


# ------------------------------------------------------------------------------ Checker


def test_a_signal_that_raises_is_named_and_the_others_run(folder, monkeypatch):
    import aigcguard.watermark as wm
    from aigcguard.imageio import load_image

    monkeypatch.setattr(wm, "detect_known", _fails_on_bad(wm.detect_known))
    with Checker(detector="default", device="cpu") as checker:
        bad = checker.check(load_image(_bad(folder)).pixels, _bad(folder), on_disk=True)
        good = checker.check(
            load_image(folder / "astronaut.png").pixels, str(folder / "astronaut.png"), on_disk=True
        )
    assert bad.errors == {"known_watermark": f"internal error: RuntimeError: {BUG}"}
    assert bad.watermark is not None and bad.detector is not None and bad.labels is not None
    assert good.errors == {}


def test_a_signal_raising_valueerror_keeps_its_message(folder, monkeypatch):
    import aigcguard.provenance.credentials.labels as labels

    def broken(path):
        raise ValueError(f"{path}: unreadable XMP")

    monkeypatch.setattr(labels, "read_labels", broken)
    with Checker(detector="default", device="cpu") as checker:
        [result] = checker.check_files([folder / "astronaut.png"])
    assert result.errors == {"labels": f"{folder / 'astronaut.png'}: unreadable XMP"}


def test_check_files_goes_on_past_a_picture_that_raises(folder, monkeypatch):
    with Checker(detector="default", device="cpu") as checker:
        real = checker.check

        def check(pixels, path, **kw):
            if pixels.shape[-1] == BAD_WIDTH:
                raise RuntimeError(BUG)
            return real(pixels, path, **kw)

        monkeypatch.setattr(checker, "check", check)
        paths = sorted(folder.iterdir())
        results = list(checker.check_files(paths))
    assert [isinstance(r, str) for r in results] == [False, False, True]  # coffee is last
    assert results[2] == f"internal error: RuntimeError: {BUG}"


# ---------------------------------------------------------------------------------- CLI


def test_aigc_check_goes_on_names_the_signal_and_exits_3(folder, monkeypatch):
    import aigcguard.watermark as wm

    monkeypatch.setattr(wm, "detect_known", _fails_on_bad(wm.detect_known))
    result = CliRunner().invoke(main, ["check", str(folder), "--detector", "default"])
    assert result.exit_code == 3, result.output
    lines = _lines(result.stdout)
    assert len(lines) == 3 and all("summary" in r for r in lines.values())
    assert lines[_bad(folder)]["errors"] == {
        "known_watermark": f"internal error: RuntimeError: {BUG}"
    }
    assert lines[_bad(folder)]["detector"] is not None
    assert "1 internal error" in result.stderr and "signal known_watermark" in result.stderr


def test_watermark_detect_reports_the_picture_that_raises_and_exits_3(folder, monkeypatch):
    import aigcguard.cli.watermark as cli_wm

    monkeypatch.setattr(cli_wm, "detect", _fails_on_bad(cli_wm.detect))
    result = CliRunner().invoke(main, ["watermark", "detect", str(folder)])
    assert result.exit_code == 3, result.output
    lines = _lines(result.stdout)
    assert lines[_bad(folder)] == {
        "path": _bad(folder),
        "error": f"internal error: RuntimeError: {BUG}",
    }
    assert all("detected" in r for p, r in lines.items() if p != _bad(folder))
    assert len(lines) == 3


def test_watermark_embed_reports_the_picture_that_raises_and_exits_3(folder, tmp_path, monkeypatch):
    import aigcguard.cli.watermark as cli_wm

    monkeypatch.setattr(cli_wm, "embed", _fails_on_bad(cli_wm.embed))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["watermark", "embed", str(folder), "--out", str(out)])
    assert result.exit_code == 3, result.output
    lines = _lines(result.stdout)
    assert lines[_bad(folder)]["error"] == f"internal error: RuntimeError: {BUG}"
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "chelsea.png"]


def test_detect_reports_the_picture_that_raises_and_exits_3(folder, monkeypatch):
    from aigcguard.detectors import api

    real = api.score

    def score(detector, images, names):
        return _fails_on_bad(lambda i, n: real(detector, i, n))(images, names)

    monkeypatch.setattr(api, "score", score)
    result = CliRunner().invoke(main, ["detect", str(folder)])
    assert result.exit_code == 3, result.output
    lines = _lines(result.stdout)
    assert lines[_bad(folder)]["error"] == f"internal error: RuntimeError: {BUG}"
    assert sum("score" in r for r in lines.values()) == 2


def test_provenance_read_reports_the_file_that_raises_and_exits_3(folder, monkeypatch):
    import aigcguard.provenance.credentials.labels as labels

    real = labels.read_labels

    def read(path):
        if str(path) == _bad(folder):
            raise RuntimeError(BUG)
        return real(path)

    monkeypatch.setattr(labels, "read_labels", read)
    result = CliRunner().invoke(main, ["provenance", "read", str(folder)])
    assert result.exit_code == 3, result.output
    lines = _lines(result.stdout)
    assert lines[_bad(folder)]["error"] == f"internal error: RuntimeError: {BUG}"
    assert sum("ai_labelled" in r for r in lines.values()) == 2


def test_bad_inputs_alone_still_exit_1(folder):
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    result = CliRunner().invoke(main, ["provenance", "read", str(folder)])
    assert result.exit_code == 1 and "internal error" not in result.output


def test_a_crash_outside_any_picture_is_one_line_and_exit_3(folder, monkeypatch):
    import aigcguard.imageio as imageio

    def walk(*args, **kwargs):
        raise RuntimeError("the walk broke")

    # cli.common imports the walk where it is used (a fast `aigc --version`)
    monkeypatch.setattr(imageio, "iter_image_paths", walk)
    monkeypatch.delenv("AIGC_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["watermark", "detect", str(folder)])
    assert result.exit_code == 3
    assert result.stderr.startswith("error: internal error: RuntimeError: the walk broke")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    monkeypatch.setenv("AIGC_DEBUG", "1")
    result = CliRunner().invoke(main, ["watermark", "detect", str(folder)])
    assert result.exit_code == 3 and "Traceback" in result.stderr
    assert "error: internal error: RuntimeError: the walk broke" in result.stderr


def test_an_environment_error_outside_any_picture_is_one_line_and_exit_1(folder, monkeypatch):
    import aigcguard.imageio as imageio

    def walk(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(imageio, "iter_image_paths", walk)
    monkeypatch.delenv("AIGC_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["watermark", "detect", str(folder)])
    assert result.exit_code == 1
    assert result.stderr == f"error: [Errno 13] Permission denied: '{folder}'\n"


def test_usage_errors_still_exit_2_and_help_lists_the_codes():
    assert CliRunner().invoke(main, ["watermark", "detect"]).exit_code == 2
    assert CliRunner().invoke(main, ["detect", "--batch-size", "0", "x.png"]).exit_code == 2
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "Exit codes:" in help_text and "3  internal error" in help_text


# ----------------------------------------------------------------------------- batch jobs


def _rows(dest) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(dest).to_pylist()}


def test_a_batch_job_goes_on_past_a_picture_that_raises(folder, tmp_path, monkeypatch):
    from aigcguard.detectors import api

    real = api.score

    def score(detector, images, names):
        return _fails_on_bad(lambda i, n: real(detector, i, n))(images, names)

    monkeypatch.setattr(api, "score", score)
    dest = tmp_path / "out"
    report = run_batch("detect", [folder], dest, ray_address="none")
    assert report.failures == {_bad(folder): f"internal error: RuntimeError: {BUG}"}
    assert report.internal_errors == 1
    rows = _rows(dest)
    # the two others were answered (80 px high: under the default's 128 px, so "uncertain")
    assert sum(r["band"] is not None for r in rows.values()) == 2
    result = CliRunner().invoke(
        main,
        ["batch", "detect", str(folder), "--out", str(tmp_path / "o"), "--ray-address", "none"],
    )
    assert result.exit_code == 3, result.output
    assert "internal error: RuntimeError" in result.stderr


def test_a_check_job_names_the_signal_that_raised_and_exits_3(folder, tmp_path, monkeypatch):
    import aigcguard.watermark as wm

    monkeypatch.setattr(wm, "detect_known", _fails_on_bad(wm.detect_known))
    dest = tmp_path / "out"
    args = ["batch", "check", str(folder), "--out", str(dest), "--ray-address", "none"]
    result = CliRunner().invoke(main, [*args, "--detector", "default"])
    assert result.exit_code == 3, result.output
    rows = _rows(dest)
    bad = rows[_bad(folder)]
    assert bad["error"] == f"internal error: signal known_watermark: RuntimeError: {BUG}"
    assert bad["verdict"] is not None and bad["detector"] is not None  # the others still ran
    assert all(r["error"] is None for p, r in rows.items() if p != _bad(folder))


class _Fragile(BatchTask):
    """A plug-in task with no boundary of its own: its records raise for one picture."""

    def __init__(self, *, device="auto"):
        super().__init__(device=device)
        self.schema = pa.schema([("path", pa.string()), ("n", pa.int64()), ("error", pa.string())])

    def records(self, paths):
        if any(p.endswith("coffee.png") for p in paths):
            raise KeyError("coffee")
        return [{"path": p, "n": len(p)} for p in paths]


def test_a_task_without_its_own_boundary_costs_one_row(folder, tmp_path):
    TASKS.register("fragile")(_Fragile)
    try:
        report = run_batch("fragile", [folder], tmp_path / "out", ray_address="none")
    finally:
        TASKS.remove("fragile")
    assert report.failures == {_bad(folder): "internal error: KeyError: 'coffee'"}
    rows = _rows(tmp_path / "out")
    assert sum(r["n"] is not None for r in rows.values()) == 2


def test_batches_end_before_their_decoded_pixels_pass_the_limit(tmp_path, monkeypatch):
    """`--batch-size` large pictures never sit in memory together (issue 18: 32 photos of
    64 MP would pass 3 GB)."""
    from aigcguard.cli import common

    for i, side in enumerate([100, 100, 100, 300, 100]):
        Image.new("RGB", (side, side)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(common, "BATCH_PIXELS", 25_000)
    run = common.Run()
    sizes = [[im.size[0] for im in b] for b in common.image_batches((str(tmp_path),), 32, run)]
    # two 100 x 100 pictures fit under 25,000 pixels, a third would not; 300 x 300 is alone
    assert sizes == [[100, 100], [100], [300], [100]]
    assert [len(b) for b in common.image_batches((str(tmp_path),), 2, common.Run())] == [2, 1, 1, 1]


def test_a_search_that_raises_costs_one_picture_of_an_audit(tmp_path, monkeypatch):
    from aigcguard.provenance.similarity.index import SimilarityIndex

    rng = np.random.default_rng(0)
    for i in range(3):  # textured: a flat picture has no local features to describe
        noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((128, 128)).save(tmp_path / f"{i}.png")
    store = tmp_path / "refs"
    runner = CliRunner()
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    assert runner.invoke(main, ["index", "build", files[0], "--index", str(store)]).exit_code == 0
    real = SimilarityIndex.search

    def flaky(self, images, *, paths, **kw):
        if paths[0].endswith("1.png"):
            raise RuntimeError("boom")
        return real(self, images, paths=paths, **kw)

    monkeypatch.setattr(SimilarityIndex, "search", flaky)
    report = tmp_path / "audit.json"
    result = runner.invoke(main, ["audit", *files, "--index", str(store), "--report", str(report)])
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["images"] == 2 and summary["errors"] == 1
    assert "internal error: RuntimeError: boom" in result.output
