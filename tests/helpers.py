"""Plain helpers the tests share (fixtures live in the rootdir ``conftest.py``)."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared" / "data"


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 array to a 3 x H x W tensor (a copy, so it is writable)."""
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def to_array(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).contiguous().numpy()


def pixel_repeated_or_noise(
    n: int, seed: int, size: int = 32
) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` size x size x 3 uint8 pictures and their labels: class 1 (odd indices) upsampled
    2x by pixel repetition (the trace generators leave, what NPR reads), class 0 fine-grained
    noise with the same overall statistics."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        if i % 2:
            small = rng.integers(0, 256, (size // 2, size // 2, 3), dtype=np.uint8)
            images.append(small.repeat(2, axis=0).repeat(2, axis=1))
        else:
            images.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return images, np.arange(n) % 2


def free_port() -> int:
    """A loopback TCP port nobody listens on now, for a test server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, seconds: float) -> bool:
    """Whether a test server at ``base`` answered ``GET /readyz`` with 200 within ``seconds``."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


@contextmanager
def serving(settings, ready_s: float) -> Iterator[str]:
    """A uvicorn server (``settings``: its ``uvicorn.Config``) in a thread, ready; yields its
    base URL and stops it afterwards."""
    import uvicorn

    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{settings.host}:{settings.port}"
    try:
        if not wait_ready(base, ready_s):
            raise RuntimeError("the service did not become ready")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def bench_module(name: str) -> ModuleType:
    """The script ``bench/<name>.py`` imported as module ``name`` (the benches are scripts,
    not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module
