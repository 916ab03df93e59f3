"""The quality floor of every shipped detector on the shared data: a worse checkpoint cannot
ship silently. Each floor sits below what the checkpoint gave when it was made (the figure in
each test's comment, measured on the 2-core development machine), so chance variation of the
code around it does not fail it, and a model that lost its skill does.

Skipped, saying why, when ../shared/data is absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tests.helpers import SHARED

WILD = SHARED / "wild" / "manifest.csv"
CIFAKE = SHARED / "cifake" / "cifake_25k.zip"
AIGC_SMALL = SHARED / "aigc_small"

#: the fixed sample of the wild set: every 4th row of its manifest (375 pictures)
WILD_STEP = 4


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data (../shared/data) is not here")


@pytest.fixture(scope="module")
def wild_sample():
    _need(WILD)
    from aigcguard.detectors.grouped import load_manifest
    from aigcguard.imageio import load_image

    records = load_manifest(WILD).records[::WILD_STEP]
    return records, [load_image(r.path).pixels for r in records]


@pytest.mark.parametrize(
    "condition, auc_floor, flagged_ceiling",
    [
        # made: AUC 0.986 and 0.968, no real photo of the 180 flagged. The default trained on
        # every wild picture, so this guards against a worse checkpoint, it does not measure
        # how it generalises: that is the leave-one-family-out figure in data/README.md
        ("as stored", 0.96, 0.02),
        ("platform", 0.94, 0.02),
    ],
)
def test_default_detector_on_the_wild_sample(wild_sample, condition, auc_floor, flagged_ceiling):
    from aigcguard.detectors import api
    from aigcguard.perturb import CONDITIONS

    records, images = wild_sample
    det = api.load("default", device="cpu")
    assert det.kind == "spectral" and det.calibration.target_fpr == 0.01
    fn = CONDITIONS[condition]
    with torch.inference_mode():
        p = det.probabilities([fn(im) for im in images])
    labels = np.array([r.label for r in records])
    auc = roc_auc_score(labels, p)
    flagged = float((p[labels == 0] >= det.calibration.threshold).mean())
    assert auc >= auc_floor, auc
    assert flagged <= flagged_ceiling, flagged


def test_spectral_on_aigc_small():
    _need(AIGC_SMALL)
    from aigcguard.detectors import api
    from aigcguard.imageio import load_image

    det = api.load("spectral", device="cpu")
    real = sorted(p for p in (AIGC_SMALL / "real").iterdir() if p.is_file())
    fake = sorted(p for p in (AIGC_SMALL / "ai").iterdir() if p.is_file())
    with torch.inference_mode():
        scores = det.raw_scores([load_image(p).pixels for p in real + fake])
    auc = roc_auc_score([0] * len(real) + [1] * len(fake), scores)
    # made: 0.988 (its own 100 training pictures, as stored: a regression guard, not a measure
    # of how it generalises; docs/detectors.md has that)
    assert auc >= 0.95, auc


def test_npr_cifake_on_the_cifake_test_split():
    _need(CIFAKE)
    import io
    import zipfile

    from PIL import Image

    from aigcguard.detectors import api
    from aigcguard.detectors.data import split_names

    with zipfile.ZipFile(CIFAKE) as zf:
        names = [n for n in zf.namelist() if n.split("/")[0] in ("REAL", "FAKE") and "." in n]
        # the test split of bench/train_detector.py (hash of the name), every 10th picture
        # of it: only those are decoded (all 50,000 would hold a gigabyte for the session)
        test = [names[i] for i in split_names(names, (0.2, 0.08, 0.72))[0][::10]]
        arrays = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in test]
    labels = [int(n.startswith("FAKE/")) for n in test]
    det = api.load("npr-cifake", device="cpu")
    tensors = [torch.from_numpy(a.copy()).permute(2, 0, 1) for a in arrays]
    with torch.inference_mode():
        auc = roc_auc_score(labels, det.raw_scores(tensors))
    assert auc >= 0.98, auc  # made: 0.995 on these 1,006 (0.992 on the whole test split)
