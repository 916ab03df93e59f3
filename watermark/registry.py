"""Registry of watermark methods, addressed by a short name (``tilemark``, ``dwtdct``, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aigcguard.registry import Registry
from aigcguard.watermark.dwt import STANDARD, ColourConvention


@dataclass(frozen=True)
class SoftReading:
    """What a soft-decision method reads from one image.

    ``evidence``: one value per known chip (the key's sync bits, plus the expected message's
    coded bits when one was given), positive where the chip agrees; the signs the key puts on
    these chips are fair coins for an image without the mark, which is what the p-value uses.
    ``payload``: the decoded payload bits as embedded (still XORed with the key stream).
    ``trials``: what the p-value bound is multiplied by: how many readings (say, candidate
    geometries) the best one was picked from by its evidence (Bonferroni), over the share of
    the false-positive budget spent on them where a method splits it (weighted Bonferroni).
    ``payload_error``: the estimated chance that ``payload`` is wrong, when the method has one.
    ``format``: which of the method's mark formats the evidence was read in, where it has
    several (tilemark: ``keyed`` or ``legacy``).
    """

    evidence: torch.Tensor
    payload: torch.Tensor
    trials: float = 1.0
    payload_error: float | None = None
    format: str | None = None


class WatermarkMethod(ABC):
    """A way of writing a bit frame into pixels and reading per-bit evidence back.

    Methods see uint8 RGB batches B x 3 x H x W of one size on the working device; grouping
    mixed sizes, moving to the device, keys and p-values live in ``api``.

    Hard-decision methods (the DWT family) answer ``read_votes`` and are judged by a binomial
    test on the sync bits. Soft-decision methods set ``soft = True`` and answer ``read_soft``;
    they are judged on their evidence with a bound that uses its size, not only its sign.
    """

    name: str = ""
    description: str = ""
    #: the matching method name in invisible-watermark, if the formats are compatible
    imwatermark_name: str | None = None
    #: the method derives its layout from the key and cannot write the bare (key=None) format
    needs_key: bool = False
    soft: bool = False

    @abstractmethod
    def capacity(self, height: int, width: int) -> int:
        """How many frame-bit slots (blocks, cells, ...) an image of this size has."""

    @abstractmethod
    def embed_frames(
        self, x: torch.Tensor, frames: torch.Tensor, out: torch.Tensor, key: str | bytes | None
    ) -> None:
        """Mark ``out``, a uint8 copy of ``x``, in place with ``frames`` (B x L bool)."""

    def read_votes(
        self, x: torch.Tensor, length: int, conv: ColourConvention = STANDARD
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard-decision methods: per frame bit, (votes for 1, votes cast), each B x
        ``length``."""
        raise NotImplementedError(f"{self.name} is a soft-decision method: use read_soft")

    def read_soft(
        self, x: torch.Tensor, key: str | bytes, expected: torch.Tensor | None = None
    ) -> list[SoftReading]:
        """Soft-decision methods: one :class:`SoftReading` per image; ``expected`` (B x 64,
        XORed with the key stream) adds the expected payload's chips to the evidence."""
        raise NotImplementedError(f"{self.name} is a hard-decision method: use read_votes")


#: Watermark methods by name. ``register_method``, ``get_method`` and ``list_methods`` are this
#: domain's spelling of its register, create and list; the built-ins register on first read.
METHODS: Registry[WatermarkMethod] = Registry(
    "watermark method", builtins="aigcguard.watermark.methods"
)
# Methods hold no state, so one instance per class serves every caller (keyed by class, so a
# name removed and registered again gets its new class).
_INSTANCES: dict[Callable[[], WatermarkMethod], WatermarkMethod] = {}


def register_method(name: str):
    """Class decorator: make a :class:`WatermarkMethod` available under ``name``."""

    def wrap(cls):
        METHODS.add(name, cls)  # a name registered twice is an error
        cls.name = name
        return cls

    return wrap


def get_method(spec: str | WatermarkMethod) -> WatermarkMethod:
    """The method registered under ``spec`` (instances are shared; methods hold no state).
    An unknown name raises a ValueError that lists the registered ones."""
    if isinstance(spec, WatermarkMethod):
        return spec
    cls = METHODS.get(spec)
    if cls not in _INSTANCES:
        _INSTANCES[cls] = cls()
    return _INSTANCES[cls]


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.list(pattern)
