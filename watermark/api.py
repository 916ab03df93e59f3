"""``embed`` and ``detect``: the watermark API the CLI, the service and pipelines call."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from aigcguard.device import pick_device
from aigcguard.results import OMIT_NONE, JsonResult
from aigcguard.watermark import dwt
from aigcguard.watermark.defaults import DEFAULT_KEY, DEFAULT_METHOD, DEFAULT_P_THRESHOLD
from aigcguard.watermark.payload import (
    PAYLOAD_BYTES,
    SYNC_BITS,
    binomial_sf,
    bits_to_bytes,
    build_frames,
    bytes_to_bits,
    frame_layout,
    message_bits,
    signed_sum_sf,
    split_frames,
)
from aigcguard.watermark.registry import SoftReading, WatermarkMethod, get_method

Images = torch.Tensor | Sequence[torch.Tensor]
Message = bytes | str

#: Pixels processed together. On the CPU a chunk that stays in cache runs about twice as fast
#: as the whole batch at once (measured at 64 x 512 x 512); a GPU wants large batches.
_CHUNK_PIXELS = {"cpu": 1 << 20, "cuda": 1 << 26}
#: a decoded payload more likely than this to be wrong is not shown: a wrong payload would
#: point a ledger lookup at someone else's record
MAX_PAYLOAD_ERROR = 0.01


@dataclass(frozen=True)
class WatermarkDetection(JsonResult):
    """What one image says about one watermark.

    ``bits_matched`` of ``bits_total`` known bits were read correctly (the key's sync bits,
    plus the message bits when an expected message was given); ``p_value`` is the chance of
    matching that many by luck in an unmarked image; ``detected`` is ``p_value <= threshold``.
    ``payload`` is the decoded message as hex (``payload_text`` when it is printable text).
    ``payload_error`` (tilemark) is the estimated chance that the decoded message is wrong;
    above ``MAX_PAYLOAD_ERROR`` the payload is withheld even when the mark is detected: the
    key's mark is there, its message could not be read reliably.
    ``known`` names a third-party mark (``stable-diffusion-v1``, ``sdxl``...) and
    ``convention`` how the pipeline that wrote it fed pixels to OpenCV.
    ``reason`` says why nothing was read (a picture too small for the method: not detected,
    0 of 0 bits, p-value 1); it is in the JSON only when set, so other results keep theirs.
    ``public_key``: the mark was looked for with the public default key, which anyone can
    embed: a detection then is a declaration anyone could have made, not proof of who made
    the picture. ``format`` (tilemark, when detected): ``keyed`` for marks whose pattern
    differs per picture and per tile (see docs/watermark.md, threat model), ``legacy`` for
    marks made before it, whose pattern can be estimated from marked pictures and forged.
    """

    detected: bool
    method: str
    bits_matched: int
    bits_total: int
    p_value: float
    threshold: float
    payload: str | None = None
    payload_text: str | None = None
    known: str | None = None
    convention: str | None = None
    payload_error: float | None = None
    reason: str | None = field(default=None, metadata=OMIT_NONE)
    public_key: bool | None = field(default=None, metadata=OMIT_NONE)
    format: str | None = field(default=None, metadata=OMIT_NONE)


def too_small(
    method: WatermarkMethod, height: int, width: int, p_threshold: float
) -> WatermarkDetection | None:
    """The "too small" result of a picture where ``method`` has no slot to read (under 64 px
    a side for tilemark, 8 for the DWT family), or None when it has some."""
    if method.capacity(height, width) > 0:
        return None
    return WatermarkDetection(
        detected=False,
        method=method.name,
        bits_matched=0,
        bits_total=0,
        p_value=1.0,
        threshold=p_threshold,
        reason=f"too small: {width}x{height} px holds no {method.name} mark "
        f"(at least {_min_side(method, 1)} px a side)",
    )


# --------------------------------------------------------------------------- batching helpers


def _as_list(images: Images) -> tuple[list[torch.Tensor], bool]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(
                f"images must be a B x 3 x H x W tensor or a list of 3 x H x W tensors, "
                f"got shape {tuple(images.shape)}"
            )
        items, batched = list(images.unbind(0)), True
    else:
        items, batched = list(images), False
    for i, img in enumerate(items):
        if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"image {i}: expected a 3 x H x W RGB tensor, got {shape}")
        if img.dtype != torch.uint8:
            raise ValueError(f"image {i}: expected dtype uint8, got {img.dtype}")
    return items, batched


def _work_device(items: list[torch.Tensor], device: str | torch.device | None) -> torch.device:
    if device is not None:
        return pick_device(device)
    if items and items[0].device.type == "cuda":
        return items[0].device
    return pick_device("auto")


def _per_chunk(height: int, width: int, device: torch.device) -> int:
    return max(1, _CHUNK_PIXELS.get(device.type, 1 << 26) // (height * width))


def _chunks(
    items: list[torch.Tensor], device: torch.device, indices: Sequence[int] | None = None
) -> Iterator[list[int]]:
    """Indices (all, or ``indices``) grouped by image size, then cut so each chunk stays under
    the pixel budget."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(items)) if indices is None else indices:
        img = items[i]
        groups.setdefault((img.shape[1], img.shape[2]), []).append(i)
    for (h, w), idx in groups.items():
        per_chunk = _per_chunk(h, w, device)
        for start in range(0, len(idx), per_chunk):
            yield idx[start : start + per_chunk]


