"""Keyed payload frames and the binomial test that turns matched bits into a p-value.

A keyed frame has ``SYNC_BITS`` synchronisation bits and ``PAYLOAD_BITS`` message bits:

- the sync bits are a pseudo-random pattern derived from the key, with exactly as many ones as
  zeros, so an image that reads as all-0 or all-1 (flat sky, a black frame) matches exactly
  half of them and never looks marked;
- the message bits are XORed with a key-derived keystream, so the embedded pattern looks
  random whatever the message;
- the frame positions are shuffled by a key-derived permutation, spreading sync bits through
  the frame.

Without the key, an unmarked image matches each sync bit with probability 1/2, so the number
of matches follows Binomial(SYNC_BITS, 1/2): that is the null hypothesis of the p-value. The
key stream is SHAKE-256 of a domain tag and the key, so it is the same on every platform.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

SYNC_BITS = 64
PAYLOAD_BITS = 64
PAYLOAD_BYTES = PAYLOAD_BITS // 8

_DOMAIN = b"aigcguard/watermark-frame/v1\x00"


def _stream(key: str | bytes, label: bytes, n_bytes: int) -> bytes:
    key_bytes = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return hashlib.shake_256(_DOMAIN + label + b"\x00" + key_bytes).digest(n_bytes)


def bytes_to_bits(data: bytes) -> torch.Tensor:
    """Bytes as bits, most significant first (the order imwatermark uses); bool tensor."""
    return torch.tensor(
        [(byte >> (7 - i)) & 1 for byte in data for i in range(8)], dtype=torch.bool
    )


def _ranks(key: str | bytes, label: bytes, n: int) -> torch.Tensor:
    """``n`` key-derived 63-bit integers, for balanced patterns and permutations by sorting."""
    raw = _stream(key, label, 8 * n)
    return torch.tensor(
        [int.from_bytes(raw[8 * i : 8 * i + 8], "big") >> 1 for i in range(n)], dtype=torch.int64
    )


@dataclass(frozen=True)
class FrameLayout:
    """Key-derived constants of one frame; build with :func:`frame_layout`."""

    sync: torch.Tensor  # SYNC_BITS bits, balanced
    keystream: torch.Tensor  # PAYLOAD_BITS bits XORed onto the message
    order: torch.Tensor  # frame position of each of sync + payload bits

    @property
    def length(self) -> int:
        return SYNC_BITS + PAYLOAD_BITS


@lru_cache(maxsize=64)
def frame_layout(key: str | bytes) -> FrameLayout:
    if not key:
        raise ValueError("the watermark key must not be empty")
    # Balanced sync pattern: rank SYNC_BITS key-derived numbers, the upper half is 1.
    sync = torch.zeros(SYNC_BITS, dtype=torch.bool)
    sync[torch.argsort(_ranks(key, b"sync", SYNC_BITS))[SYNC_BITS // 2 :]] = True
    keystream = bytes_to_bits(_stream(key, b"xor", PAYLOAD_BYTES))
    order = torch.argsort(_ranks(key, b"perm", SYNC_BITS + PAYLOAD_BITS))
    return FrameLayout(sync=sync, keystream=keystream, order=order)


def message_bits(message: bytes | str) -> torch.Tensor:
    """A message (bytes, or text encoded as UTF-8) as PAYLOAD_BITS bits, zero-padded."""
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if len(data) > PAYLOAD_BYTES:
        raise ValueError(
            f"message is {len(data)} bytes; the payload holds {PAYLOAD_BYTES} bytes "
            f"({PAYLOAD_BITS} bits). Store longer records in the ledger and embed their id."
        )
    return bytes_to_bits(data.ljust(PAYLOAD_BYTES, b"\x00"))


def parse_message(text: str | None = None, hex_text: str | None = None) -> bytes:
    """The CLI's two spellings of a message: text (UTF-8) or hexadecimal."""
    if text is not None and hex_text is not None:
        raise ValueError("give the message as text or as hex, not both")
    if hex_text is not None:
        cleaned = hex_text.strip().removeprefix("0x").replace(":", "").replace(" ", "")
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            raise ValueError(f"message hex {hex_text!r} is not valid hexadecimal") from None
    return (text or "").encode("utf-8")


def build_frames(messages: Sequence[bytes | str], key: str | bytes) -> torch.Tensor:
    """Frames to embed, one row per message: B x (SYNC_BITS + PAYLOAD_BITS) bool."""
    layout = frame_layout(key)
    payload = torch.stack([message_bits(m) for m in messages]) ^ layout.keystream
    plain = torch.cat([layout.sync.expand(len(messages), -1), payload], dim=1)
    frames = torch.empty_like(plain)
    frames[:, layout.order] = plain
    return frames


def split_frames(
    frames: torch.Tensor, key: str | bytes, *, unscramble: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read frames back: (sync bits, payload bits), each B x n, in frame-building order.

    ``unscramble=False`` only undoes the permutation, for per-position masks.
    """
    layout = frame_layout(key)
    plain = frames[:, layout.order.to(frames.device)]
    sync, payload = plain[:, :SYNC_BITS], plain[:, SYNC_BITS:]
    if unscramble:
        payload = payload ^ layout.keystream.to(frames.device)
    return sync, payload


def bits_to_bytes(bits: torch.Tensor) -> bytes:
    values = bits.to("cpu", torch.int64).reshape(-1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1])
    return bytes((values * weights).sum(dim=1).tolist())


def binomial_sf(matched: int, total: int) -> float:
    """P(X >= matched) for X ~ Binomial(total, 1/2): the chance of this many matches by luck."""
    if total <= 0:
        return 1.0
    if matched <= 0:
        return 1.0
    tail = sum(math.comb(total, i) for i in range(matched, total + 1))
    return tail / 2.0**total


#: Bentkus & Dzindzalieta (2015, Bernoulli 21(2)): for fair independent signs c_i and
#: sum a_i^2 <= 1, P(sum c_i a_i >= x) <= C * P(N(0,1) >= x) for every x, and this C, the
#: smallest that holds, is 1 / (4 P(N(0,1) >= sqrt 2)) = 3.178
RADEMACHER_GAUSS_C = 1.0 / (2.0 * math.erfc(1.0))


def signed_sum_sf(evidence: torch.Tensor) -> float:
    """P-value bound for soft evidence: P(sum c_i |e_i| >= sum e_i), where the c_i are fair,
    independent signs, as the key's chip signs are for an image without the mark. With
    t = sum e_i / sqrt(sum e_i^2) it is at most exp(-t^2 / 2) (Hoeffding) and at most
    3.18 P(N(0,1) >= t) (Bentkus & Dzindzalieta), about t times smaller where it matters; both
    hold for any magnitudes, so the smaller is a valid bound. Large values count more than
    small ones, so a clear read-out needs fewer chips than the binomial test on signs alone."""
    total = float(evidence.sum())
    energy = float(evidence.pow(2).sum())
    if total <= 0 or energy <= 0:
        return 1.0
    t = total / math.sqrt(energy)
    gaussian = RADEMACHER_GAUSS_C * 0.5 * math.erfc(t / math.sqrt(2.0))
    return min(1.0, math.exp(-t * t / 2.0), gaussian)


def min_matches(total: int, p_threshold: float) -> int:
    """Fewest matched bits out of ``total`` whose p-value is at or below ``p_threshold``."""
    for k in range(total + 1):
        if binomial_sf(k, total) <= p_threshold:
            return k
    return total + 1
