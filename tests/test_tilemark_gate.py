"""The key-free gate in front of tilemark's search (issue 22): it finds the template of a
marked picture after a rotation, stays below its level on unmarked photos, and can only skip
families, never add a detection or change what a p-value means."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aigcguard.watermark import detect, embed
from aigcguard.watermark import tilemark as tm
from aigcguard.watermark.tilemark import keyed_search, search
from tests.helpers import to_array, to_tensor

UNMARKED = ("astronaut", "coffee", "chelsea", "rocket")


def _rotated(picture, degrees=5.0):
    return to_tensor(np.array(Image.fromarray(to_array(picture)).rotate(degrees, Image.BICUBIC)))


@pytest.fixture(scope="module")
def marked(photos):
    return embed(to_tensor(photos["astronaut"])[None], message=b"gate", key="gate key")[0]


def test_the_gate_opens_on_a_rotated_mark_and_stays_shut_on_unmarked_photos(photos, marked):
    rotated = tm.working_whitened(_rotated(marked)[None])[0]
    assert tm.template_amplitude(rotated) > 2 * tm.GATE_LEVEL and tm.worth_searching(rotated)
    for name in UNMARKED:
        w = tm.working_whitened(to_tensor(photos[name])[None])[0]
        assert tm.template_amplitude(w) < tm.GATE_LEVEL, name
    # and the rotated mark is still found: the gate let the search run
    [found] = detect(_rotated(marked)[None], key="gate key")
    assert found.detected and found.payload_text.startswith("gate")


def test_a_shut_gate_skips_the_search_and_keeps_the_as_embedded_costs(photos, monkeypatch):
    w = tm.working_whitened(to_tensor(photos["coffee"])[None])[0]
    full = tm.all_families(w, "k")
    shut = tm.all_families(w, "k", search=False)
    assert {r.family for r in shut} == {"as embedded"} and {r.format for r in shut} == {
        "keyed",
        "legacy",
    }
    # the same hypotheses at the same cost: a p-value means what it meant with the search
    as_embedded = {(r.format, r.family): r for r in full if r.family == "as embedded"}
    for r in shut:
        kept = as_embedded[r.format, r.family]
        assert r.cost == kept.cost and r.p_value == pytest.approx(kept.p_value, rel=1e-12)

    # detection on an unmarked photo never enters the search when the gate is shut
    def no_search(*args, **kwargs):
        raise AssertionError("the search ran behind a shut gate")

    monkeypatch.setattr(search, "_candidates", no_search)
    monkeypatch.setattr(keyed_search, "candidates", no_search)
    [result] = detect(to_tensor(photos["coffee"])[None], key="k")
    assert not result.detected


def test_the_gate_counts_whole_families_and_only_leaves_hypotheses_out(photos, marked):
    """Every family the gate lets through costs what it costs in the full search (counted
    whole, whatever geometries were left out), and a family that is not screened can only
    read weaker (a subset of its hypotheses). The legacy format is never searched."""
    pictures = [to_tensor(photos[n]) for n in UNMARKED] + [marked, _rotated(marked)]
    opened = 0
    for picture in pictures:
        w = tm.working_whitened(picture[None])[0]
        for key in ("gate key", "other"):
            full = {(r.format, r.family): r for r in tm.all_families(w, key)}
            gated = tm.judged_families(w, key)
            for r in gated:
                kept = full[r.format, r.family]
                assert r.cost == kept.cost, (r.format, r.family)
                if "screened" not in r.family:
                    assert r.p_value >= kept.p_value * (1 - 1e-9), (r.format, r.family)
            legacy = {r.family for r in gated if r.format == "legacy"}
            assert legacy == {"as embedded"}
            if not tm.worth_searching(w):
                assert {r.family for r in gated} == {"as embedded"}
            opened += tm.worth_searching(w)
    assert opened  # the rotated mark opened it


def test_only_the_geometries_where_the_template_is_are_searched(marked):
    w = tm.working_whitened(_rotated(marked)[None])[0]
    seen = tm.gate.look(w)
    assert seen.open
    full = keyed_search.placements(w)
    gated = keyed_search.placements(w, look=seen)
    counted = {f.name: f.hypotheses for f in full}
    assert all(f.hypotheses == counted[f.name] for f in gated)  # counted whole
    places = [p for f in gated for p in f.places]
    assert len(places) < sum(len(f.places) for f in full)
    for f in gated[1:]:
        level = tm.TURN_LEVEL if f.name == "turned" else tm.GATE_LEVEL
        for p in f.places:
            base = (p.scale, p.angle - 90 * round(p.angle / 90) if f.name == "turned" else p.angle)
            assert tm.gate.amplitudes(w, [base])[0] >= level
