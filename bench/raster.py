"""Rasterizer benchmark: ms per frame for rasterize, +interpolate and antialias; prints, asserts nothing.

Usage: .venv/bin/python bench/raster.py [--threads N] [--repeats R] [--devices cpu,cuda] [--sizes 64,256,512]
Columns: rasterize; rasterize + interpolate (3 channels); antialias alone (torch backend, topology cached);
wall-clock best single frame, and CPU time of the process for the rasterize + interpolate frame (robust on a
shared machine). Meshes: 1,280-face icosphere, 10,400-face UV sphere, the 69k-face Stanford bunny (from
../shared/meshes when present), each normalised to fit [-0.5, 0.5]^3 and seen by 4 fixed orbit cameras (one
frame per camera).
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
from engine.render._antialias import edge_neighbors
from engine.render.rasterize import antialias, interpolate, rasterize

BUNNY = Path(__file__).resolve().parents[1].parent / "shared" / "meshes" / "stanford-bunny.obj"


def _normalised(mesh: trimesh.Trimesh) -> tuple[torch.Tensor, torch.Tensor]:
    v = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    v = (v - (lo + hi) / 2) / (hi - lo).max()
    return torch.tensor(v, dtype=torch.float32), torch.tensor(np.asarray(mesh.faces), dtype=torch.int64)


def meshes() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {"icosphere-1k": _normalised(trimesh.creation.icosphere(subdivisions=3)),
           "uvsphere-10k": _normalised(trimesh.creation.uv_sphere(count=[51, 51]))}
    if BUNNY.exists():
        out["bunny-69k"] = _normalised(trimesh.load(BUNNY, force="mesh", process=False))
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_frames(verts, faces, size: int, device: str, repeats: int) -> dict[str, float]:
    """Best-of timings (ms) per frame over 4 views x `repeats`, and the covered pixel fraction."""
    cams = orbit_from_angles(torch.tensor([10.0, 30.0, -5.0, 20.0]), torch.tensor([0.0, 70.0, 160.0, 250.0]),
                             torch.full((4,), 1.6), torch.full((4,), 45.0), size, size).to(device)
    clip = cams.clip_positions(verts.to(device))
    faces = faces.to(device)
    attr = verts.to(device)
    topology = edge_neighbors(faces)
    best = {"raster": float("inf"), "interp": float("inf"), "cpu": float("inf"), "aa": float("inf")}
    cover = 0.0
    for _ in range(repeats):
        for b in range(clip.shape[0]):
            _sync(device)
            t0 = time.perf_counter()
            rast = rasterize(clip[b], faces, (size, size), backend="torch")
            _sync(device)
            t1 = time.perf_counter()
            c1 = time.process_time()
            rast = rasterize(clip[b], faces, (size, size), backend="torch")
            colour = interpolate(attr, rast, faces)
            _sync(device)
            t2 = time.perf_counter()
            c2 = time.process_time()
            antialias(colour, rast, clip[b], faces, backend="torch", topology=topology)
            _sync(device)
            t3 = time.perf_counter()
            for key, value in (("raster", t1 - t0), ("interp", t2 - t1), ("cpu", c2 - c1), ("aa", t3 - t2)):
                best[key] = min(best[key], value * 1e3)
            cover = float((rast[..., 3] > 0).float().mean())
    best["cover"] = cover
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--sizes", default="64,256,512")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = args.devices.split(",")
    devices = [d for d in wanted if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    sizes = [int(s) for s in args.sizes.split(",")]
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu {cpu}")
    if torch.cuda.is_available():
        print(f"cuda device: {torch.cuda.get_device_name(0)}")
    print("ms per frame, best of 4 views x repeats; cpu = process CPU time of raster+interp; "
          "cover = covered pixel fraction (last view)")
    print(f"{'device':6} {'mesh':13} {'faces':>6} {'size':>5} {'raster':>8} {'+interp':>8} {'cpu':>8} "
          f"{'aa':>7} {'cover':>6}")
    for device in devices:
        for name, (v, f) in meshes().items():
            for size in sizes:
                t = time_frames(v, f, size, device, args.repeats)
                print(f"{device:6} {name:13} {f.shape[0]:6d} {size:5d} {t['raster']:8.1f} {t['interp']:8.1f} "
                      f"{t['cpu']:8.1f} {t['aa']:7.1f} {t['cover']:6.2f}")

if __name__ == "__main__":
    main()
