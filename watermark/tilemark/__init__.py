"""``tilemark``: a keyed, periodic luminance mark that finds its own geometry.

The mark is built from tiles of 16 x 16 chips, eight tiles across the short side, so it
scales with the image. Each chip is a smooth bump whose sign carries one value: 128 chips are
*known* (64 keyed pilot signs and the key's 64 sync bits), 128 carry the 64-bit payload under
a rate-1/2 code; every frame chip is XORed with a keyed mask. In the *keyed* format marks are
written in, every chip of every tile is also multiplied by a keyed sign that depends on the
tile's place in an 8 x 8 super-tile and on the picture's nonce (``keyed``), so neither
averaging many marked pictures nor folding one onto its tile period isolates the pattern
(docs/watermark.md, threat model); the *legacy* format of earlier versions repeats one tile
everywhere, and is still read.

Embedding is informed: each chip's value is its sign less part of what the picture itself
already reads there, so busy textures do not drown the payload. The tiles, plus a fixed
template of a few sinusoids off the tile's frequency lattice (for synchronisation), are added
to R, G and B alike, shaped by local texture (amplitude as local deviation to the power
MASK_EXP) and scaled per image to a target PSNR.

Detection needs only the key:

1. the luminance is brought to a working size (short side 256), high-pass filtered,
   contrast-normalised (weighing each pixel as the mask and the picture's noise there say)
   and its spectrum partly flattened (weighing each frequency against the picture's power);
2. the template's peaks (and, for marks made before the template, the lattice of
   frequencies the repeating tile puts its power on) are matched over the power spectrum at
   every scale and rotation at once (translation does not change the power spectrum),
   giving a few candidate geometries (key-free);
3. for each candidate the image is folded onto one tile, adding up every repetition; every
   chip is read at every half-pixel shift and quarter turn by circular correlation, and each
   such hypothesis is scored by the known chips; the strongest candidates are refined on a
   fine grid of scale and angle;
4. the payload chips are read at the best hypothesis and decoded (BP + OSD).

That is the legacy format's search (``search``); the keyed one (``keyed_search``) takes its
geometry and grid offset from the template alone and scores every nonce and tile offset at the
few placements the template gives. Detection runs both, each on its share of the
false-positive budget (``method.FORMAT_SHARES``), and says which format it read. The searched
families run only where a key-free first look finds the template (``gate``), at the geometries
where it finds it, and legacy marks (no template) are read as embedded; every family keeps its
whole share of the budget, so the p-value's bound holds whatever the gate leaves out.

For a picture without this mark the known chips' signs are fair coins given the picture, so
each hypothesis's strength t obeys P <= min(exp(-t^2 / 2), 3.18 P(N(0,1) >= t)) (Hoeffding;
Bentkus & Dzindzalieta); ``detect`` multiplies that bound by the number of hypotheses the
search could have chosen from, over the share of the false-positive budget spent on them:
the grid as embedded (what re-encoding, resizing and colour edits leave) gets a small family
of its own, so it needs less strength than the searched geometries (see ``locate``).

One file per job: ``tile`` (chips, key layout, chip shape), ``picture`` (working size,
texture mask, whitening), ``sync`` (template and spectral search), ``readout`` (fold and
matched filter), ``search`` (legacy families, refinement, verdict), ``keyed`` (the keyed
format's signs and read-out), ``keyed_search`` (its search), ``ssim_guard``, ``embedding``
(informed embedding) and ``method`` (the registered :class:`TileMark` and
``tilemark-legacy``)."""

