"""Procedural training images for the toy prior: coloured, patterned primitives rendered with our rasterizer.

Every image shows one primitive (sphere, cube, cylinder, cone, torus, capsule) whose surface carries a 3D pattern
(plain, striped, checkered, dotted) in one of eight colours (each a hue / saturation / value region, drawn anew per
image) with a neutral second colour (white, light grey or dark grey for every colour), over a light random
background, from a random orbit view in the ranges the tasks sample. Half the images are shaded (ambient +
Lambertian light), the rest flat-lit (albedo only, as the texture task renders); a share are grey and textureless
(captioned without a colour or pattern), as text to mesh renders geometry. Captions have the form
"a {colour} {pattern} {shape}" with random word dropout and a share of empty captions for classifier-free guidance.
`python -m engine.toy.dataset --sheet out.png` writes a contact sheet.
"""
from __future__ import annotations

import argparse
import colorsys
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from ..render.cameras import orbit_cameras
from ..render.rasterize import interpolate, rasterize

from .vocabulary import COLOUR_HSV, NEUTRALS, PATTERNS, SHAPES

logger = logging.getLogger("engine.toy.dataset")
GREY = "grey"  # label of the textureless grey renders (not a vocabulary word)


@dataclass
class DatasetConfig:
    """How the toy dataset is drawn.

    Args:
        size: output image size (pixels, square).
        supersample: render at size·supersample and average down (anti-aliasing).
        empty_caption: probability of an empty caption (classifier-free guidance).
        drop_colour, drop_pattern, drop_shape: per-word dropout probabilities.
        flat: share of flat-lit (albedo only) renders; the rest are shaded.
        grey: share of grey, textureless, shaded renders (captioned "a {shape}" or "").
        elevation_deg, distance, fov_deg: orbit camera ranges (the texture and generate tasks' defaults).
        scale: object scale range (the primitive's longest side is 1 at scale 1).
    """

    size: int = 32
    supersample: int = 2
    empty_caption: float = 0.15
    drop_colour: float = 0.15
    drop_pattern: float = 0.35
    drop_shape: float = 0.25
    flat: float = 0.45
    grey: float = 0.08
    elevation_deg: tuple[float, float] = (-10.0, 50.0)
    distance: tuple[float, float] = (1.5, 2.0)
    fov_deg: tuple[float, float] = (40.0, 60.0)
    scale: tuple[float, float] = (0.8, 1.1)


