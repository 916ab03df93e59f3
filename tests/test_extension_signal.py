"""Extension point: a new check signal is its own function plus one registration.

The toy below is the whole of a signal (docs/architecture.md, "a new check signal"): one
``@signal(...)`` line makes the Checker run it (after the built-in signals, when what it needs
is there), report its result under ``extra`` in the JSON and the HTML report, and sum up its
evidence with the rule it brings, with no other file touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from aigcguard.detectors.api import Detection
from aigcguard.imageio import load_image, save_image
from aigcguard.results import JsonResult
from aigcguard.service.check import (
    SIGNALS,
    Checker,
    Evidence,
    render_html,
    signal,
    signal_names,
    summarise,
)
from tests.helpers import to_tensor

BUILT_IN = [
    "credentials",
    "labels",
    "known_watermark",
    "watermark",
    "ledger",
    "binding",
    "detector",
    "similarity",
]
TODAYS_JSON = ["path", "summary", *BUILT_IN, "errors"]


@dataclass(frozen=True)
class SidecarClaim(JsonResult):
    """What a ``<picture>.generator`` file beside the picture says made it."""

    generator: str


def sidecar_rule(found, evidence: Evidence) -> None:
    claim = found.get("sidecar")
    if claim is not None:
        evidence.add("strong", "sidecar", f"a sidecar file names a generator: {claim.generator}")


@pytest.fixture
def sidecar_signal():
    @signal("sidecar", needs=("file",), rule=sidecar_rule)
    def sidecar(checker, picture):
        """The generator a sidecar file names; None without one (nothing either way)."""
        try:
            text = Path(f"{picture.path}.generator").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return SidecarClaim(text.strip())

    yield sidecar
    SIGNALS.remove("sidecar")


@pytest.fixture(scope="module")
def checker():
    with Checker(detector="spectral", device="cpu") as c:
        yield c


@pytest.fixture
def pictures(tmp_path, photos):
    made = save_image(to_tensor(photos["coffee"][:160, :160]), tmp_path / "made.png")
    (tmp_path / "made.png.generator").write_text("toy-diffusion\n", encoding="utf-8")
    plain = save_image(to_tensor(photos["astronaut"][:160, :160]), tmp_path / "plain.png")
    broken = save_image(to_tensor(photos["astronaut"][:160, :160]), tmp_path / "broken.png")
    (tmp_path / "broken.png.generator").mkdir()  # unreadable: the signal fails alone
    return made, plain, broken


def test_a_registered_signal_runs_reports_and_decides(sidecar_signal, checker, pictures):
    assert signal_names() == [*BUILT_IN, "sidecar"]  # registration order, the toy last
    made, plain, broken = checker.check_files(pictures)

    assert made.summary.verdict == "generated" and made.summary.decided_by == ["sidecar"]
    assert "a sidecar file names a generator: toy-diffusion" in made.summary.reasons
    d = made.to_dict()
    assert list(d) == [*TODAYS_JSON, "extra"]
    assert d["extra"] == {"sidecar": {"generator": "toy-diffusion"}}

    assert "sidecar" not in plain.summary.decided_by
    assert plain.to_dict()["extra"] == {"sidecar": None}  # ran, nothing to report

    assert "sidecar" in broken.errors and "sidecar" not in broken.extra
    assert broken.detector is not None  # the other signals still ran

    page = render_html([made, plain, broken])
    assert "toy-diffusion" in page and "failed:" in page


def test_a_signal_runs_only_with_what_it_needs(sidecar_signal, checker, pictures):
    made = pictures[0]
    result = checker.check(load_image(made).pixels, str(made))  # pixels only: no file to read
    assert result.extra == {} and list(result.to_dict()) == TODAYS_JSON


def test_the_signal_rule_takes_its_place_among_the_evidence(sidecar_signal):
    claim = SidecarClaim("toy-diffusion")
    strict = Detection("x.png", 0.9, "likely_generated", "m", 0.8, target_fpr=0.01)
    s = summarise({"sidecar": claim, "detector": strict})
    assert s.verdict == "generated" and s.decided_by == ["sidecar"]
    assert s.reasons[-1] == "a sidecar file names a generator: toy-diffusion"  # after built-ins
    s = summarise({"sidecar": None, "detector": strict})
    assert s.verdict == "likely_generated" and s.decided_by == ["detector"]


def test_unknown_needs_are_refused_and_removal_restores_todays_json(checker, pictures):
    with pytest.raises(ValueError, match="needs"):
        signal("gpu_only", needs=("gpu",))
    assert "gpu_only" not in SIGNALS
    assert signal_names() == BUILT_IN  # the toy of the other tests is gone
    [made] = checker.check_files(pictures[:1])
    assert list(made.to_dict()) == TODAYS_JSON
