"""What the index's maintenance reports, one frozen result per kind of line (``aigc index
add | remove | background | info | export`` render these as JSON)."""

from __future__ import annotations

from dataclasses import dataclass

from aigcguard.results import JsonResult


@dataclass(frozen=True)
class WorkStatus(JsonResult):
    """One work and what happened to it: ``added``, ``already registered`` or ``removed``.
    A field that does not apply (the id of a file already registered, the path of a work
    removed by id) is left out of the JSON."""

    status: str
    id: int | None = None
    path: str | None = None

    def to_dict(self) -> dict:
        full = {"id": self.id, "path": self.path, "status": self.status}
        return {k: v for k, v in full.items() if v is not None}


@dataclass(frozen=True)
class BackgroundSet(JsonResult):
    """``background``: how many pictures the index's background set now holds."""

    index: str
    background: int


@dataclass(frozen=True)
class IndexInfo(JsonResult):
    """The store's own description and the thresholds the index grades matches with."""

    store: JsonResult  # a StoreInfo
    thresholds: JsonResult  # a Thresholds

    def to_dict(self) -> dict:
        return self.store.to_dict() | {"thresholds": self.thresholds.to_dict()}


@dataclass(frozen=True)
class Exported(JsonResult):
    """An index copied into another store: where from, where to, and what the copy holds."""

    source: str
    target: str
    works: int
    embedder: str
    index_type: str

    def to_dict(self) -> dict:
        return {
            "from": self.source,
            "to": self.target,
            "works": self.works,
            "embedder": self.embedder,
            "index_type": self.index_type,
        }
