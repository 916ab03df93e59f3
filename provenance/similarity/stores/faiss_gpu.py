"""Searching a FAISS index on the GPU when there is one.

The store's index lives on the CPU (it is what gets written to disk); a GPU copy is made on
first search after each change and dropped when the index changes. Binary indexes, and index
types faiss has no GPU version of, stay on the CPU (with a warning for the latter).
"""

from __future__ import annotations

import warnings

import faiss
import numpy as np

from aigcguard.provenance.similarity.stores.faiss_policy import apply_params, faiss_message

#: faiss's GPU top-k selection stops at 2048; deeper searches run on the CPU index
GPU_MAX_K = 2048


class GpuSearch:
    """Searches a store's index, on a GPU copy when possible. ``where`` names the store in
    warnings."""

    def __init__(self, where: object, binary: bool):
        self.where = where
        self.enabled = not binary and faiss.get_num_gpus() > 0
        self._binary = binary
        self._copy = None
        self._applied: tuple | None = None  # (index, params) last set for searching

    def invalidate(self) -> None:
        """The CPU index changed: the GPU copy is stale."""
        self._copy = None

    def copy_of(self, index):
        """A GPU copy of ``index`` for searching, made on first use after each change; None
        without a GPU or when faiss has no GPU version of this index type."""
        if self.enabled and self._copy is None and index.ntotal:
            try:
                self._copy = faiss.index_cpu_to_all_gpus(index)
            except (RuntimeError, AttributeError) as exc:
                message = f"{self.where}: searching on the CPU: {faiss_message(exc)}"
                warnings.warn(message, stacklevel=4)
                self.enabled = False
        return self._copy

    def search(self, index, q: np.ndarray, k: int, params: str) -> tuple[np.ndarray, np.ndarray]:
        gpu = self.copy_of(index)
        on_gpu = gpu is not None and k <= GPU_MAX_K
        target = gpu if on_gpu else index
        # setting parameters costs about as much as a small search: only when they change
        if self._applied is None or self._applied[0] is not target or self._applied[1] != params:
            apply_params(target, params, self._binary, gpu=on_gpu)
            self._applied = (target, params)
        return target.search(q, k)