def _stack(items: list[torch.Tensor], idx: list[int], device: torch.device) -> torch.Tensor:
    return torch.stack([items[i] for i in idx]).to(device)


def _messages(message: Message | Sequence[Message], n: int) -> list[Message]:
    if isinstance(message, (bytes, bytearray, str)):
        return [message] * n
    messages = list(message)
    if len(messages) != n:
        raise ValueError(f"{len(messages)} messages given for {n} images")
    return messages


def _raw_bits(message: Message) -> torch.Tensor:
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if not data:
        raise ValueError("an unkeyed (key=None) mark needs a non-empty message")
    return bytes_to_bits(data)


def _frames_for(messages: list[Message], key: str | bytes | None) -> torch.Tensor:
    if key is not None:
        return build_frames(messages, key)
    raws = [_raw_bits(m) for m in messages]
    if len({len(r) for r in raws}) != 1:
        raise ValueError("unkeyed messages in one call must all have the same length")
    return torch.stack(raws)


# --------------------------------------------------------------------------------- public API


def embed(
    images: Images,
    message: Message | Sequence[Message],
    *,
    key: str | bytes | None = DEFAULT_KEY,
    method: str | WatermarkMethod = DEFAULT_METHOD,
    device: str | torch.device | None = None,
) -> Images:
    """Watermark images; returns the same kind (batch tensor or list), on the same device.

    ``images``: a uint8 RGB tensor B x 3 x H x W, or a list of 3 x H x W tensors of any sizes.
    ``message``: up to 8 bytes (``str`` is UTF-8), or one message per image.
    ``key``: the secret the mark is keyed with; ``None`` writes the bare imwatermark layout
    (the message bits alone, any length), which imwatermark's decoder reads directly.
    ``device``: where the work runs; by default the images' GPU, else CUDA if present, else CPU.
    """
    items, batched = _as_list(images)
    m = get_method(method)
    _check_key(m, key)
    frames = _frames_for(_messages(message, len(items)), key)
    for i, img in enumerate(items):
        slots = m.capacity(img.shape[1], img.shape[2])
        if slots < frames.shape[1]:
            raise ValueError(
                f"image {i} is {img.shape[2]}x{img.shape[1]}: {m.name} has {slots} slots there, "
                f"fewer than the {frames.shape[1]}-bit frame; use an image of at least "
                f"{_min_side(m, frames.shape[1])} pixels a side"
            )
    dev = _work_device(items, device)
    frames = frames.to(dev)
    if batched:
        # One size already: mark a copy of the caller's tensor slice by slice, in place.
        x = images.to(dev)
        out = torch.empty_like(x)
        step = _per_chunk(images.shape[2], images.shape[3], dev)
        for s in range(0, x.shape[0], step):
            out[s : s + step].copy_(x[s : s + step])  # copied chunk by chunk, while in cache
            m.embed_frames(x[s : s + step], frames[s : s + step], out[s : s + step], key)
        return out.to(images.device)
    out_list: list[torch.Tensor | None] = [None] * len(items)
    for idx in _chunks(items, dev):
        x = _stack(items, idx, dev)
        marked = x.clone()
        m.embed_frames(x, frames[idx], marked, key)
        for j, i in enumerate(idx):
            out_list[i] = marked[j].to(items[i].device)
    return out_list


def _min_side(m: WatermarkMethod, bits: int) -> int:
    """The smallest square side (in steps of 8) where ``m`` holds ``bits``."""
    return next((s for s in range(8, 8193, 8) if m.capacity(s, s) >= bits), 8192)


def _check_key(m: WatermarkMethod, key) -> None:
    if key is None and m.needs_key:
        raise ValueError(
            f"{m.name} derives its layout from the key; key=None (the bare imwatermark "
            f"layout) is only for the DWT methods"
        )


def _printable(data: bytes) -> str | None:
    text = data.rstrip(b"\x00")
    if not text:
        return None
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if decoded.isprintable() else None


