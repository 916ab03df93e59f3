"""The robustness bench's held-out set (``--wild``): real and generated pictures alternately,
one source or generator after another, and a clear error when the folder is missing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import bench_module

rob = bench_module("watermark_robustness")


def _wild(root, rows):
    lines = ["file,label,generator,camera,source"]
    for i, (label, group) in enumerate(rows):
        name = f"{'real' if label == 'real' else 'ai'}/{group}/{i:02d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 40, 3), i, np.uint8)).save(root / name)
        gen, src = ("", group) if label == "real" else (group, "somewhere")
        lines.append(f"{name},{label},{gen},,{src}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")


def test_wild_pictures_alternate_and_spread_over_groups(tmp_path):
    _wild(
        tmp_path,
        [("real", "cam-a"), ("real", "cam-a"), ("real", "cam-b"), ("ai", "flux"), ("ai", "sdxl")],
    )
    picked = rob.load_wild(4, tmp_path)
    names = [n for n, _ in picked]
    assert names == [
        "wild/real/cam-a/00.png",
        "wild/ai/flux/03.png",
        "wild/real/cam-b/02.png",
        "wild/ai/sdxl/04.png",
    ]
    assert all(a.shape == (40, 40, 3) and a.dtype == np.uint8 for _, a in picked)
    # asking for more than there is gives what there is
    assert len(rob.load_wild(10, tmp_path)) == 5


def test_missing_wild_folder_says_where(tmp_path):
    with pytest.raises(SystemExit, match=r"manifest\.csv not found"):
        rob.load_wild(4, tmp_path / "nowhere")
