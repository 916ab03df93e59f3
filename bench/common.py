"""Shared helpers for the benchmarks: test photos, timing, machine info, output; the attacks
(``jpeg``, ``ATTACKS``, ...) are :mod:`aigcguard.perturb`'s, re-exported.

Photos come from two places, neither copied into the project:

- the 24 Kodak photos (768 x 512) in ``../shared/data/photos/kodak`` relative to the project
  root (override with ``AIGC_KODAK_DIR``);
- the public-domain photos bundled with scikit-image (``skimage.data``).

Images are handled as uint8 RGB numpy arrays H x W x 3; :func:`to_tensor` and :func:`to_bgr`
turn them into what aigcguard and invisible-watermark take.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# The attacks live in aigcguard.perturb, shared with the tests and `aigc detector eval`;
# re-exported here for the scripts that reach them through this module.
from aigcguard.perturb import (  # noqa: F401
    ATTACK_NOTES,
    ATTACKS,
    brightness,
    combined,
    contrast,
    crop_resize,
    gaussian_blur,
    gaussian_noise,
    jpeg,
    resize_half,
    rotate,
)

ROOT = Path(__file__).resolve().parents[1]
# real photos and pictures from 40+ generators, with sources (../shared/data/wild/README.md)
WILD_DIR = Path(os.environ.get("AIGC_WILD_DIR", ROOT.parent / "shared/data/wild"))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
KODAK_DIR = Path(os.environ.get("AIGC_KODAK_DIR", ROOT.parent / "shared/data/photos/kodak"))

#: scikit-image photos used by the benchmarks (grayscale ones are repeated into RGB).
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "camera",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "moon",
    "brick",
    "grass",
    "gravel",
    "coins",
    "clock",
)

Photo = tuple[str, np.ndarray]  # (name, uint8 RGB H x W x 3)


# ------------------------------------------------------------------------------------ photos


class MissingDataError(SystemExit):
    pass


def wild_manifest(wild: Path) -> Path:
    """``wild``'s manifest.csv; a clear exit (status 1) when the shared wild set is not there."""
    path = Path(wild) / "manifest.csv"
    if not path.is_file():
        raise MissingDataError(f"{path} is missing: the shared wild set (set AIGC_WILD_DIR)")
    return path


def progress_log() -> Callable[[str], None]:
    """A function that prints a progress line to stderr, prefixed with the seconds since this
    call (a long bench's log of what it is doing, kept out of its results on stdout)."""
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    return log


def kodak_available() -> bool:
    return KODAK_DIR.is_dir() and any(KODAK_DIR.glob("*.png"))


def missing_kodak_message() -> str:
    return (
        f"Kodak photos not found in {KODAK_DIR} (expected 24 PNGs from the shared data folder, "
        f"../shared/data/photos/kodak relative to the project root). Mount the shared folder "
        f"or point AIGC_KODAK_DIR at a folder of PNG photos."
    )


def load_kodak(limit: int | None = None) -> list[Photo]:
    """The Kodak photos as RGB arrays; exits with a clear message when the folder is absent."""
    if not kodak_available():
        raise MissingDataError(missing_kodak_message())
    paths = sorted(KODAK_DIR.glob("*.png"))[:limit]
    photos = []
    for p in paths:
        with Image.open(p) as im:
            photos.append((f"kodak/{p.stem}", np.asarray(im.convert("RGB"), dtype=np.uint8)))
    return photos


def load_skimage(names: Sequence[str] = SKIMAGE_PHOTOS) -> list[Photo]:
    try:
        import skimage.data
    except ImportError:
        raise MissingDataError(
            "scikit-image is not installed; install the bench extras: pip install -e '.[bench]'"
        ) from None
    photos = []
    for name in names:
        arr = np.asarray(getattr(skimage.data, name)())
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        photos.append((f"skimage/{name}", np.ascontiguousarray(arr[:, :, :3], dtype=np.uint8)))
    return photos


