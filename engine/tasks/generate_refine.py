"""Text to mesh, stage 2 ("refine"): DMTet on a tetrahedral grid made in code, rasterized, optimised with CSD.

The SDF starts from the coarse density at the official isosurface threshold (sdf = clamp(threshold − σ, −1,
1), negative inside); the texture is the coarse field's albedo, trained further. Per step: marching tetrahedra
→ rasterize at the prior's size → albedo or geometry shading (from step 0, csd-sd-refine's `ambient_only_steps
0`) over a light solid background → antialias (silhouette gradients) → guidance + λ_nc · normal consistency →
Adam. With `geometry=False` (`--refine texture`) the surface is extracted once and only the texture trains.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CancelledError
from ..fields.density_field import DensityField
from ..fields.dmtet import DMTetConfig, DMTetGeometry, normal_consistency
from ..guidance.view_prompts import ViewPrompts
from ..images import png_bytes
from ..render.cameras import Cameras
from ..render.rasterize import antialias, interpolate, rasterize
from .base import ProgressEvent
from .common.backgrounds import solid_backgrounds
from .common.clock import device_clock
from .common.preview import preview_cameras
from .common.views import OrbitRanges, ViewSampler
from .generate_shading import choose_shading, geometry_colour, light_directions

logger = logging.getLogger(__name__)

REFINE_RANGES = OrbitRanges(
    elevation=(-10.0, 45.0), azimuth=(-180.0, 180.0), distance=(1.5, 2.0), fov=(40.0, 70.0)
)


@dataclass
class RefineConfig:
    """Settings of the refine stage.

    Args:
        steps: optimisation steps (0 = extract only).
        batch_size: views per step (official 1).
        size: render width = height (the prior's size: SD 512, toy 32).
        tet_resolution: grid cells per axis.
        isosurface_threshold: coarse density of the initial surface (official 10).
        geometry: optimise SDF and deformation (else the texture only).
        learning_rate: Adam learning rate of the texture field.
        geometry_learning_rate: Adam learning rate of SDF values and deformations.
        normal_consistency: λ of the normal-consistency loss (official 1000 with csd-sd-refine).
        ranges: orbit camera ranges.
        toy: toy-prior geometry shading and light backgrounds.
        profile: synchronise the device before every part's clock (exact per-part CUDA times).
    """

    steps: int
    batch_size: int = 1
    size: int = 32
    tet_resolution: int = 32
    isosurface_threshold: float = 10.0
    geometry: bool = True
    learning_rate: float = 0.005
    geometry_learning_rate: float = 0.01
    normal_consistency: float = 1000.0
    ranges: OrbitRanges = REFINE_RANGES
    toy: bool = True
    profile: bool = False


@dataclass
class RefineResult:
    """The refined surface (in the field's frame) and timings.

    Attributes:
        vertices: (M, 3) float32; faces: (F, 3) int64 (outward).
        steps_run: steps finished; seconds: per-part wall seconds.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    steps_run: int
    seconds: dict


@torch.no_grad()
def initial_sdf(
    field_model: DensityField, points: torch.Tensor, threshold: float, chunk: int = 65536
) -> torch.Tensor:
    """(V,) clamp(threshold − density, −1, 1) at `points (V, 3)`: negative inside the coarse surface."""
    dens = torch.cat([field_model.density(points[i : i + chunk]) for i in range(0, len(points), chunk)])
    return (threshold - dens).clamp(-1.0, 1.0)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V, 3) area-weighted unit vertex normals."""
    p = vertices[faces]
    fn = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return F.normalize(vn, dim=-1, eps=1e-12)


def render_mesh(
    field_model: DensityField,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    cams: Cameras,
    shading: str,
    background: torch.Tensor,
    toy: bool,
    light: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, H, W, 3) render of the mesh: albedo from the field, or geometry shading; antialiased silhouettes.

    Args:
        field_model: colour source (its albedo).
        vertices, faces: the surface (gradients flow to vertices through barycentrics and antialiasing).
        cams: B cameras; shading: "albedo" or "geometry"; background: (B, 3); toy: grey shading.
        light: (B, 3) light directions for geometry shading (None: at the camera).
    """
    tri = faces.int()
    pos = cams.clip_positions(vertices)
    rast = rasterize(pos, tri, (cams.height, cams.width))
    mask = rast[..., 3:] > 0
    if shading == "albedo":
        pts = interpolate(vertices, rast, tri)
        fg = torch.zeros(*rast.shape[:3], 3, device=vertices.device)
        sel = mask[..., 0]
        if bool(sel.any()):
            fg = fg.index_put(sel.nonzero(as_tuple=True), field_model.albedo(pts[sel]))
    else:
        normal = interpolate(vertex_normals(vertices, faces), rast, tri)
        if light is None:
            light = F.normalize(cams.c2w[:, :3, 3], dim=-1)
        fg = geometry_colour(normal, light, toy)
    m = mask.to(fg.dtype)
    image = fg * m + background[:, None, None, :] * (1 - m)
    return antialias(image.contiguous(), rast, pos, tri)


def preview_png(field_model: DensityField, vertices: torch.Tensor, faces: torch.Tensor, size: int) -> bytes:
    """PNG of the textured surface from the fixed preview view over white."""
    cams = preview_cameras(size, vertices.device)
    with torch.no_grad():
        img = render_mesh(
            field_model, vertices, faces, cams, "albedo", torch.ones(1, 3, device=vertices.device), True
        )
    return png_bytes(img[0].float().cpu().numpy())


def run_refine(
    cfg: RefineConfig,
    field_model: DensityField,
    prior,
    guidance,
    prompts: ViewPrompts,
    geometry_prompts: ViewPrompts,
    gen: torch.Generator,
    noise_gen: torch.Generator,
    emit,
    stop,
    t_start: float,
    progress_every: int,
    preview_size: int,
) -> RefineResult:
    """Build the DMTet grid from the coarse field and optimise it (see the module docstring).

    Args:
        cfg: RefineConfig.
        field_model: the coarse field (its albedo keeps training as the texture).
        prior, guidance: the refine stage's prior and guidance (built for `cfg.steps`).
        prompts, geometry_prompts: as in the coarse stage (view-dependent ones without Perp-Neg).
        gen, noise_gen: CPU generator (cameras, shading, backgrounds) and the guidance noise generator.
        emit, stop, t_start, progress_every, preview_size: progress and cancellation.

    Raises:
        CancelledError: when `stop()` returns True.
    """
    device = prior.device
    dm_cfg = DMTetConfig(resolution=cfg.tet_resolution, radius=field_model.config.radius)
    geom = DMTetGeometry(dm_cfg).to(device)
    with torch.no_grad():
        geom.sdf.copy_(initial_sdf(field_model, geom.grid_vertices, cfg.isosurface_threshold))
    groups = [{"params": list(field_model.parameters()), "lr": cfg.learning_rate}]
    if cfg.geometry:
        groups.append({"params": [geom.sdf, geom.deformation], "lr": cfg.geometry_learning_rate})
    else:
        geom.requires_grad_(False)
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-15)
    views = ViewSampler(cfg.ranges, cfg.size, gen)
    light_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    timings = dict.fromkeys(("extract", "render", "prior", "backward", "optimiser"), 0.0)
    fixed = None if cfg.geometry else geom()
    steps_run = 0
    clock = device_clock(device, cfg.profile)
    t_loop = time.perf_counter()
    for step in range(cfg.steps):
        if stop():
            raise CancelledError(f"generate job cancelled at refine step {step}/{cfg.steps}")
        t0 = clock()
        verts, faces = geom() if fixed is None else fixed
        if faces.shape[0] == 0:
            logger.warning("refine: the surface vanished at step %d; keeping the last mesh", step)
            break
        t1 = clock()
        cams = views.sample(cfg.batch_size)
        host_c2w = cams.c2w  # view words from the host's cameras: no device sync
        cams = cams.to(device)
        # geometry batches train nothing when the surface is fixed: the texture-only refine renders albedo
        shading = choose_shading(step, 0, gen) if cfg.geometry else "albedo"
        bg = (
            solid_backgrounds("random", cfg.batch_size, gen)
            if cfg.toy
            else torch.rand(cfg.batch_size, 3, generator=gen)
        ).to(device)
        light = light_directions(cams.c2w, light_gen)
        image = render_mesh(field_model, verts, faces, cams, shading, bg, cfg.toy, light)
        t2 = clock()
        x = prior.to_model_space(image.permute(0, 3, 1, 2), generator=noise_gen)
        # view-dependent prompts, no Perp-Neg (csd-sd-refine.yaml)
        step_prompts = (geometry_prompts if shading == "geometry" else prompts).for_cameras(host_c2w)
        g = guidance(prior, x, step_prompts, step, generator=noise_gen)
        loss = g.loss
        if cfg.geometry and cfg.normal_consistency > 0:
            loss = loss + cfg.normal_consistency * normal_consistency(verts, faces)
        t3 = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = clock()
        opt.step()
        t5 = clock()
        for key, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            timings[key] += dt
        steps_run = step + 1
        if steps_run % progress_every == 0 or steps_run == cfg.steps:
            emit(ProgressEvent.during("refine", steps_run, cfg.steps, float(g.raw_loss), t_start, t_loop,
                                      functools.partial(preview_png, field_model, verts.detach(), faces, preview_size)))
    with torch.no_grad():
        verts, faces = geom() if fixed is None else fixed
        if faces.shape[0] == 0:  # fall back to the initial surface
            geom.sdf.copy_(initial_sdf(field_model, geom.grid_vertices, cfg.isosurface_threshold))
            geom.deformation.zero_()
            verts, faces = geom()
    return RefineResult(verts.detach().float(), faces.detach(), steps_run, timings)
