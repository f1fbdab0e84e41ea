"""The only place that imports Ray (an optional extra: `pip install .[cluster]`), lazily, with a clear error."""

from __future__ import annotations

import logging
from types import ModuleType

logger = logging.getLogger(__name__)

INSTALL_HINT = "Ray is not installed; install the cluster extra (pip install 'csd-blender-engine[cluster]')"


def import_ray() -> ModuleType:
    """The `ray` module.

    Raises:
        RuntimeError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(INSTALL_HINT) from exc
    return ray


def connect(address: str) -> tuple[ModuleType, bool]:
    """Connect to a Ray cluster, or start a local runtime; reuse a connection this process already has.

    Args:
        address: "local" (start a Ray runtime on this machine), "auto" (the cluster `ray start` began here) or
            "ray://host:10001" / "host:6379".

    Returns:
        (ray, started): `started` is True when this call connected (the caller then calls `ray.shutdown()`).
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    ray.init(address=None if address == "local" else address, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)
    logger.info("connected to Ray (%s): %s", address, ray.cluster_resources())
    return ray, True


def pool_size(ray: ModuleType, gpus_per_worker: float, cpus_per_worker: float, wanted: int | None) -> int:
    """How many workers the cluster can hold at once (at most `wanted` when given).

    Args:
        ray: the connected ray module.
        gpus_per_worker: GPUs each worker reserves (0: CPU workers).
        cpus_per_worker: CPUs each worker reserves.
        wanted: an upper bound (None: as many as fit).

    Raises:
        ValueError: the cluster has none of the resources a worker needs.
    """
    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1):
        raise ValueError(f"workers: must be at least 1 (None: as many as fit), got {wanted!r}")
    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if gpus_per_worker > 0 and gpus < gpus_per_worker:
        raise ValueError(f"the Ray cluster has {gpus:g} GPU(s), a worker needs {gpus_per_worker:g}; "
                         "pass --gpus-per-job 0 (or --gpus-per-worker 0) to run on CPUs")
    fits = [int(cpus // cpus_per_worker)] if cpus_per_worker > 0 else []
    if gpus_per_worker > 0:
        fits.append(int(gpus // gpus_per_worker))
    n = min(fits) if fits else 1
    if n < 1:
        raise ValueError(f"the Ray cluster has {cpus:g} CPU(s), a worker needs {cpus_per_worker:g}")
    return min(n, wanted) if wanted else n


def worker_lost_errors(ray: ModuleType) -> tuple[type[BaseException], ...]:
    """The exceptions `ray.get` raises when the worker process (not the job) died."""
    ex = ray.exceptions
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
             "OutOfMemoryError", "NodeDiedError", "ObjectLostError")
    return tuple(getattr(ex, n) for n in names if isinstance(getattr(ex, n, None), type))
