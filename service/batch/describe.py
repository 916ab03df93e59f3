"""``describe``: similarity descriptors of each file (formerly the task ``embed``)."""

from __future__ import annotations

from typing import Any

from aigcguard.service.batch.tasks import TASKS, BatchError, BatchTask, TaskOption


def _spec(options: dict[str, Any]) -> str | None:
    """The descriptor spec of the options, under its name or its old one (``embedder``)."""
    return options.get("descriptor") or options.get("embedder")


@TASKS.register(
    "describe",
    formerly=("embed",),
    help="Similarity descriptors: `vector` (or `hash` for PDQ) and the descriptor spec "
    "(column `embedder`).",
)
class DescribeTask(BatchTask):
    """Similarity descriptors: ``vector`` (unit float32 rows) or ``hash`` (hex, binary
    descriptors such as PDQ), with the descriptor spec that made them in ``embedder`` (the
    column keeps its name: the file format is unchanged)."""

    task_options = (TaskOption("descriptor", kind="descriptor"),)

    def __init__(self, *, device="auto", descriptor: str | None = None, embedder=None):
        import pyarrow as pa

        from aigcguard.provenance.similarity.descriptors import (
            DEFAULT_DESCRIPTOR,
            create_descriptor,
        )

        super().__init__(device=device)
        spec = descriptor or embedder or DEFAULT_DESCRIPTOR
        self.descriptor = create_descriptor(spec, device=device)
        value = (
            pa.field("hash", pa.string())
            if self.descriptor.binary
            else pa.field("vector", pa.list_(pa.float32(), self.descriptor.dim))
        )
        self.schema = pa.schema(
            [
                pa.field("path", pa.string()),
                pa.field("embedder", pa.string()),
                value,
                pa.field("error", pa.string()),
            ]
        )

    @classmethod
    def wants_gpu(cls, options):
        return (_spec(options) or "").startswith("clip")  # SIFT and PDQ run on CPUs

    @classmethod
    def upgrade(cls, options):
        # the last release recorded ``embedder``, and nothing for the default
        from aigcguard.provenance.similarity.descriptors import DEFAULT_DESCRIPTOR

        new, old = options.get("descriptor"), options.get("embedder")
        if new and old and new != old:
            raise BatchError("give the descriptor option only (embedder is its old name)")
        rest = {k: v for k, v in options.items() if k not in ("descriptor", "embedder")}
        return {**rest, "descriptor": new or old or DEFAULT_DESCRIPTOR}

    @classmethod
    def validate(cls, options):
        from aigcguard.provenance.similarity.descriptors import list_descriptors

        spec = _spec(options)
        if spec and spec.partition(":")[0] not in list_descriptors():
            name = spec.partition(":")[0]
            raise BatchError(
                f"unknown descriptor {name!r} in spec {spec!r}; "
                f"known: {', '.join(list_descriptors())}"
            )
        upgraded = cls.upgrade(options)
        options.clear()
        options.update(upgraded)

    def records(self, paths):
        return self._each_picture(
            paths, lambda pixels, _: self.descriptor.describe(pixels), self._row
        )

    def _row(self, path, vector):
        if self.descriptor.binary:
            return {"path": path, "embedder": self.descriptor.spec, "hash": bytes(vector).hex()}
        return {"path": path, "embedder": self.descriptor.spec, "vector": vector.tolist()}


#: the old name, kept one release
EmbedTask = DescribeTask
