"""The search and its verdict: the candidate geometries (the grid as embedded, and the
spectral matches of the template and the lattice) are scored and the strongest refined, in
three families of hypotheses that each get a share of the false-positive budget; each
family's best hypothesis is read and judged by the p-value bound times its cost."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aigcguard.watermark.payload import SYNC_BITS, signed_sum_sf
from aigcguard.watermark.tilemark.readout import (
    SHIFTS,
    Geometry,
    _best,
    _strength_maps,
    read_geometry,
)
from aigcguard.watermark.tilemark.sync import (
    _ANGLES,
    _SCALES,
    _flat_log_spectrum,
    _lattice_points,
    _template_points,
    _template_spectrum,
    spectral_candidates,
)
from aigcguard.watermark.tilemark.tile import frame_values, tile_layout

FINE = 9  # refinement grid per candidate: FINE x FINE scales x angles
_STEP_SCALE, _STEP_ANGLE = 0.0025, 0.125  # the FINE grid's spacing, around each candidate

# The false-positive budget is spent on three families of hypotheses (weighted Bonferroni):
# each family's best hypothesis is judged by the bound times the family's size over its
# share, and a detection takes the smallest. The shares sum to 1, so the rate holds. Most of
# what platforms do (re-encoding, resizing, colour and tone) leaves the grid where it was
# embedded, and a test of those few hypotheses needs strength 6.2 at 1e-6 instead of 7.5;
# crops and tilts keep the tile upright; quarter turns are rarer.
SHARE_AS_EMBEDDED = 0.01  # scale 1, angle 0, upright, within half a working pixel of no shift
SHARE_UPRIGHT = 0.89  # every searched geometry, upright
SHARE_TURNED = 0.10  # every searched geometry, any quarter turn
_NEAR = (-1, 0, 1)  # the as-embedded family's shifts per axis, in half pixels
TOP_TEMPLATE = 3  # spectral candidates from the template (the true one: first in 30 probes)
TOP_LATTICE = 4  # and from the lattice


def locate(
    w: torch.Tensor, key: str | bytes, *, search: bool = True, refine: int = 2, memo=None
) -> list[tuple[Geometry, float]]:
    """The best hypothesis of each family for one whitened working image (h x w), with its
    cost: the family's size over its share of the false-positive budget (the p-value is
    the bound times the cost).

    Candidates are the unmoved grid and the best matches of the template (TOP_TEMPLATE) and
    of the tile's lattice (TOP_LATTICE: marks made without a template, and pictures the
    informed embedding left a lattice peak) in the spectrum, key-free; the ``refine``
    strongest upright ones (and the strongest turned one) are refined on a FINE x FINE grid
    of scale and angle around them, coarse to fine. Every point of that grid, around every
    candidate there could have been, is counted. ``memo`` (a ``PictureMemo``) keeps the
    key-free work for the next key. ``search=False``: the as-embedded family alone."""
    cost_as_embedded = len(_NEAR) ** 2 / SHARE_AS_EMBEDDED
    if not search:
        return [(_as_embedded(_strength_maps(w, key, 1.0, 0.0, (0,), memo)[0]), cost_as_embedded)]
    cands = _candidates(w) if memo is None else memo.get("legacy", lambda: _candidates(w))
    searched = (1 + TOP_TEMPLATE + TOP_LATTICE) * FINE * FINE * SHIFTS * SHIFTS
    upright, turned = [], []
    for i, (s, a) in enumerate(cands):
        strengths = _strength_maps(w, key, s, a, memo=memo)
        if i == 0:
            as_embedded = _as_embedded(strengths[0])
        upright.append(_best({0: strengths[0]}, s, a))
        turned.append(_best(strengths, s, a))
    refined: dict[tuple[float, float, int], Geometry] = {}

    def best_refined(scored: list[Geometry], n: int) -> Geometry:
        best = None
        for g in sorted(scored, key=lambda g: -g.strength)[:n]:
            if (g.scale, g.angle, g.quarter) not in refined:
                refined[g.scale, g.angle, g.quarter] = _refine(w, g, key, memo)
            r = refined[g.scale, g.angle, g.quarter]
            best = r if best is None or r.strength > best.strength else best
        return best

    return [
        (as_embedded, cost_as_embedded),
        (best_refined(upright, refine), searched / SHARE_UPRIGHT),
        # a quarter-turned mark is nearly always the strongest candidate: refining one keeps
        # unmarked pictures (where the best is turned three times in four) from paying twice
        (best_refined(turned, 1), 4 * searched / SHARE_TURNED),
    ]


def _as_embedded(strengths: torch.Tensor) -> Geometry:
    """The as-embedded family's best: the unmoved grid, within half a working pixel."""
    near = strengths[_NEAR, :][:, _NEAR]
    value, idx = near.flatten().max(0)
    r, c = divmod(int(idx), len(_NEAR))
    return Geometry(1.0, 0.0, 0, (_NEAR[r] % SHIFTS, _NEAR[c] % SHIFTS), float(value))


