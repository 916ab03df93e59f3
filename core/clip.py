"""The open_clip image tower, loaded one way for everyone who needs CLIP features (the
``clip`` similarity descriptor, the ``clip-probe`` detector).

``ClipTower(arch, pretrained)``: ``pretrained`` is an open_clip tag (open_clip's cache must
already hold it: nothing is downloaded here on purpose), a local checkpoint path, or
``random`` (randomly initialised, for tests). ARCH is any open_clip model name, including
configs registered with ``open_clip.add_model_config``. The tower owns its preprocessing
(open_clip's transform), so callers pass uint8 RGB tensors of any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aigcguard.device import pick_device


class ClipError(ValueError):
    """An architecture or weights that cannot be loaded; the message says which and why."""


def parse_clip_spec(arg: str | None) -> tuple[str, str]:
    """``ARCH/PRETRAINED`` (``ViT-B-32/openai``, ``ViT-B-32//path/ckpt.pt``) -> (arch, weights)."""
    if not arg or "/" not in arg:
        raise ClipError(
            "clip needs ARCH/PRETRAINED, e.g. clip:ViT-B-32/openai or clip:ViT-B-32//path/ckpt.pt"
        )
    arch, _, pretrained = arg.partition("/")
    return arch, pretrained


class ClipTower:
    """A frozen open_clip image encoder: ``encode`` gives unit-length float32 rows."""

    def __init__(self, arch: str, pretrained: str, device: str | torch.device | None = "auto"):
        import open_clip

        self.device = pick_device(device)
        if arch not in open_clip.list_models():
            raise ClipError(f"clip: unknown open_clip architecture {arch!r}")
        weights = None if pretrained == "random" else pretrained
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if weights is not None and weights not in tags and not Path(weights).is_file():
            raise ClipError(
                f"clip: {weights!r} is neither a pretrained tag of {arch} "
                f"({', '.join(tags) or 'none'}) nor a checkpoint file"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=weights, device=self.device
            )
        except Exception as exc:  # network, missing tag, corrupt checkpoint: say which
            raise ClipError(
                f"clip: could not load {arch!r} weights {pretrained!r}: {exc}. Offline, pass a "
                f"local checkpoint: clip:{arch}//path/to/checkpoint.pt"
            ) from exc
        self.model = model.eval()
        self.preprocess = preprocess
        self.spec = f"clip:{arch}/{pretrained}"
        self.dim = int(model.visual.output_dim)

    @torch.inference_mode()
    def encode(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """uint8 RGB tensors 3 x H x W -> N x dim float32, unit rows."""
        from PIL import Image

        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = torch.stack([self.preprocess(Image.fromarray(as_hwc(im))) for im in images])
        features = self.model.encode_image(batch.to(self.device))
        features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32)


def as_hwc(image: torch.Tensor) -> np.ndarray:
    """A uint8 3 x H x W tensor as a contiguous H x W x 3 array (what PIL and OpenCV read)."""
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 3 x H x W RGB tensor, got {tuple(image.shape)}")
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
