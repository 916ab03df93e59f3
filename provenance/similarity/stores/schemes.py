"""Stores by URI scheme: a plain path is a FAISS store directory (scheme ``faiss``), and
``SCHEME://...`` goes to the store class registered under ``SCHEME`` in :data:`STORES`.

A new store is its own class implementing :class:`~.protocol.Store` plus one registration::

    @STORES.register("memory", form="memory://NAME")
    class MemoryStore: ...

    open_store("memory://refs")   # MemoryStore.open("memory://refs")
"""

from __future__ import annotations

import os

from aigcguard.provenance.similarity.stores.protocol import Store, StoreError
from aigcguard.registry import Registry

#: URI scheme -> store class (with ``create`` and ``open`` class methods). Registration
#: ``meta``: ``form``, how a location of that scheme is written (for error messages).
STORES: Registry[type[Store]] = Registry("store")
#: the scheme of a plain path
LOCAL_SCHEME = "faiss"


def is_local(location: str | os.PathLike) -> bool:
    """True for a plain path (a store directory on this machine), False for a URI."""
    return isinstance(location, os.PathLike) or "://" not in str(location)


def store_scheme(location: str | os.PathLike) -> str:
    """``faiss`` for a plain path, else the URI's scheme (lower case), registered or not."""
    if is_local(location):
        return LOCAL_SCHEME
    return str(location).split("://", 1)[0].strip().lower()


def _known() -> str:
    forms = []
    for name in STORES.list():
        form = STORES.meta(name).get("form")
        forms.append(f"{name} ({form})" if form else f"{name}://")
    return ", ".join(forms)


def store_class(location: str | os.PathLike) -> type[Store]:
    """The store class for ``location``; StoreError naming the scheme and the known ones."""
    scheme = store_scheme(location)
    if scheme == LOCAL_SCHEME and not is_local(location):
        raise StoreError(f"{location}: a {LOCAL_SCHEME} store is a plain directory path, not a URI")
    if not STORES.is_registered(scheme):
        raise StoreError(f"{location}: unknown store scheme {scheme!r}; known: {_known()}")
    return STORES.get(scheme)


def open_store(location: str | os.PathLike, **kw) -> Store:
    """Open the existing store at ``location`` (a directory path or a store URI)."""
    return store_class(location).open(location, **kw)


def create_store(location: str | os.PathLike, **kw) -> Store:
    """Create an empty store at ``location``; ``kw``: ``embedder``, ``dim``, ``binary``,
    ``index_type`` and whatever else that store's ``create`` takes."""
    return store_class(location).create(location, **kw)
