"""The hostile corpus (bench/hostile_corpus.py, without its slow entries) through every
command that reads pictures: no traceback, a JSON line for every entry, the ordinary pictures
in the same batch processed, exit code 1 (some inputs unusable), never 3 (internal error).
Peak memory and the service are measured by bench/hostile_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aigcguard.cli import main
from tests.helpers import bench_module

#: the pictures kept from the corpus: every shape, one ordinary picture and the metadata
#: attacks (each picture costs seconds in `aigc check`; the broken files and non-pictures,
#: which cost nothing, are all kept)
KEPT_PICTURES = ("shape_", "good_0", "xmp_", "c2pa_", "exif_garbage", "animated.png")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile") / "corpus"
    entries = []
    for e in bench_module("hostile_corpus").build(folder, light=True):
        if e.picture and not e.name.startswith(KEPT_PICTURES):
            (folder / e.name).unlink()
        else:
            entries.append(e)
    return folder, entries


@pytest.fixture(scope="module")
def index(corpus, tmp_path_factory):
    folder, entries = corpus
    store = tmp_path_factory.mktemp("hostile-index") / "index"
    good = [str(folder / e.name) for e in entries if e.name.startswith("good_")]
    result = CliRunner().invoke(main, ["index", "build", *good, "--index", str(store)])
    assert result.exit_code == 0, result.output
    return store


def _entry(path: str, folder: Path) -> str | None:
    for base in (folder, folder.resolve()):
        try:
            return Path(path).relative_to(base).parts[0]
        except (ValueError, IndexError):
            continue
    return None


COMMANDS = {
    "check": lambda c, i: ["check", c],
    "similar": lambda c, i: ["similar", c, "--index", i],
    "watermark detect": lambda c, i: ["watermark", "detect", c],
    "detect": lambda c, i: ["detect", c],
    "provenance verify": lambda c, i: ["provenance", "verify", c],
    "provenance read": lambda c, i: ["provenance", "read", c],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_hostile_entry_gets_a_line_and_nothing_crashes(command, corpus, index):
    folder, entries = corpus
    result = CliRunner().invoke(main, COMMANDS[command](str(folder), str(index)))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1, result.output[-2000:]  # unusable inputs, no internal error
    seen: dict[str, list[dict]] = {}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        name = _entry(record["path"], folder)
        assert name is not None, record
        seen.setdefault(name, []).append(record)
    missing = sorted(e.name for e in entries if e.name not in seen)
    assert not missing, f"{command}: no line for {missing}"
    for e in entries:
        if e.name.startswith("good_"):
            assert not any(r.get("error") for r in seen[e.name]), seen[e.name]
