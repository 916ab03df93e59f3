"""Marks that others already embed, read with the dwtdct decoder.

Stable Diffusion's reference scripts and diffusers mark their outputs with imwatermark's
``dwtDct`` and no key. The same bits reach the image in four ways, depending on whether the
pipeline handed OpenCV uint8 or float pixels (a different chroma offset, so different blocks
are chosen) and whether it passed RGB where OpenCV expects BGR (diffusers does). We try every
combination and correct the p-value for the number of tries (Bonferroni).

Every read is also tried with its bits inverted, for a mark written from float pixels and read
under the uint8 offset: the offsets differ by 255 in the LL band, and 255 = 3 (mod 36), so a
coefficient that was negative in the float picture lands in the other half of its cell. On
warm-toned images (mostly negative U) that inverted read is the only one left: SDXL's float
marking often fails to read back under its own convention there, imwatermark's decoder included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from aigcguard.watermark import dwt
from aigcguard.watermark.api import (
    Images,
    WatermarkDetection,
    _as_list,
    _chunks,
    _stack,
    _verdict,
    _work_device,
    too_small,
)
from aigcguard.watermark.defaults import DEFAULT_P_THRESHOLD
from aigcguard.watermark.payload import (
    binomial_sf,
    bits_to_bytes,
    bytes_to_bits,
)
from aigcguard.watermark.registry import get_method


@dataclass(frozen=True)
class KnownMark:
    name: str
    bits: tuple[int, ...]
    description: str


# SDXL (Stability's generative-models and diffusers): this 48-bit integer, most significant
# bit first, set with WatermarkEncoder.set_watermark("bits", ...).
_SDXL_MESSAGE = 0b101100111110110010010000011110111011000110011110

KNOWN_MARKS = (
    KnownMark(
        "stable-diffusion-v1",
        tuple(bytes_to_bits(b"StableDiffusionV1").int().tolist()),
        "CompVis Stable Diffusion v1 txt2img/img2img scripts: bytes 'StableDiffusionV1'",
    ),
    KnownMark(
        "sdxl",
        tuple(int(c) for c in bin(_SDXL_MESSAGE)[2:]),
        "Stability SDXL (generative-models reference sampling and diffusers): 48-bit mark",
    ),
)


def strongest(*findings: Sequence[WatermarkDetection]) -> list[WatermarkDetection]:
    """Per image, the finding with the smallest p-value among several scans of the same
    images (the first scan's on a tie): how ``--known`` reports our mark or a known one."""
    return [min(group, key=lambda d: d.p_value) for group in zip(*findings, strict=True)]


def detect_known(
    images: Images,
    *,
    device: str | torch.device | None = None,
    p_threshold: float = DEFAULT_P_THRESHOLD,
) -> list[WatermarkDetection]:
    """Scan for the known marks; per image, the best-supported mark and convention.

    ``p_value`` is Bonferroni-corrected for the marks x conventions tried, so the threshold
    keeps its meaning. When nothing is found, the closest candidate is still reported with
    ``detected`` false; a picture under 8 px a side (no 4 x 4 block of the half-size band)
    gets the "too small" result (``reason`` set, p-value 1).
    """
    items, _ = _as_list(images)
    method = get_method("dwtdct")
    expected = {mark.name: torch.tensor(mark.bits, dtype=torch.bool) for mark in KNOWN_MARKS}
    tries = len(KNOWN_MARKS) * len(dwt.CONVENTIONS) * 2
    dev = _work_device(items, device)
    small = [too_small(method, img.shape[1], img.shape[2], p_threshold) for img in items]
    best: list[WatermarkDetection | None] = list(small)
    for idx in _chunks(items, dev, [i for i, r in enumerate(small) if r is None]):
        x = _stack(items, idx, dev)
        by_convention = dwt.block_votes_by_convention(
            x, method.kernel, method.step, dwt.CONVENTIONS
        )
        for conv, votes in zip(dwt.CONVENTIONS, by_convention, strict=True):
            # the blocks read the same whatever the mark; only the tally depends on its length
            for mark in KNOWN_MARKS:
                ones, total = dwt.tally_votes(votes, len(mark.bits))
                bits = dwt.votes_to_bits(ones, total).cpu()
                voted = (total > 0).cpu()
                for j, i in enumerate(idx):
                    n = int(voted[j].sum())
                    for inverted in (False, True):
                        read = bits[j] ^ inverted
                        matched = int(((read == expected[mark.name]) & voted[j]).sum())
                        p = min(1.0, binomial_sf(matched, n) * tries)
                        if best[i] is not None and p >= best[i].p_value:
                            continue
                        data = bits_to_bytes(read[: len(mark.bits) // 8 * 8])
                        verdict = _verdict(method.name, matched, n, p, p_threshold, data)
                        if verdict.detected:
                            label = conv.label + ("/inverted" if inverted else "")
                            verdict = replace(verdict, known=mark.name, convention=label)
                        best[i] = verdict
    return best
