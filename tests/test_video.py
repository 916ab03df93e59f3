"""Frame sampling and video scoring on small videos written here with cv2.VideoWriter."""

from __future__ import annotations

import json
import math
import re

import cv2
import numpy as np
import pytest
import torch

from aigcguard.detectors import video as video_mod
from aigcguard.detectors.base import Calibration, Detector
from aigcguard.detectors.video import (
    VIDEO_EXTENSIONS,
    VideoScore,
    sample_frames,
    score_video,
)

W, H = 64, 48


class BrightnessDetector(Detector):
    """P(generated) = mean brightness / 255 exactly (raw score is its logit)."""

    kind = "test-video-brightness"

    def __init__(self, calibration=None):
        super().__init__(calibration or Calibration(threshold=0.6, uncertain_below=0.3))
        self.batch_sizes = []

    def raw_scores(self, images):
        self.batch_sizes.append(len(images))
        p = np.array([float(img.float().mean()) / 255 for img in images]).clip(1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def state(self):
        return {}

    @classmethod
    def from_state(cls, state, calibration):
        return cls(calibration)


def write_video(path, levels, fps=10, fourcc="mp4v"):
    """One flat grey frame per level; returns the path, or None if this build cannot write it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    if not writer.isOpened():
        return None
    for v in levels:
        writer.write(np.full((H, W, 3), v, np.uint8))
    writer.release()
    return path


def ramp(n=30):
    return [20 + 7 * i for i in range(n)]  # frame i of a 10 fps video: 20 + 70 per second


@pytest.fixture
def ramp_video(tmp_path):
    return write_video(tmp_path / "ramp.mp4", ramp())


def brightness(frame: torch.Tensor) -> float:
    return float(frame.float().mean())


def test_extensions():
    assert {".mp4", ".webm", ".mov", ".mkv", ".avi"} == VIDEO_EXTENSIONS


def test_sample_every_second(ramp_video):
    frames = sample_frames(ramp_video)
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0]
    for (_, frame), level in zip(frames, [20, 90, 160], strict=True):
        assert frame.dtype == torch.uint8 and frame.shape == (3, H, W)
        assert brightness(frame) == pytest.approx(level, abs=5)  # mp4v is lossy


def test_sample_rgb_order(tmp_path):
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for _ in range(5):
        writer.write(np.full((H, W, 3), (30, 40, 220), np.uint8))  # BGR: red
    writer.release()
    ((_, frame),) = sample_frames(path)
    r, g, b = (float(c.float().mean()) for c in frame)
    assert r > 180 and b < 70 and g < 80


def test_sample_short_intervals(ramp_video):
    times = [t for t, _ in sample_frames(ramp_video, every_s=0.5)]
    assert times == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5])
    # 0.25 s falls between frames: the nearest frame, each within half a frame of its target.
    times = [t for t, _ in sample_frames(ramp_video, every_s=0.25)]
    assert len(times) == 12 and times == sorted(set(times))
    assert all(abs(t - k * 0.25) <= 0.05 + 1e-9 for k, t in enumerate(times))
    # Shorter than a frame: every frame once; max_frames caps the count.
    frames = sample_frames(ramp_video, every_s=0.01)
    assert [round(t * 10) for t, _ in frames] == list(range(30))
    frames = sample_frames(ramp_video, every_s=0.01, max_frames=7)
    assert [round(t * 10) for t, _ in frames] == list(range(7))
    levels = [brightness(f) for _, f in frames]
    assert levels == sorted(levels)  # frames come in order, none repeated


@pytest.mark.parametrize("every_s", [2.0, 0.9, 1.3])
def test_seeking_matches_stepping(ramp_video, monkeypatch, every_s):
    assert every_s * 10 >= video_mod._SEEK_MIN_STRIDE  # these strides take the seek path
    seeking = sample_frames(ramp_video, every_s=every_s)
    monkeypatch.setattr(video_mod, "_SEEK_MIN_STRIDE", math.inf)
    stepping = sample_frames(ramp_video, every_s=every_s)
    assert [t for t, _ in seeking] == [t for t, _ in stepping]
    for (_, a), (_, b) in zip(seeking, stepping, strict=True):
        assert (a.float() - b.float()).abs().mean() < 1
    expected = {2.0: [0, 2], 0.9: [0, 0.9, 1.8, 2.7], 1.3: [0, 1.3, 2.6]}[every_s]
    assert [t for t, _ in seeking] == pytest.approx(expected)


def test_failed_seek_falls_back_to_stepping(ramp_video, monkeypatch):
    real_seek = video_mod._Video._seek_read
    calls = []

    def flaky_seek(self, idx):
        calls.append(idx)
        return real_seek(self, idx) if len(calls) == 1 else None

    monkeypatch.setattr(video_mod._Video, "_seek_read", flaky_seek)
    frames = sample_frames(ramp_video, every_s=0.8)
    assert calls == [0, 8]  # the second seek "missed"; the rest was stepped
    assert [t for t, _ in frames] == pytest.approx([0, 0.8, 1.6, 2.4])
    for (_, frame), idx in zip(frames, [0, 8, 16, 24], strict=True):
        assert brightness(frame) == pytest.approx(20 + 7 * idx, abs=5)


def test_without_a_frame_rate_steps_by_timestamps(ramp_video):
    with video_mod._Video(ramp_video) as video:
        video.fps = None  # as some webm files report
        frames = list(video.frames(1.0, 300))
    assert [t for t, _ in frames] == pytest.approx([0, 1, 2])
    assert brightness(frames[2][1]) == pytest.approx(160, abs=5)


@pytest.mark.parametrize(
    ("suffix", "fourcc"), [(".avi", "MJPG"), (".mkv", "mp4v"), (".webm", "VP80")]
)
def test_other_containers(tmp_path, suffix, fourcc):
    path = write_video(tmp_path / f"ramp{suffix}", ramp(), fourcc=fourcc)
    if path is None or not cv2.VideoCapture(str(path)).isOpened():
        pytest.skip(f"this OpenCV build cannot write or read {fourcc} in {suffix}")
    frames = sample_frames(path)
    assert [t for t, _ in frames] == [0.0, 1.0, 2.0]
    assert brightness(frames[1][1]) == pytest.approx(90, abs=6)


def test_score_video_per_frame(ramp_video):
    det = BrightnessDetector()
    result = score_video(det, ramp_video, batch=2)
    assert isinstance(result, VideoScore)
    assert result.path == str(ramp_video) and result.frames == 3 and result.every_s == 1.0
    assert [(s["start"], s["end"]) for s in result.segments] == [(0, 1), (1, 2), (2, 3)]
    scores = [s["score"] for s in result.segments]
    assert scores == pytest.approx([20 / 255, 90 / 255, 160 / 255], abs=0.02)
    assert [s["band"] for s in result.segments] == ["likely_real", "uncertain", "likely_generated"]
    # Top quarter of 3 segments is the highest one.
    assert result.score == max(scores) and result.band == "likely_generated"
    assert det.batch_sizes == [2, 1]
    assert json.loads(result.to_json())["segments"][2]["band"] == "likely_generated"


def test_score_video_segments(ramp_video):
    det = BrightnessDetector()
    result = score_video(det, ramp_video, every_s=0.5, segment_s=1.5)
    assert result.frames == 6
    assert [(s["start"], s["end"]) for s in result.segments] == [(0, 1.5), (1.5, 3.0)]
    # Frames 0, 5, 10 and 15, 20, 25: their mean brightness.
    expected = [np.mean([20 + 7 * i for i in idx]) / 255 for idx in ([0, 5, 10], [15, 20, 25])]
    assert [s["score"] for s in result.segments] == pytest.approx(expected, abs=0.02)
    assert result.score == pytest.approx(expected[1], abs=0.02)

    # Windows that hold no sample are left out; the last one ends with the video.
    result = score_video(det, ramp_video, every_s=2.0, segment_s=0.5)
    assert [(s["start"], s["end"]) for s in result.segments] == [(0, 0.5), (2.0, 2.5)]
    result = score_video(det, ramp_video, every_s=1.0, segment_s=2.0)
    assert [(s["start"], s["end"]) for s in result.segments] == [(0, 2.0), (2.0, 3.0)]


def test_partly_generated_video_is_not_averaged_away(tmp_path):
    # 8 s at 5 fps: dark ("real") except a bright ("generated") stretch from 3 s to 5 s.
    levels = [220 if 15 <= i < 25 else 40 for i in range(40)]
    path = write_video(tmp_path / "spliced.mp4", levels, fps=5)
    det = BrightnessDetector()
    result = score_video(det, path)
    scores = [s["score"] for s in result.segments]
    assert len(scores) == 8
    assert det.calibration.band(float(np.mean(scores))) != "likely_generated"  # a plain mean
    assert result.score > 0.8 and result.band == "likely_generated"
    assert [s["band"] for s in result.segments].count("likely_generated") == 2

    result = score_video(BrightnessDetector(), write_video(tmp_path / "r.mp4", [40] * 40, fps=5))
    assert result.band == "likely_real"


def test_missing_and_corrupt_files(tmp_path):
    det = BrightnessDetector()
    missing = tmp_path / "missing.mp4"
    for call in (lambda p: sample_frames(p), lambda p: score_video(det, p)):
        with pytest.raises(ValueError, match=r"missing\.mp4: no such video file"):
            call(missing)

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    data = write_video(tmp_path / "whole.mp4", ramp()).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (corrupt, empty, truncated):
        for call in (lambda p: sample_frames(p), lambda p: score_video(det, p)):
            with pytest.raises(ValueError, match=re.escape(str(path))) as info:
                call(path)
            assert "webm" in str(info.value)

    with pytest.raises(ValueError, match="not a file"):
        sample_frames(tmp_path)


def test_bad_arguments(ramp_video):
    det = BrightnessDetector()
    with pytest.raises(ValueError, match="every_s"):
        sample_frames(ramp_video, every_s=0)
    with pytest.raises(ValueError, match="max_frames"):
        sample_frames(ramp_video, max_frames=0)
    with pytest.raises(ValueError, match="segment_s"):
        score_video(det, ramp_video, segment_s=0)
    with pytest.raises(ValueError, match="batch"):
        score_video(det, ramp_video, batch=0)
