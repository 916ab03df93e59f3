"""Generator families: which generator names belong together when a family is held out.

A family is a lineage that shares its decoder and training recipe (an autoencoder, an
upsampler, a house style), so pictures of one family should never be on both sides of a
leave-one-family-out split. :data:`FAMILIES` is the shipped table, matched in order against
the generator name a manifest gives (case-insensitive regular expressions, searched); a name
that matches no row is ``other`` and an empty name or ``unknown...`` is ``unknown``.

Decided from the 45 generator names of ``../shared/data/wild/manifest.csv`` (see
docs/detectors.md for the counts): Nano Banana and Nano Banana Pro are Gemini image models;
gpt-image-1 is the API name of GPT-4o's image generation; Chroma is a fine-tune of FLUX.1
schnell (its architecture and autoencoder); FLUX.2 keeps the name and maker. Fine-tunes,
LoRAs, ControlNets and IP-Adapters stay with their base model (they change the content, not
the decoder). ``other`` gathers named generators too rare to hold out alone (AuraFlow, Cosmos,
Grok, HiDream, Lumina, OmniGen, PixArt, Qwen-Image, Stable Cascade, Z-Image: one to four
pictures each in the wild set): held out together, they are a test of generators no family
row names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aigcguard.results import JsonResult


@dataclass(frozen=True)
class Family(JsonResult):
    """One row of the table: ``name`` (the key in reports), ``title`` (what it covers) and
    ``pattern`` (a case-insensitive regular expression searched in a generator's name)."""

    name: str
    title: str
    pattern: str


#: in matching order: the first row whose pattern is found in the name wins
FAMILIES: tuple[Family, ...] = (
    Family("unknown", "generator not named", r"^\s*$|^unknown"),
    Family(
        "gemini",
        "Google Gemini / Imagen (Nano Banana, Nano Banana Pro)",
        r"gemini|nano.?banana|imagen\b",
    ),
    Family(
        "gpt-image",
        "OpenAI GPT-4o image generation, gpt-image-1, DALL-E",
        r"gpt-?4o|gpt-image|dall-?e|chatgpt",
    ),
    Family("midjourney", "Midjourney (v5 to v7)", r"midjourney|niji"),
    Family("flux", "Black Forest Labs FLUX.1 / FLUX.2 and fine-tunes (Chroma)", r"flux|chroma"),
    Family("sd3", "Stable Diffusion 3 / 3.5", r"\bsd\s?3|stable diffusion 3"),
    Family("sdxl", "Stable Diffusion XL and its turbo / fine-tunes", r"sdxl|stable diffusion xl"),
    Family(
        "sd1",
        "Stable Diffusion 1.x / 2.x and community checkpoints, LCM on SD 1.5",
        r"\bsd\s?[12]\.|sd1\.|stable diffusion [12]\b",
    ),
    Family("kolors", "Kwai Kolors", r"kolors"),
    Family("hunyuan-dit", "Tencent HunyuanDiT", r"hunyuan"),
)
#: the family of a named generator that no row of :data:`FAMILIES` matches
OTHER = "other"
#: the family of a generated picture whose generator is not named
UNKNOWN = "unknown"

_COMPILED = tuple((f.name, re.compile(f.pattern, re.IGNORECASE)) for f in FAMILIES)


def family_of(generator: str | None) -> str:
    """The family of a generator's name (see :data:`FAMILIES`)."""
    name = (generator or "").strip()
    for family, pattern in _COMPILED:
        if pattern.search(name):
            return family
    return OTHER


def family_names() -> list[str]:
    """Every family a picture can get, table order, ``other`` last."""
    return [f.name for f in FAMILIES] + [OTHER]
