"""A key-free first look that decides whether a picture is worth the full search (issue 22).

Almost no picture a platform checks carries a mark, and the searched families (every
candidate geometry, offset, tile offset and nonce, in both formats) cost about 0.6 s a
picture on a 2-core CPU. Every mark made in the keyed format carries the template, whose four
sinusoids survive the attacks that need a search (crops, rotation, rescaling): the gate
measures the template's amplitude, ``sum |X(f_k)| / ||w||`` over its four frequencies, at the
unmoved grid and at the template's best matches in the spectrum (the same key-free
candidates the search starts from), and the searched families run only when it reaches
``GATE_LEVEL``. The as-embedded families (what re-encoding, resizing and colour edits leave)
always run: they cost a few milliseconds.

The gate only ever skips hypotheses; the skipped families keep their share of the
false-positive budget, so a p-value means what it did and a gated detection can only be
missed, never added. Measured (2-core machine, /tmp experiment, December 2026): on the 38
robustness photos marked and attacked (crop 10%, rotate 5 degrees, the combined attack, crop
50%), the marks that only the search finds have an amplitude of 9.68 or more (skimage grass,
the busiest texture; median 36); on 488 unmarked pictures (300 wild real photos, 150 wild
generated pictures, the 38 photos) the median is 7.8 and 12.5% reach 9.0, the level chosen
below every marked one. Held-out check: the robustness benchmark on wild pictures
(docs/watermark.md). Marks made before the template (legacy format, first versions) have no
template: they are read as embedded, not searched for."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aigcguard.watermark.tilemark.sync import (
    _ANGLES,
    _SCALES,
    _flat_log_spectrum,
    _template_points,
    _template_spectrum,
    spectral_candidates,
    template_dft,
)

GATE_LEVEL = 9.0
GATE_TOP = 3  # template candidates besides the unmoved grid (as the keyed search takes)


@dataclass(frozen=True)
class Look:
    """What the first look saw: the template's spectral candidates ``(scale, angle, score)``
    (the keyed search starts from the same ones) and the template's amplitude at the unmoved
    grid, then at each candidate."""

    found: tuple[tuple[float, float, float], ...]
    amplitudes: tuple[float, ...]

    @property
    def amplitude(self) -> float:
        return max(self.amplitudes)

    @property
    def open(self) -> bool:
        """Whether the searched families should run at all."""
        return self.amplitude >= GATE_LEVEL


def amplitudes(w: torch.Tensor, geometries: list[tuple[float, float]]) -> list[float]:
    """The template's amplitude ``sum_k |X(f_k)| / ||w||`` at each (scale, angle)."""
    norm = float((w.double() ** 2).sum().sqrt().clamp(min=1e-12))
    return (template_dft(w, geometries).abs().sum(dim=1) / norm).tolist()


def look(w: torch.Tensor) -> Look:
    """The first look at a whitened working image (key-free)."""
    found = spectral_candidates(
        _template_spectrum(_flat_log_spectrum(w)), _template_points(), _SCALES, _ANGLES, GATE_TOP
    )
    geometries = [(1.0, 0.0), *((s, a) for s, a, _ in found)]
    return Look(tuple(found), tuple(amplitudes(w, geometries)))


def template_amplitude(w: torch.Tensor) -> float:
    """The template's amplitude at its best placement among the unmoved grid and the
    template's spectral candidates (key-free). About 7-8 on a picture without the mark (the
    largest of a few geometries), tens on a marked one."""
    return look(w).amplitude


def worth_searching(w: torch.Tensor) -> bool:
    """Whether the searched families should run on this whitened working image."""
    return look(w).open
