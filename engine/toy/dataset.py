"""Procedural training images for the toy prior: coloured, patterned primitives rendered with our rasterizer.

Every image shows one primitive (sphere, cube, cylinder, cone, torus, capsule) whose surface carries a 3D pattern
(plain, striped, checkered, dotted) in one of eight colours (each a hue / saturation / value region, drawn anew per
image) with a neutral second colour (white, light grey or dark grey; light grey only on white and black objects),
over a light random background, from a random orbit view: 75 % in the tasks' ranges (elevation −10…50°), 25 % from
above (elevation 55…85°, so "overhead" is learnt). Half the images are shaded (ambient + Lambertian light), the
rest flat-lit (albedo only, as the texture task renders); a share are grey and textureless (captioned without a
colour or pattern), as text to mesh renders geometry.

Captions have the form "a {colour} {pattern} {shape}, {view} view" with random word dropout and a share of empty
captions for classifier-free guidance. The view word comes from `engine.guidance.views.view_names` on the image's
camera, the function the tasks use (threestudio's thresholds: overhead above 60° elevation; front / back within 45°
of azimuth 0 / 180°, azimuth 0 = camera on −Y); half the captions carry it. The object is spun at random about Z,
so front / side / back say nothing about a (Z-symmetric) primitive and the model learns to ignore them, while
overhead vs the rest changes the silhouette (a cylinder or cone seen from above is round) and is learnt.

Artefact words: `DatasetConfig.degraded` of the images (22 %) are spoilt procedurally in one or two (25 %) of the
ways the official CSD negative prompt names, and only those images carry the words ("oversaturated color, ugly,
tiling, low quality, noisy"; never on clean images):
  - oversaturated color: saturation pushed to ~1 and brightness up; the neutral (grey / white) parts and random
    soft patches take hues near the complement of the object's hue — CSD's own artefact (magenta stripes on green);
  - ugly (our choice): blotchy smears of random, wrong, saturated colours (2–5 soft-edged, partly elongated blobs
    at 55–90 % opacity) over object and background;
  - tiling: a crop of the image repeated 2×2 (or 2×1 / 1×2) so the object is cut at the tile borders, often with a
    visible seam line;
  - low quality: down-sampled to 6–12 px and up again (blocky or blurry), sometimes posterised;
  - noisy: Gaussian pixel noise (σ 0.06–0.18, partly per-channel colour noise).
A degraded image's caption is its object caption with the artefact phrases appended in the official order
("a red striped cube, oversaturated color"; its view words are dropped where they would exceed the token limit),
the phrases alone (30 %), or the whole official negative prompt (15 %, so that the prompt the tasks use as a
negative means "any of these artefacts"); the classifier-free empty caption stays empty.
Every caption tokenises to at most `model.MAX_TOKENS` words with the toy tokenizer, which turns commas into spaces
("a red cube, front view" → a / red / cube / front / view) at training and at use alike.
`python -m engine.toy.dataset --sheet out.png` writes a contact sheet (each tile's caption and its view, elevation
and artefacts in out.txt).
"""
from __future__ import annotations

