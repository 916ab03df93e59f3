"""Error correction for payloads read as soft values: a rate-1/2 binary code of length 128.

The code is a fixed random systematic code (the 64 message bits, then 64 parity bits from a
seeded random matrix): random linear codes of this length are good codes, and ordered
statistics decoding (OSD, from the maintained ``ldpc`` package) decodes any linear code from
per-bit reliabilities, which is what a watermark read-out gives.

A decoder always returns some codeword, and below a certain read-out quality it is often the
wrong one. ``read`` therefore also says how likely the payload is to be wrong: from the
signal-to-noise ratio the known chips show, looked up in a table of frame errors measured by
simulating this very reader (``bench/calibrate_ecc.py``, shipped as ``ecc_frame_errors.json``),
and from a consistency check that catches the decoder settling on a codeword that fits the
read-out worse than the known chips say the true one should.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

MESSAGE_BITS = 64
CODE_BITS = 128
_SEED = 0x61696763  # fixed forever: changing it changes the mark's format


@lru_cache(maxsize=1)
def _parity_matrix() -> np.ndarray:
    """A (MESSAGE_BITS x parity) random binary matrix; the code is [I | A]."""
    rng = np.random.default_rng(_SEED)
    return rng.integers(0, 2, (MESSAGE_BITS, CODE_BITS - MESSAGE_BITS), dtype=np.uint8)


@lru_cache(maxsize=1)
def _decoder():
    from ldpc import BpOsdDecoder

    a = _parity_matrix()
    check = np.concatenate([a.T, np.eye(CODE_BITS - MESSAGE_BITS, dtype=np.uint8)], axis=1)
    # One belief-propagation pass, then OSD: on a dense random code BP alone does not
    # converge; OSD ranks the bits by reliability and searches combinations of the weakest.
    decoder = BpOsdDecoder(
        check,
        error_rate=0.1,
        max_iter=1,
        bp_method="product_sum",
        osd_method="OSD_CS",
        # The largest order ldpc takes (n - k). Measured on simulated read-outs at SNR 1.4:
        # order 12 leaves 8% of frames wrong, nearly all on codewords that fit worse than the
        # true one; order 64 leaves none of 300, for 8 ms instead of 2 ms a frame.
        osd_order=CODE_BITS - MESSAGE_BITS,
    )
    return decoder, check


def encode(message: torch.Tensor) -> torch.Tensor:
    """B x 64 bits -> B x 128 codeword bits (bool): the message, then its parity."""
    m = message.to("cpu", torch.uint8).numpy()
    parity = (m.astype(np.int64) @ _parity_matrix()) % 2
    return (
        torch.from_numpy(np.concatenate([m, parity.astype(np.uint8)], axis=1))
        .bool()
        .to(message.device)
    )


def decode(llr: torch.Tensor) -> torch.Tensor:
    """B x 128 log-likelihood ratios (positive = bit 1) -> B x 64 decoded message bits."""
    decoder, check = _decoder()
    out = []
    for row in llr.detach().to("cpu", torch.float64).numpy():
        hard = (row > 0).astype(np.uint8)
        flip = 1.0 / (1.0 + np.exp(np.minimum(np.abs(row), 50.0)))
        decoder.update_channel_probs(np.clip(flip, 1e-12, 0.5 - 1e-9))
        error = decoder.decode((check @ hard) % 2)
        out.append((hard ^ error.astype(np.uint8))[:MESSAGE_BITS])
    return torch.from_numpy(np.stack(out)).bool().to(llr.device)


# ------------------------------------------------------------------------------ reliability

FRAME_ERRORS_FILE = "ecc_frame_errors.json"
#: a decoded codeword whose mean agreement with the coded chips falls this many standard errors
#: below the known chips' mean is a decoder failure (43 of the table's 45,710 correct simulated
#: reads are flagged)
CONSISTENCY_Z = 3.0
#: The coded chips of a real read-out are not exactly as strong as its known chips: a picture
#: and an attack can shift them a few per cent (the astronaut after JPEG 80, over 100 random
#: payloads: 3% weaker on average, z -1.31; 7% in the read that was flagged). The check's
#: standard error therefore carries this relative mismatch, or a strong read (SNR 5: 2% of
#: the mean is one standard error) is flagged for a difference no decoder error makes; at
#: such SNR a wrong codeword, typically a dozen chips or more from the right one (a random
#: [128, 64] code), costs a fifth of the agreement or more. The simulation behind the shipped
#: table draws the coded chips' strength with this spread too.
MISMATCH = 0.05


@dataclass(frozen=True)
class PayloadRead:
    """``bits``: the decoded message; ``snr``: the known chips' mean over their deviation;
    ``consistent``: the decoded codeword agrees with the coded chips as well as the known
    chips predict; ``error``: the estimated chance that ``bits`` is wrong (1.0 when not
    consistent, ``None`` when no table is shipped)."""

    bits: torch.Tensor
    snr: float
    consistent: bool
    error: float | None


def read(coded: torch.Tensor, known: torch.Tensor, *, table: bool = True) -> PayloadRead:
    """Decode one frame: ``coded`` (CODE_BITS soft values, positive = bit 1) and ``known``, the
    same kind of values at chips whose bit is known (positive where they agree). The known
    chips set the decoder's log-likelihood ratios and the reliability estimate."""
    coded, known = coded.detach().cpu().double(), known.detach().cpu().double()
    mean_known = float(known.mean())
    var = max(float(known.var()), 1e-12)
    # The coded chips' amplitude, without knowing their signs: E[v^2] = mean^2 + var. Pooling
    # it with the known chips' mean halves the variance of the SNR estimate.
    mean_coded = math.sqrt(max(float(coded.pow(2).mean()) - var, 0.0))
    n_known, n_coded = known.numel(), coded.numel()
    mean = (mean_known * n_known + mean_coded * n_coded) / (n_known + n_coded)
    llr = 2 * max(mean, 1e-6) / var * coded
    bits = decode(llr[None])[0]
    signs = encode(bits[None])[0].double() * 2 - 1
    # The decoded codeword should agree with the coded chips about as well as the known chips
    # agree with their bits; the standard error is that of a difference of two means, plus
    # the mismatch real read-outs have between the two kinds of chip.
    agreement = float((coded * signs).mean())
    se = math.sqrt(var * (1 / n_coded + 1 / n_known) + (MISMATCH * mean_known) ** 2)
    z = (agreement - mean_known) / se
    consistent = z >= -CONSISTENCY_Z
    snr = mean / math.sqrt(var)
    if not consistent:
        error = 1.0
    elif table:
        error = frame_error_rate(snr)
    else:
        error = None
    return PayloadRead(bits=bits, snr=snr, consistent=consistent, error=error)


