"""Folder walking: every entry not processed is reported (its own line, a failed input), link
loops end, and every format the loader decodes is picked up from a folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image, features

from aigcguard.cli import main
from aigcguard.imageio import (
    IMAGE_EXTENSIONS,
    READ_FORMATS,
    image_extensions,
    iter_image_paths,
    load_image,
)
from aigcguard.service.batch import list_sources, run_batch

#: the entries of the hostile folder that are skipped (failed inputs), and why
SKIPPED = {
    "notes.txt": "not a picture (.txt)",
    "README": "not a picture (no extension)",
    "drawing.svg": "unsupported format (.svg)",
    "x.jpg": "a directory named like a picture",
    "loop": "symbolic link loop",
    "sub/up": "symbolic link loop",
    "ping.png": "symbolic link loop",  # ping.png -> pong.png -> ping.png
    "pong.png": "symbolic link loop",
    "gone.png": "dangling symbolic link",
    "pipe.jpg": "not a regular file (a named pipe)",
}


def _can_write(fmt: str) -> bool:
    Image.init()
    return fmt in Image.SAVE


@pytest.fixture
def hostile(tmp_path) -> tuple[Path, list[str]]:
    """A folder with good pictures (PNG, JPEG, and AVIF, ICO, MPO where Pillow writes them
    here) and every kind of entry a walk must report; returns it and the good names."""
    root = tmp_path / "hostile"
    (root / "sub").mkdir(parents=True)
    (root / "x.jpg").mkdir()
    good = ["a.png", "sub/b.jpg"]
    Image.new("RGB", (96, 80), (200, 30, 30)).save(root / "a.png")
    Image.new("RGB", (96, 80), (30, 200, 30)).save(root / "sub" / "b.jpg")
    if features.check("avif") and _can_write("AVIF"):
        Image.new("RGB", (96, 80), (30, 30, 200)).save(root / "c.avif")
        good.append("c.avif")
    if _can_write("ICO"):
        Image.new("RGB", (64, 64), (90, 90, 90)).save(root / "d.ico", sizes=[(64, 64)])
        good.append("d.ico")
    if _can_write("MPO"):
        frames = [Image.new("RGB", (96, 80), (i * 50, 0, 0)) for i in range(2)]
        frames[0].save(root / "e.mpo", save_all=True, append_images=frames[1:])
        good.append("e.mpo")
    (root / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "notes.txt").write_text("not a picture")
    (root / "README").write_text("no extension")
    os.symlink(".", root / "loop")
    os.symlink("..", root / "sub" / "up")
    os.symlink("pong.png", root / "ping.png")
    os.symlink("ping.png", root / "pong.png")
    os.symlink("nowhere.png", root / "gone.png")
    os.mkfifo(root / "pipe.jpg")
    return root, sorted(good, key=lambda name: root / name)


def _walk(inputs, **kw) -> tuple[list[Path], dict[Path, str]]:
    skipped: dict[Path, str] = {}
    found = list(iter_image_paths(inputs, on_skip=skipped.__setitem__, **kw))
    return found, skipped


# ----------------------------------------------------------------------------- the walk


def test_every_entry_is_yielded_or_reported(hostile):
    root, good = hostile
    found, skipped = _walk([root])
    assert found == [root / name for name in good]
    assert skipped == {root / name: reason for name, reason in SKIPPED.items()}
    for path in found:
        load_image(path)  # each one decodes


def test_without_on_skip_the_walk_yields_the_same_pictures(hostile):
    root, good = hostile
    assert list(iter_image_paths(root)) == [root / name for name in good]


def test_a_folder_reached_twice_is_walked_once(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "p.png")
    os.symlink(photos, tmp_path / "again")  # a second way into a folder, not a loop
    os.symlink(tmp_path, photos / "top")  # a loop through the top
    found, skipped = _walk([tmp_path])
    assert len(found) == 1 and found[0].name == "p.png"
    assert set(skipped.values()) <= {
        "symbolic link loop",
        "symbolic link to a folder already walked",
    }
    assert len(skipped) == 2


def test_not_recursive_reports_the_folders_it_does_not_walk(hostile):
    root, good = hostile
    found, skipped = _walk([root], recursive=False)
    assert found == [root / name for name in good if "/" not in name]
    assert skipped[root / "sub"] == "a folder (not walked: recursive=False)"
    assert skipped[root / "x.jpg"] == "a directory named like a picture"


def test_an_unreadable_folder_is_reported(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    real = os.scandir

    def scandir(path):
        if Path(path) == locked:  # as for a folder without read permission, even as root
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, skipped = _walk([tmp_path])
    assert found == [tmp_path / "p.png"]
    assert skipped == {locked: "unreadable: permission denied"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder without read permission")
def test_a_folder_without_read_permission_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        _, skipped = _walk([tmp_path])
    finally:
        locked.chmod(0o755)
    assert skipped == {locked: "unreadable: permission denied"}


def test_named_paths_are_yielded_as_given(hostile):
    root, _ = hostile
    named = [root / "notes.txt", root / "gone.png", root / "x.jpg" / "missing.png"]
    found, skipped = _walk(named)
    assert found == named and skipped == {}  # the loader says what is wrong with each


def test_extensions_are_those_of_the_formats_the_loader_decodes():
    Image.init()
    registered = Image.registered_extensions()
    assert {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif"} <= (
        IMAGE_EXTENSIONS
    )
    assert {".ppm", ".pgm", ".ico", ".mpo"} <= IMAGE_EXTENSIONS
    assert all(registered[ext] in READ_FORMATS for ext in IMAGE_EXTENSIONS)
    assert ".svg" not in IMAGE_EXTENSIONS and ".eps" not in IMAGE_EXTENSIONS
    assert (".avif" in IMAGE_EXTENSIONS) == ("AVIF" in Image.OPEN)
    assert (".heic" in IMAGE_EXTENSIONS) == ("HEIF" in Image.OPEN)
    assert image_extensions() == IMAGE_EXTENSIONS  # no plug-in registered since import


def test_a_walk_can_take_other_extensions(hostile):
    root, _ = hostile
    found, skipped = _walk([root], extensions={".txt"})
    assert found == [root / "notes.txt"] and skipped[root / "a.png"] == "unsupported format (.png)"


# ------------------------------------------------------------------------ commands, jobs


def _lines(output: str) -> dict[str, dict]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    by_path = {r["path"]: r for r in records}
    assert len(by_path) == len(records), "an entry got two lines"
    return by_path


@pytest.mark.parametrize(
    "command",
    [
        ["watermark", "detect"],
        ["provenance", "read"],
        ["provenance", "verify"],
        ["detect"],
    ],
    ids=lambda c: " ".join(c),
)
def test_commands_give_every_entry_a_line_and_exit_1(hostile, command):
    if command[-1] == "verify":
        root, good = hostile  # C2PA reads JPEG, PNG, WebP, AVIF...: not ICO or MPO
        hostile = root, [n for n in good if not n.endswith((".ico", ".mpo"))]
        for name in set(good) - set(hostile[1]):
            (root / name).unlink()
    root, good = hostile
    result = CliRunner().invoke(main, [*command, str(root)])
    assert result.exit_code == 1, result.output
    by_path = _lines(result.stdout)
    assert set(by_path) == {str(root / n) for n in good} | {str(root / n) for n in SKIPPED}
    for name, reason in SKIPPED.items():
        assert by_path[str(root / name)] == {"path": str(root / name), "error": reason}
    for name in good:
        record = by_path[str(root / name)]
        assert set(record) != {"path", "error"} and not record.get("error"), record
    assert f"{len(SKIPPED)} of {len(SKIPPED) + len(good)} inputs failed" in result.stderr


def test_check_gives_every_entry_a_line(hostile):
    root, good = hostile
    result = CliRunner().invoke(main, ["check", str(root), "--detector", "default"])
    assert result.exit_code == 1, result.output
    by_path = _lines(result.stdout)
    assert {p for p, r in by_path.items() if "summary" in r} == {str(root / n) for n in good}
    assert {p: r["error"] for p, r in by_path.items() if "error" in r} == {
        str(root / n): reason for n, reason in SKIPPED.items()
    }


def test_watermark_embed_marks_the_good_ones_and_reports_the_rest(hostile, tmp_path):
    root, good = hostile
    out = tmp_path / "marked"
    result = CliRunner().invoke(main, ["watermark", "embed", str(root), "--out", str(out)])
    assert result.exit_code == 1, result.output
    by_path = _lines(result.stdout)
    assert all("output" in by_path[str(root / n)] for n in good)
    assert all(by_path[str(root / n)]["error"] == r for n, r in SKIPPED.items())


def test_list_sources_reports_skipped_entries(hostile):
    root, good = hostile
    skipped: dict[str, str] = {}
    assert list_sources([root], on_skip=skipped.__setitem__) == [str(root / n) for n in good]
    assert skipped == {str(root / n): reason for n, reason in SKIPPED.items()}


def test_a_folder_of_listings_reads_them_and_reports_the_rest(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    listings = tmp_path / "listings"
    listings.mkdir()
    (listings / "a.txt").write_text(str(tmp_path / "p.png"))
    (listings / "_SUCCESS").write_text("")
    skipped: dict[str, str] = {}
    assert list_sources([listings], on_skip=skipped.__setitem__) == [str(tmp_path / "p.png")]
    assert skipped == {str(listings / "_SUCCESS"): "not a picture (no extension)"}


def test_a_batch_job_writes_a_row_for_every_entry(hostile, tmp_path):
    root, good = hostile
    dest = tmp_path / "out"
    report = run_batch("detect", [root], dest, ray_address="none", batch_size=2)
    expected = {str(root / n): reason for n, reason in SKIPPED.items()}
    assert report.failures == expected
    assert report.listed == report.processed == len(good) + len(SKIPPED)
    assert report.internal_errors == 0
    rows = {r["path"]: r for r in pq.read_table(dest).to_pylist()}
    assert {p: r["error"] for p, r in rows.items() if r["error"]} == expected
    # each readable picture answered (scored, or "uncertain" with the reason when small)
    assert all(rows[str(root / n)]["band"] is not None for n in good)
    result = CliRunner().invoke(
        main, ["batch", "detect", str(root), "--out", str(dest), "--ray-address", "none"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped"] == len(rows)


def test_aigc_batch_exits_1_for_skipped_entries(hostile, tmp_path):
    root, _ = hostile
    args = ["batch", "detect", str(root), "--out", str(tmp_path / "o"), "--ray-address", "none"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "symbolic link loop" in result.stderr and "internal error" not in result.stderr


def test_captions_beside_the_pictures_are_failed_inputs_and_alone_find_nothing(tmp_path):
    Image.new("RGB", (96, 80)).save(tmp_path / "0001.jpg")
    (tmp_path / "0001.txt").write_text("a caption")
    result = CliRunner().invoke(main, ["provenance", "read", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert _lines(result.stdout)[str(tmp_path / "0001.txt")]["error"] == "not a picture (.txt)"
    assert "ai_labelled" in _lines(result.stdout)[str(tmp_path / "0001.jpg")]
    only_notes = tmp_path / "notes"
    only_notes.mkdir()
    (only_notes / "a.md").write_text("nothing else")
    result = CliRunner().invoke(main, ["provenance", "read", str(only_notes)])
    assert result.exit_code == 1 and "1 of 1 inputs failed" in result.stderr


def test_detect_takes_a_folders_videos_and_other_commands_report_them(tmp_path):
    Image.new("RGB", (96, 80)).save(tmp_path / "a.png")
    (tmp_path / "clip.mp4").write_bytes(b"not really a video")
    result = CliRunner().invoke(main, ["detect", str(tmp_path)])
    lines = _lines(result.stdout)
    assert result.exit_code == 1 and "score" in lines[str(tmp_path / "a.png")]
    assert "unsupported format" not in lines[str(tmp_path / "clip.mp4")]["error"]  # decoded
    result = CliRunner().invoke(main, ["provenance", "read", str(tmp_path)])
    clip = _lines(result.stdout)[str(tmp_path / "clip.mp4")]
    assert result.exit_code == 1 and clip["error"] == "unsupported format (.mp4)"


def test_detector_training_folders_report_what_they_skip(tmp_path):
    from aigcguard.detectors.data import load_folder

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "loop").symlink_to(".")
    images, names, errors = load_folder(tmp_path)
    assert names == ["a.png"] and len(images) == 1  # relative to the folder given
    assert sorted(errors) == [
        f"{tmp_path / 'loop'}: symbolic link loop",
        f"{tmp_path / 'notes.txt'}: not a picture (.txt)",
    ]
