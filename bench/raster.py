"""Rasterizer benchmark: ms per frame for rasterize and rasterize+interpolate (prints a table, asserts nothing).

Usage: .venv/bin/python bench/raster.py [--threads N] [--repeats R] [--devices cpu,cuda] [--sizes 64,256,512]
Meshes: 1,280-face icosphere, ~10k-face UV sphere, the 69k-face Stanford bunny (from ../shared/meshes when
present), each normalised to fit [-0.5, 0.5]^3 and seen by 4 fixed orbit cameras (one frame per camera).
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

from engine.render.cameras import orbit_from_angles
from engine.render.rasterize import interpolate, rasterize

BUNNY = Path(__file__).resolve().parents[1].parent / "shared" / "meshes" / "stanford-bunny.obj"


def _normalised(mesh: trimesh.Trimesh) -> tuple[torch.Tensor, torch.Tensor]:
    v = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    v = (v - (lo + hi) / 2) / (hi - lo).max()
    return torch.tensor(v, dtype=torch.float32), torch.tensor(np.asarray(mesh.faces), dtype=torch.int64)


def meshes() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {"icosphere-1k": _normalised(trimesh.creation.icosphere(subdivisions=3)),
           "uvsphere-10k": _normalised(trimesh.creation.uv_sphere(count=[72, 72]))}
    if BUNNY.exists():
        out["bunny-69k"] = _normalised(trimesh.load(BUNNY, force="mesh", process=False))
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_frames(verts, faces, size: int, device: str, repeats: int) -> tuple[float, float, float]:
    """(rasterize ms, rasterize+interpolate ms, covered pixel fraction) per frame, best of `repeats`."""
    cams = orbit_from_angles(torch.tensor([10.0, 30.0, -5.0, 20.0]), torch.tensor([0.0, 70.0, 160.0, 250.0]),
                             torch.full((4,), 1.6), torch.full((4,), 45.0), size, size).to(device)
    clip = cams.clip_positions(verts.to(device))
    faces = faces.to(device)
    attr = verts.to(device)
    best_r = best_ri = float("inf")
    cover = 0.0
    for _ in range(repeats):
        for b in range(clip.shape[0]):
            _sync(device)
            t0 = time.perf_counter()
            rast = rasterize(clip[b], faces, (size, size), backend="torch")
            _sync(device)
            t1 = time.perf_counter()
            rast = rasterize(clip[b], faces, (size, size), backend="torch")
            interpolate(attr, rast, faces)
            _sync(device)
            t2 = time.perf_counter()
            best_r = min(best_r, t1 - t0)
            best_ri = min(best_ri, t2 - t1)
            cover = float((rast[..., 3] > 0).float().mean())
    return best_r * 1e3, best_ri * 1e3, cover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--sizes", default="64,256,512")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu {platform.processor() or platform.machine()}")
    if torch.cuda.is_available():
        print(f"cuda device: {torch.cuda.get_device_name(0)}")
    print("time = best single frame of 4 views x repeats (ms); cover = covered pixel fraction of the last view")
    print(f"{'device':6} {'mesh':14} {'faces':>6} {'size':>5} {'raster ms':>10} {'+interp ms':>11} {'cover':>6}")
    for device in devices:
        for name, (v, f) in meshes().items():
            for size in sizes:
                r, ri, cover = time_frames(v, f, size, device, args.repeats)
                print(f"{device:6} {name:14} {f.shape[0]:6d} {size:5d} {r:10.2f} {ri:11.2f} {cover:6.2f}")


if __name__ == "__main__":
    main()
