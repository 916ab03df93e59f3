"""``detect``: real versus generated, the fields of ``aigc detect``."""

from __future__ import annotations

import os
from pathlib import Path

from aigcguard.service.batch.tasks import TASKS, BatchError, BatchTask, TaskOption, result_schema


@TASKS.register("detect", help="Real versus generated: the fields of `aigc detect`.")
class DetectTask(BatchTask):
    """Real versus generated: the fields of ``aigc detect`` (score, band, model, threshold)."""

    task_options = (
        TaskOption("model", "`default`, `spectral` or a detector file (as for `aigc detect`)."),
    )

    def __init__(self, *, device="auto", model: str | None = None):
        from aigcguard.detectors import api

        super().__init__(device=device)
        self.detector = api.load(model or api.DEFAULT_MODEL, device=device)
        self.schema = result_schema(api.Detection)

    @classmethod
    def validate(cls, options):
        from aigcguard.detectors.api import SHIPPED
        from aigcguard.detectors.base import load_detector

        model = options.get("model")
        if model and model not in SHIPPED:
            if not Path(model).is_file():
                raise BatchError(f"detector {model!r} is neither a shipped name nor a file")
            try:
                load_detector(model)  # small: better refused here than in every worker
            except (ValueError, OSError) as exc:
                raise BatchError(str(exc)) from None  # the message names the file
            options["model"] = os.path.abspath(model)  # workers may run elsewhere

    def records(self, paths):
        from aigcguard.detectors import api
        from aigcguard.detectors.video import VIDEO_EXTENSIONS

        videos = [
            {"path": p, "error": "is a video: use aigc detect"}
            if Path(p).suffix.lower() in VIDEO_EXTENSIONS
            else None
            for p in paths
        ]
        scored = iter(
            self._each_picture(
                [p for p, video in zip(paths, videos, strict=True) if video is None],
                lambda pixels, names: api.score(self.detector, pixels, names),
                lambda _, detection: detection.to_dict(),
            )
        )
        return [video or next(scored) for video in videos]