# Importing ``method`` registers ``tilemark``.
from aigcguard.watermark.payload import PAYLOAD_BITS, SYNC_BITS
from aigcguard.watermark.tilemark.embedding import (
    FORMATS,
    INFORMED,
    INFORMED_BORDER,
    INFORMED_BOX,
    INFORMED_CAP,
    MIN_SSIM,
    TARGET_PSNR,
    embed_tilemark,
    informed_values,
)
from aigcguard.watermark.tilemark.gate import (
    GATE_LEVEL,
    TURN_LEVEL,
    template_amplitude,
    worth_searching,
)
from aigcguard.watermark.tilemark.keyed import (
    NONCES,
    SUPER,
    SUPER_TILES,
    PairScores,
    chip_map,
    demodulate,
    modulation,
    nonce_for,
    pair_scores,
    read_super,
    tile_strengths,
)
from aigcguard.watermark.tilemark.keyed_search import (
    KEYED_SHARES,
    KEYED_TOP,
    SCREEN,
    SCREEN_SHARE,
    TOP_OFFSETS,
    KeyedGeometry,
    keyed_readings,
    locate_keyed,
    offsets,
    template_power,
)
from aigcguard.watermark.tilemark.method import (
    FORMAT_SHARES,
    LegacyTileMark,
    TileMark,
    all_families,
    judged_families,
)
from aigcguard.watermark.tilemark.picture import (
    FLATTEN_EXP,
    FLATTEN_FLOOR,
    MASK_EXP,
    WHITEN_EXP,
    WORK_LONG,
    flatten_spectrum,
    local_variance,
    luma,
    resize,
    texture_mask,
    upsample,
    whiten,
    working_size,
    working_whitened,
)
from aigcguard.watermark.tilemark.readout import (
    AS_EMBEDDED,
    SHIFTS,
    Geometry,
    PictureMemo,
    fold,
    read_geometry,
)
from aigcguard.watermark.tilemark.search import (
    FAMILIES,
    FINE,
    SHARE_AS_EMBEDDED,
    SHARE_TURNED,
    SHARE_UPRIGHT,
    TOP_LATTICE,
    TOP_TEMPLATE,
    FamilyReading,
    locate,
    read_families,
)
from aigcguard.watermark.tilemark.ssim_guard import (
    ssim,
)
from aigcguard.watermark.tilemark.sync import (
    TEMPLATE_FREQS,
    TEMPLATE_PHASES,
    TEMPLATE_SHARE,
    spectral_candidates,
    template,
)
from aigcguard.watermark.tilemark.tile import (
    CHIP_PX,
    CHIPS,
    N_CHIPS,
    N_FRAME,
    N_PILOT,
    PERIOD,
    WORK_SHORT,
    TileLayout,
    frame_values,
    render,
    tile_layout,
    tile_pattern,
)

__all__ = [
    "AS_EMBEDDED",
    "CHIPS",
    "CHIP_PX",
    "FAMILIES",
    "FINE",
    "FLATTEN_EXP",
    "FLATTEN_FLOOR",
    "FORMATS",
    "FORMAT_SHARES",
    "GATE_LEVEL",
    "INFORMED",
    "INFORMED_BORDER",
    "INFORMED_BOX",
    "INFORMED_CAP",
    "KEYED_SHARES",
    "KEYED_TOP",
    "MASK_EXP",
    "MIN_SSIM",
    "NONCES",
    "N_CHIPS",
    "N_FRAME",
    "N_PILOT",
    "PAYLOAD_BITS",
    "PERIOD",
    "SCREEN",
    "SCREEN_SHARE",
    "SHARE_AS_EMBEDDED",
    "SHARE_TURNED",
    "SHARE_UPRIGHT",
    "SHIFTS",
    "SUPER",
    "SUPER_TILES",
    "SYNC_BITS",
    "TARGET_PSNR",
    "TEMPLATE_FREQS",
    "TEMPLATE_PHASES",
    "TEMPLATE_SHARE",
    "TOP_LATTICE",
    "TOP_OFFSETS",
    "TOP_TEMPLATE",
    "TURN_LEVEL",
    "WHITEN_EXP",
    "WORK_LONG",
    "WORK_SHORT",
    "FamilyReading",
    "Geometry",
    "KeyedGeometry",
    "LegacyTileMark",
    "PairScores",
    "PictureMemo",
    "TileLayout",
    "TileMark",
    "all_families",
    "chip_map",
    "demodulate",
    "embed_tilemark",
    "flatten_spectrum",
    "fold",
    "frame_values",
    "informed_values",
    "judged_families",
    "keyed_readings",
    "local_variance",
    "locate",
    "locate_keyed",
    "luma",
    "modulation",
    "nonce_for",
    "offsets",
    "pair_scores",
    "read_families",
    "read_geometry",
    "read_super",
    "render",
    "resize",
    "spectral_candidates",
    "ssim",
    "template",
    "template_amplitude",
    "template_power",
    "texture_mask",
    "tile_layout",
    "tile_pattern",
    "tile_strengths",
    "upsample",
    "whiten",
    "working_size",
    "working_whitened",
    "worth_searching",
]
