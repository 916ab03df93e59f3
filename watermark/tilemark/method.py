"""``tilemark`` as a registered :class:`WatermarkMethod`: frames in and out of chips, the
payload through the rate-1/2 code, and the verdict over the families' readings."""

from __future__ import annotations

from dataclasses import replace

import torch

from aigcguard.watermark import ecc
from aigcguard.watermark.payload import PAYLOAD_BITS, SYNC_BITS, split_frames
from aigcguard.watermark.registry import SoftReading, WatermarkMethod, register_method
from aigcguard.watermark.tilemark.embedding import embed_tilemark
from aigcguard.watermark.tilemark.gate import look
from aigcguard.watermark.tilemark.keyed_search import keyed_readings, placements
from aigcguard.watermark.tilemark.picture import working_whitened
from aigcguard.watermark.tilemark.readout import PictureMemo
from aigcguard.watermark.tilemark.search import FamilyReading, read_families

# The false-positive budget is split between the two formats detection reads: the keyed one
# that marks are made in, and the legacy one of marks made before it (weighted Bonferroni).
FORMAT_SHARES = {"keyed": 0.7, "legacy": 0.3}


def all_families(
    w: torch.Tensor,
    key,
    code: torch.Tensor | None = None,
    memo: PictureMemo | None = None,
    *,
    search: bool = True,
) -> list[FamilyReading]:
    """Every family of both formats for one whitened working image, read and judged, with
    the costs scaled by each format's share of the budget. ``memo`` keeps the key-free work
    for the next key (calibration tries many keys on one picture). ``search=False``: the
    as-embedded families alone, at their usual costs (the searched ones skipped)."""
    shared = memo is not None  # many keys: every chip gathered once, for all of them
    if not search:
        places = _kept(memo, "as embedded", lambda: placements(w, search=False, shared=shared))
    else:
        places = _kept(memo, "keyed", lambda: placements(w, shared=shared))
    return _judged(w, key, code, memo, places, search)


def judged_families(
    w: torch.Tensor, key, code: torch.Tensor | None = None, memo: PictureMemo | None = None
) -> list[FamilyReading]:
    """The families detection judges: where the key-free gate finds the template
    (``gate.look``), the keyed format's searched families at the geometries where it finds
    it, else the as-embedded ones; the legacy format (no template to find) as embedded
    only. The gate's look and placements are kept in ``memo``."""
    seen = _kept(memo, "gate", lambda: look(w))
    if not seen.open:
        return all_families(w, key, code, memo, search=False)
    shared = memo is not None
    places = _kept(memo, "keyed gated", lambda: placements(w, shared=shared, look=seen))
    return _judged(w, key, code, memo, places, False)


def _kept(memo: PictureMemo | None, name: str, make):
    return make() if memo is None else memo.get(name, make)


def _judged(w, key, code, memo, places, legacy_search: bool) -> list[FamilyReading]:
    """The keyed families at ``places`` and the legacy ones (searched or as embedded)."""
    out = [
        FamilyReading(
            fam,
            hyp,
            cost / FORMAT_SHARES["keyed"],
            known,
            coded,
            ev,
            p / FORMAT_SHARES["keyed"],
            "keyed",
        )
        for fam, hyp, cost, known, coded, ev, p in keyed_readings(w, key, code, places)
    ]
    share = FORMAT_SHARES["legacy"]
    for r in read_families(w, key, code, memo, search=legacy_search):
        out.append(replace(r, cost=r.cost / share, p_value=r.p_value / share))
    return out


@register_method("tilemark")
class TileMark(WatermarkMethod):
    description = (
        "keyed luminance tiles whose signs differ per tile and per picture, 64-bit payload "
        "with a rate-1/2 code; finds its own scale, rotation and shift; survives JPEG, "
        "resizing, crops and rotation; reads legacy marks too"
    )
    needs_key = True
    soft = True

    def capacity(self, height: int, width: int) -> int:
        return SYNC_BITS + PAYLOAD_BITS if min(height, width) >= 64 else 0

    #: the format marks are written in (detection reads both)
    fmt = "keyed"

    def embed_frames(self, x, frames, out, key=None) -> None:
        sync, payload = split_frames(frames, key, unscramble=False)
        chips = torch.cat([sync, ecc.encode(payload)], dim=1)
        embed_tilemark(x, chips, key, out, fmt=self.fmt)

    def read_soft(self, x, key, expected=None) -> list[SoftReading]:
        whitened = working_whitened(x.cpu())
        readings = []
        for i in range(x.shape[0]):
            code = None
            if expected is not None:
                code = ecc.encode(expected[i : i + 1].cpu())[0].float() * 2 - 1
            # The p-value is the smallest over the families' best hypotheses; the payload is
            # read where the mark reads strongest (a searched placement may fit better than
            # the as-embedded one that needs less evidence).
            families = judged_families(whitened[i], key, code)
            judged = min(families, key=lambda r: r.p_value)
            if judged.p_value >= 1:  # no evidence at all: no payload to read (saves ~12 ms)
                unread = torch.zeros(PAYLOAD_BITS, dtype=torch.bool)
                reading = SoftReading(judged.evidence, unread, judged.cost, None, judged.format)
                readings.append(reading)
                continue
            strongest = max(families, key=lambda r: r.geometry.strength)
            decoded = ecc.read(strongest.coded, strongest.known)
            readings.append(
                SoftReading(
                    judged.evidence,
                    decoded.bits,
                    trials=judged.cost,
                    payload_error=decoded.error,
                    format=judged.format,
                )
            )
        return readings


@register_method("tilemark-legacy")
class LegacyTileMark(TileMark):
    description = (
        "tilemark as written before the keyed format (one tile repeated everywhere): for "
        "reading old marks' behaviour and the attack benchmarks; its pattern can be estimated "
        "from marked pictures, so new marks should use tilemark"
    )
    fmt = "legacy"
