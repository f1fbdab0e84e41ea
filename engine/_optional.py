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


@cache
def nvdiffrast() -> ModuleType | None:
    """`nvdiffrast.torch` when importable and CUDA is available, else None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        import nvdiffrast.torch as dr  # type: ignore[import-not-found]

        return dr
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        logger.debug("nvdiffrast unavailable: %s", exc)
        return None


@cache
def tinycudann() -> ModuleType | None:
    """`tinycudann` when importable and CUDA is available, else None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        import tinycudann as tcnn  # type: ignore[import-not-found]

        return tcnn
    except Exception as exc:  # noqa: BLE001
        logger.debug("tinycudann unavailable: %s", exc)
        return None


def backends() -> dict[str, bool]:
    """Which optional accelerators are present (reported in the handshake)."""
    return {"nvdiffrast": nvdiffrast() is not None, "tinycudann": tinycudann() is not None}