def sample_colour(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """An RGB colour drawn from the HSV region of colour word `name` (vocabulary.COLOUR_HSV)."""
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_HSV[name]
    h = rng.uniform(h0, h1) % 360.0
    return colorsys.hsv_to_rgb(h / 360.0, rng.uniform(s0, s1), rng.uniform(v0, v1))


def sample_neutral(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """The second colour of a pattern on colour `name`: white, light or dark grey (the same set for every colour,
    minus the one that would vanish on white or black), with a little jitter.

    Known weakness (measured, see README): white with dark-grey stripes and black with white stripes are the same
    half-and-half picture, so the prior confuses "white" with "black". A from-scratch 10 000-step run on data with
    light grey only for both (and orange at 27-36°, purple at 274-298°) lifted DDIM white 8 → 14, orange 10 → 16,
    purple 14 → 16 of 16, but its CSD textures on Spot were less clean (green 0.98 → 0.64, blue 0.76 → 0.68 in
    family or neutral), so the bundled weights and this code stay at v2 (README "Limitations").
    """
    skip = {"white": "white", "black": "dark grey"}.get(name)
    options = [k for k in NEUTRALS if k != skip]
    v = NEUTRALS[options[int(rng.integers(len(options)))]] + rng.uniform(-0.04, 0.04)
    return (float(np.clip(v, 0, 1)),) * 3


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
    """'a {colour} {pattern} {shape}' with word dropout; '' with probability cfg.empty_caption.

    A grey textureless render (colour `GREY`) names only its shape: it has no colour or pattern word.
    """
    if rng.random() < cfg.empty_caption:
        return ""
    if colour == GREY:
        return f"a {shape}" if rng.random() >= cfg.drop_shape else ""
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


def render_batch(shape: str, n: int, rng: np.random.Generator, cfg: DatasetConfig,
                 colours: list[str] | None = None, patterns: list[str] | None = None,
                 flat: list[bool] | None = None) -> tuple[torch.Tensor, list[str], list[tuple[str, str, str]]]:
    """Render `n` images of one primitive with random colours, patterns, views, light and background.

    Args:
        shape: one of SHAPES.
        n: number of images.
        rng: the random source (everything drawn from it, so a seed reproduces the batch).
        cfg: dataset settings.
        colours, patterns, flat: per-image choices (random when None); colour `GREY` is a grey textureless render.
    Returns:
        images (n, 3, size, size) float32 in [0, 1], top row first; captions; (colour, pattern, shape) labels.
    """
    mesh = primitive(shape)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces, dtype=torch.int32)
    fn = torch.tensor(mesh.face_normals, dtype=torch.float32)
    scale = torch.tensor(rng.uniform(*cfg.scale, n), dtype=torch.float32)
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

    names = list(COLOUR_HSV)
    if colours is None:
        colours = [GREY if rng.random() < cfg.grey else names[int(rng.integers(len(names)))] for _ in range(n)]
    patterns = patterns or [PATTERNS[int(rng.integers(len(PATTERNS)))] for _ in range(n)]
    patterns = ["plain" if col == GREY else pat for col, pat in zip(colours, patterns)]
    flat = flat if flat is not None else [col != GREY and rng.random() < cfg.flat for col in colours]
    images, caps = [], []
    for i in range(n):
        if colours[i] == GREY:
            base = torch.full((3,), float(rng.uniform(0.55, 0.85)))
            alt = base
        else:
            base = torch.tensor(sample_colour(colours[i], rng), dtype=torch.float32)
            alt = torch.tensor(sample_neutral(colours[i], rng), dtype=torch.float32)
        freq = float(rng.uniform(2.5, 4.5))
        phase = torch.tensor(rng.uniform(0, 1, 3), dtype=torch.float32)
        m = pattern_mask(patterns[i], obj_pos[i], freq, phase)[..., None]
        albedo = (base * (1 - m) + alt * m).clamp(0, 1)
        if flat[i]:
            shaded = albedo * float(rng.uniform(0.92, 1.04))
        else:
            light = torch.tensor(rng.normal(size=3), dtype=torch.float32)
            light[2] = abs(light[2]) + 0.5
            light = light / light.norm()
            lambert = (normal[i] @ light).clamp(min=0)[..., None]
            ambient = float(rng.uniform(0.45, 0.7))
            shaded = albedo * (ambient + (1 - ambient) * lambert)
        if rng.random() < 0.5:   # the texture task's backgrounds: a light random solid colour per channel
            bg = torch.tensor(0.55 + 0.45 * rng.random(3), dtype=torch.float32)
        else:                    # light grey-ish
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


def contact_sheet(path: Path, n: int = 96, seed: int = 0, columns: int = 12, scale: int = 3) -> None:
    """Write a PNG grid of `n` dataset images (each upscaled `scale`×), row-major, for a person to look at.

    Args:
        path: output PNG.
        n: number of images (drawn like the training set, every shape in turn).
        seed: dataset seed.
        columns: images per row.
        scale: nearest-neighbour upscaling factor.
    """
    from ..images import save_png, sheet

    images, caps, _ = build_dataset(n, seed=seed, chunk=max(1, n // len(SHAPES)))
    order = np.random.default_rng(seed).permutation(n)   # mix the shapes
    tiles = F.pad(images[order].float() / 255, (1, 1, 1, 1), value=1.0)
    tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest").permute(0, 2, 3, 1).numpy()
    save_png(path, sheet(tiles, columns))
    path.with_suffix(".txt").write_text("\n".join(f"{k}: {caps[i]!r}" for k, i in enumerate(order)) + "\n")
    logger.info("wrote %s (%d images, captions in %s)", path, n, path.with_suffix(".txt"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Toy prior dataset tools")
    parser.add_argument("--sheet", type=Path, required=True, help="write a contact sheet PNG here")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    contact_sheet(args.sheet, args.n, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
