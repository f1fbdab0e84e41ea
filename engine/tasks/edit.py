"""Edit a textured object from text (paper Eq. 11): fit its texture, push it from the edit prompt to the target.

Stages (DESIGN §4.4): **fitting** (`edit_fit.py`) — a colour field is fitted to the object's own texture until
renders and UV-layout samples reach `fit_psnr` dB (or `fit_max_steps`); **optimising** — `csd-edit` with
y = target prompt and y_neg = edit prompt, δ = ω1·(ε(y_t) − ε(∅)) − ω2·(ε(y_e) − ε(∅)), optionally with a
preservation term that pulls the renders back towards the original's (with `geometry` the surface moves too:
`edit_geometry.py`); **baking** — the field goes into a NEW texture on the object's own UVs (or the new surface's),
of the input texture's size. The input arrays are never modified.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from csd_blender.protocol.params import EditParams, check_edit_arrays

from ..device_info import resolve_device
from ..errors import CancelledError, RequestError
from ..fields.texture_field import TextureField, TextureFieldConfig
from ..guidance import build_guidance
from ..guidance.view_prompts import ViewPrompts
from ..images import sheet
from ..mesh import Mesh, normalize, validate_mesh
from ..registry import TASKS
from ..render.surface import shade_field
from .base import ProgressEvent, ProgressFn, StopFn, TaskSpec
from .common.backgrounds import solid_backgrounds
from .common.bake import bake_field_to_shape
from .common.defaults import fill_defaults
from .common.optim import field_adam
from .common.outputs import image_sha256
from .common.preview import field_preview_png
from .common.region import Region, RegionInput
from .common.turntable import TURNTABLE_VIEWS, render_turntable
from .common.views import OrbitRanges, ViewSampler
from .edit_fit import OriginalObject, fit_field
from .edit_geometry import GeometryEdit, initial_grid, run_geometry_edit
from .quality import quality_for

logger = logging.getLogger(__name__)

# The edit's colour field: finer than the texture task's (it must hold an existing texture's edges).
GEOMETRY_TET_RESOLUTION = {"toy": 32, "if": 64, "sd": 96}   # DMTet cells per axis for `geometry`, by prior
FIELD_MAX_RESOLUTION = 2048
FIELD_LOG2_HASHMAP = 17
FIELD_LEVELS = 16


@dataclass
class EditJob:
    """A validated edit job.

    Attributes:
        params: the job's parameters.
        mesh: world-space mesh with its per-corner UVs (degenerate faces dropped).
        texture: (H, W, 3|4) float32 copy of the input texture in [0, 1], top row first.
        dropped_faces: degenerate faces removed by validation.
        region: the region mask (`face_mask` / `texel_mask`), or None to edit the whole object.
        original: (H, W, 3|4) float32 copy of the texture as sent (a region edit copies its texels outside the
            border from it, bit for bit).
    """

    params: EditParams
    mesh: Mesh
    texture: np.ndarray
    dropped_faces: int = 0
    region: RegionInput | None = None
    original: np.ndarray | None = None


@dataclass
class EditResult:
    """What an edit job produces (new arrays; the job's inputs are untouched).

    Attributes:
        texture: (H, W, C) float32 in [0, 1], top row first: the input's size and channels (alpha copied).
        uvs: (F, 3, 2) float32, the object's own UVs (new xatlas UVs of the new mesh with `geometry`).
        mesh: the world-space mesh the UVs index (the input's, or the new surface with `geometry`).
        turntable: (2·R, 4·R, 3) sheet of 8 views of the edited texture.
        before_after: (2·R, 8·R, 3) sheet: the original (top row) and the edited object (bottom row).
        params: resolved parameters (every default filled in).
        stats: fit PSNR and steps, seconds per stage, UNet calls, final loss, texture hash.
        partial: True when cancelled with `return_partial`.
    """

    texture: np.ndarray
    uvs: np.ndarray
    mesh: Mesh
    turntable: np.ndarray
    before_after: np.ndarray
    params: dict
    stats: dict = field(default_factory=dict)
    partial: bool = False
    geometry: bool = False


def make_edit_job(params: EditParams, arrays: dict[str, np.ndarray]) -> EditJob:
    """Validate parameters and arrays into an EditJob (raises a ProtocolError with a specific code).

    Args:
        params: validated edit parameters (`validate()` runs at the door: the command line and the server's
            admission; the job trusts them).
        arrays: "vertices" (V, 3), "faces" (F, 3), "uvs" (F, 3, 2), "texture" (H, W, 3|4), optional region
            "face_mask" (F,) or "texel_mask" (H, W) (csd_blender/protocol/params/region.py).
    """
    for name in ("vertices", "faces"):
        if name not in arrays:
            raise RequestError(name, "is required")
    check_edit_arrays(arrays)
    mesh, dropped = validate_mesh(arrays["vertices"], arrays["faces"], arrays["uvs"])
    original = texture_as_float(arrays["texture"])  # uint8, float16 or float32 in; float32 in [0, 1] out
    region = RegionInput(arrays, original.shape, params.geometry) or None
    if region is not None and params.texture_size is not None and params.texture_size != max(original.shape[:2]):
        raise RequestError("texture_size", "a region edit keeps the input texture's size (leave it unset)")
    _build_guidance(params, 100)  # unknown presets or bad overrides fail here, before any work
    return EditJob(params=params, mesh=mesh, texture=original, dropped_faces=dropped,
                   region=region, original=original if region is not None else None)


def texture_as_float(texture: np.ndarray) -> np.ndarray:
    """An edit texture as float32 in [0, 1] (a copy): uint8 (0-255, an 8-bit image), float16 or float32."""
    if texture.dtype == np.uint8:
        out = texture.astype(np.float32)
        out *= 1.0 / 255.0
        return out
    out = texture.astype(np.float32, copy=True)
    return np.clip(out, 0.0, 1.0, out=out)


def resolve_params(params: EditParams, family: str, resolution: int) -> EditParams:
    """Fill the `None` defaults from the quality preset and the prior (texture_size stays None = input size)."""
    q = quality_for(family, params.quality)
    return fill_defaults(params, steps=q.steps, batch_size=q.batch_size, render_size=max(resolution, 64))


def _build_guidance(p: EditParams, steps: int):
    """csd-edit (or the chosen preset) with ω1 = strength, ω2 = omega2; `guidance_overrides` may schedule them.

    Raises:
        RequestError: `guidance` is not a CSD formula (SDS has no edit branch for ω1/ω2 to weigh).
    """
    from ..guidance.presets import get_preset

    kind = get_preset(p.guidance).kind
    if kind != "csd":
        raise RequestError("guidance", f"{p.guidance!r} is {kind.upper()} guidance, which has no edit-prompt branch; "
                                       "an edit (Eq. 11) needs a CSD guidance such as 'csd-edit'")
    return build_guidance(p.guidance, total_steps=steps, **{"omega1": p.strength, "omega2": p.omega2,
                                                           **p.guidance_overrides})


def _bake_to_input_size(field_model, mesh: Mesh, mesh_n: Mesh, job: EditJob, size: int | None,
                        device, region: Region | None = None,
                        should_stop: StopFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(texture, uvs): bake into the mesh's UVs (xatlas when it has none) at the input texture's size (or `size`²),
    keeping the input's alpha; a region edit blends into the input (texels outside the border copied)."""
    h, w = job.texture.shape[:2]
    shape = (h, w) if size is None else (size, size)
    baked = bake_field_to_shape(field_model, mesh, mesh_n, shape, device, should_stop=should_stop)
    image = baked.image
    if region is not None:
        return region.blend(image), baked.uvs
    if job.texture.shape[2] == 4 and size is None:
        alpha = job.texture[..., 3:] if not baked.unwrapped else np.ones((h, w, 1), np.float32)
        image = np.concatenate([image, alpha], axis=2)
    return np.ascontiguousarray(image, dtype=np.float32), baked.uvs


def run_edit(job: EditJob, prior=None, progress: ProgressFn | None = None,
             should_stop: StopFn | None = None) -> EditResult:
    """Run an edit job: fit, edit, bake.

    Args:
        job: an EditJob from `make_edit_job`.
        prior: a loaded Prior; None loads `job.params.model`.
        progress: called with ProgressEvent: "loading", "fitting" (step / fit_max_steps, loss = MSE), "optimising"
            (step / steps, loss = guidance loss before normalisation), "baking", "done"; previews every
            `progress_every` steps.
        should_stop: checked before every step of both stages; True raises CancelledError (or, with
            `return_partial`, bakes what exists and returns it with `partial=True`).

    Raises:
        CancelledError: stopped by `should_stop` (without `return_partial`).
        EngineError: a prompt outside the prior's vocabulary, a missing model, …
    """
    from ..priors import load_prior

    t_start = time.perf_counter()
    emit = progress or (lambda event: None)
    stop = should_stop or (lambda: False)
    p = job.params
    emit(ProgressEvent("loading", 0, p.steps or 0, elapsed_s=0.0))
    if prior is None:
        prior = load_prior(p.model, device=resolve_device(p.device))
    device = prior.device
    p = resolve_params(p, prior.family, prior.resolution)
    guidance = _build_guidance(p, p.steps)
    prompts = ViewPrompts(prior, p.target_prompt, p.edit_prompt,
                          view_negative=True, fields=("target_prompt", "edit_prompt"))

    mesh_n, norm = normalize(job.mesh)
    original = OriginalObject(mesh_n, job.mesh.uvs, job.texture, device)
    region = (job.region.region(job.mesh.uvs, job.texture.shape[:2], p.mask_border, job.original, device)
              if job.region is not None else None)
    gen = torch.Generator().manual_seed(p.seed)
    noise_gen = torch.Generator(device=device).manual_seed(p.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        field_model = TextureField(TextureFieldConfig(n_levels=FIELD_LEVELS, max_resolution=FIELD_MAX_RESOLUTION,
                                                      log2_hashmap_size=FIELD_LOG2_HASHMAP)).to(device)
    timings = dict.fromkeys(("fit", "render", "to_model_space", "unet", "backward", "optimiser", "bake"), 0.0)
    partial = False

    def preview() -> bytes:
        return field_preview_png(field_model, original.verts, original.faces, p.preview_size)

    # --- stage 1: fit the field to the object's own texture -------------------------------------------------
    ranges = OrbitRanges.from_params(p)
    fit = fit_field(field_model, original, p, ranges, gen, emit, stop, t_start, preview)
    timings["fit"], partial = fit.seconds, fit.stopped

    # --- stage 2: Eq. 11 from the fitted field ---------------------------------------------------------------
    views = ViewSampler(region.aimed(ranges, mesh_n) if region is not None else ranges,
                        p.render_size, gen)

    opt = field_adam(field_model.parameters(), lr=p.learning_rate)
    unet_calls, last_loss, loss_value, steps_run = 0, None, float("nan"), 0
    t_loop = time.perf_counter()
    new_mesh_n = None
    if not partial:
        emit(ProgressEvent("optimising", 0, p.steps, elapsed_s=time.perf_counter() - t_start))
    if p.geometry and not partial:
        t0 = time.perf_counter()
        geom = initial_grid(mesh_n, GEOMETRY_TET_RESOLUTION.get(prior.family, 96), device)
        cfg = GeometryEdit(steps=p.steps, batch_size=p.batch_size, tet_resolution=geom.config.resolution,
                           learning_rate=p.learning_rate, preserve=p.preserve, background=p.background,
                           progress_every=p.progress_every, face_budget=max(len(job.mesh.faces), 5000))
        new_mesh_n, geo_stats = run_geometry_edit(
            cfg, geom, field_model, prior, guidance, prompts, views, original, gen, noise_gen, emit, stop,
            t_start, lambda v, f: field_preview_png(field_model, v, f.int(), p.preview_size))
        steps_run, unet_calls, loss_value = geo_stats["steps_run"], geo_stats["unet_calls"], geo_stats["final_loss"]
        timings["geometry"] = time.perf_counter() - t0
    for step in range(0 if partial or p.geometry else p.steps):
        if stop():
            if not p.return_partial:
                raise CancelledError(f"edit job cancelled at step {step}/{p.steps}")
            partial = True
            break
        t0 = time.perf_counter()
        host_cams = views.sample(p.batch_size)
        step_prompts = prompts.for_cameras(host_cams.c2w)  # on the host's cameras: no device sync
        cams = host_cams.to(device)
        hits, target = original.hits(cams)
        bg = solid_backgrounds(p.background, p.batch_size, gen).to(device)
        image = shade_field(field_model, hits, bg)
        if region is not None:  # the object's own colours outside the region: only the region is optimised
            image = region.composite(image, hits, target)
        t1 = time.perf_counter()
        x = prior.to_model_space(image.permute(0, 3, 1, 2), generator=noise_gen)
        t2 = time.perf_counter()
        out = guidance(prior, x, step_prompts, step, generator=noise_gen)
        loss = out.loss
        if p.preserve > 0:
            with torch.no_grad():
                mask = hits.mask[..., None].to(image.dtype)
                before = target * mask + bg[:, None, None, :] * (1 - mask)
                x_before = prior.to_model_space(before.permute(0, 3, 1, 2), generator=noise_gen)
            # a unit-norm pull back to the original, weighted against the (unit-L2) edit direction
            loss = loss + p.preserve * torch.sqrt(((x - x_before) ** 2).sum() + 1e-12) / p.batch_size
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        for key, dt in zip(("render", "to_model_space", "unet", "backward", "optimiser"),
                           (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            timings[key] += dt
        unet_calls += out.unet_calls
        last_loss = out.raw_loss
        steps_run = step + 1
        if steps_run % p.progress_every == 0 or steps_run == p.steps:
            loss_value = float(last_loss)
            rate = (time.perf_counter() - t_loop) / steps_run
            emit(ProgressEvent("optimising", steps_run, p.steps, loss_value, time.perf_counter() - t_start,
                               rate * (p.steps - steps_run), preview()))
    if last_loss is not None:
        loss_value = float(last_loss)

    # --- stage 3: bake into a new texture on the object's own UVs (or the new surface's) ---------------------
    emit(ProgressEvent("baking", steps_run, p.steps, loss_value, time.perf_counter() - t_start, 0.0))
    t0 = time.perf_counter()
    out_mesh, out_mesh_n = job.mesh, mesh_n
    if new_mesh_n is not None:  # the new surface, back in the object's world frame
        out_mesh_n = new_mesh_n
        out_mesh = Mesh(norm.invert(new_mesh_n.vertices).astype(np.float32), new_mesh_n.faces)
    new_texture, uvs = _bake_to_input_size(field_model, out_mesh, out_mesh_n, job, p.texture_size, device, region,
                                           None if p.return_partial else stop)
    out_mesh = out_mesh.with_uvs(uvs)
    timings["bake"] = time.perf_counter() - t0
    before = render_turntable(mesh_n, job.texture, np.asarray(job.mesh.uvs, np.float32), size=128)
    after = render_turntable(out_mesh_n, new_texture, uvs, size=128)
    stats = {
        "fit_psnr_db": round(fit.render_db, 3), "fit_texel_psnr_db": round(fit.texel_db, 3), "fit_steps": fit.steps,
        "fit_target_db": p.fit_psnr, "fit_reached": fit.reached(p.fit_psnr), "steps_run": steps_run,
        "seconds": round(time.perf_counter() - t_start, 3),
        "seconds_per_stage": {k: round(v, 4) for k, v in timings.items()}, "unet_calls": unet_calls,
        "final_loss": loss_value, "guidance_preset": p.guidance, "device": str(device), "prior": prior.name,
        "prior_family": prior.family, "view_prompts": prompts.view_dependent, "dropped_faces": job.dropped_faces,
        "texture_sha256": image_sha256(new_texture), "faces": len(out_mesh.faces),
        **(region.stats() if region is not None else {}),
    }
    emit(ProgressEvent("done", steps_run, p.steps, loss_value, time.perf_counter() - t_start, 0.0))
    return EditResult(texture=new_texture, uvs=uvs, mesh=out_mesh,
                      turntable=sheet(render_turntable(out_mesh_n, new_texture, uvs), cols=4),
                      before_after=sheet(np.concatenate([before, after]), cols=TURNTABLE_VIEWS),
                      params=p.to_dict(), stats=stats, partial=partial, geometry=new_mesh_n is not None)


def pack_edit_result(result: EditResult) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) for the wire: the new texture, the UVs it belongs to, turntable and before/after PNGs; with
    `geometry` also the new surface: world-space `vertices (V, 3) float32` and `faces (F, 3) int32`."""
    from ..images import png_bytes

    meta = {"params": result.params, "partial": result.partial, "stats": result.stats, "unwrapped": result.geometry,
            "geometry": result.geometry}
    arrays = {"texture": np.ascontiguousarray(result.texture, dtype=np.float32),
              "uvs": np.ascontiguousarray(result.uvs, dtype=np.float32),
              "turntable_png": np.frombuffer(png_bytes(result.turntable), dtype=np.uint8),
              "before_after_png": np.frombuffer(png_bytes(result.before_after), dtype=np.uint8)}
    if result.geometry:
        arrays["vertices"] = np.ascontiguousarray(result.mesh.vertices, dtype=np.float32)
        arrays["faces"] = np.ascontiguousarray(result.mesh.faces, dtype=np.int32)
    return meta, arrays


EDIT_SPEC = TASKS.register("edit")(TaskSpec(
    name="edit", params_cls=EditParams, make_job=make_edit_job, run=run_edit, pack_result=pack_edit_result,
    prior_key=lambda job: (job.params.model, ()),
))