@lru_cache(maxsize=1)
def _frame_error_table() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        text = resources.files("aigcguard.data").joinpath(FRAME_ERRORS_FILE).read_text("utf-8")
    except FileNotFoundError:
        return None
    table = json.loads(text)
    measured_for = (table.get("code_seed"), table.get("osd_order"), table.get("mismatch"))
    if measured_for != (_SEED, CODE_BITS - MESSAGE_BITS, MISMATCH):
        raise ValueError(f"{FRAME_ERRORS_FILE} was measured for another code or decoder")
    return np.asarray(table["snr"], float), np.asarray(table["error_upper95"], float)


def frame_error_rate(snr: float) -> float | None:
    """The shipped estimate (95% upper bound) of the chance a consistent read at this
    known-chip SNR decodes to the wrong message; ``None`` if the table is not installed.
    Below the table's range it is 1, above it the last (smallest) entry."""
    loaded = _frame_error_table()
    if loaded is None:
        return None
    snrs, upper = loaded
    if snr < snrs[0]:
        return 1.0
    return float(upper[min(np.searchsorted(snrs, snr, side="right") - 1, len(upper) - 1)])


def simulate_reads(
    snrs: np.ndarray, known_chips: int, seed: int, mismatch: float = MISMATCH
) -> list[PayloadRead]:
    """Reads of random messages through a Gaussian channel at the given true SNRs, with
    ``known_chips`` known chips each, as the table in ``FRAME_ERRORS_FILE`` is measured (the
    coded chips' strength times 1 + N(0, ``mismatch``^2) per read, clipped at 0.5 to 1.5);
    returns each read with ``error`` set to 1.0 or 0.0 (wrong or right)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in snrs:
        message = torch.randint(0, 2, (1, MESSAGE_BITS), generator=gen).bool()
        signs = encode(message)[0].double() * 2 - 1
        shift = float(torch.randn((), generator=gen, dtype=torch.float64)) * mismatch
        strength = s * min(max(1 + shift, 0.5), 1.5)
        coded = signs * strength + torch.randn(CODE_BITS, generator=gen, dtype=torch.float64)
        known = s + torch.randn(known_chips, generator=gen, dtype=torch.float64)
        r = read(coded, known, table=False)
        wrong = bool((r.bits != message[0]).any())
        out.append(PayloadRead(r.bits, r.snr, r.consistent, 1.0 if wrong else 0.0))
    return out
