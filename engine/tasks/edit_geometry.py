"""Edit with `--geometry`: the surface moves too, on text to mesh's deformable tetrahedral grid (DMTet).

The grid (engine.fields.dmtet, the refine stage's) starts from the object's own signed distance in the normalised
frame; each step extracts the surface with differentiable marching tetrahedra, renders it with the fitted colour
field (antialiased silhouettes carry the shape gradient, as in the refine stage), and takes the same Eq. 11
guidance plus the normal-consistency loss and the optional preservation pull. The result is a new mesh: largest
connected component, decimated to a face budget; the caller unwraps and bakes it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from csd_blender.protocol.errors import ErrorCode

from ..errors import CancelledError, EngineError
from ..fields.dmtet import DMTetConfig, DMTetGeometry, normal_consistency
from ..mesh import Mesh
from ..mesh.cleanup import decimate, largest_component
from ..mesh.sdf import signed_distance
from .base import ProgressEvent
from .common.backgrounds import solid_backgrounds
from .generate_refine import render_mesh

logger = logging.getLogger(__name__)

GRID_RADIUS = 0.75           # the normalised object fits [-0.5, 0.5]^3: room to grow
NORMAL_CONSISTENCY = 1000.0  # λ of csd-sd-refine (official)
GEOMETRY_LR = 0.01           # SDF and deformation (text to mesh's refine stage)


@dataclass
class GeometryEdit:
    """Settings of the geometry edit loop.

    Args:
        steps: optimisation steps.
        batch_size: views per step.
        tet_resolution: grid cells per axis.
        learning_rate: Adam learning rate of the colour field.
        preserve: weight of the unit-norm pull back to the original renders (0 = off).
        background: background mode of the renders.
        progress_every: steps between progress events.
        face_budget: most faces of the result.
    """

    steps: int
    batch_size: int
    tet_resolution: int
    learning_rate: float
    preserve: float
    background: str
    progress_every: int
    face_budget: int


class _Albedo:
    """The refine stage's renderer asks its field for `.albedo(points)`; the edit's colour field is the field."""

    def __init__(self, field_model):
        self.albedo = field_model


def initial_grid(mesh_n: Mesh, resolution: int, device) -> DMTetGeometry:
    """A DMTet grid over [-GRID_RADIUS, GRID_RADIUS]^3 whose zero level set is the object's surface.

    Args:
        mesh_n: the object in the normalised frame.
        resolution: cells per axis.
        device: where the grid lives.
    """
    geom = DMTetGeometry(DMTetConfig(resolution=resolution, radius=GRID_RADIUS))
    sdf = signed_distance(mesh_n, geom.grid_vertices.numpy())
    with torch.no_grad():
        geom.sdf.copy_(torch.from_numpy(sdf))
    return geom.to(device)


def run_geometry_edit(cfg: GeometryEdit, geom: DMTetGeometry, field_model, prior, guidance, prompts, views,
                      original, gen: torch.Generator, noise_gen: torch.Generator, emit, stop, t_start: float,
                      preview) -> tuple[Mesh, dict]:
    """Optimise the grid and the colour field with the edit guidance; return the new surface (normalised frame).

    Args:
        cfg: GeometryEdit settings.
        geom: from `initial_grid`.
        field_model: the fitted colour field (keeps training).
        prior, guidance: the edit's prior and guidance.
        prompts: the job's ViewPrompts (view-dependent for real priors).
        views: a ViewSampler at the render size.
        original: the edit's `OriginalObject` (renders of the input object for the preservation pull).
        gen, noise_gen: CPU generator (views, backgrounds) and the guidance noise generator.
        emit, stop, t_start: progress and cancellation; preview: (verts, faces) -> PNG bytes.

    Returns:
        (the largest component decimated to `cfg.face_budget`, {"steps_run", "unet_calls", "final_loss", seconds})

    Raises:
        CancelledError: `stop()` returned True before a step.
    """
    device = prior.device
    opt = torch.optim.Adam([{"params": list(field_model.parameters()), "lr": cfg.learning_rate},
                            {"params": [geom.sdf, geom.deformation], "lr": GEOMETRY_LR}],
                           betas=(0.9, 0.99), eps=1e-15)
    albedo = _Albedo(field_model)
    steps_run, unet_calls, last_loss = 0, 0, None
    t_loop = time.perf_counter()
    for step in range(cfg.steps):
        if stop():
            raise CancelledError(f"edit job cancelled at geometry step {step}/{cfg.steps}")
        verts, faces = geom()
        if faces.shape[0] == 0:
            logger.warning("edit: the surface vanished at step %d; keeping the last mesh", step)
            break
        host_cams = views.sample(cfg.batch_size)
        step_prompts = prompts.for_cameras(host_cams.c2w)
        cams = host_cams.to(device)
        bg = solid_backgrounds(cfg.background, cfg.batch_size, gen).to(device)
        image = render_mesh(albedo, verts, faces, cams, "albedo", bg, True)
        x = prior.to_model_space(image.permute(0, 3, 1, 2), generator=noise_gen)
        out = guidance(prior, x, step_prompts, step, generator=noise_gen)
        loss = out.loss + NORMAL_CONSISTENCY * normal_consistency(verts, faces)
        if cfg.preserve > 0:
            with torch.no_grad():
                hits, target = original.hits(cams)
                mask = hits.mask[..., None].to(image.dtype)
                x_before = prior.to_model_space((target * mask + bg[:, None, None, :] * (1 - mask))
                                                .permute(0, 3, 1, 2), generator=noise_gen)
            loss = loss + cfg.preserve * torch.sqrt(((x - x_before) ** 2).sum() + 1e-12) / cfg.batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        unet_calls += out.unet_calls
        last_loss = out.raw_loss
        steps_run = step + 1
        if steps_run % cfg.progress_every == 0 or steps_run == cfg.steps:
            rate = (time.perf_counter() - t_loop) / steps_run
            emit(ProgressEvent("optimising", steps_run, cfg.steps, float(last_loss), time.perf_counter() - t_start,
                               rate * (cfg.steps - steps_run), preview(verts.detach(), faces)))
    with torch.no_grad():
        verts, faces = geom()
    if faces.shape[0] == 0:
        raise EngineError(ErrorCode.BAD_REQUEST, "geometry: the surface vanished while editing; lower the "
                                                 "strength or raise preserve", field="geometry")
    mesh = Mesh(verts.cpu().numpy().astype(np.float32), faces.cpu().numpy().astype(np.int64))
    # decimation can pinch a thin part off: keep one connected mesh
    mesh = largest_component(decimate(largest_component(mesh), cfg.face_budget))
    return mesh, {"steps_run": steps_run, "unet_calls": unet_calls,
                  "final_loss": float(last_loss) if last_loss is not None else float("nan")}
