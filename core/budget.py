"""The work budget: which pictures any entry point takes on, and how large a working copy any
signal makes of one.

The loader (:func:`aigcguard.imageio.load_image`, which the CLI, the Checker, batch jobs and
the HTTP service all call) refuses a picture by its header, before decoding it and before any
model sees it, when it passes one of three limits: pixels, the longer side, or the aspect
ratio. The domains then bring every picture they are handed (the loader's, or a tensor a
Python caller made) to a working size bounded on both sides with :func:`bounded_size`, so no
shape makes a signal's memory grow without bound, and a picture too small for a signal gets
that signal's "too small" answer instead of an exception.

The defaults can be changed for a whole process with ``AIGC_MAX_PIXELS``, ``AIGC_MAX_SIDE``
and ``AIGC_MAX_ASPECT``, and per call with the loader's keyword arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_number(name: str, default: float, kind: type = int) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not value >= 1:  # also refuses NaN
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value


#: Ceiling on width x height. 64 MP covers 8000 x 8000 photos (decoding one peaks at about
#: 0.5 GB beyond the interpreter's 0.64 GB, measured on the 2-core test machine).
DEFAULT_MAX_PIXELS = int(_env_number("AIGC_MAX_PIXELS", 64_000_000))
#: Ceiling on either side. The largest phone photos within 64 MP are about 8,000 px long
#: (8160 x 6120 at 50 MP), a phone's widest panorama about 16,000 px (63 MP at 240 degrees),
#: a long screenshot about 20,000 (1080 x 20,000): 20,000 passes all of them. Beyond it a
#: picture within the pixel limit is a strip at most 3,200 px thin.
DEFAULT_MAX_SIDE = int(_env_number("AIGC_MAX_SIDE", 20_000))
#: Ceiling on long side / short side. Photos are 1:1 to 16:9 (1.8), 360-degree panoramas 2:1,
#: phone panoramas 4:1 to 8:1, long screenshots up to about 18.5:1 (1080 x 20,000): 20:1
#: passes them; the pictures of the hostile corpus (5 x 50,000, 64 x 300,000) are 2,000:1
#: and more, shapes no signal was measured on.
DEFAULT_MAX_ASPECT = float(_env_number("AIGC_MAX_ASPECT", 20.0, float))


@dataclass(frozen=True)
class WorkBudget:
    """The three limits a picture must stay within; the defaults follow the environment."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    max_aspect: float = DEFAULT_MAX_ASPECT

    def __post_init__(self):
        for name in ("max_pixels", "max_side", "max_aspect"):
            value = getattr(self, name)
            if not value >= 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")

    def refusal(self, width: int, height: int) -> str | None:
        """Why a picture of this size is refused (a reason naming the limit and how to raise
        it), or None when it is within the budget. Every reason says "above the limit", which
        the HTTP service answers with 413."""
        pixels = width * height
        if pixels > self.max_pixels:
            return (
                f"is {width}x{height} = {pixels:,} pixels, above the limit of "
                f"{self.max_pixels:,} (raise it with AIGC_MAX_PIXELS if the file is trusted)"
            )
        side = max(width, height)
        aspect = side / min(width, height)
        if aspect > self.max_aspect:  # before the side: it says more about a strip's shape
            return (
                f"is {width}x{height}: its aspect ratio {aspect:,.1f}:1 is above the limit of "
                f"{self.max_aspect:g}:1 (raise it with AIGC_MAX_ASPECT if the file is trusted)"
            )
        if side > self.max_side:
            return (
                f"is {width}x{height}: its {side:,} px side is above the limit of "
                f"{self.max_side:,} px (raise it with AIGC_MAX_SIDE if the file is trusted)"
            )
        return None


def bounded_size(
    height: int, width: int, *, short: int, max_long: int, min_side: int = 1, grow: bool = True
) -> tuple[int, int]:
    """A working size (height, width) for a picture: the short side scaled to ``short``,
    unless the long side would then pass ``max_long``, in which case the long side is
    ``max_long`` and the short side follows (a thin picture); no side under ``min_side``.
    ``grow=False`` never enlarges: a picture already within ``short`` keeps its size (the
    long-side cap still applies). Both sides of the result lie in [min_side, max(short,
    max_long)], whatever the picture's shape."""
    if height < 1 or width < 1:
        raise ValueError(f"a picture of {width}x{height} has no pixels")
    if short < 1 or max_long < short:
        raise ValueError(f"need 1 <= short <= max_long, got short={short}, max_long={max_long}")
    scale = short / min(height, width)
    if not grow:
        scale = min(scale, 1.0)
    scale = min(scale, max_long / max(height, width))
    return (
        min(max_long, max(min_side, round(height * scale))),
        min(max_long, max(min_side, round(width * scale))),
    )
