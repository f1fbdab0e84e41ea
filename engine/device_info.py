"""Which torch device the engine runs on, its name and its memory (reported in the handshake)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from csd_blender.protocol.errors import ErrorCode

from .errors import EngineError


@dataclass
class DeviceInfo:
    """A resolved device: `name` for torch ("cpu", "cuda:0"), a readable label and memory in bytes."""

    device: str
    label: str
    total_bytes: int
    free_bytes: int


def resolve_device(requested: str = "auto") -> str:
    """ "auto" -> "cuda:0" when CUDA is available else "cpu"; "cuda" -> "cuda:0"; checks CUDA exists.

    Args:
        requested: "auto", "cpu", "cuda" or "cuda:N".
    """
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(
                ErrorCode.BAD_REQUEST,
                f"device: {requested!r} requested but CUDA is not available",
                field="device",
            )
        return requested if ":" in requested else "cuda:0"
    raise EngineError(
        ErrorCode.BAD_REQUEST, f"device: must be auto, cpu, cuda or cuda:N, got {requested!r}", field="device"
    )


def _system_memory() -> tuple[int, int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1:]}
        return info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 0, 0


def device_info(device: str) -> DeviceInfo:
    """Label and memory of a resolved device (system RAM for the CPU)."""
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return DeviceInfo(device, torch.cuda.get_device_name(torch.device(device)), int(total), int(free))
    total, free = _system_memory()
    label = platform.processor() or platform.machine() or "CPU"
    return DeviceInfo(device, f"{label} ({os.cpu_count()} threads)", total, free)
