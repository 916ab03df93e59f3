"""The watermark engine: interop with invisible-watermark, keys, p-values, batching."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from imwatermark import WatermarkDecoder, WatermarkEncoder
from PIL import Image
from scipy.stats import binom

from aigcguard.device import pick_device
from aigcguard.imageio import load_image, save_image
from aigcguard.watermark import (
    DEFAULT_P_THRESHOLD,
    detect,
    embed,
    get_method,
    list_methods,
    parse_message,
)
from aigcguard.watermark.payload import (
    PAYLOAD_BITS,
    SYNC_BITS,
    binomial_sf,
    build_frames,
    frame_layout,
    message_bits,
    min_matches,
    split_frames,
)
from tests.helpers import to_array, to_tensor

IMW_NAME = {"dwtdct": "dwtDct", "dwtdctsvd": "dwtDctSvd"}
METHODS = sorted(IMW_NAME)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def test_registry_lists_both_methods():
    assert {"dwtdct", "dwtdctsvd"} <= set(list_methods())
    assert list_methods("dwtdct*") == ["dwtdct", "dwtdctsvd"]
    assert get_method("DwtDct").imwatermark_name == "dwtDct"
    with pytest.raises(ValueError, match="unknown watermark method 'nope'"):
        get_method("nope")


# ------------------------------------------------------------------ interop with imwatermark


@pytest.mark.parametrize("method", METHODS)
def test_imwatermark_reads_our_unkeyed_mark_from_png(method, photos, tmp_path):
    msg = b"aigc-guard!"  # 88 bits: the bare layout takes any length
    marked = embed([to_tensor(photos["astronaut"])], msg, key=None, method=method)[0]
    path = save_image(marked, tmp_path / "marked.png")
    bgr = cv2.imread(str(path))
    decoded = WatermarkDecoder("bytes", len(msg) * 8).decode(bgr, IMW_NAME[method])
    assert decoded == msg


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea"])
def test_we_read_imwatermark_marks_from_png(method, photo, photos, tmp_path):
    msg = b"hello-imw"
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", msg)
    bgr = encoder.encode(cv2.cvtColor(photos[photo], cv2.COLOR_RGB2BGR), IMW_NAME[method])
    cv2.imwrite(str(tmp_path / "imw.png"), bgr)
    pixels = load_image(tmp_path / "imw.png").pixels
    result = detect([pixels], key=None, message=msg, method=method)[0]
    # imwatermark's own dwtDct embedding does not always survive its own decoder (it rounds
    # the coefficient down, so another one can become the block's largest): we must read at
    # least as many bits as imwatermark itself reads back from the same file.
    theirs = WatermarkDecoder("bytes", len(msg) * 8).decode(
        cv2.imread(str(tmp_path / "imw.png")), IMW_NAME[method]
    )
    their_matched = int(
        (
            np.unpackbits(np.frombuffer(theirs, np.uint8))
            == np.unpackbits(np.frombuffer(msg, np.uint8))
        ).sum()
    )
    assert result.bits_total == len(msg) * 8
    assert result.bits_matched >= their_matched - 1
    assert result.p_value == binomial_sf(result.bits_matched, result.bits_total)
    if their_matched == result.bits_total:
        assert result.detected
    # a different expected message is not confirmed
    other = detect([pixels], key=None, message=b"other-msg", method=method)[0]
    assert not other.detected


@pytest.mark.parametrize("method", METHODS)
def test_imwatermark_reads_keyed_frame_and_key_unscrambles_it(method, photos, tmp_path):
    """A keyed mark keeps imwatermark's layout: its decoder reads the frame bits, and only
    the key turns them into the sync pattern and the message."""
    key, msg = "k-42", b"8 bytes!"
    marked = embed([to_tensor(photos["chelsea"])], msg, key=key, method=method)[0]
    path = save_image(marked, tmp_path / "keyed.png")
    bits = WatermarkDecoder("bits", SYNC_BITS + PAYLOAD_BITS).decode(
        cv2.imread(str(path)), IMW_NAME[method]
    )
    frame = torch.tensor(np.asarray(bits, dtype=bool))[None]
    sync, payload = split_frames(frame, key)
    assert torch.equal(sync[0], frame_layout(key).sync)
    assert torch.equal(payload[0], message_bits(msg))
    # the raw frame does not spell the message: without the key it is scrambled
    assert not torch.equal(frame[0, :PAYLOAD_BITS], message_bits(msg))


@pytest.mark.parametrize("method", METHODS)
def test_our_marks_beat_imwatermark_psnr_no_band_swap(method, photos):
    """imwatermark rebuilds the image with two wavelet bands swapped; we change only LL."""
    rgb = photos["astronaut"]
    ours = to_array(embed([to_tensor(rgb)], b"x", key=None, method=method)[0])
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", b"x")
    theirs = cv2.cvtColor(
        encoder.encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), IMW_NAME[method]), cv2.COLOR_BGR2RGB
    )
    assert _psnr(rgb, ours) > _psnr(rgb, theirs) + 3.0


def test_unchanged_image_outside_the_block_grid(photos):
    """Rows and columns beyond the 8-pixel block grid are never touched."""
    rgb = photos["chelsea"][:301, :453]  # 301 x 453: 5 spare rows, 5 spare columns
    marked = to_array(embed([to_tensor(rgb)], b"edge", method="dwtdct")[0])
    assert np.array_equal(marked[296:], rgb[296:])
    assert np.array_equal(marked[:, 448:], rgb[:, 448:])


def test_dwtdct_psnr_on_kodak_at_least_40db(kodak_dir):
    psnrs = []
    for path in sorted(kodak_dir.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        marked = to_array(embed([to_tensor(rgb)], b"kodak-01", method="dwtdct")[0])
        psnrs.append(_psnr(rgb, marked))
    assert len(psnrs) >= 24
    assert min(psnrs) >= 40.0, f"lowest PSNR {min(psnrs):.2f} dB"


# --------------------------------------------------------------------- keys and detection


@pytest.mark.parametrize("method", METHODS)
def test_keyed_detection_payload_and_wrong_key(method, photos):
    images = [to_tensor(photos[n]) for n in ("astronaut", "coffee", "camera")]
    marked = embed(images, "id-0042", key="secret", method=method)
    for r in detect(marked, key="secret", method=method):
        assert r.detected and r.p_value <= DEFAULT_P_THRESHOLD
        assert r.bits_total == SYNC_BITS
        assert bytes.fromhex(r.payload) == b"id-0042\x00"
        assert r.payload_text == "id-0042"
    for r in detect(marked, key="not the secret", method=method):
        assert not r.detected and r.payload is None
    for r in detect(images, key="secret", method=method):
        assert not r.detected and r.p_value > 1e-3


def test_verify_mode_counts_message_bits_too(photos):
    marked = embed([to_tensor(photos["astronaut"])], b"abc", key="k", method="dwtdct")
    good = detect(marked, key="k", message=b"abc", method="dwtdct")[0]
    assert good.bits_total == SYNC_BITS + PAYLOAD_BITS
    assert good.bits_matched == SYNC_BITS + PAYLOAD_BITS
    wrong = detect(marked, key="k", message=b"abd", method="dwtdct")[0]
    assert wrong.bits_matched < good.bits_matched


def test_per_image_messages(photos):
    images = [to_tensor(photos["coffee"]), to_tensor(photos["rocket"])]
    marked = embed(images, [b"first", b"second"], key="k")
    assert [r.payload_text for r in detect(marked, key="k")] == ["first", "second"]
    with pytest.raises(ValueError, match="2 messages given for 1 images"):
        embed(images[:1], [b"a", b"b"], key="k")


def test_message_limits_and_parsing():
    with pytest.raises(ValueError, match="9 bytes; the payload holds 8 bytes"):
        message_bits(b"123456789")
    assert parse_message(hex_text="0xdead beef") == bytes.fromhex("deadbeef")
    assert parse_message(text="héllo") == "héllo".encode()
    with pytest.raises(ValueError, match="not valid hexadecimal"):
        parse_message(hex_text="xyz")
    with pytest.raises(ValueError, match="not both"):
        parse_message("a", "61")


def test_frame_layout_is_keyed_balanced_and_stable():
    a, b = frame_layout("alpha"), frame_layout("beta")
    assert int(a.sync.sum()) == SYNC_BITS // 2  # balanced: flat images match exactly half
    assert not torch.equal(a.sync, b.sync) and not torch.equal(a.order, b.order)
    assert sorted(a.order.tolist()) == list(range(SYNC_BITS + PAYLOAD_BITS))
    # fixed by the key alone: this value pins the format (changing it breaks old marks)
    frames = build_frames([b"\x00" * 8], "alpha")
    assert bytes(np.packbits(frames[0].numpy())).hex() == _ALPHA_FRAME_HEX
    with pytest.raises(ValueError, match="must not be empty"):
        frame_layout("")


_ALPHA_FRAME_HEX = "9b9b71558ee6220ace2260ef21c8f9d7"


def test_flat_images_never_detect():
    """All-black, all-white and mid-grey images read as constant bits: exactly half the
    balanced sync bits match, for every key."""
    flat = [torch.full((3, 256, 256), v, dtype=torch.uint8) for v in (0, 128, 255)]
    for key in ("a", "b", "c", "d"):
        for r in detect(flat, key=key, method="dwtdct"):
            assert r.bits_matched == SYNC_BITS // 2 and not r.detected
    assert not any(r.detected for r in detect(flat, key="a"))  # tilemark


def test_binomial_tail_matches_scipy():
    for n in (17, 48, 64, 136):
        for k in (0, 1, n // 2, n - 3, n):
            assert binomial_sf(k, n) == pytest.approx(binom.sf(k - 1, n, 0.5), rel=1e-9, abs=1e-300)
    k = min_matches(SYNC_BITS, DEFAULT_P_THRESHOLD)
    assert binomial_sf(k, SYNC_BITS) <= DEFAULT_P_THRESHOLD < binomial_sf(k - 1, SYNC_BITS)


def test_unmarked_crops_false_positive_rate(photos):
    """A small live calibration: crops and rescales of unmarked photos against many keys
    give no detection, and the p-values are not anti-conservative at 1e-2."""
    rng = np.random.default_rng(0)
    images = []
    for arr in photos.values():
        im = Image.fromarray(arr)
        for _ in range(6):
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = im.crop((x0, y0, x0 + cw, y0 + ch))
            f = rng.uniform(0.5, 1.5)
            images.append(to_tensor(np.asarray(crop.resize((int(cw * f), int(ch * f))))))
    p_values = [
        r.p_value for k in range(40) for r in detect(images, key=f"key-{k}", method="dwtdct")
    ]
    assert len(p_values) == 40 * len(images)
    assert min(p_values) > DEFAULT_P_THRESHOLD
    assert np.mean(np.asarray(p_values) <= 1e-2) <= 0.03


# --------------------------------------------------------------------- batching and devices


def test_mixed_sizes_list_in_list_out(photos):
    images = [to_tensor(photos[n]) for n in ("astronaut", "coffee", "chelsea", "astronaut")]
    marked = embed(images, b"mix", key="k")
    assert isinstance(marked, list) and len(marked) == 4
    for before, after in zip(images, marked, strict=True):
        assert after.shape == before.shape and after.dtype == torch.uint8
        assert after.device == before.device
    # same image and message give the same pixels whether batched with others or alone
    alone = embed([images[1]], b"mix", key="k")[0]
    assert torch.equal(alone, marked[1])
    assert all(r.detected for r in detect(marked, key="k"))


def test_batch_tensor_in_batch_tensor_out(photos):
    batch = torch.stack([to_tensor(photos["astronaut"]), to_tensor(photos["astronaut"])])
    marked = embed(batch, [b"a", b"b"], key="k", method="dwtdctsvd", device="cpu")
    assert isinstance(marked, torch.Tensor) and marked.shape == batch.shape
    assert [r.payload_text for r in detect(marked, key="k", method="dwtdctsvd")] == ["a", "b"]


def test_bad_inputs_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="expected dtype uint8"):
        embed([torch.zeros(3, 128, 128)], b"x")
    with pytest.raises(ValueError, match="3 x H x W"):
        embed([torch.zeros(4, 128, 128, dtype=torch.uint8)], b"x")
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        embed(torch.zeros(3, 128, 128, dtype=torch.uint8), b"x")
    with pytest.raises(ValueError, match=r"image 1 is 64x64: dwtdct .* at least 96 pixels"):
        embed(
            [
                torch.zeros(3, 128, 128, dtype=torch.uint8),
                torch.zeros(3, 64, 64, dtype=torch.uint8),
            ],
            b"x",
            method="dwtdct",
        )
    with pytest.raises(ValueError, match=r"image 0 is 40x60: tilemark .* at least 64 pixels"):
        embed([torch.zeros(3, 60, 40, dtype=torch.uint8)], b"x")
    with pytest.raises(ValueError, match="needs the expected message"):
        detect([torch.zeros(3, 128, 128, dtype=torch.uint8)], key=None, method="dwtdct")
    with pytest.raises(ValueError, match="tilemark derives its layout from the key"):
        detect([torch.zeros(3, 128, 128, dtype=torch.uint8)], key=None)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method, photos):
    images = [to_tensor(photos["astronaut"]), to_tensor(photos["coffee"])]
    on_cpu = embed(images, b"dev", key="k", method=method, device="cpu")
    on_gpu = embed([i.cuda() for i in images], b"dev", key="k", method=method)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b.is_cuda
        assert (a.int() - b.cpu().int()).abs().max() <= 1  # float rounding may differ by 1
    assert all(r.detected for r in detect(on_gpu, key="k", method=method))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tilemark_detection_on_cuda_agrees_with_the_cpu(photos):
    """Issue 22: the same pictures read on CUDA give the CPU's verdicts, payloads and
    p-values (to float rounding), marked or not, moved or not."""
    from aigcguard.perturb import jpeg as jpeg_array

    images = [to_tensor(photos[n]) for n in ("astronaut", "coffee", "chelsea")]
    marked = embed(images[:2], b"dev", key="k", method="tilemark", device="cpu")
    moved = [
        to_tensor(jpeg_array(to_array(marked[0]), 60)),
        to_tensor(to_array(marked[1])[40:, 30:]),
    ]
    pictures = [*marked, *moved, images[2]]
    on_cpu = detect(pictures, key="k", method="tilemark", device="cpu")
    on_gpu = detect([p.cuda() for p in pictures], key="k", method="tilemark", device="cuda")
    assert [r.detected for r in on_cpu] == [True, True, True, True, False]
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert (a.detected, a.payload, a.format) == (b.detected, b.payload, b.format)
        assert math.isclose(
            math.log10(max(a.p_value, 1e-300)), math.log10(max(b.p_value, 1e-300)), abs_tol=0.5
        )
