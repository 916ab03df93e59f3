"""``watermark``: watermark detection, the fields of ``aigc watermark detect``."""

from __future__ import annotations

from aigcguard.service.batch.tasks import TASKS, BatchError, BatchTask, TaskOption, result_schema

KEY_OPTION = TaskOption(
    "key",
    "Watermark key (or AIGC_WATERMARK_KEY); the public default key if unset.",
    envvar="AIGC_WATERMARK_KEY",
)


@TASKS.register("watermark", help="Watermark detection: the fields of `aigc watermark detect`.")
class WatermarkTask(BatchTask):
    """Watermark detection: the fields of ``aigc watermark detect`` (detected, p_value,
    payload, ...); ``known`` also scans for Stable Diffusion's and SDXL's marks and keeps the
    stronger finding, as the CLI's ``--known`` does."""

    task_options = (
        TaskOption("method", "Watermark method; default: the default method."),
        KEY_OPTION,
        TaskOption("known", "Also look for Stable Diffusion's and SDXL's marks.", kind="flag"),
        TaskOption(
            "threshold",
            "p-value at or below which a mark counts as detected (default 1e-6).",
            kind="probability",
        ),
    )

    def __init__(
        self,
        *,
        device="auto",
        method: str | None = None,
        key: str | None = None,
        known: bool = False,
        threshold: float | None = None,
    ):
        from aigcguard.watermark import DEFAULT_KEY, DEFAULT_METHOD, DEFAULT_P_THRESHOLD
        from aigcguard.watermark.api import WatermarkDetection

        super().__init__(device=device)
        self.method = method or DEFAULT_METHOD
        self.key = DEFAULT_KEY if key is None else key
        self.known = known
        self.threshold = DEFAULT_P_THRESHOLD if threshold is None else threshold
        self.schema = result_schema(WatermarkDetection)

    @classmethod
    def validate(cls, options):
        from aigcguard.watermark import list_methods

        method = options.get("method")
        if method and method not in list_methods():
            raise BatchError(f"unknown watermark method {method!r}; known: {list_methods()}")

    def records(self, paths):
        from aigcguard.watermark import detect, detect_known, strongest

        def find(pixels, _):
            found = detect(
                pixels,
                key=self.key,
                method=self.method,
                device=self.device,
                p_threshold=self.threshold,
            )
            if self.known:
                found = strongest(
                    found, detect_known(pixels, device=self.device, p_threshold=self.threshold)
                )
            return found

        return self._each_picture(paths, find, lambda path, d: {"path": path, **d.to_dict()})