def detect(
    images: Images,
    *,
    key: str | bytes | None = DEFAULT_KEY,
    method: str | WatermarkMethod = DEFAULT_METHOD,
    message: Message | Sequence[Message] | None = None,
    device: str | torch.device | None = None,
    p_threshold: float = DEFAULT_P_THRESHOLD,
) -> list[WatermarkDetection]:
    """Look for a mark made with ``key``; one :class:`WatermarkDetection` per image.

    With a key, the test counts the key's sync bits and the payload is decoded; passing the
    ``message`` you expect adds its bits to the count (a stronger test). With ``key=None`` the
    bare imwatermark layout is assumed and ``message`` is required: its bits are counted.
    """
    items, _ = _as_list(images)
    m = get_method(method)
    _check_key(m, key)
    if key is None and message is None:
        raise ValueError("detect with key=None needs the expected message to test against")
    expected = None if message is None else _messages(message, len(items))
    if key is not None:
        frame_layout(key)  # validate the key before any work
        if expected is not None:
            expected_bits = torch.stack([message_bits(e) for e in expected])
        length = SYNC_BITS + PAYLOAD_BYTES * 8
    else:
        expected_bits = torch.stack([_raw_bits(e) for e in expected])
        length = expected_bits.shape[1]
    dev = _work_device(items, device)
    # a picture with no slot gets its "too small" result and is not read
    results = [too_small(m, img.shape[1], img.shape[2], p_threshold) for img in items]
    readable = [i for i, r in enumerate(results) if r is None]
    if m.soft:
        keystream = frame_layout(key).keystream
        for idx in _chunks(items, dev, readable):
            exp = None if expected is None else expected_bits[idx] ^ keystream
            readings = m.read_soft(_stack(items, idx, dev), key, exp)
            for j, i in enumerate(idx):
                results[i] = _judge_soft(readings[j], key, m.name, p_threshold)
        return _keyed(results, key)
    for idx in _chunks(items, dev, readable):
        ones, total = m.read_votes(_stack(items, idx, dev), length)
        bits = dwt.votes_to_bits(ones, total).cpu()
        voted = (total > 0).cpu()
        for j, i in enumerate(idx):
            results[i] = _judge(
                bits[j],
                voted[j],
                key,
                None if expected is None else expected_bits[i],
                m.name,
                p_threshold,
            )
    return results if key is None else _keyed(results, key)


def _keyed(results: list[WatermarkDetection], key) -> list[WatermarkDetection]:
    """Say which results were looked for with the public default key."""
    public = key == DEFAULT_KEY
    return [replace(r, public_key=public) for r in results]


def _judge(bits, voted, key, expected, method_name, p_threshold) -> WatermarkDetection:
    if key is None:
        matched = int(((bits == expected) & voted).sum())
        total = int(voted.sum())
        p = binomial_sf(matched, total)
        return WatermarkDetection(
            detected=p <= p_threshold,
            method=method_name,
            bits_matched=matched,
            bits_total=total,
            p_value=p,
            threshold=p_threshold,
            payload=bits_to_bytes(_pad8(bits)).hex(),
            payload_text=None,
        )
    layout = frame_layout(key)
    sync, payload = split_frames(bits[None], key)
    sync_voted, payload_voted = split_frames(voted[None], key, unscramble=False)
    matched = int(((sync[0] == layout.sync) & sync_voted[0]).sum())
    total = int(sync_voted[0].sum())
    if expected is not None:
        matched += int(((payload[0] == expected) & payload_voted[0]).sum())
        total += int(payload_voted[0].sum())
    p = binomial_sf(matched, total)
    return _verdict(method_name, matched, total, p, p_threshold, bits_to_bytes(payload[0]))


def _judge_soft(reading: SoftReading, key, method_name, p_threshold) -> WatermarkDetection:
    evidence = reading.evidence.detach().cpu().float()
    p = min(1.0, signed_sum_sf(evidence) * reading.trials)
    data = bits_to_bytes(reading.payload.cpu() ^ frame_layout(key).keystream)
    matched, total = int((evidence > 0).sum()), int(evidence.numel())
    found = _verdict(
        method_name, matched, total, p, p_threshold, data, payload_error=reading.payload_error
    )
    return replace(found, format=reading.format) if found.detected else found


def _verdict(
    method_name, matched, total, p, p_threshold, data: bytes, payload_error: float | None = None
) -> WatermarkDetection:
    """The detection record; the payload is shown only when the mark is detected and, where
    the method estimates it, the payload is unlikely to be wrong."""
    detected = p <= p_threshold
    readable = detected and (payload_error is None or payload_error <= MAX_PAYLOAD_ERROR)
    return WatermarkDetection(
        detected=detected,
        method=method_name,
        bits_matched=matched,
        bits_total=total,
        p_value=p,
        threshold=p_threshold,
        payload=data.hex() if readable else None,
        payload_text=_printable(data) if readable else None,
        payload_error=None if payload_error is None else float(f"{payload_error:.3g}"),
    )


def _pad8(bits: torch.Tensor) -> torch.Tensor:
    extra = (-bits.numel()) % 8
    return torch.cat([bits, torch.zeros(extra, dtype=torch.bool)]) if extra else bits
