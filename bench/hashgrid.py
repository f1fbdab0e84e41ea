"""Hash-grid benchmark: points/s for forward and forward+backward (prints a table, asserts nothing).

Usage: .venv/bin/python bench/hashgrid.py [--threads N] [--repeats R] [--devices cpu,cuda]
       [--log2-points 16,17,18] [--backend auto|torch|tcnn]
Configs: the texture-field default (L=12, T=16, 16 -> 512) and CSD's csd-if.yaml (L=12, T=19, 16 -> 512),
torch backend (tinycudann is used only where importable, on CUDA). Inputs uniform in [0, 1]^3.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from engine.fields import HashGrid, TextureFieldConfig

CONFIGS = {
    "texture-field (L12 T16)": dict(n_levels=12, log2_hashmap_size=16,
                                    per_level_scale=TextureFieldConfig().resolved_per_level_scale()),
    "csd-if (L12 T19)": dict(n_levels=12, log2_hashmap_size=19, per_level_scale=1.3703509847201236),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, repeats: int) -> float:
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--log2-points", default="16,17,18")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "tcnn"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'config':<26} {'device':<6} {'points':>8} {'fwd Mpts/s':>11} {'fwd+bwd Mpts/s':>15}")
    for name, cfg in CONFIGS.items():
        for device in args.devices.split(","):
            torch.manual_seed(0)
            grid = HashGrid(3, n_features_per_level=2, base_resolution=16, backend=args.backend, **cfg)
            grid = grid.to(device)
            for lp in (int(s) for s in args.log2_points.split(",")):
                x = torch.rand(1 << lp, 3, device=device)

                def fwd() -> None:
                    with torch.no_grad():
                        grid(x)

                def fwd_bwd() -> None:
                    grid.params.grad = None
                    grid(x).sum().backward()

                tf, tb = _time(fwd, device, args.repeats), _time(fwd_bwd, device, args.repeats)
                print(f"{name:<26} {device:<6} {x.shape[0]:>8} {x.shape[0] / tf / 1e6:>11.3f} "
                      f"{x.shape[0] / tb / 1e6:>15.3f}")


if __name__ == "__main__":
    main()
