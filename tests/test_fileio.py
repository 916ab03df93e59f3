"""Atomic writes: the target is replaced whole on success and untouched on failure."""

from __future__ import annotations

import pytest

from aigcguard.fileio import atomic_path, atomic_write


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "t.json"
    target.write_bytes(b"old")
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]  # no temporary left


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    target = tmp_path / "db"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists() and tmp != target
        tmp.write_bytes(b"built")
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_bytes() == b"built"
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError("disk full")
    assert target.read_bytes() == b"built" and len(list(tmp_path.iterdir())) == 1
