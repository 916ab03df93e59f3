"""One registry helper for every pluggable kind (timm-style): ``register``, ``list``,
``create``, ``is_registered``.

Watermark methods, similarity descriptors, detectors, stores, check signals and batch tasks
each keep one :class:`Registry`; the CLI's choices and ``list`` commands come from it, so a new
kind is its own module plus one ``@registry.register(...)`` line.

    DETECTORS = Registry("detector")

    @DETECTORS.register("npr")
    class NprDetector(Detector): ...

    DETECTORS.list()              # ['npr', ...]
    DETECTORS.create("npr", ...)  # calls the registered factory
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name, or a name registered twice."""


class Registry(Generic[T]):
    """Names to factories (a class or a function) of one pluggable ``kind``.

    Names are case-insensitive and stored lower case. ``meta`` keeps what a caller needs to
    know about an entry without creating it (a description, a training entry point).
    ``builtins`` names the module whose import registers the built-in entries: it is imported
    the first time the registry is read, so a package can expose its registry (and a CLI its
    choices) without importing torch and the models behind them until they are used.
    """

    def __init__(self, kind: str, *, builtins: str | None = None):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._builtins = builtins
        self._loading = False

    def _load(self) -> None:
        if self._builtins is None or self._loading:  # loaded, or being read while it loads
            return
        self._loading = True
        try:  # a failed import raises here and again on the next read, never an empty list
            importlib.import_module(self._builtins)
            self._builtins = None
        finally:
            self._loading = False

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: put a factory under ``name``; ``meta`` is kept beside it."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, **meta)
            return factory

        return wrap

    def add(self, name: str, factory: Callable[..., T], **meta: Any) -> None:
        key = self._key(name)
        if key in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = factory
        self._meta[key] = dict(meta)

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a toy entry clean up with this)."""
        key = self._key(name)
        self._entries.pop(key, None)
        self._meta.pop(key, None)

    def is_registered(self, name: str) -> bool:
        self._load()
        return self._key(name) in self._entries

    def list(self, pattern: str = "*", *, ordered: bool = False) -> list[str]:
        """Registered names matching a shell-style ``pattern``: sorted, or in registration
        order with ``ordered`` (for kinds that run in sequence, such as check signals)."""
        self._load()
        names = [n for n in self._entries if fnmatch.fnmatch(n, pattern.lower())]
        return names if ordered else sorted(names)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; an unknown name lists the known ones."""
        self._load()
        key = self._key(name)
        if key not in self._entries:
            known = ", ".join(self.list()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {known}")
        return self._entries[key]

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)  # the same error for an unknown name
        return self._meta[self._key(name)]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Call the factory registered under ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.is_registered(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    @staticmethod
    def _key(name: str) -> str:
        return name.strip().lower()
