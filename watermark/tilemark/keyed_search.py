"""Finding and judging a keyed-format mark (see ``keyed``).

The geometry comes from the key-free template alone: its peaks in the spectrum give scale and
angle to about 1% and half a degree (``spectral_candidates``), the exact Fourier power at its
four frequencies, maximised over a fine grid around each candidate, pins them down, and the
phases there give where the tile grid starts, modulo the template's period of two tiles
(``offsets``; a few offsets fit the four phases almost equally, so the best TOP_OFFSETS are
kept). Nothing keyed is periodic, so nothing keyed can be averaged out of marked pictures to
help the search, and the search needs nothing keyed: the key only enters in the last step,
where every (offset, half-pixel jitter, tile offset within the super-tile, nonce) hypothesis at
the chosen geometries is scored by its known chips. Quarter turns are geometries too (the
template looks the same turned; its phases do not).

Since the geometries are chosen without the key, the p-value's multiplier is just the number of
keyed hypotheses scored, in three families that each get a share of the budget (as for the
legacy format, see ``search``): the picture as embedded (scale 1, angle 0, upright, the
super-tile where it was put: 9 half-pixel shifts, every nonce), upright at any of the candidate
geometries, and the quarter turns at the template's best. The two searched families are also
judged over the few (shift, tile offset) pairs whose balance is most extreme, a choice made
without the nonces' signs and so counted by those pairs' nonces alone (``score``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

from aigcguard.watermark.payload import SYNC_BITS, signed_sum_sf
from aigcguard.watermark.tilemark.gate import GATE_LEVEL, TURN_LEVEL, Look, amplitudes
from aigcguard.watermark.tilemark.keyed import (
    NONCES,
    SUPER,
    SUPER_SHIFTS,
    SUPER_TILES,
    _chip_reads,
    chip_map,
    demodulate,
    pair_scores,
    read_energy,
    read_super,
)
from aigcguard.watermark.tilemark.readout import Geometry, fold
from aigcguard.watermark.tilemark.sync import (
    _ANGLES,
    _SCALES,
    TEMPLATE_FREQS,
    TEMPLATE_PHASES,
    _flat_log_spectrum,
    _template_points,
    _template_spectrum,
    spectral_candidates,
    template_dft,
)
from aigcguard.watermark.tilemark.tile import PERIOD, frame_values, tile_layout

# Shares of the keyed format's part of the false-positive budget (see ``search`` for why the
# picture as embedded gets a family of its own).
KEYED_SHARES = {"as embedded": 0.01, "upright": 0.89, "turned": 0.10}
KEYED_TOP = 3  # template candidates besides the unmoved grid
# Each searched family's best hypothesis is judged twice, on two halves of its share: over
# every pair it scored, and over the SCREEN pairs of most extreme balance (half from each
# end; see keyed.PairScores), which count their nonces alone. Informed embedding leaves a
# busy texture's true pair among the very lowest balances, a smooth photo's among the
# highest (measured on the 38 robustness photos after crop 10% and rotate 5 degrees: at most
# 6th from an end of 73,728 pairs in 75 of 76 cases, 244th in the other, which the full count
# finds); the screened count needs strength 6.9 where the full one needs 7.7. Held-out
# check: docs/watermark.md, robustness on wild pictures.
SCREEN = 256
SCREEN_SHARE = 0.5
# Key-free refinement: the template's exact power on a 9 x 9 grid of scale and angle around a
# candidate, coarse to fine (steps of 3, then 1, then a third of these spacings).
_REFINE_SCALE, _REFINE_ANGLE = 0.0025, 0.125
TOP_OFFSETS = 64  # offsets kept from the template phases per geometry (aliases: see offsets)
_OFFSET_GRID = 128  # offsets tried per side of the template's cell: the half-pixel grid
_JITTER = (-1, 0, 1)  # half-pixel shifts around each offset (and around the unmoved grid)


@dataclass(frozen=True)
class KeyedGeometry(Geometry):
    """A keyed hypothesis: a geometry (quarter turns are in the angle, ``quarter`` is 0), a
    half-pixel shift over the super-tile and the picture's nonce."""

    nonce: int = 0


def template_power(w: torch.Tensor, geometries: list[tuple[float, float]]) -> torch.Tensor:
    """The template's power at each (scale, angle), summed over its frequencies."""
    return (template_dft(w, geometries).abs() ** 2).sum(dim=1).float()


def refine_template(w: torch.Tensor, scale: float, angle: float) -> tuple[float, float]:
    """The (scale, angle) near a candidate where the template's exact power is largest."""
    best = (scale, angle)
    for step in (3.0, 1.0, 1.0 / 3):
        s0, a0 = best
        grid = [
            (s0 * (1 + i * step * _REFINE_SCALE), a0 + j * step * _REFINE_ANGLE)
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
        ]
        best = grid[int(template_power(w, grid).argmax())]
    return best