def _candidates(w: torch.Tensor) -> list[tuple[float, float]]:
    """The unmoved grid and the template's and the lattice's spectral matches (key-free)."""
    cands = [(1.0, 0.0)]
    flat = _flat_log_spectrum(w)
    for spectrum, points, top in (
        (_template_spectrum(flat), _template_points(), TOP_TEMPLATE),
        (flat, _lattice_points(), TOP_LATTICE),
    ):
        found = spectral_candidates(spectrum, points, _SCALES, _ANGLES, top=top)
        cands += [(s, a) for s, a, _ in found if (s, a) not in cands]
    return cands


def _refine(w: torch.Tensor, g: Geometry, key, memo=None) -> Geometry:
    """Coarse to fine on the FINE x FINE grid around ``g`` (quarter turn kept): a 3 x 3 step
    of three grid spacings, then one of one spacing around the best."""
    reach = FINE // 2
    i0 = j0 = 0
    best = g
    for step in (3, 1):
        centre = (i0, j0)
        grid = [
            (centre[0] + di, centre[1] + dj)
            for di in (-step, 0, step)
            for dj in (-step, 0, step)
            if (di or dj) and abs(centre[0] + di) <= reach and abs(centre[1] + dj) <= reach
        ]
        geometries = [(g.scale * (1 + i * _STEP_SCALE), g.angle + j * _STEP_ANGLE) for i, j in grid]
        for (i, j), (s, a) in zip(grid, geometries, strict=True):
            moved = _best(_strength_maps(w, key, s, a, (g.quarter,), memo), s, a)
            if moved.strength > best.strength:
                best, i0, j0 = moved, i, j
    return best


FAMILIES = ("as embedded", "upright", "turned")  # locate's order


@dataclass(frozen=True)
class FamilyReading:
    """One family's best hypothesis, read: its known chips, its coded chips, the evidence the
    p-value is taken on (the known chips, and the expected codeword's chips when given) and
    that p-value (the bound times the family's cost)."""

    family: str
    geometry: Geometry
    cost: float
    known: torch.Tensor
    coded: torch.Tensor
    evidence: torch.Tensor
    p_value: float
    format: str = "legacy"


def read_families(
    w: torch.Tensor,
    key: str | bytes,
    code: torch.Tensor | None = None,
    memo=None,
    *,
    search: bool = True,
) -> list[FamilyReading]:
    """Every legacy-format family's best hypothesis for one whitened working image, read and
    judged; ``code`` (+-1 per coded chip) adds the expected message's chips to the evidence.
    ``search=False``: the as-embedded family alone, at its usual cost (the others skipped)."""
    layout = tile_layout(key)
    chips_at: dict[Geometry, torch.Tensor] = {}  # families often agree: fold once
    out = []
    located = locate(w, key, memo=memo, search=search)
    for family, (geom, cost) in zip(FAMILIES, located, strict=False):
        if geom not in chips_at:
            chips_at[geom] = read_geometry(w, geom, memo)
        chips = chips_at[geom]
        known = (chips * layout.known)[layout.known != 0]
        coded = frame_values(chips, key)[SYNC_BITS:]
        evidence = known if code is None else torch.cat([known, coded * code])
        p = signed_sum_sf(evidence) * cost
        out.append(FamilyReading(family, geom, cost, known, coded, evidence, p))
    return out
