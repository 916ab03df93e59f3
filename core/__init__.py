"""aigc-guard: where did this image come from?

Subpackages, one concern each:

- ``aigcguard.watermark``  invisible keyed watermarks (embed, detect, known marks)
- ``aigcguard.provenance`` content credentials, labels and similarity search
- ``aigcguard.detectors``  real-versus-generated classifiers
- ``aigcguard.cli``        the ``aigc`` command, a thin layer over the above

Shared by all of them and exposed here: safe image loading and device choice.
"""

from aigcguard.device import pick_device
from aigcguard.imageio import (
    ImageLoadError,
    LoadedImage,
    iter_image_paths,
    load_image,
    load_images,
    save_image,
)

__version__ = "0.1.0"

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
