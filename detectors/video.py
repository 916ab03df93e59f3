"""Score a video with an image detector: sample frames at a fixed interval, score them in
batches, report a timeline of segments and one aggregate.

Decoding goes through OpenCV (its bundled FFmpeg). Frame timestamps are ``frame index / fps``
as the container reports it, so for variable-frame-rate video they are approximate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch

from aigcguard.results import JsonResult

from .base import Detector

VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".mkv", ".avi"}

_CODEC_HINT = (
    " (not a video, damaged, or in a codec this OpenCV build cannot decode;"
    " pip's opencv wheels, for one, may lack VP8/VP9, which .webm files use)"
)

# Seek (cv2.CAP_PROP_POS_FRAMES) only when samples are at least this many frames apart: a
# seek lands on a keyframe and decodes forward anyway, so short strides are cheaper stepped.
_SEEK_MIN_STRIDE = 8


def _frame_targets(fps: float, every_s: float) -> Iterator[int]:
    """Indices of the frames nearest to 0, every_s, 2 every_s, ...; strictly increasing, so
    an interval shorter than one frame gives every frame once."""
    stride = every_s * fps
    k, last = 0, -1
    while True:
        idx = math.floor(k * stride + 0.5)
        if idx > last:
            yield idx
            last = idx
        # Jump to the first k that can give a later frame, rather than counting up to it.
        k = max(k + 1, math.ceil((last + 0.5) / stride))


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


class _Video:
    """One open capture and what its container says about frame rate and length."""

    def __init__(self, path: Path):
        self.path = path
        self._cap = self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        # Some containers (often webm) report 0, negative or absurd values: treat as unknown.
        self.fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else None
        self.count = int(count) if math.isfinite(count) and count > 0 else None
        self.duration = self.count / self.fps if self.fps and self.count else None

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"{self.path}: cannot open as a video{_CODEC_HINT}")
        return cap

    def __enter__(self) -> _Video:
        return self

    def __exit__(self, *exc) -> None:
        self._cap.release()

    def _seek_read(self, idx: int) -> torch.Tensor | None:
        # Trust a seek only when the backend says it landed on the frame asked for.
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx):
            return None
        if round(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) != idx:
            return None
        ok, frame = self._cap.read()
        return _to_tensor(frame) if ok else None

    def frames(self, every_s: float, max_frames: int) -> Iterator[tuple[float, torch.Tensor]]:
        taken, last = 0, -1
        if self.fps and self.count and every_s * self.fps >= _SEEK_MIN_STRIDE:
            for idx in _frame_targets(self.fps, every_s):
                if taken >= max_frames or idx >= self.count:
                    return
                frame = self._seek_read(idx)
                if frame is None:
                    break
                yield idx / self.fps, frame
                taken, last = taken + 1, idx
            # A seek missed (or the frame count was too high): reopen and step through the
            # frames instead, picking up after the last frame already given.
            self._cap.release()
            self._cap = self._open()
        if self.fps:
            yield from self._step_by_index(every_s, max_frames - taken, after=last)
        else:
            yield from self._step_by_time(every_s, max_frames)

    def _step_by_index(
        self, every_s: float, max_frames: int, after: int
    ) -> Iterator[tuple[float, torch.Tensor]]:
        targets = (i for i in _frame_targets(self.fps, every_s) if i > after)
        target, i, taken = next(targets), 0, 0
        while taken < max_frames and self._cap.grab():
            if i == target:
                # grab() decodes; retrieve() converts only the frames we keep.
                ok, frame = self._cap.retrieve()
                if ok:
                    yield i / self.fps, _to_tensor(frame)
                    taken += 1
                target = next(targets)
            i += 1

    def _step_by_time(
        self, every_s: float, max_frames: int
    ) -> Iterator[tuple[float, torch.Tensor]]:
        # No usable frame rate: go by each frame's own timestamp.
        due, last_t, taken = 0.0, -math.inf, 0
        while taken < max_frames and self._cap.grab():
            t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if t >= due - 1e-3 and t > last_t:
                ok, frame = self._cap.retrieve()
                if ok:
                    yield t, _to_tensor(frame)
                    taken, last_t = taken + 1, t
                    due = (math.floor(t / every_s + 1e-6) + 1) * every_s


def _checked_path(path: str | Path, every_s: float, max_frames: int) -> Path:
    if not every_s > 0:
        raise ValueError(f"every_s must be positive, got {every_s}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such video file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    return path


def _no_frames(path: Path) -> ValueError:
    return ValueError(f"{path}: no frames could be decoded{_CODEC_HINT}")


def sample_frames(
    path: str | Path, *, every_s: float = 1.0, max_frames: int = 300
) -> list[tuple[float, torch.Tensor]]:
    """``(timestamp in seconds, uint8 RGB 3 x H x W tensor)`` for the frames nearest to 0,
    every_s, 2 every_s, ..., at most ``max_frames`` of them. Long strides seek; short ones,
    and videos whose seeking cannot be trusted, are stepped through frame by frame."""
    path = _checked_path(path, every_s, max_frames)
    with _Video(path) as video:
        frames = list(video.frames(every_s, max_frames))
    if not frames:
        raise _no_frames(path)
    return frames


@dataclass(frozen=True)
class VideoScore(JsonResult):
    """A video's timeline and verdict.

    ``segments``: ``{"start", "end", "score", "band"}`` in seconds and probability of
    "generated", one per sampled frame (lasting until the next sample) or one per
    ``segment_s`` window holding the mean of its frames. ``score`` is the mean of the top
    quarter of segment scores: a video that is real except for a generated stretch would be
    averaged away by a plain mean, while the single highest segment would let one
    false-positive frame decide; the top quarter needs a sustained run to score high.
    ``band`` is the calibration's band of ``score``."""

    path: str
    frames: int
    every_s: float
    segments: list[dict]
    score: float
    band: str


