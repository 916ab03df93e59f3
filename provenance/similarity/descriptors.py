"""Image descriptors for the similarity index, behind one registry and a spec string.

(A descriptor turns a picture into a vector or a hash; "embed" is reserved for watermarks.)

    create_descriptor("vlad")                          # the offline default (shipped codebook)
    create_descriptor("clip:ViT-B-32/openai")          # open_clip, any pretrained tag
    create_descriptor("clip:ViT-B-32//path/ckpt.pt")   # ... or a local checkpoint
    create_descriptor("pdq")                           # PDQ 256-bit perceptual hashes

A descriptor owns its preprocessing: it takes uint8 RGB tensors (3 x H x W, any size) and
returns one row per image, float32 and L2-normalised (cosine = inner product), or packed bits
(uint8) for binary descriptors. ``spec`` is what a store records (its ``embedder`` field, a
name kept for the file format), so a query is described the way the store's references were.
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from aigcguard.clip import ClipError, ClipTower, as_hwc, parse_clip_spec
from aigcguard.fileio import atomic_write
from aigcguard.registry import Registry

DEFAULT_DESCRIPTOR = "vlad"


class DescriptorError(Exception):
    """A descriptor spec that cannot be built (unknown name, weights that cannot be loaded)."""


class Descriptor(ABC):
    #: the spec string that rebuilds this descriptor
    spec: str = ""
    dim: int = 0
    #: packed bits (Hamming) instead of unit float vectors (cosine)
    binary: bool = False
    #: a mirrored copy embeds far from its original, so queries are also tried mirrored
    mirror_sensitive: bool = False

    @abstractmethod
    def describe(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """uint8 RGB tensors 3 x H x W -> N x dim float32 (unit rows) or N x dim/8 uint8."""


#: ``factory(argument, device) -> Descriptor`` by name; a spec is ``name`` or ``name:argument``
DESCRIPTORS: Registry[Descriptor] = Registry("descriptor")


def register_descriptor(name: str):
    """Register ``factory(argument, device) -> Descriptor`` under ``name`` (spec ``name:arg``)."""
    return DESCRIPTORS.register(name)


def list_descriptors() -> list[str]:
    return DESCRIPTORS.list()


def create_descriptor(spec: str = DEFAULT_DESCRIPTOR, device: str | torch.device | None = "auto"):
    """Build the descriptor a spec names: ``NAME`` or ``NAME:ARGUMENT``."""
    name, _, arg = spec.partition(":")
    if not DESCRIPTORS.is_registered(name):
        raise DescriptorError(
            f"unknown descriptor {name!r} in spec {spec!r}; known: {', '.join(list_descriptors())}"
        )
    return DESCRIPTORS.create(name, arg or None, device)


# ------------------------------------------------------------------------------------- CLIP


class ClipDescriptor(Descriptor):
    """open_clip image tower (``aigcguard.clip``): ``clip:ARCH/PRETRAINED``, where PRETRAINED
    is an open_clip tag, a local checkpoint path, or ``random`` (for tests)."""

    def __init__(self, arch: str, pretrained: str, device):
        try:
            self.tower = ClipTower(arch, pretrained, device)
        except ClipError as exc:
            raise DescriptorError(str(exc)) from exc
        self.device, self.model = self.tower.device, self.tower.model
        self.spec, self.dim = self.tower.spec, self.tower.dim

    def describe(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        return self.tower.encode(images)


@register_descriptor("clip")
def _clip(arg, device):
    try:
        arch, pretrained = parse_clip_spec(arg)
    except ClipError as exc:
        raise DescriptorError(str(exc)) from exc
    return ClipDescriptor(arch, pretrained, device)


# -------------------------------------------------------------------------------------- PDQ


class PdqDescriptor(Descriptor):
    """Meta's PDQ perceptual hash (256 bits), the hash platforms exchange; matched by Hamming
    distance (PDQ's own guidance: at most 31 of 256 bits for a match)."""

    spec = "pdq"
    dim = 256
    binary = True
    mirror_sensitive = True

    def describe(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        import pdqhash

        rows = []
        for im in images:
            bits, _quality = pdqhash.compute(_long_side_at_most(as_hwc(im), PDQ_MAX_SIDE))
            rows.append(np.packbits(np.asarray(bits, dtype=np.uint8)))
        return np.stack(rows) if rows else np.zeros((0, self.dim // 8), np.uint8)


#: PDQ's C++ works on float copies of the whole picture: 1.2 GB more at 64 MP (2.9 GB peak in
#: ``aigc check`` with a pdq index). Above this long side the picture is first shrunk (area
#: average), as Meta's own tools do at 512: the hash moved 0-4 of 256 bits on five 2400-8000
#: px photos (the match threshold is 31), and a 12 MP phone photo (4032 px) is not touched.
PDQ_MAX_SIDE = 4096


def _long_side_at_most(arr: np.ndarray, max_side: int) -> np.ndarray:
    """An H x W x 3 uint8 array shrunk (OpenCV's area average) so that its long side is at
    most ``max_side``; a smaller one unchanged."""
    h, w = arr.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return arr
    import cv2

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


@register_descriptor("pdq")
def _pdq(arg, device):
    if arg:
        raise DescriptorError(f"pdq takes no argument, got pdq:{arg}")
    return PdqDescriptor()


# ------------------------------------------------------------------------------------- VLAD

VLAD_FILE = "vlad_sift.npz"
VLAD_FORMAT = 1
VLAD_MAX_SIDE = 512  # local features are found at this size: enough detail, fixed cost
VLAD_FEATURES = 1000


def root_sift(image: np.ndarray, *, max_side: int = VLAD_MAX_SIDE, n: int = VLAD_FEATURES):
    """RootSIFT descriptors (m x 128, float32) of an RGB uint8 image at ``max_side``."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = max_side / max(gray.shape)
    h, w = gray.shape
    if scale < 1 and min(round(h * scale), round(w * scale)) < 1:
        # a strip thinner than 1 px at this scale (5 x 50,000): OpenCV refuses a size of 0
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    elif scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    _, desc = _sift(n).detectAndCompute(gray, None)
    if desc is None:
        return np.zeros((0, 128), np.float32)
    desc = desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)  # L1, then square root
    return np.sqrt(desc).astype(np.float32)


@lru_cache(maxsize=4)
def _sift(n: int):
    import cv2

    return cv2.SIFT_create(nfeatures=n)


def vlad(desc: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """VLAD with intra-normalisation and signed square root (Arandjelovic & Zisserman 2013):
    per centroid, the sum of its descriptors' residuals, each block unit length, then the
    whole vector. An image without features gives zeros."""
    k, d = centroids.shape
    out = np.zeros((k, d), np.float32)
    if len(desc):
        assign = np.argmin(
            (desc**2).sum(1, keepdims=True) - 2 * desc @ centroids.T + (centroids**2).sum(1), 1
        )
        np.add.at(out, assign, desc - centroids[assign])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out = out.ravel()
    out = np.sign(out) * np.sqrt(np.abs(out))
    return out / max(float(np.linalg.norm(out)), 1e-12)


class VladDescriptor(Descriptor):
    """The offline default: RootSIFT features aggregated by VLAD on a codebook, then PCA
    whitening to ``dim``; codebook and projection are trained by the project
    (``bench/train_vlad.py``) and shipped in ``aigcguard.data``. Local features make it hold
    up under crops, rescaling, re-encoding and colour changes; candidates are then checked by
    geometric verification on the same kind of features."""

    mirror_sensitive = True

    def __init__(self, path: str | None):
        data = _load_codebook(path)
        self.centroids = data["centroids"].astype(np.float32)
        self.mean = data["mean"].astype(np.float32)
        self.projection = data["projection"].astype(np.float32)  # dim x (k * 128), whitened
        self.dim = int(self.projection.shape[0])
        self.spec = "vlad" if path is None else f"vlad:{path}"
        self.codebook_id = str(data["id"])
        # Descriptors of unrelated pictures, for score normalisation (see provenance.similarity)
        self.background = data["background"].astype(np.float32) if "background" in data else None

    def describe(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        rows = [self.embed_descriptors(root_sift(as_hwc(im))) for im in images]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def embed_descriptors(self, desc: np.ndarray) -> np.ndarray:
        if not len(desc):
            # No features (a flat picture): a zero vector, similar to nothing, rather than
            # the projection's constant, which would make all flat pictures copies of each other.
            return np.zeros(self.dim, np.float32)
        v = (vlad(desc, self.centroids) - self.mean) @ self.projection.T
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _load_codebook(path: str | None) -> dict:
    try:
        if path is None:
            raw = resources.files("aigcguard.data").joinpath(VLAD_FILE).read_bytes()
            source = f"aigcguard.data/{VLAD_FILE}"
        else:
            raw, source = Path(path).read_bytes(), path
    except FileNotFoundError as exc:
        raise DescriptorError(f"vlad: codebook {path or VLAD_FILE} not found") from exc
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DescriptorError(f"vlad: {source} is not a readable codebook: {exc}") from exc
    if int(data.get("format", -1)) != VLAD_FORMAT:
        raise DescriptorError(f"vlad: {source} has format {data.get('format')}, need {VLAD_FORMAT}")
    data["id"] = hashlib.sha256(raw).hexdigest()[:12]
    return data


def train_vlad(
    descriptor_sets: Sequence[np.ndarray], *, k: int = 64, dim: int = 512, seed: int = 0
) -> dict[str, np.ndarray]:
    """Codebook (k-means on pooled descriptors) and PCA whitening from descriptor sets, one
    per training image (or augmented view). Returns the arrays ``save_codebook`` writes."""
    import faiss

    pooled = np.concatenate([d for d in descriptor_sets if len(d)]).astype(np.float32)
    km = faiss.Kmeans(128, k, niter=25, seed=seed, spherical=False, verbose=False)
    km.train(pooled)
    centroids = km.centroids.astype(np.float32)
    vectors = np.stack([vlad(d, centroids) for d in descriptor_sets])
    if len(vectors) <= dim:
        raise ValueError(f"PCA to {dim} dimensions needs more than {dim} views, got {len(vectors)}")
    mean = vectors.mean(0)
    _, s, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    eig = s[:dim] ** 2 / (len(vectors) - 1)
    # Whitening with a floor: the smallest components are mostly noise on a small training set.
    projection = vt[:dim] / np.sqrt(eig + eig.mean() * 0.1)[:, None]
    return {
        "format": np.array(VLAD_FORMAT),
        "centroids": centroids,
        "mean": mean.astype(np.float32),
        "projection": projection.astype(np.float32),
    }


def save_codebook(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write atomically: a temporary file beside the target, then a rename."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


@register_descriptor("vlad")
def _vlad(arg, device):
    return VladDescriptor(arg)
