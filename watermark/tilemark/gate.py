"""A key-free first look that decides where tilemark's search is worth running (issue 22).

Almost no picture a platform checks carries a mark, and the searched families (every
candidate geometry, offset, tile offset and nonce) cost tens of milliseconds a placement on a
2-core CPU. Every mark made in the keyed format carries the template, whose four sinusoids
survive the attacks that need a search (crops, rotation, rescaling, quarter turns): the gate
measures the template's amplitude, ``sum |X(f_k)| / ||w||`` over its four frequencies, at the
unmoved grid and at the template's best matches in the spectrum (the key-free candidates the
search starts from, kept in the :class:`Look` for it). The searched families run only when
one reaches ``GATE_LEVEL``, and then only at the (refined) geometries that reach it, the
quarter turns at the template's best only from ``TURN_LEVEL`` (``keyed_search.placements``).
The as-embedded families (what re-encoding, resizing and colour edits leave) always run: they
cost a few milliseconds. Marks of the legacy format have no template: they are read as
embedded only.

Every family is still counted whole, all the geometries it could have placed, so a p-value's
budget is what it was, and since the choice is key-free the bound holds whatever it chooses:
the gate costs detections, it cannot make an unmarked picture read as marked more often than
the budget says. (It is not a pure subset of the full search: a family's screened pairs, see
``keyed_search.SCREEN``, are the most extreme of the pairs it scored, so the gated detector
has its own calibration, data/watermark_calibration.json.)

Measured (2-core machine, December 2026): on the 38 robustness photos marked and attacked
(crop 10%, rotate 5 degrees, the combined attack, crop 50%), the marks that only the search
finds have an amplitude of 9.68 or more (skimage grass, the busiest texture; median 36); on
488 unmarked pictures (300 wild real photos, 150 wild generated pictures, the 38 photos) the
median is 7.8 and 12.5% reach 9.0, the level chosen below every marked one. With the searched
geometries gated too, the same photos under those attacks, JPEG 50 and a quarter turn were
detected exactly as by the full search (266 of 266 pictures alike). Quarter-turned marks
(five attacks: a turn alone, with JPEG 75 or 50, a 10% crop, the combined attack) read 11.2
or more at the turned geometry on the 38 photos (grass; 17.7 for every other photo), hence
``TURN_LEVEL``. Held out: the robustness benchmark on 40 wild pictures (docs/watermark.md),
and those 40 under the five quarter-turn attacks, 200 of 200 detected."""

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
#: the level the turned family's geometry must reach: quarter turns leave the template whole,
#: so a turned mark reads strongly there (on the 38 photos under five quarter-turn attacks,
#: 11.2 at least, grass; 17.7 for every other photo), while 9% of unmarked pictures reach 9.0
#: there and 5% reach 10.5: three placements saved on each of the others
TURN_LEVEL = 10.5
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
