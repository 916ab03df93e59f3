"""Registry of watermark methods, addressed by a short name (``dwtdct``, ``dwtdctsvd``, ...)."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from aigcguard.watermark.dwt import STANDARD, ColourConvention


class WatermarkMethod(ABC):
    """A way of writing a bit frame into pixels and reading per-bit evidence back.

    Methods see uint8 RGB batches B x 3 x H x W of one size on the working device; grouping
    mixed sizes, moving to the device, keys and p-values live in ``api``.
    """

    name: str = ""
    description: str = ""
    #: the matching method name in invisible-watermark, if the formats are compatible
    imwatermark_name: str | None = None

    @abstractmethod
    def capacity(self, height: int, width: int) -> int:
        """How many frame-bit slots (blocks, cells, ...) an image of this size has."""

    @abstractmethod
    def embed_frames(self, x: torch.Tensor, frames: torch.Tensor, out: torch.Tensor) -> None:
        """Mark ``out``, a uint8 copy of ``x``, in place with ``frames`` (B x L bool)."""

    @abstractmethod
    def read_votes(
        self, x: torch.Tensor, length: int, conv: ColourConvention = STANDARD
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per frame bit: (votes for 1, votes cast), each B x ``length``."""


_METHODS: dict[str, Callable[[], WatermarkMethod]] = {}
_INSTANCES: dict[str, WatermarkMethod] = {}


def register_method(name: str):
    """Class decorator: make a :class:`WatermarkMethod` available under ``name``."""

    def wrap(cls):
        if name in _METHODS:
            raise ValueError(f"watermark method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def get_method(spec: str | WatermarkMethod) -> WatermarkMethod:
    """The method registered under ``spec`` (instances are shared; methods hold no state)."""
    if isinstance(spec, WatermarkMethod):
        return spec
    key = spec.strip().lower()
    if key not in _METHODS:
        raise ValueError(
            f"unknown watermark method {spec!r}; available: {', '.join(list_methods())}"
        )
    if key not in _INSTANCES:
        _INSTANCES[key] = _METHODS[key]()
    return _INSTANCES[key]


def list_methods(pattern: str = "*") -> list[str]:
    return sorted(n for n in _METHODS if fnmatch.fnmatch(n, pattern))
