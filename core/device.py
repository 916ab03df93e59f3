"""The one place that decides which torch device work runs on."""

from __future__ import annotations

import torch


def pick_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` to a usable device.

    ``auto`` (or ``None``) takes CUDA when present and the CPU otherwise. Asking for CUDA on a
    machine without it is an error rather than a silent fall-back, so a pipeline configured for
    the GPU never quietly runs at CPU speed.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}: use auto, cpu, cuda or cuda:N")
    return device
