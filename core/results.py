"""Base for the frozen result dataclasses that every command renders as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, JsonResult):
        return value.to_dict()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


#: field metadata that keeps a field out of the JSON (working data kept for the library's
#: own later use, such as the keypoint matches behind a verdict)
NOT_JSON = {"json": False}
#: field metadata that leaves a field out of the JSON while it is None (an optional note, such
#: as why a picture could not be scored, that older readers never saw)
OMIT_NONE = {"omit_none": True}


class JsonResult:
    """Mixin for frozen dataclasses: ``to_dict()`` gives the stable JSON fields."""

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("json", True)
            and not (f.metadata.get("omit_none") and getattr(self, f.name) is None)
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class FailedInput(JsonResult):
    """The line a batch writes for an input it could not process, so the batch goes on:
    which input, and why."""

    path: str
    error: str


#: how the error of an input whose processing raised something unexpected begins: a bug, not
#: a bad input. The CLI and ``aigc batch`` exit 3 when one appears (1 for bad inputs alone).
INTERNAL_ERROR = "internal error"


def error_text(exc: BaseException) -> str:
    """The error of one input. A bad input's exception (ValueError, OSError, or one of this
    package's own errors, which say what is wrong) gives its message as it stands; anything
    else is unexpected and is named: ``internal error: RuntimeError: ...``."""
    own = type(exc).__module__.startswith("aigcguard.")
    if isinstance(exc, (ValueError, OSError)) or own:
        return str(exc) or type(exc).__name__
    return f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"


def is_internal_error(text: str | None) -> bool:
    """``text`` is the error of an unexpected exception (see :func:`error_text`)."""
    return bool(text) and text.startswith(f"{INTERNAL_ERROR}: ")
