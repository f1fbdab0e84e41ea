"""Training-view sampling: orbit ranges (optionally front/back only), or a user's rig with a random jitter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...mesh import Normalization
from ...render.cameras import Cameras, fixed_rig, orbit_cameras, orbit_from_angles


@dataclass(frozen=True)
class OrbitRanges:
    """Orbit-sampling ranges (degrees; distance in units of the normalised object, which fits [-0.5, 0.5]^3).

    Attributes:
        elevation: (min, max) elevation above the XY plane.
        azimuth: (min, max) azimuth around +Z, 0 = camera on −Y (Blender front).
        distance: (min, max) camera distance from the origin.
        fov: (min, max) vertical field of view.
    """

    elevation: tuple[float, float] = (-10.0, 45.0)
    azimuth: tuple[float, float] = (-180.0, 180.0)
    distance: tuple[float, float] = (1.5, 2.0)
    fov: tuple[float, float] = (40.0, 60.0)

    @classmethod
    def from_params(cls, params) -> OrbitRanges:
        """Read `elevation_range`, `azimuth_range`, `distance_range`, `fov_range` from a params dataclass."""
        return cls(
            tuple(params.elevation_range),
            tuple(params.azimuth_range),
            tuple(params.distance_range),
            tuple(params.fov_range),
        )


class ViewSampler:
    """Samples square training cameras: orbit ranges, or the user's rig rotated randomly about the object.

    Args:
        ranges: orbit ranges (used when `rig` is None).
        size: render width = height in pixels.
        generator: CPU generator every random draw comes from (reproducible runs).
        rig: optional (c2w (N, 4, 4), intrinsics (N, 6)) in world space; moved into the normalised frame by
            `norm` and re-fitted to a square render keeping each camera's vertical FOV and principal-point
            offset.
        norm: the object's normalisation (required with a rig).
        jitter: rig cameras are rotated by up to `jitter`·45° about the object centre (0 = exact rig).
    """

    def __init__(
        self,
        ranges: OrbitRanges,
        size: int,
        generator: torch.Generator,
        rig: tuple[np.ndarray, np.ndarray] | None = None,
        norm: Normalization | None = None,
        jitter: float = 0.0,
    ):
        self.ranges, self.size, self.gen, self.jitter = ranges, size, generator, jitter
        self.rig: Cameras | None = None
        if rig is not None:
            if norm is None:
                raise ValueError("ViewSampler: a rig needs the object's normalisation")
            c2w = torch.tensor(rig[0], dtype=torch.float32)
            intr = torch.tensor(rig[1], dtype=torch.float32)
            c2w[:, :3, 3] = (c2w[:, :3, 3] - torch.tensor(norm.center, dtype=torch.float32)) * norm.scale
            # keep each rig camera's vertical field of view and principal-point offset on a square render
            scale = size / intr[:, 5]
            fy = intr[:, 1] * scale
            cx = (intr[:, 2] - (intr[:, 4] - 1) / 2) * scale + (size - 1) / 2
            cy = (intr[:, 3] - (intr[:, 5] - 1) / 2) * scale + (size - 1) / 2
            square = torch.stack(
                [
                    fy * intr[:, 0] / intr[:, 1],
                    fy,
                    cx,
                    cy,
                    torch.full_like(fy, size),
                    torch.full_like(fy, size),
                ],
                dim=1,
            )
            self.rig = fixed_rig(c2w, square)

    def sample(self, n: int, front_back_only: bool = False) -> Cameras:
        """`n` cameras. Orbit azimuths are stratified over the batch when n > 1 (threestudio's
        `batch_uniform_azimuth`); `front_back_only` (csd-if's first steps) draws each azimuth within ±30° of
        the
        front (0°) or the back (180°), alternating over the batch."""
        r = self.ranges
        if self.rig is None:
            if front_back_only:
                return self._front_back(n)
            return orbit_cameras(
                n,
                elevation_deg=tuple(r.elevation),
                azimuth_deg=tuple(r.azimuth),
                distance=tuple(r.distance),
                fov_deg=tuple(r.fov),
                width=self.size,
                height=self.size,
                uniform_azimuth=n > 1,
                generator=self.gen,
            )
        idx = torch.randint(0, len(self.rig), (n,), generator=self.gen)
        cams = self.rig.subset(idx)
        if self.jitter > 0:
            cams = Cameras(
                jitter_c2w(cams.c2w, self.jitter, self.gen),
                cams.fx,
                cams.fy,
                cams.cx,
                cams.cy,
                cams.width,
                cams.height,
            )
        return cams

    def _front_back(self, n: int) -> Cameras:
        r, g = self.ranges, self.gen
        u = torch.rand(4, n, generator=g, dtype=torch.float64)
        side = (torch.arange(n) + torch.randint(0, 2, (1,), generator=g)) % 2
        az = side.double() * 180.0 + (u[0] * 60.0 - 30.0)
        lerp = lambda lo_hi, t: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * t
        return orbit_from_angles(
            lerp(r.elevation, u[1]), az, lerp(r.distance, u[2]), lerp(r.fov, u[3]), self.size, self.size
        )


def jitter_c2w(c2w: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate each camera `c2w (N, 4, 4)` about the origin by a random angle up to `amount`·45° (Rodrigues).

    Args:
        c2w: camera-to-world matrices in the object's normalised frame.
        amount: fraction of 45°.
        gen: CPU generator.
    """
    n = c2w.shape[0]
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    angle = torch.rand(n, generator=gen) * amount * math.pi / 4
    k = torch.zeros(n, 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    rot = torch.eye(3) + torch.sin(angle)[:, None, None] * k + (1 - torch.cos(angle))[:, None, None] * (k @ k)
    out = c2w.clone()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = (rot @ c2w[:, :3, 3:])[..., 0]
    return out


def fixed_views(
    n: int,
    size: int,
    elevation: float = 15.0,
    distance: float = 2.2,
    fov: float = 45.0,
    start_azimuth: float = 0.0,
) -> Cameras:
    """`n` square cameras evenly spaced in azimuth at one elevation (turntables and tests).

    Args:
        n: number of views; view k is at azimuth `start_azimuth + 360·k/n`.
        size: width = height in pixels.
        elevation, distance, fov: degrees, object units, degrees (vertical).
        start_azimuth: azimuth of the first view (0 = front).
    """
    az = torch.arange(n, dtype=torch.float64) * (360.0 / n) + start_azimuth
    return orbit_from_angles(
        torch.full((n,), elevation), az, torch.full((n,), distance), torch.full((n,), fov), size, size
    )
