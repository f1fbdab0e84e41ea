"""The edit task's first stage: fit a colour field to the object's own texture (the reconstruction).

Supervision per step: renders of the input texture from random views (elevation −60…75°, the underside too) and
points spread uniformly over the UV layout (what the bake reads, including what no view shows well); with
`geometry` also jittered copies of those points, so colours reach a shell around the surface that may move. The
stage stops when 8 fixed views and fixed UV-layout points both reach the target PSNR, or after `max_steps`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CancelledError
from ..fields.texture_field import TextureField
from ..mesh import Mesh
from ..render.rasterize import interpolate
from ..render.rasterize import texture as sample_texture
from ..render.surface import SurfaceHits, corner_mesh, hit_surface
from .base import ProgressEvent
from .common.optim import field_adam
from .common.turntable import TURNTABLE_VIEWS
from .common.views import OrbitRanges, ViewSampler, fixed_views

logger = logging.getLogger(__name__)

FIT_ELEVATION = (-60.0, 75.0)
FIT_RENDER_SIZE = 128
FIT_BATCH = 4
FIT_LR = 0.01
FIT_CHECK_EVERY = 50
FIT_CHECK_SIZE = 128
FIT_TEXELS = 8192            # surface points per fit step spread over the UV layout (beside the rendered views)
FIT_CHECK_TEXELS = 32768     # fixed UV-layout points of the texel PSNR check
FIT_SHELL = 0.05             # with `geometry`: colours also fitted this far (σ) off the surface


class OriginalObject:
    """The object as the user has it: renders of the input texture on the normalised mesh, and the field's hits.

    One rasterisation of the per-corner mesh gives both the surface points the field is queried at and the UVs
    at which the original texture is sampled, so the two images are pixel-aligned.
    """

    def __init__(self, mesh_n: Mesh, uvs: np.ndarray, image: np.ndarray, device: torch.device):
        verts = torch.tensor(mesh_n.vertices, dtype=torch.float32, device=device)
        faces = torch.tensor(mesh_n.faces, dtype=torch.int32, device=device)
        self.verts, self.faces = verts, faces
        self.pos, self.tri, self.corner_uv = corner_mesh(verts, faces, torch.tensor(uvs, device=device))
        # texture() addresses memory row 0 as v = 0; our images store v = 1 first
        self.tex = torch.tensor(image[..., :3], device=device).flip(0)[None].contiguous()

    def texel_samples(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` random surface points spread uniformly over the UV layout (as the bake sees the surface), and the
        original colours there: ((n, 3) points, (n, 3) colours)."""
        uv = self.corner_uv.reshape(-1, 3, 2)
        area = ((uv[:, 1] - uv[:, 0])[:, 0] * (uv[:, 2] - uv[:, 0])[:, 1]
                - (uv[:, 1] - uv[:, 0])[:, 1] * (uv[:, 2] - uv[:, 0])[:, 0]).abs()
        face = torch.multinomial(area.cpu() + 1e-12, n, replacement=True, generator=gen).to(uv.device)
        r = torch.rand(n, 2, generator=gen).to(uv.device)
        flip = r.sum(1) > 1
        r[flip] = 1 - r[flip]
        bary = torch.stack([1 - r[:, 0] - r[:, 1], r[:, 0], r[:, 1]], 1)
        pts = torch.einsum("nk,nkc->nc", bary, self.pos.reshape(-1, 3, 3)[face])
        uvs = torch.einsum("nk,nkc->nc", bary, uv[face])
        colour = sample_texture(self.tex, uvs[None, None].contiguous())[0, 0]
        return pts, colour

    def hits(self, cams) -> tuple[SurfaceHits, torch.Tensor]:
        """(hits on the surface, (B, H, W, 3) original colours at them, zero where empty)."""
        hits = hit_surface(cams, self.pos, self.tri)
        uv = interpolate(self.corner_uv, hits.rast, self.tri)
        colour = sample_texture(self.tex.expand(uv.shape[0], *self.tex.shape[1:]).contiguous(), uv.contiguous())
        return hits, colour * hits.mask[..., None]


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of colours in [0, 1]."""
    return 10.0 * math.log10(1.0 / max(float(((pred.float() - target.float()) ** 2).mean()), 1e-12))


def fit_psnr_db(field_model: TextureField, original: OriginalObject, cams, texels: tuple[torch.Tensor, torch.Tensor]
              ) -> tuple[float, float]:
    """(render PSNR over the object pixels of `cams`, texel PSNR at fixed points spread over the UV layout)."""
    with torch.no_grad():
        hits, target = original.hits(cams)
        render = _psnr(field_model(hits.points[hits.mask]), target[hits.mask])
        texel = _psnr(field_model(texels[0]), texels[1])
    return render, texel


@dataclass
class FitOutcome:
    """What the reconstruction reached.

    Attributes:
        render_db: PSNR of 8 fixed views (object pixels); texel_db: PSNR at fixed UV-layout points.
        steps: steps run; seconds: wall time; stopped: cancelled with `return_partial`.
    """

    render_db: float
    texel_db: float
    steps: int
    seconds: float
    stopped: bool = False

    def reached(self, target_db: float) -> bool:
        """Both PSNRs at or above `target_db`."""
        return min(self.render_db, self.texel_db) >= target_db


def fit_field(field_model, original: OriginalObject, p, ranges: OrbitRanges, gen: torch.Generator, emit, stop,
              t_start: float, preview) -> FitOutcome:
    """Fit `field_model` to the original until `p.fit_psnr` dB or `p.fit_max_steps` steps.

    Args:
        field_model: the colour field (trained in place).
        original: the object and its texture.
        p: the edit's resolved parameters (fit_psnr, fit_max_steps, geometry, seed, progress_every, return_partial).
        ranges: the job's orbit ranges (the fit widens the elevation).
        gen: CPU generator of views and samples.
        emit, stop, t_start, preview: progress ("fitting" events), cancellation, () -> preview PNG.

    Raises:
        CancelledError: `stop()` returned True before a step (without `return_partial`).
    """
    t0 = time.perf_counter()
    device = original.verts.device
    fit_views = ViewSampler(dataclasses.replace(ranges, elevation=FIT_ELEVATION), FIT_RENDER_SIZE, gen)
    check_cams = fixed_views(TURNTABLE_VIEWS, FIT_CHECK_SIZE, elevation=20.0).to(device)
    opt = field_adam(field_model.parameters(), lr=FIT_LR)
    check_texels = original.texel_samples(FIT_CHECK_TEXELS, torch.Generator().manual_seed(p.seed + 2))
    fit_psnr, texel_psnr = fit_psnr_db(field_model, original, check_cams, check_texels)
    steps, stopped = 0, False
    emit(ProgressEvent("fitting", 0, p.fit_max_steps, elapsed_s=time.perf_counter() - t_start))
    for step in range(p.fit_max_steps):
        if min(fit_psnr, texel_psnr) >= p.fit_psnr:
            break
        if stop():
            if not p.return_partial:
                raise CancelledError(f"edit job cancelled while fitting, at step {step}/{p.fit_max_steps}")
            stopped = True
            break
        hits, target = original.hits(fit_views.sample(FIT_BATCH).to(device))
        pts, colour = original.texel_samples(FIT_TEXELS, gen)  # reaches what no view shows well (the bake's)
        if p.geometry:  # the surface will move: extend the colours into a shell around it
            shell = pts + FIT_SHELL * torch.randn(pts.shape, generator=gen).to(device)
            pts, colour = torch.cat([pts, shell]), torch.cat([colour, colour])
        loss = F.mse_loss(field_model(torch.cat([hits.points[hits.mask], pts])),
                          torch.cat([target[hits.mask], colour]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps = step + 1
        if steps % FIT_CHECK_EVERY == 0 or steps == p.fit_max_steps:
            fit_psnr, texel_psnr = fit_psnr_db(field_model, original, check_cams, check_texels)
        if steps % p.progress_every == 0:
            emit(ProgressEvent("fitting", steps, p.fit_max_steps, float(loss.detach()),
                               time.perf_counter() - t_start, float("nan"), preview()))
    outcome = FitOutcome(fit_psnr, texel_psnr, steps, time.perf_counter() - t0, stopped)
    if not outcome.reached(p.fit_psnr) and not stopped:
        logger.warning("edit: reconstruction reached %.1f dB (renders) / %.1f dB (texels) after %d steps "
                       "(target %.1f dB)", fit_psnr, texel_psnr, steps, p.fit_psnr)
    return outcome
