"""aigc-guard: where did this image come from?

Subpackages, one concern each:

- ``aigcguard.watermark``  invisible keyed watermarks (embed, detect, known marks)
- ``aigcguard.provenance`` content credentials, labels and similarity search
- ``aigcguard.detectors``  real-versus-generated classifiers
- ``aigcguard.cli``        the ``aigc`` command, a thin layer over the above

Shared by all of them (the foundation, folder core/): safe image loading, device choice, atomic
files, result types, the registry helper, the CLIP tower, HTML pieces and image perturbations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigcguard.lazy import lazy_exports

__version__ = "0.1.0"

# Loaded on first use (PEP 562): both pull in torch, which a process that only lists files or
# writes Parquet (a Ray write task, ``aigc --version``) should not pay for.
_LAZY = {
    "pick_device": "aigcguard.device",
    "ImageLoadError": "aigcguard.imageio",
    "LoadedImage": "aigcguard.imageio",
    "iter_image_paths": "aigcguard.imageio",
    "load_image": "aigcguard.imageio",
    "load_images": "aigcguard.imageio",
    "save_image": "aigcguard.imageio",
}

if TYPE_CHECKING:
    from aigcguard.device import pick_device
    from aigcguard.imageio import (
        ImageLoadError,
        LoadedImage,
        iter_image_paths,
        load_image,
        load_images,
        save_image,
    )


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ImageLoadError",
    "LoadedImage",
    "__version__",
    "iter_image_paths",
    "load_image",
    "load_images",
    "pick_device",
    "save_image",
]
