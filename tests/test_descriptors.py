"""Embedders for the similarity index: registry, CLIP (tiny random model), PDQ, VLAD."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aigcguard.provenance.similarity import descriptors as E
from tests.helpers import to_tensor

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}


def _jpeg_crop(arr: np.ndarray, frac: float, quality: int) -> np.ndarray:
    h, w = arr.shape[:2]
    dy, dx = int(h * (1 - frac) / 2), int(w * (1 - frac) / 2)
    im = Image.fromarray(arr[dy : h - dy, dx : w - dx])
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def tiny_clip_arch(tmp_path_factory):
    import open_clip

    folder = tmp_path_factory.mktemp("clipcfg")
    (folder / "aigc-tiny-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "aigc-tiny-test"


def test_registry_and_spec_errors():
    assert {"clip", "pdq", "vlad"} <= set(E.list_descriptors())
    assert E.DEFAULT_DESCRIPTOR == "vlad"
    with pytest.raises(E.DescriptorError, match=r"unknown descriptor 'nope'.*known: clip"):
        E.create_descriptor("nope")
    with pytest.raises(E.DescriptorError, match="ARCH/PRETRAINED"):
        E.create_descriptor("clip:ViT-B-32")
    with pytest.raises(E.DescriptorError, match="unknown open_clip architecture"):
        E.create_descriptor("clip:NoSuchNet/random")
    with pytest.raises(ValueError, match="uint8 3 x H x W"):
        E.create_descriptor("pdq").describe([torch.zeros(3, 8, 8)])


def test_clip_random_model_and_local_checkpoint(tiny_clip_arch, photos, tmp_path):
    emb = E.create_descriptor(f"clip:{tiny_clip_arch}/random", device="cpu")
    assert emb.spec == f"clip:{tiny_clip_arch}/random" and emb.dim == 32 and not emb.binary
    images = [to_tensor(photos["astronaut"]), to_tensor(photos["coffee"])]
    v = emb.describe(images)
    assert v.shape == (2, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    # The same weights from a local checkpoint give the same embeddings.
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": emb.model.state_dict()}, ckpt)
    again = E.create_descriptor(f"clip:{tiny_clip_arch}/{ckpt}", device="cpu")
    np.testing.assert_allclose(again.describe(images), v, atol=1e-5)
    with pytest.raises(E.DescriptorError, match="neither a pretrained tag"):
        E.create_descriptor(f"clip:{tiny_clip_arch}/{tmp_path / 'missing.pt'}")


def test_pdq_matches_reencoded_copy_not_other_photos(photos):
    emb = E.create_descriptor("pdq")
    assert emb.binary and emb.dim == 256
    base = photos["astronaut"]
    copy = _jpeg_crop(base, 0.98, 60)
    h = emb.describe([to_tensor(base), to_tensor(copy), to_tensor(photos["coffee"])])
    assert h.shape == (3, 32) and h.dtype == np.uint8
    bits = np.unpackbits(h, axis=1)
    assert int((bits[0] != bits[1]).sum()) <= 31  # PDQ's match threshold
    assert int((bits[0] != bits[2]).sum()) > 80


def test_vlad_ranks_a_cropped_copy_first(photos):
    emb = E.create_descriptor("vlad")
    assert emb.dim == 512 and emb.mirror_sensitive and len(emb.codebook_id) == 12
    names = ["astronaut", "coffee", "chelsea", "camera", "rocket"]
    refs = emb.describe([to_tensor(photos[n]) for n in names])
    for i, n in enumerate(names):
        q = emb.describe([to_tensor(_jpeg_crop(photos[n], 0.6, 60))])[0]
        assert int(np.argmax(refs @ q)) == i, n
    flat = emb.describe([torch.full((3, 64, 64), 128, dtype=torch.uint8)])
    assert np.all(flat == 0)  # no features: similar to nothing


def test_vlad_refuses_a_broken_codebook(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(E.DescriptorError, match=r"bad\.npz is not a readable codebook"):
        E.create_descriptor(f"vlad:{bad}")
    with pytest.raises(E.DescriptorError, match="not found"):
        E.create_descriptor(f"vlad:{tmp_path / 'none.npz'}")
