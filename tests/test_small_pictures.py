"""Tiny and thin pictures through every signal: each gets its signal's "too small" answer or
a bounded working size, never an exception; and a 64 MP picture stays under 3 GB of memory
in every command (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.watermark import detect, detect_known, embed
from aigcguard.watermark.dwt import tally_votes
from aigcguard.watermark.tilemark.picture import WORK_LONG, working_size, working_whitened

TINY = [(1, 1), (3, 3), (7, 7)]  # (height, width)
THIN = [(5, 3000), (3000, 5)]


def noise(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------------------ watermarks


@pytest.mark.parametrize("method", ["tilemark", "dwtdct", "dwtdctsvd"])
@pytest.mark.parametrize("h, w", [*TINY, *THIN])
def test_watermark_detect_on_a_tiny_or_thin_picture_is_too_small(method, h, w):
    [det] = detect([noise(h, w)], method=method, device="cpu")
    assert (det.detected, det.bits_matched, det.bits_total, det.p_value) == (False, 0, 0, 1.0)
    assert det.payload is None and det.method == method
    d = det.to_dict()
    assert d["reason"].startswith(f"too small: {w}x{h} px holds no {method} mark")
    json.dumps(d)


def test_tilemark_needs_64_px_and_dwt_8():
    [tm] = detect([noise(63, 400)], device="cpu")
    assert "at least 64 px a side" in tm.reason
    dwt_small, dwt_ok = detect([noise(7, 400), noise(32, 32)], method="dwtdct", device="cpu")
    assert "at least 8 px a side" in dwt_small.reason
    assert dwt_ok.reason is None and dwt_ok.bits_total > 0 and "reason" not in dwt_ok.to_dict()


def test_a_batch_mixing_tiny_and_readable_pictures_reads_the_readable_ones():
    x = noise(128, 128)
    [marked] = embed([x], "hi", method="dwtdct", device="cpu")
    tiny, found, also_tiny = detect(
        [noise(3, 3), marked, noise(50, 4)], method="dwtdct", device="cpu"
    )
    assert tiny.reason and also_tiny.reason and found.reason is None
    assert found.detected and found.payload_text == "hi"


@pytest.mark.parametrize("h, w", [*TINY, *THIN])
def test_known_marks_on_a_tiny_or_thin_picture_are_too_small(h, w):
    [det] = detect_known([noise(h, w)], device="cpu")
    assert not det.detected and det.bits_total == 0 and det.p_value == 1.0
    assert det.known is None and det.to_dict()["reason"].startswith("too small")


def test_known_marks_read_from_8_px():
    [det] = detect_known([noise(8, 8)], device="cpu")
    assert det.bits_total > 0 and det.reason is None


def test_tally_of_no_blocks_is_no_vote():
    ones, total = tally_votes(torch.zeros(2, 0), 48)
    assert ones.shape == total.shape == (2, 48) and not total.any() and not ones.any()


def test_tilemark_working_size_is_bounded_on_both_sides():
    assert working_size(5, 50_000) == (32, WORK_LONG) and working_size(50_000, 5) == (WORK_LONG, 32)
    assert working_size(64, 300_000) == (32, WORK_LONG)
    assert working_size(1, 1) == (256, 256) and working_size(8000, 8000) == (256, 256)
    assert working_size(1000, 20_000) == (256, 5120)  # 20:1, as it always was
    w = working_whitened(torch.zeros(1, 3, 64, 300_000, dtype=torch.uint8))
    assert w.shape == (1, 32, WORK_LONG)


def test_luma_leaves_a_float_picture_alone():
    from aigcguard.watermark.tilemark.picture import luma

    x = torch.rand(1, 3, 4, 5) * 255
    before = x.clone()
    ref = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.equal(luma(x), ref) and torch.equal(x, before)


@pytest.mark.slow
def test_tilemark_reads_a_thin_picture_in_bounded_memory():
    # 64 x 300,000 took the service past 6 GB before the working size's long side was capped
    [det] = detect([noise(64, 300_000)], device="cpu")
    assert not det.detected and det.reason is None and det.bits_total == 128


# ------------------------------------------------------------------------------- detectors


@pytest.fixture(scope="module")
def detectors():
    from aigcguard.detectors import api

    return {name: api.load(name, device="cpu") for name in ("npr-cifake", "spectral")}


@pytest.mark.parametrize("name", ["npr-cifake", "spectral"])
def test_a_detector_does_not_score_a_picture_under_its_side(detectors, name):
    from aigcguard.detectors import api

    det = detectors[name]
    assert det.min_side == 16
    images = [noise(1, 1), noise(7, 7), noise(15, 400), noise(16, 16), noise(5, 3000)]
    results = api.score(det, images, [f"p{i}" for i in range(len(images))])
    small = [r for r in results if r.score is None]
    assert [r.path for r in small] == ["p0", "p1", "p2", "p4"]
    for r in small:
        assert r.band == api.UNCERTAIN
        d = r.to_dict()
        assert d["score"] is None and "needs 16 px a side" in d["reason"]
        json.dumps(d)
    scored = results[3].to_dict()
    assert isinstance(scored["score"], float) and "reason" not in scored
    # the raw scores are still computed for any size (training and evaluation use them)
    assert np.isfinite(det.raw_scores([noise(1, 1), noise(7, 7)])).all()


def test_npr_needs_half_its_crop():
    from aigcguard.detectors.npr import NprDetector, NprNet

    assert NprDetector(NprNet(), crop=64).min_side == 32


def test_spectral_shrink_is_bounded_and_unchanged_plane_by_plane():
    from aigcguard.detectors.spectral import MAX_ASPECT, shrink

    x = noise(700, 1500)
    s = 512 / 700
    size = (512, round(1500 * s))
    whole = F.interpolate(x[None].float(), size=size, mode="bicubic", antialias=True)
    assert torch.equal(shrink(x, 512), whole.round().clamp(0, 255).to(torch.uint8)[0])
    assert shrink(noise(300, 400), 512).shape == (3, 300, 400)  # never enlarged
    thin = shrink(torch.zeros(3, 100, 20_000, dtype=torch.uint8), 512)
    assert thin.shape == (3, 82, MAX_ASPECT * 512)
    assert shrink(torch.zeros(3, 5, 50_000, dtype=torch.uint8), 512).shape == (3, 2, 16384)


# ------------------------------------------------------------------------------ similarity


@pytest.mark.parametrize("h, w", [*TINY, (5, 50_000), (50_000, 5)])
def test_vlad_and_local_features_take_any_shape(h, w):
    from aigcguard.provenance.similarity import verify as V
    from aigcguard.provenance.similarity.descriptors import create_descriptor

    x = noise(h, w)
    vec = create_descriptor("vlad", device="cpu").describe([x])
    assert vec.shape[0] == 1 and np.isfinite(vec).all()
    assert len(V.extract(x)) == 0  # nothing to match on a strip 5 px thin


def test_pdq_takes_any_shape_and_shrinks_only_the_largest(photos):
    import cv2
    import pdqhash

    from aigcguard.provenance.similarity.descriptors import PDQ_MAX_SIDE, create_descriptor

    pdq = create_descriptor("pdq")
    for h, w in [*TINY, (5, 50_000), (50_000, 5)]:
        assert pdq.describe([noise(h, w)]).shape == (1, 32)
    photo = photos["astronaut"]  # 512 x 512: hashed as it is
    direct = np.packbits(np.asarray(pdqhash.compute(photo)[0], dtype=np.uint8))
    assert np.array_equal(pdq.describe([torch.from_numpy(photo).permute(2, 0, 1)])[0], direct)
    big = cv2.resize(photo, (PDQ_MAX_SIDE + 904, PDQ_MAX_SIDE + 904), cv2.INTER_CUBIC)
    full = np.asarray(pdqhash.compute(big)[0], dtype=np.uint8)
    ours = np.unpackbits(pdq.describe([torch.from_numpy(big).permute(2, 0, 1)])[0])
    assert int((full != ours).sum()) <= 8  # of 256; PDQ's match threshold is 31


def test_evidence_picture_of_a_strip_is_bounded():
    from aigcguard.provenance.similarity import verify as V

    strip, ref = noise(5, 50_000), noise(200, 300)
    v = V.verify(strip, ref)
    canvas = V.match_picture(strip, ref, v, height=100)
    assert canvas.shape[0] == 100 and canvas.shape[1] <= 32 * 100 + 150 + 10


# ------------------------------------------------------------------------------ the Checker


@pytest.fixture(scope="module")
def checker():
    from aigcguard.service.check import Checker

    with Checker(device="cpu") as c:
        yield c


@pytest.mark.parametrize("h, w", [*TINY, (5, 2000), (2000, 5), (63, 3000)])
def test_check_of_a_tiny_or_thin_picture_reports_no_error(checker, h, w):
    result = checker.check(noise(h, w), f"{w}x{h}")
    assert result.errors == {}
    assert result.watermark is None and result.known_watermark is None
    # every shape here is under the default detector's 128 px: not scored, said why
    det = result.detector
    assert det.score is None and det.band == "uncertain" and det.reason.startswith("too small")
    assert result.summary.verdict == "no_evidence"
    assert any("did not score it: too small" in r for r in result.summary.reasons)
    json.dumps(result.to_dict())


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Files of every awkward shape: tiny, and thin within the pixel limit (refused by the
    aspect limit), each a few kilobytes."""
    folder = tmp_path_factory.mktemp("shapes")
    paths = []
    for w, h in [(1, 1), (3, 3), (7, 7), (5, 50_000), (50_000, 5), (64, 300_000)]:
        paths.append(folder / f"shape_{w}x{h}.png")
        Image.new("RGB", (w, h), (90, 120, 200)).save(paths[-1])
    return paths


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "command",
    [
        ["check", "--device", "cpu"],
        ["check", "--device", "cpu", "--format", "table"],
        ["watermark", "detect", "--known", "--device", "cpu"],
        ["detect", "--device", "cpu"],
        ["detect", "--model", "spectral", "--device", "cpu"],
    ],
)
def test_every_shape_gets_a_line_and_no_traceback(shapes, command, tmp_path):
    extra = ["--html", str(tmp_path / "r.html")] if command[0] == "check" else []
    r = CliRunner().invoke(main, [*command, *extra, *map(str, shapes)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output
    assert r.exit_code == 1  # the three strips are refused; the tiny pictures are not
    if "table" in command:
        assert all(p.name in r.output for p in shapes)
        return
    by_path = {d["path"]: d for d in _lines(r.stdout)}
    assert set(by_path) == {str(p) for p in shapes}
    for p in shapes[3:]:
        assert "aspect ratio" in by_path[str(p)]["error"]
    for p in shapes[:3]:
        line = by_path[str(p)]
        assert "error" not in line
        if command[0] == "detect":
            assert line["band"] == "uncertain" and line["score"] is None
            assert line["reason"].startswith("too small")
        if command[0] == "watermark":
            assert line["detected"] is False and line["reason"].startswith("too small")


def test_similar_on_every_shape(shapes, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    Image.fromarray(noise(120, 160).permute(1, 2, 0).numpy()).save(refs / "a.png")
    runner = CliRunner()
    r = runner.invoke(main, ["index", "build", str(refs), "--index", str(tmp_path / "idx")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["similar", "--index", str(tmp_path / "idx"), *map(str, shapes)])
    assert "Traceback" not in r.output and r.exit_code == 1
    by_path = {d["path"]: d for d in _lines(r.stdout)}
    assert set(by_path) == {str(p) for p in shapes}
    assert all(by_path[str(p)]["verdict"] == "none" for p in shapes[:3])


# ------------------------------------------------------------------------------ 64 MP


# VmHWM, the peak resident size of this process's own memory since exec: getrusage's maxrss
# also counts what the forking parent (pytest, large by then) had resident when it forked
_PEAK = """
import atexit, sys
def peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    print("MAXRSS", kb, file=sys.stderr)
atexit.register(peak)
from aigcguard.cli import main
sys.argv = ["aigc", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def photo_64mp(tmp_path_factory):
    """An 8000 x 8000 photo-like JPEG (a smooth colour field and grain, about 10 MB)."""
    rng = np.random.default_rng(0)
    field = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    arr = np.asarray(field.resize((8000, 8000), Image.BICUBIC)).astype(np.int16)
    arr += rng.integers(-6, 7, arr.shape, dtype=np.int16)
    path = tmp_path_factory.mktemp("big") / "photo_8000x8000.jpg"
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def test_ssim_guard_a_channel_at_a_time_is_the_whole_picture_computation():
    from aigcguard.watermark.tilemark.ssim_guard import _window_mean, _WindowStats

    x = torch.stack([noise(90, 70, 1), noise(90, 70, 2)])
    delta = torch.randn(2, 90, 70, generator=torch.Generator().manual_seed(0)) * 30
    stats = _WindowStats(x)
    a = x.float()
    shift = a.mean(dim=(1, 2, 3), keepdim=True)
    a = a - shift
    ma = _window_mean(a, 4)
    assert torch.equal(stats.ma, ma)
    assert torch.equal(stats.va, _window_mean(a * a, 4) - ma * ma)
    alpha = stats.scale_for(delta, 0.999)
    assert alpha.shape == (2,) and bool((alpha <= 1).all()) and bool((alpha < 1).any())


def test_psnr_a_channel_at_a_time():
    from aigcguard.watermark.files import psnr

    a = noise(50, 60)
    b = a.int() + torch.randint(-3, 4, a.shape, generator=torch.Generator().manual_seed(1))
    b = b.clamp(0, 255).to(torch.uint8)
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    assert psnr(a, b) == round(10 * np.log10(255.0**2 / mse), 2)
    assert psnr(a, a) == float("inf")


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["watermark", "detect", "--known"],
        ["watermark", "embed", "--out", "OUT"],
        ["detect"],
        ["detect", "--model", "spectral"],
        ["similar", "--index", "INDEX"],
    ],
)
def test_a_64_megapixel_picture_stays_under_3_gb(photo_64mp, command, tmp_path):
    command = [str(tmp_path / "out") if c == "OUT" else c for c in command]
    if "INDEX" in command:
        refs = tmp_path / "refs"
        refs.mkdir()
        Image.fromarray(noise(120, 160).permute(1, 2, 0).numpy()).save(refs / "a.png")
        build = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_PEAK), "index", "build", str(refs),
             "--index", str(tmp_path / "idx"), "--device", "cpu"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr
        command = [c if c != "INDEX" else str(tmp_path / "idx") for c in command]
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PEAK), *command, "--device", "cpu", photo_64mp],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and len(_lines(out.stdout)) == 1
    peak_kb = int(out.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    assert peak_kb < 3 * 2**20, f"{command}: peak {peak_kb / 2**20:.2f} GB"
