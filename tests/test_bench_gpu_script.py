"""The GPU figures' scripts (issue 22) parse and answer --help, and check_speed.py and
detector_cnn.py refuse a device this machine lacks (or a bad option) before doing any work: the
GPU session that runs them has one try."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from tests.helpers import ROOT, bench_module

SCRIPTS = ["gpu_figures.sh", "gpu_wheels.sh"]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_documents_itself(script):
    path = ROOT / "bench" / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    done = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "bench/gpu_figures.sh" in done.stdout
    wrong = subprocess.run(["bash", str(path), "--bogus"], capture_output=True, text=True)
    assert wrong.returncode == 2
    assert "unknown argument: --bogus" in wrong.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_check_speed_refuses_cuda_where_there_is_none(capsys):
    check_speed = bench_module("check_speed")
    with pytest.raises(SystemExit) as exc:
        check_speed.main(["--device", "cuda", "--n", "1"])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--steps", "0"], "--steps must be at least 1"), (["--device", "tpu"], "tpu")],
)
def test_detector_cnn_refuses_bad_options_before_loading_anything(
    argv, message, capsys, monkeypatch
):
    cnn = bench_module("detector_cnn")
    monkeypatch.setattr("sys.argv", ["detector_cnn.py", "--wild", "/nowhere", *argv])
    with pytest.raises(SystemExit) as exc:
        cnn.main()
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_detector_cnn_refuses_cuda_where_there_is_none(capsys, monkeypatch):
    cnn = bench_module("detector_cnn")
    monkeypatch.setattr("sys.argv", ["detector_cnn.py", "--wild", "/nowhere", "--device", "cuda"])
    with pytest.raises(SystemExit) as exc:
        cnn.main()
    assert exc.value.code == 2
    assert "CUDA" in capsys.readouterr().err
