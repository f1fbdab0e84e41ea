"""Text to mesh, stage 1 ("coarse"): a density + albedo NeRF optimised with CSD on the pixel prior (csd-if).

Per step (csd_reference.md §2a): B orbit cameras (front/back only during the first 10 % of the run, official
`front_back_only_iters` 1000 of 10 000; stratified azimuth) at the prior's native size → plain-torch volume
rendering through the occupancy grid → albedo or geometry shading (generate_shading) over the learned
environment background (random solid colour with p = 0.5) → guidance (real priors: view-interpolated prompts
and Perp-Neg, one UNet call of 5B) → + λ_orient·orientation + λ_sparsity·sparsity, both with the official
schedules rescaled to the run length → Adam.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from ..errors import CancelledError
from ..fields.density_field import DensityField, DensityFieldConfig
from ..fields.env_background import EnvironmentBackground
from ..guidance import Schedule
from ..guidance.schedule import ScheduleSpec
from ..guidance.view_prompts import ViewPrompts
from ..images import png_bytes
from ..render.cameras import Cameras
from ..render.occupancy import OccupancyGrid
from ..render.rays import camera_rays
from ..render.volume import render_rays
from .base import ProgressEvent
from .common.clock import device_clock
from .common.preview import preview_cameras
from .common.views import OrbitRanges, ViewSampler
from .generate_shading import choose_shading, geometry_colour, light_directions

logger = logging.getLogger(__name__)

REFERENCE_STEPS = 10_000
ORIENT = (0, 1.0, 100.0, 5000)  # lambda_orient (csd-if.yaml)
SPARSITY = (0, 10.0, 1.0, 5000)  # lambda_sparsity (csd-if.yaml)
COARSE_RANGES = OrbitRanges(
    elevation=(-10.0, 45.0), azimuth=(-180.0, 180.0), distance=(1.5, 2.0), fov=(40.0, 70.0)
)


@dataclass
class CoarseConfig:
    """Settings of the coarse stage.

    Args:
        steps: optimisation steps.
        batch_size: views per step (official 4).
        size: render width = height (the prior's native size).
        samples_per_ray: volume samples per ray inside the bound.
        learning_rate: Adam learning rate (official 0.001 over 10 000 steps; short runs use more).
        field: density-field sizes.
        occupancy_resolution: occupancy cells per axis.
        occupancy_every: steps between occupancy updates (nerfacc: 16).
        ambient_only_frac: albedo-only warm-up as a fraction of the run (csd-if: 5001 / 10 000).
        front_back_frac: front/back-only views as a fraction of the run (csd-if: 1000 / 10 000).
        ranges: orbit camera ranges (official: elevation −10..45, distance 1.5..2, fovy 40..70).
        toy: the prior is the toy prior (grey shading for geometry batches).
        orient, sparsity: λ_orient and λ_sparsity schedules written for `REFERENCE_STEPS` (rescaled to the run).
        profile: synchronise the device before every part's clock (exact per-part CUDA times, a little
            slower).
    """

    steps: int
    batch_size: int = 4
    size: int = 32
    samples_per_ray: int = 64
    learning_rate: float = 0.01
    field: DensityFieldConfig = field(default_factory=DensityFieldConfig)
    occupancy_resolution: int = 32
    occupancy_every: int = 16
    ambient_only_frac: float = 0.5001
    front_back_frac: float = 0.1
    ranges: OrbitRanges = COARSE_RANGES
    toy: bool = True
    orient: ScheduleSpec = ORIENT
    sparsity: ScheduleSpec = SPARSITY
    profile: bool = False


@dataclass
class CoarseResult:
    """What the coarse stage hands on: the trained field, background and timings.

    Attributes:
        field: the density + albedo field.
        background: the environment background.
        occupancy: the final occupancy grid.
        steps_run: steps finished.
        seconds: per-part wall seconds (render, prior, backward, optimiser, occupancy).
        samples_per_ray: (before culling, after culling) averaged over steps.
    """

    field: DensityField
    background: EnvironmentBackground
    occupancy: OccupancyGrid
    steps_run: int
    seconds: dict
    samples_per_ray: tuple[float, float]


def render_field(
    field_model: DensityField,
    background: EnvironmentBackground,
    occupancy: OccupancyGrid | None,
    cams: Cameras,
    samples: int,
    shading: str,
    toy: bool,
    generator: torch.Generator | None,
    light_gen: torch.Generator | None = None,
    normals: bool = True,
    sample_gen: torch.Generator | None = None,
):
    """Render `cams` through the field: (image (B, H, W, 3), VolumeOutput).

    Args:
        field_model, background, occupancy: the coarse stage's models.
        cams: B cameras.
        samples: samples per ray.
        shading: "albedo" or "geometry" (normal map, or grey Lambertian for the toy prior).
        toy: toy-prior geometry shading.
        generator: CPU generator for stratified samples and background augmentation (None: deterministic).
        light_gen: CPU generator for the light direction (geometry shading; None: light at the camera).
        normals: evaluate normals (geometry shading always does; training needs them for the orientation loss,
            previews of the albedo do not).
        sample_gen: generator for the stratified sample offsets (default: `generator`).
    """
    b, h, w = len(cams), cams.height, cams.width
    origins, dirs = camera_rays(cams)
    out = render_rays(
        lambda p: field_model(p),
        origins.reshape(-1, 3),
        dirs.reshape(-1, 3),
        field_model.config.radius,
        samples,
        occupancy,
        normal_fn=field_model.normal if normals or shading == "geometry" else None,
        generator=sample_gen if sample_gen is not None and generator is not None else generator,
    )
    bg = background(dirs, generator)
    opacity = out.opacity.reshape(b, h, w, 1)
    if shading == "albedo":
        fg = out.colour.reshape(b, h, w, 3)
    else:
        if light_gen is not None:
            light = light_directions(cams.c2w, light_gen)
        else:
            light = torch.nn.functional.normalize(cams.c2w[:, :3, 3], dim=-1)
        fg = geometry_colour(out.normal.reshape(b, h, w, 3), light, toy) * opacity
    return fg + bg * (1.0 - opacity), out


def preview_png(
    field_model: DensityField,
    background: EnvironmentBackground,
    occupancy: OccupancyGrid | None,
    samples: int,
    size: int,
) -> bytes:
    """PNG of the field's albedo from the fixed preview view over the (un-augmented) background (empty cells
    of
    the occupancy grid skipped, no normals)."""
    cams = preview_cameras(size, next(field_model.parameters()).device)
    with torch.no_grad():
        img, _ = render_field(
            field_model, background, occupancy, cams, samples, "albedo", True, None, normals=False
        )
    return png_bytes(img[0].float().cpu().numpy())


def run_coarse(
    cfg: CoarseConfig,
    prior,
    guidance,
    prompts: ViewPrompts,
    geometry_prompts: ViewPrompts,
    gen: torch.Generator,
    noise_gen: torch.Generator,
    seed: int,
    emit,
    stop,
    t_start: float,
    progress_every: int,
    preview_size: int,
) -> CoarseResult:
    """Optimise the coarse NeRF.

    Args:
        cfg: CoarseConfig.
        prior: a loaded pixel-space Prior.
        guidance: a guidance object built for `cfg.steps`.
        prompts: embeddings for albedo batches; geometry_prompts: for geometry batches (view-dependent ones are
            interpolated per camera with Perp-Neg's view negatives, used when the guidance's `perpneg_scale` ≠ 0).
        gen: CPU generator for cameras, samples, backgrounds and shading choices.
        noise_gen: generator on the prior's device for the guidance noise.
        seed: seeds the field's initial weights.
        emit: progress callback; stop: cancellation check (before every step).
        t_start: job start (perf_counter) for elapsed times.
        progress_every: steps between progress events; preview_size: their preview's size.

    Raises:
        CancelledError: when `stop()` returns True.
    """
    device = prior.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        field_model = DensityField(cfg.field).to(device)
        background = EnvironmentBackground(colour_range=(0.55, 1.0) if cfg.toy else (0.0, 1.0)).to(device)
    params = list(field_model.parameters()) + list(background.parameters())
    opt = torch.optim.Adam(params, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-15)
    radius = cfg.field.radius
    step_size = 2 * 3**0.5 * radius / cfg.samples_per_ray
    occupancy = OccupancyGrid(cfg.occupancy_resolution, radius, threshold=0.01 / step_size, device=device)
    views = ViewSampler(cfg.ranges, cfg.size, gen)
    scale = cfg.steps / REFERENCE_STEPS
    orient_w = Schedule.parse(cfg.orient, "orient").scaled(scale)
    sparsity_w = Schedule.parse(cfg.sparsity, "sparsity").scaled(scale)
    ambient_only = int(round(cfg.ambient_only_frac * cfg.steps))
    front_back = int(round(cfg.front_back_frac * cfg.steps))
    light_gen = torch.Generator().manual_seed(seed + 2)
    sample_gen = torch.Generator(device=device).manual_seed(
        seed + 3
    )  # stratified offsets, drawn on the device
    timings = dict.fromkeys(("occupancy", "render", "prior", "backward", "optimiser"), 0.0)
    sample_sum, kept_sum, steps_run = 0.0, 0.0, 0
    clock = device_clock(device, cfg.profile)
    t_loop = time.perf_counter()
    for step in range(cfg.steps):
        if stop():
            raise CancelledError(f"generate job cancelled at coarse step {step}/{cfg.steps}")
        t0 = clock()
        if step % cfg.occupancy_every == 0:
            occupancy.update(field_model.density, gen)
        t1 = clock()
        host_cams = views.sample(cfg.batch_size, front_back_only=step < front_back)
        cams = host_cams.to(device)
        shading = choose_shading(step, ambient_only, gen)
        image, out = render_field(
            field_model,
            background,
            occupancy,
            cams,
            cfg.samples_per_ray,
            shading,
            cfg.toy,
            gen,
            light_gen,
            sample_gen=sample_gen,
        )
        t2 = clock()
        x = prior.to_model_space(image.permute(0, 3, 1, 2), generator=noise_gen)
        # view-interpolated prompts with Perp-Neg (csd-if.yaml) when the prompts are view-dependent
        step_prompts = (geometry_prompts if shading == "geometry" else prompts).for_cameras(host_cams.c2w, True)
        g = guidance(prior, x, step_prompts, step, generator=noise_gen)
        sparsity = (out.opacity**2 + 0.01).sqrt().mean()
        loss = g.loss + orient_w(step) * out.orient + sparsity_w(step) * sparsity
        t3 = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = clock()
        opt.step()
        t5 = clock()
        for key, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            timings[key] += dt
        sample_sum += out.samples
        kept_sum += out.kept
        steps_run = step + 1
        if steps_run % progress_every == 0 or steps_run == cfg.steps:
            emit(ProgressEvent.during("coarse", steps_run, cfg.steps, float(g.raw_loss), t_start, t_loop,
                                      lambda: preview_png(field_model, background, occupancy, cfg.samples_per_ray, preview_size)))
    n = max(steps_run, 1)
    logger.info(
        "coarse: %d steps, occupied %.1f %%, samples/ray %.1f → %.1f",
        steps_run,
        100 * occupancy.occupied_fraction(),
        sample_sum / n,
        kept_sum / n,
    )
    return CoarseResult(
        field_model, background, occupancy, steps_run, timings, (sample_sum / n, kept_sum / n)
    )