def fit_size(arr: np.ndarray, min_short: int, max_long: int | None = None) -> np.ndarray:
    """Resize (bicubic) so the short side is at least ``min_short`` and, where that still
    allows it, the long side at most ``max_long``; aspect ratio kept."""
    h, w = arr.shape[:2]
    scale = 1.0
    if min(h, w) < min_short:
        scale = min_short / min(h, w)
    elif max_long is not None and max(h, w) > max_long:
        scale = max(max_long / max(h, w), min_short / min(h, w))
    if scale == 1.0:
        return arr
    nw, nh = round(w * scale), round(h * scale)
    if h <= w:
        nh = max(nh, min_short)
    else:
        nw = max(nw, min_short)
    size = (nw, nh)
    return np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))


def square(arr: np.ndarray, side: int) -> np.ndarray:
    """Resize so the short side is ``side`` (bicubic), then centre-crop to side x side."""
    h, w = arr.shape[:2]
    scale = side / min(h, w)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    im = Image.fromarray(arr).resize((nw, nh), Image.BICUBIC)
    left, top = (nw - side) // 2, (nh - side) // 2
    return np.asarray(im.crop((left, top, left + side, top + side)))


# ----------------------------------------------------------------------------- conversions


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 RGB H x W x 3 -> uint8 tensor 3 x H x W."""
    return torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def from_tensor(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu").permute(1, 2, 0).contiguous().numpy()


def to_bgr(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr[:, :, ::-1])


from_bgr = to_bgr  # the same channel swap


# ---------------------------------------------------------------------------------- timing


def sync_device(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_median(
    fn: Callable[[], object], repeats: int, device: str | torch.device = "cpu"
) -> tuple[float, list[float]]:
    """One warm-up call, then the median wall time (seconds) of ``repeats`` calls."""
    fn()
    sync_device(device)
    times = []
    for _ in range(repeats):
        sync_device(device)
        t0 = time.perf_counter()
        fn()
        sync_device(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


# ------------------------------------------------------------------------------ environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies over all CPUs from /proc/stat, or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def busy_warning(sample_s: float = 1.0) -> str | None:
    """A warning when other work is using the CPUs (sampled over ``sample_s`` while this
    process sleeps). torch's threads sharing cores with another process can make the batched
    kernels several times slower, so timings taken then mean little."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(sample_s)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    busy = 1.0 - (after[0] - before[0]) / (after[1] - before[1])
    if busy < 0.2:
        return None
    return (
        f"other processes were using {busy:.0%} of the {os.cpu_count()} CPUs when this "
        f"started: timings are unreliable; rerun on a quiet machine"
    )


def machine_info() -> dict:
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import cv2

        info["opencv"] = cv2.__version__
        info["opencv_threads"] = cv2.getNumThreads()
    except ImportError:
        pass
    info["invisible_watermark"] = package_version("invisible-watermark")
    return info


def require_imwatermark():
    try:
        import imwatermark
    except ImportError:
        raise MissingDataError(
            "invisible-watermark is not installed; install the bench extras: "
            "pip install -e '.[bench]'"
        ) from None
    return imwatermark


# ---------------------------------------------------------------------------------- output


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_markdown(markdown: str, out: str | Path | None) -> None:
    """Print a bench's markdown and, with ``out``, write it there too."""
    print(markdown)
    if out:
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(markdown + "\n")


def package_version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def write_outputs(name: str, markdown: str, raw: dict, out: str | None, quick: bool) -> None:
    """Print the markdown; write it to ``out`` and the raw numbers as JSON next to it
    (``out`` with a .json suffix), or to bench/results/NAME[.quick].json without ``out``."""
    print_markdown(markdown, out)
    if out:
        json_path = Path(out).with_suffix(".json")
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        json_path = RESULTS_DIR / f"{name}{'.quick' if quick else ''}.json"
    json_path.write_text(json.dumps(raw, indent=2, default=float) + "\n")
    print(f"\n(raw numbers: {json_path})", file=sys.stderr)


def wait_ready(base: str, seconds: float, server=None, pause: float = 0.5) -> bool:
    """Whether the service at ``base`` answered ``GET /readyz`` with 200 within ``seconds``;
    False at once when ``server`` (its ``subprocess.Popen``) has exited."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline and (server is None or server.poll() is None):
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(pause)
    return False
