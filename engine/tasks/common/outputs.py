"""Result files of every file-based job: GLB, OBJ+MTL+PNG, turntable PNG, job.json (reproducing command)."""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...images import save_png
from ...mesh import Mesh, export_glb, export_obj


def image_sha256(image: np.ndarray) -> str:
    """Hex SHA-256 of an array's bytes (C order): the determinism check's hash for textures and meshes."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def write_textured_mesh(
    out: str | Path,
    mesh: Mesh,
    texture: np.ndarray,
    turntable: np.ndarray,
    obj_up: str = "z",
    name: str = "textured",
) -> dict[str, Path]:
    """Write `{name}.glb`, `{name}.obj/.mtl`, `texture.png` and `turntable.png` into `out` (created).

    Args:
        out: output folder.
        mesh: world-space mesh (Z up) with per-corner `uvs`.
        texture: (S, S, 3) float32 in [0, 1], top row first.
        turntable: (H, W, 3) float32 sheet.
        obj_up: up axis written into the OBJ ("z" keeps Blender's frame, "y" as the input file had it); the
            GLB is always Y up, as glTF requires.
        name: base name of the mesh files.
    Returns:
        {"glb", "obj", "texture", "turntable", "job"} → paths ("job" is where `write_job_record` writes).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "glb": export_glb(out / f"{name}.glb", mesh, texture, up="y"),
        "obj": export_obj(out, mesh, texture, name=name, up=obj_up),
        "texture": out / "texture.png",
        "turntable": save_png(out / "turntable.png", turntable),
        "job": out / "job.json",
    }
    return files


def engine_versions() -> dict:
    """What decides whether a run reproduces bit for bit: engine, Python, torch, diffusers and transformers
    versions, and on the CPU torch's thread count (it sets how reductions are split, so 1 and 2 threads round
    differently) and the CPU capability its kernels were chosen for (AVX2 and AVX-512 kernels round differently)."""
    import diffusers
    import torch
    import transformers

    from ... import __version__

    return {
        "engine": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def write_job_record(
    path: str | Path, task: str, params: dict, stats: dict, argv: Sequence[str], seconds: float, **extra
) -> Path:
    """Write job.json: task, resolved params, stats, versions, wall time and the reproducing command.

    Args:
        path: the job.json path.
        task: task name ("texture", "generate", "edit").
        params: resolved parameters (every default filled in).
        stats: the result's statistics.
        argv: arguments after `python -m engine` that reproduce the run.
        seconds: wall-clock seconds of the whole job.
        extra: further JSON-able top-level entries (e.g. the input mesh's path and hash).
    """
    record = {
        "task": task,
        "params": params,
        **extra,
        "stats": stats,
        "seconds": round(seconds, 2),
        "versions": engine_versions(),
        "command": "python -m engine " + shlex.join(argv),
    }
    Path(path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(path)
