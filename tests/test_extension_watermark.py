"""Extension point: a new watermark method is its own class plus one registration.

The toy below is the whole of a method (docs/architecture.md, "a new watermark method"): one
``@register_method`` line makes ``embed``, ``detect``, ``get_method`` and ``list_methods`` (so
the CLI's ``--method`` choices) know it, with no other file touched.
"""

from __future__ import annotations

import pytest
import torch

from aigcguard.watermark import (
    METHODS,
    WatermarkMethod,
    detect,
    embed,
    get_method,
    list_methods,
    register_method,
)

KEY = "toy-key"


@pytest.fixture
def toy_method():
    @register_method("toy-lsb")
    class ToyLsb(WatermarkMethod):
        """Frame bit i in the least significant bit of the red channel's i-th pixel."""

        description = "frame bits in the red channel's least significant bits (a toy)"

        def capacity(self, height: int, width: int) -> int:
            return height * width

        def embed_frames(self, x, frames, out, key=None) -> None:
            slots = torch.arange(frames.shape[1], device=x.device)
            rows, cols = slots // x.shape[3], slots % x.shape[3]
            red = x[:, 0, rows, cols]
            out[:, 0, rows, cols] = (red & 0xFE) | frames.to(torch.uint8)

        def read_votes(self, x, length, conv=None):
            slots = torch.arange(length, device=x.device)
            rows, cols = slots // x.shape[3], slots % x.shape[3]
            ones = (x[:, 0, rows, cols] & 1).float()
            return ones, torch.ones_like(ones)

    yield ToyLsb
    METHODS.remove("toy-lsb")


def test_a_registered_toy_method_embeds_and_detects_through_the_public_api(toy_method):
    assert "toy-lsb" in list_methods() and isinstance(get_method("toy-lsb"), toy_method)
    assert get_method("toy-lsb") is get_method("TOY-LSB")  # shared instance, any case
    images = torch.randint(0, 256, (2, 3, 32, 48), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)

    marked = embed(images, b"toy-0001", key=KEY, method="toy-lsb")
    assert marked.shape == images.shape and int((marked.int() - images.int()).abs().max()) <= 1

    found = detect(marked, key=KEY, method="toy-lsb")
    assert all(r.detected and r.method == "toy-lsb" for r in found)
    assert [r.payload_text for r in found] == ["toy-0001", "toy-0001"]
    assert not any(r.detected for r in detect(images, key=KEY, method="toy-lsb"))
    with pytest.raises(ValueError, match="already registered"):
        register_method("toy-lsb")(toy_method)


def test_a_removed_method_is_unknown_again(toy_method):
    METHODS.remove("toy-lsb")
    assert "toy-lsb" not in list_methods()
    with pytest.raises(ValueError, match="unknown watermark method 'toy-lsb'"):
        embed(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), b"x", key=KEY, method="toy-lsb")