import argparse
import colorsys
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from ..guidance.views import view_names, view_prompt
from ..render.cameras import orbit_from_angles
from ..render.rasterize import interpolate, rasterize
from .artefacts import degrade
from .model import MAX_TOKENS
from .vocabulary import ARTEFACTS, COLOUR_HSV, NEGATIVE_PROMPT, NEUTRALS, PATTERNS, SHAPES

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
        overhead: share of cameras drawn from `overhead_elevation_deg` instead of `elevation_deg`.
        overhead_elevation_deg: elevation range of those cameras (threestudio's "overhead" starts at 60°).
        view_words: probability that a (non-empty) caption carries ", {view} view".
        scale: object scale range (the primitive's longest side is 1 at scale 1).
        degraded: share of images spoilt by one or two artefacts (build_dataset) and captioned with their words.
        two_artefacts: probability that a degraded image gets two artefacts rather than one.
        artefact_only: probability that a degraded image's caption is its artefact phrases alone.
        negative_caption: probability that a degraded image's caption is the whole official negative prompt.
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
    overhead: float = 0.25
    overhead_elevation_deg: tuple[float, float] = (55.0, 85.0)
    view_words: float = 0.5
    distance: tuple[float, float] = (1.5, 2.0)
    fov_deg: tuple[float, float] = (40.0, 60.0)
    scale: tuple[float, float] = (0.8, 1.1)
    degraded: float = 0.22
    two_artefacts: float = 0.25
    artefact_only: float = 0.3
    negative_caption: float = 0.15


def sample_colour(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """An RGB colour drawn from the HSV region of colour word `name` (vocabulary.COLOUR_HSV)."""
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_HSV[name]
    h = rng.uniform(h0, h1) % 360.0
    return colorsys.hsv_to_rgb(h / 360.0, rng.uniform(s0, s1), rng.uniform(v0, v1))


def sample_neutral(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """The second colour of a pattern on colour `name`: white, light or dark grey for the chromatic colours, light
    grey only for white and black, with a little jitter.

    v2 gave white dark-grey and black white patterns, the same half-and-half picture, so that prior confused
    "white" with "black" (issue 9's note: light grey only for both, with orange at 27-36° and purple at 274-298°,
    lifted DDIM white 8 → 14, orange 10 → 16, purple 14 → 16 of 16 in a from-scratch run).
    """
    options = ["light grey"] if name in ("white", "black") else list(NEUTRALS)
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


def n_tokens(text: str) -> int:
    """The number of words the toy tokenizer makes of `text` (punctuation becomes space; model.build_tokenizer)."""
    return len(re.sub(r"[.,;:!?\"']", " ", text.lower()).split())


def caption(colour: str, pattern: str, shape: str, rng: np.random.Generator, cfg: DatasetConfig,
            view: str | None = None) -> str:
    """'a {colour} {pattern} {shape}, {view} view' with word dropout; '' with probability cfg.empty_caption.

    A grey textureless render (colour `GREY`) names only its shape: it has no colour or pattern word. The view
    suffix (engine.guidance.views.view_prompt, probability cfg.view_words) goes on every caption but the
    classifier-free empty one, also when dropout left no object word (", overhead view").
    """
    if rng.random() < cfg.empty_caption:
        return ""
    if colour == GREY:
        text = f"a {shape}" if rng.random() >= cfg.drop_shape else ""
    else:
        words = ["a"]
        if rng.random() >= cfg.drop_colour:
            words.append(colour)
        if rng.random() >= cfg.drop_pattern:
            words.append(pattern)
        if rng.random() >= cfg.drop_shape:
            words.append(shape)
        text = " ".join(words) if len(words) > 1 else ""
    if view is not None and rng.random() < cfg.view_words:
        text = view_prompt(text, view)
    return text


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
                 flat: list[bool] | None = None, views_out: list | None = None
                 ) -> tuple[torch.Tensor, list[str], list[tuple[str, str, str]]]:
    """Render `n` images of one primitive with random colours, patterns, views, light and background.

    Args:
        shape: one of SHAPES.
        n: number of images.
        rng: the random source (everything drawn from it, so a seed reproduces the batch).
        cfg: dataset settings.
        colours, patterns, flat: per-image choices (random when None); colour `GREY` is a grey textureless render.
        views_out: when given, extended with each image's (view word, elevation in degrees).
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
    over = rng.random(n) < cfg.overhead
    elevation = np.where(over, rng.uniform(*cfg.overhead_elevation_deg, n), rng.uniform(*cfg.elevation_deg, n))
    cams = orbit_from_angles(torch.tensor(elevation), torch.tensor(rng.uniform(-180.0, 180.0, n)),
                             torch.tensor(rng.uniform(*cfg.distance, n)), torch.tensor(rng.uniform(*cfg.fov_deg, n)),
                             res, res)
    views = view_names(cams.c2w)   # the tasks' function; the object's spin about Z changes no view's shape
    if views_out is not None:
        views_out.extend(zip(views, elevation.tolist()))
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
        caps.append(caption(colours[i], patterns[i], shape, rng, cfg, views[i]))
    batch = torch.stack(images).permute(0, 3, 1, 2)
    batch = F.avg_pool2d(batch, cfg.supersample) if cfg.supersample > 1 else batch
    return batch.clamp(0, 1), caps, [(colours[i], patterns[i], shape) for i in range(n)]


def artefact_caption(clean: str, artefacts: list[str], rng: np.random.Generator, cfg: DatasetConfig) -> str:
    """The caption of an image spoilt by `artefacts`: '' stays '' (classifier-free), else the whole official negative
    prompt (cfg.negative_caption), the phrases alone (cfg.artefact_only) or `clean` with the phrases appended in the
    official order, dropping `clean`'s view words when that would exceed the token limit."""
    phrases = ", ".join(a for a in ARTEFACTS if a in artefacts)
    if not clean:
        return ""
    r = rng.random()
    if r < cfg.negative_caption:
        return NEGATIVE_PROMPT
    if r < cfg.negative_caption + cfg.artefact_only:
        return phrases
    text = f"{clean}, {phrases}"
    if n_tokens(text) > MAX_TOKENS:
        text = f"{clean.split(',')[0]}, {phrases}".lstrip(", ")
    return text


def build_dataset(n_images: int, seed: int = 0, cfg: DatasetConfig | None = None, chunk: int = 64,
                  meta_out: list | None = None) -> tuple[torch.Tensor, list[str], list[tuple[str, str, str]]]:
    """Render `n_images` training images (uint8 (N, 3, size, size)), their captions and labels, from `seed`.

    A share cfg.degraded of them is spoilt by one or two artefacts (`degrade`) and captioned with their words.
    `meta_out`, when given, is extended with each image's (view word, elevation in degrees, artefacts).
    """
    cfg = cfg or DatasetConfig()
    rng = np.random.default_rng(seed)
    images, caps, labels = [], [], []
    done = 0
    while done < n_images:
        k = min(chunk, n_images - done)
        shape = SHAPES[(done // chunk) % len(SHAPES)]
        views: list = []
        img, c, lab = render_batch(shape, k, rng, cfg, views_out=views)
        for i in range(k):
            spoilt: list[str] = []
            if rng.random() < cfg.degraded:
                count = 2 if rng.random() < cfg.two_artefacts else 1
                spoilt = [ARTEFACTS[j] for j in rng.choice(len(ARTEFACTS), count, replace=False)]
                out = degrade(img[i].permute(1, 2, 0).numpy().astype(np.float64), spoilt, rng)
                img[i] = torch.tensor(out, dtype=torch.float32).permute(2, 0, 1)
                c[i] = artefact_caption(c[i], spoilt, rng, cfg)
            assert n_tokens(c[i]) <= MAX_TOKENS, c[i]
            if meta_out is not None:
                meta_out.append((*views[i], spoilt))
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

    meta: list = []
    images, caps, labels = build_dataset(n, seed=seed, chunk=max(1, n // len(SHAPES)), meta_out=meta)
    order = np.random.default_rng(seed).permutation(n)   # mix the shapes
    tiles = F.pad(images[order].float() / 255, (1, 1, 1, 1), value=1.0)
    tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest").permute(0, 2, 3, 1).numpy()
    save_png(path, sheet(tiles, columns))
    lines = [f"{k} (row {k // columns}, col {k % columns}): {caps[i]!r}  [{' '.join(labels[i])}; {meta[i][0]} view, "
             f"elevation {meta[i][1]:.0f}°; artefacts: {', '.join(meta[i][2]) or '-'}]" for k, i in enumerate(order)]
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
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