@lru_cache(maxsize=1)
def _offset_phases() -> torch.Tensor:
    """4 pi k . (a, b) for every template frequency k over a grid of the template's cell
    (two tiles a side, in fractions a, b): the phase an offset of 2 PERIOD (a, b) adds."""
    ks = torch.tensor(TEMPLATE_FREQS, dtype=torch.float32)
    frac = torch.arange(_OFFSET_GRID, dtype=torch.float32) / _OFFSET_GRID
    a, b = torch.meshgrid(frac, frac, indexing="ij")
    return 4 * math.pi * (a[..., None] * ks[:, 0] + b[..., None] * ks[:, 1])


def offsets(w: torch.Tensor, scale: float, angle: float, top: int = TOP_OFFSETS):
    """Where the tile grid starts, from the template's phases (key-free): the ``top`` best
    offsets (tile coordinates, modulo the template's period of two tiles) at one geometry.
    At the right offset every frequency's phase is its embedded phase: the score is the sum
    of the amplitudes times the cosine of the phase errors."""
    x = template_dft(w, [(scale, angle)])[0]
    err = x.angle().float() - torch.tensor(TEMPLATE_PHASES) + _offset_phases()
    score = (x.abs().float() * torch.cos(err)).sum(dim=-1)
    padded = F.pad(score[None, None], (2, 2, 2, 2), mode="circular")
    peaks = score == F.max_pool2d(padded, 5, stride=1)[0, 0]
    vals = torch.where(peaks, score, torch.full_like(score, -math.inf)).flatten()
    best = torch.topk(vals, top).indices.tolist()
    cell = 2 * PERIOD / _OFFSET_GRID
    return [(cell * (i // _OFFSET_GRID), cell * (i % _OFFSET_GRID)) for i in best]


def candidates(w: torch.Tensor, found=None) -> list[tuple[float, float]]:
    """The unmoved grid, then the template's best matches, refined (key-free). ``found``:
    those matches, when the gate already made them (``gate.Look.found``)."""
    if found is None:
        found = spectral_candidates(
            _template_spectrum(_flat_log_spectrum(w)),
            _template_points(),
            _SCALES,
            _ANGLES,
            KEYED_TOP,
        )
    out = [(1.0, 0.0)]
    for s, a, _ in found:
        refined = refine_template(w, s, a)
        if refined not in out:
            out.append(refined)
    return out


def _sigmas(offs: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Shifts within a tile (half pixels) to try for the template's offsets, with jitter: the
    pattern's first chip lies at twice the offset on the half-pixel grid."""
    out = {}  # in order, each once
    for oy, ox in offs:
        for dy in _JITTER:
            for dx in _JITTER:
                at = ((round(2 * oy) + dy) % (2 * PERIOD), (round(2 * ox) + dx) % (2 * PERIOD))
                out[at] = None
    return list(out)


@dataclass(frozen=True)
class Placement:
    """Where a family looks, chosen without the key: a geometry, its chip map, the shifts
    within a tile to try, and whether every tile offset of the super-tile is tried (else
    only the super-tile where the embedder put it)."""

    scale: float
    angle: float
    cmap: torch.Tensor
    sigmas: list[tuple[int, int]]
    every_tile: bool
    shared: bool = False  # tried with many keys: gather every chip once, for all of them
    kept: dict = field(default_factory=dict, compare=False, repr=False)

    def reads(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every chip at every shift to try and each shift's energy (key-free), gathered once
        when ``shared``; None otherwise (one key gathers them itself)."""
        if not self.shared:
            return None
        if "reads" not in self.kept:
            reads = _chip_reads(self.cmap, self.sigmas)
            self.kept["reads"] = (reads, read_energy(self.cmap, self.sigmas))
        return self.kept["reads"]


@dataclass(frozen=True)
class Family:
    """A family of keyed hypotheses: where it looks, how many hypotheses it scores (every
    pair's nonces) and its share of the keyed format's budget; ``screened``: also judged
    over its pairs of most extreme balance on half the share."""

    name: str
    places: list[Placement]
    hypotheses: int
    share: float
    screened: bool


def placements(
    w: torch.Tensor, *, search: bool = True, shared: bool = False, look: Look | None = None
) -> list[Family]:
    """Every family's placements for one whitened working image: all the key-free work of a
    keyed detection, shared when many keys are tried on one picture (calibration).

    ``look`` (the gate's, ``gate.look``): only the geometries where the template's amplitude
    reaches ``GATE_LEVEL`` are placed (the turned family's, at the template's best, from
    ``TURN_LEVEL``); each family is still counted whole, every geometry it could have
    placed, so leaving some out only costs detections. The choice is key-free, so the
    p-value holds whichever it makes."""
    sigmas = [(r % (2 * PERIOD), c % (2 * PERIOD)) for r in _JITTER for c in _JITTER]
    unmoved = Placement(1.0, 0.0, chip_map(fold(w, 1.0, 0.0, SUPER), 0), sigmas, False, shared)
    as_embedded = KEYED_SHARES["as embedded"]
    out = [Family("as embedded", [unmoved], len(sigmas) * NONCES, as_embedded, False)]
    if not search:
        return out
    geoms = candidates(w, None if look is None else look.found)
    levels = {"upright": GATE_LEVEL, "turned": TURN_LEVEL}
    amps = dict(zip(geoms, amplitudes(w, geoms), strict=True)) if look is not None else None
    # counted whatever the template gave: offsets x jitter x tile offsets x nonces
    per_geometry = TOP_OFFSETS * len(_JITTER) ** 2 * SUPER_TILES**2 * NONCES
    families = (("upright", geoms, (0,)), ("turned", geoms[1:2] or geoms, (1, 2, 3)))
    for family, where, quarters in families:
        places = []
        for s, a in (g for g in where if amps is None or amps[g] >= levels[family]):
            for q in quarters:
                # the unmoved grid's chip map is the as-embedded family's: read it once
                moved = (s, a + 90 * q) != (1.0, 0.0)
                cmap = chip_map(fold(w, s, a + 90 * q, SUPER), 0) if moved else unmoved.cmap
                places.append(
                    Placement(s, a + 90 * q, cmap, _sigmas(offsets(w, s, a + 90 * q)), True, shared)
                )
        if places:
            counted = len(where) * len(quarters) * per_geometry
            out.append(Family(family, places, counted, KEYED_SHARES[family], True))
    return out


def _hypothesis(fam: Family, scored: list, pair: int):
    """The keyed hypothesis of a pair (numbered over the family's placements in turn) and the
    chip map it was read on."""
    k = 0
    while pair >= len(scored[k].strength):
        pair -= len(scored[k].strength)
        k += 1
    p, ps = fam.places[k], scored[k]
    si, i, j = ps.locate(pair)
    shift = tuple(
        (sig + 2 * PERIOD * t) % SUPER_SHIFTS for sig, t in zip(p.sigmas[si], (i, j), strict=True)
    )
    strength, nonce = float(ps.strength[pair]), int(ps.nonce[pair])
    return KeyedGeometry(p.scale, p.angle, 0, shift, strength, nonce), p.cmap


def score(families: list[Family], key: str | bytes):
    """Each family's best keyed hypothesis at its placements, as (family, hypothesis, cost =
    hypotheses counted / share, the chip map it was read on); a screened family also gives
    the best of its SCREEN pairs of most extreme balance, as ``"<family>, screened"``."""
    out = []
    for fam in families:
        scored = [pair_scores(p.cmap, key, p.sigmas, p.reads(), p.every_tile) for p in fam.places]
        strength = torch.cat([s.strength for s in scored])
        share = fam.share * (1 - SCREEN_SHARE) if fam.screened else fam.share
        hyp, cmap = _hypothesis(fam, scored, int(strength.argmax()))
        out.append((fam.name, hyp, fam.hypotheses / share, cmap))
        if fam.screened and len(strength) > SCREEN:
            order = torch.cat([s.balance for s in scored]).argsort()
            kept = torch.cat([order[: SCREEN // 2], order[-(SCREEN // 2) :]])
            hyp, cmap = _hypothesis(fam, scored, int(kept[strength[kept].argmax()]))
            cost = SCREEN * NONCES / (fam.share * SCREEN_SHARE)
            out.append((f"{fam.name}, screened", hyp, cost, cmap))
    return out


def locate_keyed(
    w: torch.Tensor, key: str | bytes, *, search: bool = True
) -> list[tuple[str, KeyedGeometry, float, torch.Tensor]]:
    """Each family's best keyed hypothesis for one whitened working image: (family,
    hypothesis, cost = hypotheses counted / share, the chip map it was read on)."""
    return score(placements(w, search=search), key)


def read_keyed(cmap: torch.Tensor, hyp: KeyedGeometry, key: str | bytes) -> torch.Tensor:
    """One tile's chip values (N_CHIPS) at a keyed hypothesis, demodulated."""
    return demodulate(read_super(cmap, hyp.shift), hyp.nonce, key)


def keyed_readings(
    w: torch.Tensor, key: str | bytes, code: torch.Tensor | None = None, places=None
):
    """Every keyed family's best hypothesis, read and judged, as (family, hypothesis, cost,
    known, coded, evidence, p) tuples; ``code`` (+-1 per coded chip) adds the expected
    message's chips to the evidence; ``places``: ``placements(w)``, when already computed."""
    layout = tile_layout(key)
    out = []
    for family, hyp, cost, cmap in score(places or placements(w), key):
        chips = read_keyed(cmap, hyp, key)
        known = (chips * layout.known)[layout.known != 0]
        coded = frame_values(chips, key)[SYNC_BITS:]
        evidence = known if code is None else torch.cat([known, coded * code])
        out.append((family, hyp, cost, known, coded, evidence, signed_sum_sf(evidence) * cost))
    return out


__all__ = [
    "KEYED_SHARES",
    "KEYED_TOP",
    "SCREEN",
    "SCREEN_SHARE",
    "SUPER",
    "Family",
    "KeyedGeometry",
    "Placement",
    "candidates",
    "keyed_readings",
    "locate_keyed",
    "placements",
    "read_keyed",
    "refine_template",
    "score",
    "template_power",
]
