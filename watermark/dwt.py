"""Batched torch kernels for the DWT-DCT family, bit-compatible with invisible-watermark.

imwatermark's ``dwtDct`` and ``dwtDctSvd`` both work on the U channel of OpenCV's YUV, take
one level of the Haar wavelet, cut the LL band into 4 x 4 blocks in raster order and carry bit
``k % L`` of an L-bit frame in block ``k`` by quantisation index modulation (QIM) with step 36:

- ``dwtDct`` quantises, in each block, the element of largest magnitude other than the first
  (the name says DCT; the code never takes one);
- ``dwtDctSvd`` quantises the largest singular value of the block's DCT, which is the largest
  singular value of the block itself, since the 2-D DCT is orthogonal.

A bit reads as 1 when ``value mod 36 > 18``. We keep exactly that layout, so each side reads
the other's marks, and change only how the mark is written:

- only the LL band changes, so the picture is rebuilt as ``image + upsample(delta LL) / 2``;
  imwatermark rebuilds from all four bands with the horizontal and vertical detail bands
  swapped, which alters every edge of the image and costs PSNR for nothing;
- the quantiser moves each value to the *nearest* point of the bit's lattice (at most half a
  step) instead of always rounding down first (up to three quarters of a step), and in
  ``dwtdct`` it makes sure the changed element stays the block's largest, so the reader finds
  it again;
- the colour change is applied along the RGB direction that moves U alone (Y and V fixed).

Everything is batched over images and blocks; there are no per-pixel or per-block loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BLOCK = 4
STEP = 36.0
# dwtdct: how far above the runner-up the marked element must end (LL units, survives uint8
# rounding), and the largest move, in steps, we spend to keep it the block's largest.
_ARGMAX_MARGIN = 2.0
_MAX_CLEAR_COST = 0.75

# OpenCV's BT.601 YUV (cv2.COLOR_BGR2YUV): Y = .299R + .587G + .114B, U = .492 (B - Y) + delta.
_RY, _GY, _BY = 0.299, 0.587, 0.114
_BU = 0.492
# Moving B by 1 / .492 and G by -(.114 / .587) of that changes U by exactly 1 and Y, V by 0.
_DB_PER_DU = 1.0 / _BU
_DG_PER_DU = -_DB_PER_DU * _BY / _GY


@dataclass(frozen=True)
class ColourConvention:
    """How a pipeline fed the image to OpenCV.

    ``swap_rb``: the pipeline passed RGB where OpenCV expects BGR (diffusers does).
    ``offset``: the chroma offset OpenCV adds, 128 for uint8 input, 0.5 for float input
    (OpenCV assumes floats lie in [0, 1] even when they do not).
    """

    swap_rb: bool = False
    offset: float = 128.0

    @property
    def label(self) -> str:
        order = "rgb-as-bgr" if self.swap_rb else "bgr"
        kind = "float" if self.offset != 128.0 else "uint8"
        return f"{order}/{kind}"


STANDARD = ColourConvention()
CONVENTIONS = (
    ColourConvention(False, 128.0),  # reference scripts on uint8 (SD v1 txt2img)
    ColourConvention(False, 0.5),  # float input, proper BGR (SDXL reference sampling)
    ColourConvention(True, 0.5),  # float input, RGB treated as BGR (diffusers SDXL)
    ColourConvention(True, 128.0),  # uint8 input, RGB treated as BGR
)


def _u_weights(conv: ColourConvention) -> tuple[float, float, float]:
    """U = wr R + wg G + wb B + offset, in our RGB channel order."""
    wr, wg, wb = -_BU * _RY, -_BU * _GY, _BU * (1.0 - _BY)
    return (wb, wg, wr) if conv.swap_rb else (wr, wg, wb)


def block_grid(height: int, width: int) -> tuple[int, int]:
    """Number of 4 x 4 LL blocks (rows, cols) imwatermark uses for an image of this size."""
    ll_h, ll_w = (height // 4 * 4) // 2, (width // 4 * 4) // 2
    return ll_h // BLOCK, ll_w // BLOCK


def _cell_sums(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Each channel's 2 x 2 cell sums over the part the blocks cover: B x 3 x rows x cols,
    float32 (summed in int16, exact for uint8). The same for every colour convention."""
    bsz = x.shape[0]
    h, w = grid[0] * BLOCK * 2, grid[1] * BLOCK * 2
    cells = x[:, :, :h, :w]
    cells = cells.to(torch.int16) if x.dtype == torch.uint8 else cells.float()
    cells = cells.reshape(bsz, 3, h // 2, 2, w)
    pairs = (cells[:, :, :, 0] + cells[:, :, :, 1]).reshape(bsz, 3, h // 2, w // 2, 2)
    return (pairs[..., 0] + pairs[..., 1]).float()


def _ll_of_u(
    x: torch.Tensor, conv: ColourConvention, grid: tuple[int, int], sums=None
) -> torch.Tensor:
    """Haar LL band of U over the part the blocks cover: B x 4 rows x 4 cols, float32.

    LL = (a + b + c + d) / 2 per 2 x 2 cell and U is linear in R, G, B, so we sum each
    channel's cells in int16 (exact for uint8) and mix at quarter resolution: a third of the
    memory traffic of converting the whole image to float first. ``sums``: ``_cell_sums``
    of ``x``, when kept for several conventions.
    """
    sums = _cell_sums(x, grid) if sums is None else sums
    wr, wg, wb = _u_weights(conv)
    return (wr * sums[:, 0] + wg * sums[:, 1] + wb * sums[:, 2]) * 0.5 + 2.0 * conv.offset


def _blocks_of(
    x: torch.Tensor, conv: ColourConvention, sums=None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """LL band of U cut into 4 x 4 blocks: B x N x 16, raster order as imwatermark counts."""
    grid = block_grid(x.shape[2], x.shape[3])
    ll = _ll_of_u(x, conv, grid, sums)
    rows, cols = grid
    blocks = ll.reshape(x.shape[0], rows, BLOCK, cols, BLOCK).permute(0, 1, 3, 2, 4)
    return blocks.reshape(x.shape[0], rows * cols, BLOCK * BLOCK), grid


def _apply_dll(x: torch.Tensor, dblocks: torch.Tensor, grid, conv, out: torch.Tensor) -> None:
    """Write into ``out`` (a copy of ``x``) the change of U's LL band by ``dblocks``.

    Haar synthesis of an LL-only change spreads delta / 2 over each pixel of its 2 x 2 cell;
    moving B by 1 / .492 and G by -(.114 / .587) of that moves U alone. Only B and G change,
    and only inside the block grid; the rest of ``out`` stays as it was.
    """
    bsz = x.shape[0]
    rows, cols = grid
    dll = dblocks.reshape(bsz, rows, cols, BLOCK, BLOCK).permute(0, 1, 3, 2, 4)
    du = dll.reshape(bsz, rows * BLOCK, 1, cols * BLOCK, 1) * 0.5
    h, w = rows * BLOCK * 2, cols * BLOCK * 2
    b_idx = 0 if conv.swap_rb else 2
    # x is integral, so round(x + d) == x + round(d): round at quarter resolution.
    steps = [
        (channel, torch.round(gain * du).to(torch.int16))
        for channel, gain in ((b_idx, _DB_PER_DU), (1, _DG_PER_DU))
    ]
    for channel, step in steps:
        src = x[:, channel, :h, :w].reshape(bsz, h // 2, 2, w // 2, 2)
        new = (src.to(torch.int16) + step).clamp_(0, 255)
        out[:, channel, :h, :w].view(bsz, h // 2, 2, w // 2, 2).copy_(new)


def _qim_target(value: torch.Tensor, bits: torch.Tensor, step: float) -> torch.Tensor:
    """Nearest non-negative point of the lattice ``(k + 1/4 + bit/2) * step`` to ``value``."""
    centre = 0.25 + 0.5 * bits.to(value.dtype)
    k = torch.clamp(torch.round(value / step - centre), min=0)
    return (k + centre) * step


def _frame_bits(frame: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Bit carried by each block: block k carries frame bit k % L. frame: B x L -> B x N."""
    reps = -(-n_blocks // frame.shape[1])
    return frame.repeat(1, reps)[:, :n_blocks]


def _embed_maxdct(blocks: torch.Tensor, bits: torch.Tensor, step: float) -> torch.Tensor:
    ac = blocks[..., 1:]
    mag = ac.abs()
    pos = mag.argmax(dim=-1, keepdim=True)
    value = mag.gather(-1, pos).squeeze(-1)
    sign = torch.where(ac.gather(-1, pos).squeeze(-1) >= 0, 1.0, -1.0).to(blocks.dtype)
    target = _qim_target(value, bits, step)
    # The reader finds the element again by its magnitude. If the nearest point would let
    # another element overtake it, move up to the first point of the same bit that clears the
    # runner-up, unless that costs more than 3/4 step: then the nearest point stays and that
    # block's vote is lost, which majority voting over the repetitions absorbs. (Always moving
    # up costs 6 dB of PSNR on the Kodak photos; never moving up loses a quarter of the votes.)
    runner_up = mag.scatter(-1, pos, -1.0).amax(dim=-1)
    centre = 0.25 + 0.5 * bits.to(blocks.dtype)
    clear = (torch.ceil((runner_up + _ARGMAX_MARGIN) / step - centre) + centre) * step
    overtaken = target <= runner_up + _ARGMAX_MARGIN
    target = torch.where(overtaken & (clear - value <= _MAX_CLEAR_COST * step), clear, target)
    delta = torch.zeros_like(blocks)
    delta.scatter_(-1, pos + 1, ((target - value) * sign).unsqueeze(-1))
    return delta


def _read_maxdct(blocks: torch.Tensor, step: float) -> torch.Tensor:
    value = blocks[..., 1:].abs().amax(dim=-1)
    return torch.remainder(value, step) > 0.5 * step


def _embed_svd(blocks: torch.Tensor, bits: torch.Tensor, step: float) -> torch.Tensor:
    mats = blocks.reshape(*blocks.shape[:-1], BLOCK, BLOCK)
    u, s, vh = torch.linalg.svd(mats)
    top = s[..., 0]
    target = _qim_target(top, bits, step)
    # Changing only the top singular value: A' = A + (s0' - s0) u0 v0^T.
    outer = u[..., :, 0:1] @ vh[..., 0:1, :]
    delta = (target - top)[..., None, None] * outer
    return delta.reshape(blocks.shape)


def _read_svd(blocks: torch.Tensor, step: float) -> torch.Tensor:
    mats = blocks.reshape(*blocks.shape[:-1], BLOCK, BLOCK)
    top = torch.linalg.svdvals(mats)[..., 0]
    return torch.remainder(top, step) > 0.5 * step


_KERNELS = {"maxdct": (_embed_maxdct, _read_maxdct), "svd": (_embed_svd, _read_svd)}


def embed_frame(
    x: torch.Tensor,
    frame: torch.Tensor,
    kernel: str,
    step: float = STEP,
    conv: ColourConvention = STANDARD,
    *,
    out: torch.Tensor,
) -> None:
    """Write ``frame`` (B x L bits) of the uint8 RGB batch ``x`` (B x 3 x H x W) into ``out``,
    which holds a copy of ``x`` and is marked in place."""
    embed, _ = _KERNELS[kernel]
    blocks, grid = _blocks_of(x, conv)
    bits = _frame_bits(frame, blocks.shape[1])
    _apply_dll(x, embed(blocks, bits, step), grid, conv, out)


def block_votes(
    x: torch.Tensor, kernel: str, step: float = STEP, conv: ColourConvention = STANDARD
) -> torch.Tensor:
    """The bit each block reads as, B x N (float 0/1), in imwatermark's block order."""
    return block_votes_by_convention(x, kernel, step, [conv])[0]


def block_votes_by_convention(
    x: torch.Tensor, kernel: str, step: float, conventions
) -> list[torch.Tensor]:
    """``block_votes`` under each convention, the channels' cell sums made once for all."""
    _, read = _KERNELS[kernel]
    sums = _cell_sums(x, block_grid(x.shape[2], x.shape[3]))
    return [read(_blocks_of(x, conv, sums)[0], step).float() for conv in conventions]


def tally_votes(votes: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame position (block k votes for bit k % length): votes for 1 and votes cast."""
    n_blocks = votes.shape[1]
    if n_blocks == 0:  # a picture under 8 px a side has no block: no vote for any bit
        empty = votes.new_zeros(votes.shape[0], length)
        return empty, empty.clone()
    reps = -(-n_blocks // length)
    padded = F.pad(votes, (0, reps * length - n_blocks))
    counted = F.pad(torch.ones_like(votes), (0, reps * length - n_blocks))
    ones = padded.reshape(-1, reps, length).sum(dim=1)
    total = counted.reshape(-1, reps, length).sum(dim=1)
    return ones, total


def read_votes(
    x: torch.Tensor,
    length: int,
    kernel: str,
    step: float = STEP,
    conv: ColourConvention = STANDARD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame position, how many blocks voted 1 and how many voted: two B x L tensors."""
    return tally_votes(block_votes(x, kernel, step, conv), length)


def votes_to_bits(ones: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Majority decision with imwatermark's rule (mean * 255 > 127, so a tie reads 1)."""
    return (ones * 255 > 127 * total) & (total > 0)
