"""tilemark's keyed format: what an attacker without the key can and cannot average out of
marked pictures (docs/watermark.md, threat model)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from aigcguard.watermark import DEFAULT_KEY, detect, embed
from aigcguard.watermark import tilemark as T
from aigcguard.watermark.tilemark import keyed as K
from tests.helpers import to_array, to_tensor

KEY = "keyed-test"


def _crops(photos: dict[str, np.ndarray], n: int, size: int = 256, seed: int = 0):
    """``n`` different size x size crops of the shipped photos."""
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    out = []
    for i in range(n):
        arr = photos[names[i % len(names)]]
        y = int(rng.integers(0, arr.shape[0] - size + 1))
        x = int(rng.integers(0, arr.shape[1] - size + 1))
        out.append(np.ascontiguousarray(arr[y : y + size, x : x + size]))
    return out


def _residual(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float64)
    return a - cv2.GaussianBlur(a, (0, 0), 2.0)


def _add_at_psnr(target: np.ndarray, pattern: np.ndarray, psnr: float) -> np.ndarray:
    rms = 255.0 / 10 ** (psnr / 20)
    scaled = pattern * rms / np.sqrt(np.mean(pattern**2))
    return np.clip(np.rint(target.astype(np.float64) + scaled), 0, 255).astype(np.uint8)


def test_modulation_is_balanced_per_chip_and_differs_per_nonce():
    m = T.modulation(KEY)
    assert m.shape == (T.NONCES, T.SUPER_TILES * 16, T.SUPER_TILES * 16)
    per_tile = m.reshape(T.NONCES, T.SUPER_TILES, 16, T.SUPER_TILES, 16)
    # every chip's signs over the super-tile's tiles sum to zero: a fold cancels them
    assert torch.all(per_tile.sum(dim=(1, 3)) == 0)
    # on the known chips (what the p-value reads) the nonces are exactly orthogonal
    known = T.tile_layout(KEY).known.reshape(16, 16).repeat(T.SUPER_TILES, T.SUPER_TILES) != 0
    flat = m[:, known]
    assert torch.equal(flat @ flat.T, torch.eye(T.NONCES) * flat.shape[1])
    assert not torch.equal(m, T.modulation("another key"))


def test_nonce_is_the_same_for_a_picture_and_varies_between_pictures(photos):
    crops = _crops(photos, 40)
    x = torch.stack([to_tensor(c) for c in crops])
    nonces = T.nonce_for(x, KEY)
    assert nonces == T.nonce_for(x.clone(), KEY)
    assert len(set(nonces)) >= 8
    assert all(0 <= n < T.NONCES for n in nonces)


@pytest.mark.parametrize(
    ("method", "kept"), [("tilemark", (0.0, 0.2)), ("tilemark-legacy", (0.6, 1.0))]
)
def test_folding_a_picture_onto_its_tile_period(photos, method, kept):
    """The single-picture estimation attack: the fold of a keyed mark onto the tile period
    keeps almost nothing of it (the signs cancel over each chip's tiles, the template's half
    cycles over neighbouring tiles); the legacy mark's fold keeps most of it."""
    arr = photos["astronaut"]
    marked = to_array(embed([to_tensor(arr)], b"fold-me!", key=KEY, method=method)[0])
    delta = marked.astype(np.float64).mean(axis=2) - arr.astype(np.float64).mean(axis=2)
    period = arr.shape[0] // 8  # the tile at full size: 8 tiles on the short side
    h, w = (delta.shape[0] // period) * period, (delta.shape[1] // period) * period
    tiles = delta[:h, :w].reshape(h // period, period, w // period, period)
    folded = tiles.mean(axis=(0, 2))
    ratio = np.sqrt(np.mean(folded**2) / np.mean(delta**2))
    assert kept[0] <= ratio <= kept[1], ratio


def test_collusion_average_forges_legacy_marks_but_not_keyed_ones(photos):
    """The black-box collusion forgery of the issue, small: the average high-pass residual of
    12 pictures marked with one private key, added to a photo that was never marked at
    PSNR 38. Legacy marks: the photo reads as marked. Keyed marks: it does not."""
    crops = _crops(photos, 13, seed=1)
    colluders, target = crops[:12], crops[12]
    payloads = [bytes([i]) * 8 for i in range(12)]
    found = {}
    for method in ("tilemark-legacy", "tilemark"):
        marked = embed([to_tensor(c) for c in colluders], payloads, key=KEY, method=method)
        average = np.mean([_residual(to_array(m)) for m in marked], axis=0)
        forged = _add_at_psnr(target, average, 38.0)
        [found[method]] = detect([to_tensor(forged)], key=KEY)
    assert found["tilemark-legacy"].detected and found["tilemark-legacy"].format == "legacy"
    assert not found["tilemark"].detected
    assert found["tilemark"].p_value > 1e-3


def test_detection_says_format_and_whether_the_key_is_public(photos):
    arr = photos["coffee"][:384, :384]
    new = embed([to_tensor(arr)], b"format!!", key=KEY, method="tilemark")[0]
    old = embed([to_tensor(arr)], b"format!!", key=KEY, method="tilemark-legacy")[0]
    public = embed([to_tensor(arr)], b"format!!", key=DEFAULT_KEY)[0]
    r_new, r_old = detect([new, old], key=KEY)
    [r_public] = detect([public])
    assert r_new.detected and r_new.format == "keyed" and r_new.public_key is False
    assert r_old.detected and r_old.format == "legacy"
    assert r_new.payload_text == r_old.payload_text == "format!!"
    assert r_public.detected and r_public.public_key is True
    assert "format" not in detect([to_tensor(arr)], key=KEY)[0].to_dict()  # not detected


def test_key_free_work_kept_for_many_keys_gives_the_same_p_values(photos):
    """Calibration keeps one picture's key-free work (PictureMemo) across keys: every key's
    p-value is the one ``detect`` gives, for marked and unmarked pictures and both formats."""
    arr = photos["chelsea"][:320, :320]
    pictures = [
        to_tensor(arr),
        embed([to_tensor(arr)], b"memo-one", key=KEY)[0],
        embed([to_tensor(arr)], b"memo-two", key=KEY, method="tilemark-legacy")[0],
    ]
    keys = [KEY, "another key"]
    for x in pictures:
        w = T.working_whitened(x[None])[0]
        memo = T.PictureMemo(w)
        for key in keys:
            kept = min(1.0, min(f.p_value for f in T.all_families(w, key, memo=memo)))
            [direct] = detect([x], key=key)
            assert kept == pytest.approx(direct.p_value, rel=1e-9, abs=1e-300)


def test_pair_scores_match_the_full_map_and_balance_ignores_the_nonce_coins(photos):
    """pair_scores gives every (shift, tile offset) pair's best nonce exactly as the full map
    of strengths does; a pair's balance is every chip's energy once the tile signs are off
    over its read-outs' energy (the nonces' signs play no part in it, so choosing pairs by
    it costs nothing in the p-value); and on a marked picture the best pair is the embedded
    one, at the picture's nonce."""
    cmap = torch.randn(2 * T.SUPER, 2 * T.SUPER, generator=torch.Generator().manual_seed(5))
    sigmas = [(3, 7), (40, 2)]
    full = T.tile_strengths(cmap, KEY, sigmas)  # S x NONCES x T x T
    scores = T.pair_scores(cmap, KEY, sigmas)
    best, nonce = full.permute(0, 2, 3, 1).reshape(-1, T.NONCES).max(dim=1)
    assert torch.allclose(scores.strength, best, atol=1e-5)
    assert torch.equal(scores.nonce, nonce)
    # the balance by hand: tile signs only (one tile offset, the second shift)
    reads = K.tile_reads(cmap, sigmas)[1]  # chips x T x T
    signs = K._tile_signs(KEY).reshape(-1, T.SUPER_TILES, T.SUPER_TILES)
    i, j = 2, 5
    moved = torch.roll(reads, shifts=(-i, -j), dims=(1, 2))
    demod = (moved * signs).sum(dim=(1, 2))
    expected = math.log(float(demod.pow(2).sum() / reads.pow(2).sum()))
    pair = scores.tiles + i * T.SUPER_TILES + j
    assert float(scores.balance[pair]) == pytest.approx(expected, rel=1e-4)
    assert scores.locate(scores.tiles + i * T.SUPER_TILES + j) == (1, i, j)

    arr = photos["coffee"][:256, :256]
    x = embed([to_tensor(arr)], b"prescrn!", key=KEY)[0]
    w = T.working_whitened(x[None])[0]
    mark_map = T.chip_map(T.fold(w, 1.0, 0.0, T.SUPER), 0)
    sigmas = [(a, b) for a in (0, 1, 2, 127) for b in (0, 1, 127)]  # 12 x 64 pairs
    scores = T.pair_scores(mark_map, KEY, sigmas)
    top = int(scores.strength.argmax())
    assert float(scores.strength[top]) > 10 and scores.locate(top) == (0, 0, 0)
    # the nonce is drawn from the picture before marking
    assert int(scores.nonce[top]) == T.nonce_for(to_tensor(arr)[None], KEY)[0]
