"""Names a package exposes but loads on first use (PEP 562), so that importing a package to
reach one light name does not pull in torch, faiss or c2pa behind the others."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: ``names`` maps an exposed name to the
    module that defines it (``"pkg.mod"``, or ``"pkg.mod:other"`` where it is defined under
    another name)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            module, _, attr = names[name].partition(":")
            return getattr(importlib.import_module(module), attr or name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
