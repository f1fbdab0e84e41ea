"""The only place that imports the optional CUDA accelerators (nvdiffrast, tinycudann).

Both are imported lazily on first request and guarded with `except Exception`: tinycudann raises
EnvironmentError at import on a machine without CUDA, and nvdiffrast 0.4 raises ImportError when its
extension is not built (reference/render_perf.md §0).
"""
from __future__ import annotations

import logging
from functools import cache
from types import ModuleType

logger = logging.getLogger(__name__)


def _cuda_module(name: str) -> ModuleType | None:
    """Module `name` when importable and CUDA is available, else None (any failure means "not available")."""
    try:
        import importlib

        import torch

        if not torch.cuda.is_available():
            return None
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - a broken build must not stop the torch backends
        logger.debug("%s unavailable: %s", name, exc)
        return None


@cache
def nvdiffrast() -> ModuleType | None:
    """`nvdiffrast.torch` when importable and CUDA is available, else None."""
    return _cuda_module("nvdiffrast.torch")


@cache
def tinycudann() -> ModuleType | None:
    """`tinycudann` when importable and CUDA is available, else None."""
    return _cuda_module("tinycudann")


def backends() -> dict[str, bool]:
    """Which optional accelerators are present (reported in the handshake)."""
    return {"nvdiffrast": nvdiffrast() is not None, "tinycudann": tinycudann() is not None}
