"""Procedural training images for the toy prior: coloured, patterned primitives rendered with our rasterizer.

Every image shows one primitive (sphere, cube, cylinder, cone, torus, capsule) whose surface carries a 3D pattern
(plain, striped, checkered, dotted) in one of eight colours, lit by an ambient + Lambertian light, over a light
random background, from a random orbit view (the same ranges the texture task samples). Captions have the form
"a {colour} {pattern} {shape}" with random word dropout and a share of empty captions for classifier-free guidance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from ..render.cameras import orbit_cameras
from ..render.rasterize import interpolate, rasterize

from .vocabulary import COLOURS, PATTERNS, SHAPES


@dataclass
class DatasetConfig:
    """How the toy dataset is drawn.

    Args:
        size: output image size (pixels, square).
        supersample: render at size·supersample and average down (anti-aliasing).
        empty_caption: probability of an empty caption (classifier-free guidance).
        drop_colour, drop_pattern, drop_shape: per-word dropout probabilities.
    """

    size: int = 32
    supersample: int = 2
    empty_caption: float = 0.15
    drop_colour: float = 0.15
    drop_pattern: float = 0.35
    drop_shape: float = 0.25
    elevation_deg: tuple[float, float] = (-10.0, 50.0)
    distance: tuple[float, float] = (1.4, 2.1)
    fov_deg: tuple[float, float] = (38.0, 62.0)


def _unit(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    mesh = mesh.copy()
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / float((hi - lo).max()))
    return mesh


def primitive(shape: str) -> trimesh.Trimesh:
    """The primitive `shape`, centred, longest side 1 (fits [-0.5, 0.5]^3), Z up."""
    if shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3)
    elif shape == "cube":
        mesh = trimesh.creation.box(extents=(1, 1, 1))
    elif shape == "cylinder":
        mesh = trimesh.creation.cylinder(radius=0.4, height=0.9, sections=40)
    elif shape == "cone":
        mesh = trimesh.creation.cone(radius=0.45, height=0.9, sections=40)
    elif shape == "torus":
        mesh = trimesh.creation.torus(major_radius=0.35, minor_radius=0.15, major_sections=40, minor_sections=20)
    elif shape == "capsule":
        mesh = trimesh.creation.capsule(height=0.6, radius=0.3, count=[24, 24])
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return _unit(mesh)


def caption(colour: str, pattern: str, shape: str, rng: np.random.Generator, cfg: DatasetConfig) -> str:
    """'a {colour} {pattern} {shape}' with word dropout; '' with probability cfg.empty_caption."""
    if rng.random() < cfg.empty_caption:
        return ""
    words = ["a"]
    if rng.random() >= cfg.drop_colour:
        words.append(colour)
    if rng.random() >= cfg.drop_pattern:
        words.append(pattern)
    if rng.random() >= cfg.drop_shape:
        words.append(shape)
    return " ".join(words) if len(words) > 1 else ""


def pattern_mask(pattern: str, p: torch.Tensor, freq: float, phase: torch.Tensor) -> torch.Tensor:
    """Where the secondary colour shows, for surface points `p (..., 3)` in object space: (...) in [0, 1]."""
    q = p * freq + phase
    if pattern == "plain":
        return torch.zeros(p.shape[:-1])
    if pattern == "striped":  # horizontal bands (along world Z)
        return (torch.sin(q[..., 2] * 2 * math.pi) > 0).float()
    if pattern == "checkered":
        cells = torch.floor(q).sum(-1)
        return (torch.remainder(cells, 2) > 0.5).float()
    if pattern == "dotted":
        d = q - torch.round(q)
        return (d.norm(dim=-1) < 0.28).float()
    raise ValueError(f"unknown pattern {pattern!r}")


def _secondary(colour: str) -> tuple[float, float, float]:
    return (0.15, 0.15, 0.15) if colour in ("white", "yellow") else (0.96, 0.96, 0.94)


def render_batch(shape: str, n: int, rng: np.random.Generator, cfg: DatasetConfig,
                 colours: list[str] | None = None, patterns: list[str] | None = None
                 ) -> tuple[torch.Tensor, list[str], list[tuple[str, str, str]]]:
    """Render `n` images of one primitive with random colours, patterns, views, light and background.

    Returns:
        images (n, 3, size, size) float32 in [0, 1], top row first; captions; (colour, pattern, shape) labels.
    """
    mesh = primitive(shape)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces, dtype=torch.int32)
    fn = torch.tensor(mesh.face_normals, dtype=torch.float32)
    scale = torch.tensor(rng.uniform(0.8, 1.1, n), dtype=torch.float32)
    spin = torch.tensor(rng.uniform(0, 2 * math.pi, n), dtype=torch.float32)
    res = cfg.size * cfg.supersample
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    cams = orbit_cameras(n, elevation_deg=cfg.elevation_deg, distance=cfg.distance, fov_deg=cfg.fov_deg,
                         width=res, height=res, generator=gen)
    # per-image object transform (spin about Z, uniform scale) applied to vertices
    c, s = torch.cos(spin), torch.sin(spin)
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1
    world = torch.einsum("bij,vj->bvi", rot, verts) * scale[:, None, None]
    clip = torch.einsum("bij,bvj->bvi", cams.world_to_clip(), F.pad(world, (0, 1), value=1.0))
    rast = rasterize(clip, faces, (res, res))
    obj_pos = interpolate(verts, rast, faces)                         # object-space surface points (pattern)
    tri = rast[..., 3].long()
    mask = (tri > 0).float()[..., None]
    normal = torch.einsum("bij,bhwj->bhwi", rot, fn[(tri - 1).clamp(min=0)])

    colours = colours or [str(rng.choice(list(COLOURS))) for _ in range(n)]
    patterns = patterns or [str(rng.choice(PATTERNS)) for _ in range(n)]
    images, caps = [], []
    for i in range(n):
        base = torch.tensor(COLOURS[colours[i]]) * torch.tensor(rng.uniform(0.88, 1.08, 3), dtype=torch.float32)
        alt = torch.tensor(_secondary(colours[i]))
        freq = float(rng.uniform(2.5, 4.5))
        phase = torch.tensor(rng.uniform(0, 1, 3), dtype=torch.float32)
        m = pattern_mask(patterns[i], obj_pos[i], freq, phase)[..., None]
        albedo = (base * (1 - m) + alt * m).clamp(0, 1)
        light = torch.tensor(rng.normal(size=3), dtype=torch.float32)
        light[2] = abs(light[2]) + 0.5
        light = light / light.norm()
        lambert = (normal[i] @ light).clamp(min=0)[..., None]
        shaded = albedo * (0.62 + 0.38 * lambert)
        bg = torch.tensor(rng.uniform(0.6, 1.0) - rng.uniform(0, 0.15, 3), dtype=torch.float32).clamp(0, 1)
        img = shaded * mask[i] + bg * (1 - mask[i])
        images.append(img)
        caps.append(caption(colours[i], patterns[i], shape, rng, cfg))
    batch = torch.stack(images).permute(0, 3, 1, 2)
    batch = F.avg_pool2d(batch, cfg.supersample) if cfg.supersample > 1 else batch
    return batch.clamp(0, 1), caps, [(colours[i], patterns[i], shape) for i in range(n)]


def build_dataset(n_images: int, seed: int = 0, cfg: DatasetConfig | None = None, chunk: int = 64
                  ) -> tuple[torch.Tensor, list[str], list[tuple[str, str, str]]]:
    """Render `n_images` training images (uint8 (N, 3, size, size)), their captions and labels, from `seed`."""
    cfg = cfg or DatasetConfig()
    rng = np.random.default_rng(seed)
    images, caps, labels = [], [], []
    done = 0
    while done < n_images:
        k = min(chunk, n_images - done)
        shape = SHAPES[(done // chunk) % len(SHAPES)]
        img, c, lab = render_batch(shape, k, rng, cfg)
        images.append((img * 255).round().to(torch.uint8))
        caps += c
        labels += lab
        done += k
    return torch.cat(images), caps, labels
