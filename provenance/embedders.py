"""Image embedders for the similarity index, behind one registry and a spec string.

    create_embedder("vlad")                          # the offline default (shipped codebook)
    create_embedder("clip:ViT-B-32/openai")          # open_clip, any pretrained tag
    create_embedder("clip:ViT-B-32//path/ckpt.pt")   # ... or a local checkpoint
    create_embedder("pdq")                           # PDQ 256-bit perceptual hashes

An embedder owns its preprocessing: it takes uint8 RGB tensors (3 x H x W, any size) and
returns one row per image, float32 and L2-normalised (cosine = inner product), or packed bits
(uint8) for binary embedders. ``spec`` is what a store records, so a query is embedded the way
the store's references were.
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from aigcguard.device import pick_device
from aigcguard.fileio import atomic_write

DEFAULT_EMBEDDER = "vlad"


class EmbedderError(Exception):
    """An embedder spec that cannot be built (unknown name, weights that cannot be loaded)."""


class Embedder(ABC):
    #: the spec string that rebuilds this embedder
    spec: str = ""
    dim: int = 0
    #: packed bits (Hamming) instead of unit float vectors (cosine)
    binary: bool = False
    #: a mirrored copy embeds far from its original, so queries are also tried mirrored
    mirror_sensitive: bool = False

    @abstractmethod
    def embed(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """uint8 RGB tensors 3 x H x W -> N x dim float32 (unit rows) or N x dim/8 uint8."""


_REGISTRY: dict[str, Callable[[str | None, str | torch.device | None], Embedder]] = {}


def register_embedder(name: str):
    """Register ``factory(argument, device) -> Embedder`` under ``name`` (spec ``name:arg``)."""

    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"embedder {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_embedders() -> list[str]:
    return sorted(_REGISTRY)


def create_embedder(spec: str = DEFAULT_EMBEDDER, device: str | torch.device | None = "auto"):
    """Build the embedder a spec names: ``NAME`` or ``NAME:ARGUMENT``."""
    name, _, arg = spec.partition(":")
    if name not in _REGISTRY:
        raise EmbedderError(
            f"unknown embedder {name!r} in spec {spec!r}; known: {', '.join(list_embedders())}"
        )
    return _REGISTRY[name](arg or None, device)


def _as_hwc(image: torch.Tensor) -> np.ndarray:
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 3 x H x W RGB tensor, got {tuple(image.shape)}")
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())


# ------------------------------------------------------------------------------------- CLIP


class ClipEmbedder(Embedder):
    """open_clip image tower: ``clip:ARCH/PRETRAINED``, where PRETRAINED is an open_clip tag
    (downloaded and cached by open_clip), a local checkpoint path, or ``random`` (randomly
    initialised, for tests). ARCH is any open_clip model name, including configs registered
    with ``open_clip.add_model_config``."""

    def __init__(self, arch: str, pretrained: str, device):
        import open_clip

        self.device = pick_device(device)
        if arch not in open_clip.list_models():
            raise EmbedderError(f"clip: unknown open_clip architecture {arch!r}")
        weights = None if pretrained == "random" else pretrained
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if weights is not None and weights not in tags and not Path(weights).is_file():
            raise EmbedderError(
                f"clip: {weights!r} is neither a pretrained tag of {arch} "
                f"({', '.join(tags) or 'none'}) nor a checkpoint file"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=weights, device=self.device
            )
        except Exception as exc:  # network, missing tag, corrupt checkpoint: say which
            raise EmbedderError(
                f"clip: could not load {arch!r} weights {pretrained!r}: {exc}. Offline, pass a "
                f"local checkpoint: clip:{arch}//path/to/checkpoint.pt"
            ) from exc
        self.model = model.eval()
        self.preprocess = preprocess
        self.spec = f"clip:{arch}/{pretrained}"
        self.dim = int(model.visual.output_dim)

    @torch.inference_mode()
    def embed(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        from PIL import Image

        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = torch.stack([self.preprocess(Image.fromarray(_as_hwc(im))) for im in images])
        features = self.model.encode_image(batch.to(self.device))
        features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32)


@register_embedder("clip")
def _clip(arg, device):
    if not arg or "/" not in arg:
        raise EmbedderError(
            "clip needs ARCH/PRETRAINED, e.g. clip:ViT-B-32/openai or clip:ViT-B-32//path/ckpt.pt"
        )
    arch, _, pretrained = arg.partition("/")
    return ClipEmbedder(arch, pretrained, device)


# -------------------------------------------------------------------------------------- PDQ


class PdqEmbedder(Embedder):
    """Meta's PDQ perceptual hash (256 bits), the hash platforms exchange; matched by Hamming
    distance (PDQ's own guidance: at most 31 of 256 bits for a match)."""

    spec = "pdq"
    dim = 256
    binary = True
    mirror_sensitive = True

    def embed(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        import pdqhash

        rows = []
        for im in images:
            bits, _quality = pdqhash.compute(_as_hwc(im))
            rows.append(np.packbits(np.asarray(bits, dtype=np.uint8)))
        return np.stack(rows) if rows else np.zeros((0, self.dim // 8), np.uint8)


@register_embedder("pdq")
def _pdq(arg, device):
    if arg:
        raise EmbedderError(f"pdq takes no argument, got pdq:{arg}")
    return PdqEmbedder()


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
    if scale < 1:
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


class VladEmbedder(Embedder):
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

    def embed(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        rows = [self.embed_descriptors(root_sift(_as_hwc(im))) for im in images]
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
        raise EmbedderError(f"vlad: codebook {path or VLAD_FILE} not found") from exc
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise EmbedderError(f"vlad: {source} is not a readable codebook: {exc}") from exc
    if int(data.get("format", -1)) != VLAD_FORMAT:
        raise EmbedderError(f"vlad: {source} has format {data.get('format')}, need {VLAD_FORMAT}")
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


@register_embedder("vlad")
def _vlad(arg, device):
    return VladEmbedder(arg)