def _top_quarter_mean(scores: list[float]) -> float:
    top = sorted(scores, reverse=True)[: max(1, math.ceil(len(scores) / 4))]
    return float(np.mean(top))


def score_video(
    detector: Detector,
    path: str | Path,
    *,
    every_s: float = 1.0,
    segment_s: float | None = None,
    max_frames: int = 300,
    batch: int = 32,
) -> VideoScore:
    """Sample frames as :func:`sample_frames` does, score them with
    ``detector.probabilities`` ``batch`` at a time (frames are decoded as they are scored,
    not all held at once), and group them into segments."""
    path = _checked_path(path, every_s, max_frames)
    if segment_s is not None and not segment_s > 0:
        raise ValueError(f"segment_s must be positive, got {segment_s}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")

    times: list[float] = []
    probs: list[float] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        probs.extend(float(p) for p in np.asarray(detector.probabilities(pending)).reshape(-1))
        pending.clear()

    with _Video(path) as video:
        for t, frame in video.frames(every_s, max_frames):
            times.append(t)
            pending.append(frame)
            if len(pending) == batch:
                flush()
        if pending:
            flush()
        fps, duration = video.fps, video.duration
    if not times:
        raise _no_frames(path)

    end_of_video = duration if duration is not None else math.inf
    cal = detector.calibration
    if segment_s is None:
        step = max(every_s, 1 / fps) if fps else every_s
        ends = [*times[1:], min(times[-1] + step, max(end_of_video, times[-1]))]
        spans = [(t, end, [p]) for t, end, p in zip(times, ends, probs, strict=True)]
    else:
        windows: dict[int, list[float]] = {}
        for t, p in zip(times, probs, strict=True):
            windows.setdefault(math.floor(t / segment_s + 1e-9), []).append(p)
        spans = [
            (w * segment_s, max(w * segment_s, min((w + 1) * segment_s, end_of_video)), ps)
            for w, ps in windows.items()
        ]
    segments = []
    for start, end, ps in spans:
        score = float(np.mean(ps))
        segments.append(
            {
                "start": round(start, 6),
                "end": round(end, 6),
                "score": score,
                "band": cal.band(score),
            }
        )
    score = _top_quarter_mean([s["score"] for s in segments])
    return VideoScore(
        path=str(path),
        frames=len(times),
        every_s=float(every_s),
        segments=segments,
        score=score,
        band=cal.band(score),
    )


@dataclass(frozen=True)
class VideoDetection(VideoScore):
    """A :class:`VideoScore` with the ``model`` that scored it and that model's
    ``threshold`` (rounded to 6 places), as ``aigc detect`` prints a video."""

    model: str
    threshold: float


def detect_video(
    detector: Detector,
    path: str | Path,
    *,
    every_s: float = 1.0,
    segment_s: float | None = None,
    max_frames: int = 300,
    batch: int = 32,
) -> VideoDetection:
    """:func:`score_video`, labelled with the detector's spec and threshold."""
    result = score_video(
        detector, path, every_s=every_s, segment_s=segment_s, max_frames=max_frames, batch=batch
    )
    return VideoDetection(
        **{f.name: getattr(result, f.name) for f in fields(result)},
        model=detector.spec,
        threshold=round(detector.calibration.threshold, 6),
    )
