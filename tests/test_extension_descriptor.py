"""Adding a similarity descriptor: its own class and factory, plus one registration.

The worked example of docs/architecture.md: a toy descriptor (the colour layout of a 4 x 4 grid,
a unit vector) is registered under ``toy-grid``; an index built with it through the library and
the CLI (``aigc index build --descriptor toy-grid``) records the spec, finds a re-encoded copy,
and reopens with the same descriptor; then it is removed again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.provenance.similarity.descriptors import (
    DESCRIPTORS,
    Descriptor,
    DescriptorError,
    create_descriptor,
    register_descriptor,
)
from aigcguard.provenance.similarity.index import Reference, SimilarityIndex


class ToyGrid(Descriptor):
    """Mean colour of each cell of a 4 x 4 grid, centred, as a unit vector (48-d)."""

    spec = "toy-grid"
    dim = 48

    def describe(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        rows = []
        for im in images:
            cells = torch.nn.functional.adaptive_avg_pool2d(im.float()[None], 4)[0].flatten()
            v = (cells - cells.mean()).numpy()
            rows.append(v / (np.linalg.norm(v) or 1.0))
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 48), np.float32)


@pytest.fixture
def toy_grid():
    # a plug-in module writes this as `@register_descriptor("toy-grid")` above its factory
    @register_descriptor("toy-grid")
    def _factory(arg, device):
        if arg:
            raise DescriptorError(f"toy-grid takes no argument, got toy-grid:{arg}")
        return ToyGrid()

    try:
        yield
    finally:
        DESCRIPTORS.remove("toy-grid")


def _save(arr: np.ndarray, path, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


def test_a_registered_descriptor_builds_searches_and_reopens_an_index(toy_grid, photos, tmp_path):
    works = {n: _save(photos[n], tmp_path / f"{n}.png") for n in ("astronaut", "coffee", "rocket")}
    copy = _save(photos["coffee"], tmp_path / "upload.jpg", quality=70)
    assert create_descriptor("toy-grid").spec == "toy-grid"
    with SimilarityIndex.create(tmp_path / "refs", descriptor="toy-grid") as index:
        added = index.add([Reference(str(p), title=n) for n, p in works.items()])
        assert len(added.added) == 3 and not added.errors
        [result] = index.search_files([copy], verify=False)
        assert result.matches[0].title == "coffee"
    with SimilarityIndex.open(tmp_path / "refs") as again:  # the store recorded the spec
        assert again.descriptor.spec == "toy-grid" and again.store.info().embedder == "toy-grid"

    runner = CliRunner()
    build = ["index", "build", *map(str, works.values()), "--index", str(tmp_path / "cli")]
    assert runner.invoke(main, [*build, "--descriptor", "toy-grid"]).exit_code == 0
    info = runner.invoke(main, ["index", "info", "--index", str(tmp_path / "cli")]).output
    info = json.loads(info)
    assert info["embedder"] == "toy-grid" and info["count"] == 3
    assert "toy-grid" in runner.invoke(main, ["index", "build", "--help"]).output


def test_a_removed_descriptor_is_unknown_again(toy_grid):
    assert "toy-grid" in DESCRIPTORS.list()
    DESCRIPTORS.remove("toy-grid")
    with pytest.raises(DescriptorError, match="unknown descriptor 'toy-grid'"):
        create_descriptor("toy-grid")
    register_descriptor("toy-grid")(lambda arg, device: ToyGrid())  # for the fixture to remove
