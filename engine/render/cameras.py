"""Pinhole camera batches in Blender's convention, orbit sampling and fixed rigs.

Conventions (DESIGN §3, docs/INTERFACES.md):
- World is Blender's: right-handed, Z up. A camera looks down its local -Z with +Y up and +X right;
  `c2w` is the camera's `matrix_world` (rotation + translation, no scale).
- Intrinsics are in pixels: x to the right, y DOWN, the centre of the top-left pixel at (0, 0), so a centred
  principal point is cx = (W - 1)/2, cy = (H - 1)/2. A camera-space point (X, Y, Z) with Z < 0 lands at
  x = cx + fx * X / (-Z), y = cy - fy * Y / (-Z).
- `projection()` maps camera space to nvdiffrast clip space with y negated, so that rasterizer row i is pixel
  row y = i (top row first) and column j is pixel column x = j; OpenGL depth with the given near/far.
- Orbit sampling: elevation is measured from the XY plane (positive = above the target), azimuth rotates
  counter-clockwise around +Z seen from above, and azimuth 0 puts the camera on the -Y side of the target
  looking towards +Y (Blender's front view); azimuth 90 puts it on the +X side (Blender's right view).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import RequestError

Range = float | tuple[float, float] | Sequence[float]


@dataclass
class Cameras:
    """A batch of B pinhole cameras sharing one image size.

    Attributes:
        c2w: (B, 4, 4) camera-to-world matrices (Blender matrix_world).
        fx, fy: (B,) focal lengths in pixels.
        cx, cy: (B,) principal point in pixels (pixel centres at integers, y down).
        width, height: image size in pixels.
    """

    c2w: Tensor
    fx: Tensor
    fy: Tensor
    cx: Tensor
    cy: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.dim() == 2:
            self.c2w = self.c2w[None]
        if self.c2w.dim() != 3 or self.c2w.shape[-2:] != (4, 4):
            raise ValueError(f"c2w: expected (B, 4, 4), got {tuple(self.c2w.shape)}")
        n = self.c2w.shape[0]
        for name in ("fx", "fy", "cx", "cy"):
            value = torch.as_tensor(getattr(self, name), dtype=self.c2w.dtype, device=self.c2w.device)
            if value.dim() == 0:
                value = value.expand(n).clone()
            if value.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {tuple(value.shape)}")
            setattr(self, name, value)
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width/height: expected positive sizes, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def view(self) -> Tensor:
        """World -> camera matrices, (B, 4, 4) (rigid inverse of c2w)."""
        rot = self.c2w[:, :3, :3]
        trans = self.c2w[:, :3, 3:]
        out = torch.zeros_like(self.c2w)
        out[:, :3, :3] = rot.transpose(1, 2)
        out[:, :3, 3:] = -rot.transpose(1, 2) @ trans
        out[:, 3, 3] = 1.0
        return out

    def projection(self, near: float = 0.01, far: float = 100.0) -> Tensor:
        """Camera -> clip matrices (B, 4, 4) consistent with `rasterize` (y flipped: top row first).

        Column j of the raster is at NDC x = 2(j + 0.5)/W - 1 and row i at NDC y = 2(i + 0.5)/H - 1; this
        matrix maps a camera point to NDC such that (j, i) equals its pixel coordinates (x, y) from `project`.

        Args:
            near, far: clip planes (distances in front of the camera); z/w = -1 at near, +1 at far.
        """
        if not 0 < near < far:
            raise ValueError(f"near/far: expected 0 < near < far, got {near}, {far}")
        n = len(self)
        proj = torch.zeros(n, 4, 4, dtype=self.c2w.dtype, device=self.device)
        proj[:, 0, 0] = 2.0 * self.fx / self.width
        proj[:, 0, 2] = 1.0 - (2.0 * self.cx + 1.0) / self.width
        proj[:, 1, 1] = -2.0 * self.fy / self.height
        proj[:, 1, 2] = 1.0 - (2.0 * self.cy + 1.0) / self.height
        proj[:, 2, 2] = -(far + near) / (far - near)
        proj[:, 2, 3] = -2.0 * far * near / (far - near)
        proj[:, 3, 2] = -1.0
        return proj

    def world_to_clip(self, near: float = 0.01, far: float = 100.0) -> Tensor:
        """projection @ view, (B, 4, 4): multiply homogeneous world points (as columns) to get clip space.

        Args:
            near, far: clip planes, see `projection`.
        """
        return self.projection(near, far) @ self.view()

    def clip_positions(self, vertices: Tensor, near: float = 0.01, far: float = 100.0) -> Tensor:
        """World vertices -> clip-space positions for `rasterize`.

        Args:
            vertices: (V, 3) world-space points.
            near, far: clip planes.
        Returns:
            (B, V, 4).
        """
        homo = torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=1).to(self.c2w.dtype)
        return homo[None] @ self.world_to_clip(near, far).transpose(1, 2)

    def project(self, points: Tensor) -> Tensor:
        """Pinhole projection of world points to pixel coordinates (x right, y down).

        Args:
            points: (N, 3) world-space points (should lie in front of the cameras).
        Returns:
            (B, N, 2) pixel coordinates; the centre of the top-left pixel is (0, 0).
        """
        homo = torch.cat([points, torch.ones_like(points[:, :1])], dim=1).to(self.c2w.dtype)
        cam = homo[None] @ self.view().transpose(1, 2)                         # (B, N, 4)
        depth = -cam[..., 2]
        x = self.cx[:, None] + self.fx[:, None] * cam[..., 0] / depth
        y = self.cy[:, None] - self.fy[:, None] * cam[..., 1] / depth
        return torch.stack([x, y], dim=-1)

    def centers(self) -> Tensor:
        """Camera positions in world space, (B, 3)."""
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str) -> Cameras:
        """Copy to `device`.

        Args:
            device: target device.
        """
        return Cameras(self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device),
                       self.cy.to(device), self.width, self.height)

    def subset(self, idx: Tensor | Sequence[int] | slice | int) -> Cameras:
        """The cameras selected by `idx` (index tensor, list, slice or int).

        Args:
            idx: selection along the batch dimension.
        """
        if isinstance(idx, int):
            idx = [idx]
        if not isinstance(idx, (slice, Tensor)):
            idx = torch.as_tensor(list(idx), dtype=torch.int64, device=self.device)
        return Cameras(self.c2w[idx], self.fx[idx], self.fy[idx], self.cx[idx], self.cy[idx], self.width,
                       self.height)

    def rescaled(self, width: int, height: int) -> Cameras:
        """The same cameras rendering at another resolution, keeping the field of view and principal point.

        Pixel edges scale, so centres map as x' = (x + 0.5) * width/W - 0.5.

        Args:
            width, height: new image size in pixels.
        """
        sx = width / self.width
        sy = height / self.height
        return Cameras(self.c2w, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                       (self.cy + 0.5) * sy - 0.5, width, height)

    @staticmethod
    def concat(cameras: Sequence[Cameras]) -> Cameras:
        """Concatenate batches that share one image size.

        Args:
            cameras: batches to join, in order.
        """
        if not cameras:
            raise ValueError("cameras: expected at least one batch to concatenate")
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cameras: all batches must share width/height, got {sorted(sizes)}")
        cat = lambda name: torch.cat([getattr(c, name) for c in cameras])
        return Cameras(cat("c2w"), cat("fx"), cat("fy"), cat("cx"), cat("cy"), cameras[0].width,
                       cameras[0].height)


def look_at(eye: Tensor, target: Tensor, up: Sequence[float] | Tensor = (0.0, 0.0, 1.0)) -> Tensor:
    """Camera-to-world matrices looking from `eye` at `target` (camera -Z towards the target, +Y up).

    When the view direction is parallel to `up` (looking straight down or up), the image "up" falls back to
    world +Y (looking down) / -Y (looking up) so the result stays a valid rotation.

    Args:
        eye: (..., 3) camera positions.
        target: (..., 3) points looked at (broadcast against eye).
        up: world up direction (default Blender's +Z).
    Returns:
        (..., 4, 4) c2w matrices.
    """
    eye = torch.as_tensor(eye)
    eye, target = torch.broadcast_tensors(eye, torch.as_tensor(target).to(eye))
    if not eye.is_floating_point():
        eye, target = eye.float(), target.float()
    up_t = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    forward = target - eye
    norm = forward.norm(dim=-1, keepdim=True)
    if bool((norm <= 1e-12).any()):
        raise ValueError("eye/target: camera position coincides with its target")
    forward = forward / norm
    right = torch.linalg.cross(forward, up_t, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    if bool(degenerate.any()):
        alt = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
        sign = torch.sign((forward * up_t).sum(-1, keepdim=True))               # -1 looking down
        alt_right = torch.linalg.cross(forward, -sign * alt, dim=-1)
        right = torch.where(degenerate, alt_right, right)
    right = right / right.norm(dim=-1, keepdim=True)
    cam_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = cam_up
    c2w[..., :3, 2] = -forward
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


def _range(name: str, value: Range) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise RequestError(name, f"range must be (min, max) with min <= max, got ({lo}, {hi})")
    return lo, hi


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def intrinsics_from_fov(fov_deg: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Square-pixel intrinsics with a centred principal point from a VERTICAL field of view.

    Args:
        fov_deg: (B,) vertical field of view in degrees (the full image height, pixel edges included).
        width, height: image size.
    Returns:
        fx, fy, cx, cy each (B,).
    """
    fy = (0.5 * height) / torch.tan(torch.deg2rad(fov_deg) * 0.5)
    cx = torch.full_like(fy, (width - 1) / 2.0)
    cy = torch.full_like(fy, (height - 1) / 2.0)
    return fy.clone(), fy, cx, cy


def orbit_cameras(
    n: int,
    *,
    elevation_deg: Range = (-10.0, 45.0),
    azimuth_deg: Range = (-180.0, 180.0),
    distance: Range = (1.5, 2.0),
    fov_deg: Range = (40.0, 70.0),
    width: int = 64,
    height: int = 64,
    target: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    uniform_azimuth: bool = False,
    generator: torch.Generator | None = None,
) -> Cameras:
    """Random cameras on a sphere around `target`, looking at it, Z up (see module docstring for angles).

    Each quantity is drawn uniformly in its range (a single number fixes it). With `uniform_azimuth` the
    batch's azimuths are stratified as in threestudio's `batch_uniform_azimuth`: camera k gets
    lo + (k + U[0,1)) / n * (hi - lo), so the batch is spread evenly with a random offset per camera.

    Args:
        n: number of cameras.
        elevation_deg: elevation above the XY plane in degrees, within [-90, 90].
        azimuth_deg: azimuth around +Z in degrees (0 = camera on the -Y side).
        distance: distance from the target.
        fov_deg: vertical field of view in degrees, within (0, 180).
        width, height: image size in pixels.
        target: world point looked at.
        uniform_azimuth: stratify azimuths over the batch.
        generator: torch.Generator (CPU) for reproducible sampling.
    Returns:
        Cameras with float32 tensors on the CPU.
    """
    if n <= 0:
        raise RequestError("n", f"must be > 0, got {n}")
    el_lo, el_hi = _range("elevation_deg", elevation_deg)
    az_lo, az_hi = _range("azimuth_deg", azimuth_deg)
    d_lo, d_hi = _range("distance", distance)
    f_lo, f_hi = _range("fov_deg", fov_deg)
    if el_lo < -90 or el_hi > 90:
        raise RequestError("elevation_deg", f"must lie in [-90, 90], got ({el_lo}, {el_hi})")
    if d_lo <= 0:
        raise RequestError("distance", f"must be > 0, got ({d_lo}, {d_hi})")
    if f_lo <= 0 or f_hi >= 180:
        raise RequestError("fov_deg", f"must lie in (0, 180), got ({f_lo}, {f_hi})")
    elevation = _uniform(n, el_lo, el_hi, generator)
    if uniform_azimuth:
        jitter = torch.rand(n, generator=generator, dtype=torch.float64)
        azimuth = az_lo + (torch.arange(n, dtype=torch.float64) + jitter) / n * (az_hi - az_lo)
    else:
        azimuth = _uniform(n, az_lo, az_hi, generator)
    dist = _uniform(n, d_lo, d_hi, generator)
    fov = _uniform(n, f_lo, f_hi, generator)
    return orbit_from_angles(elevation, azimuth, dist, fov, width, height, target)


def orbit_from_angles(elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor, fov_deg: Tensor,
                      width: int, height: int, target: Sequence[float] | Tensor = (0.0, 0.0, 0.0)) -> Cameras:
    """Deterministic orbit cameras from explicit angles (same conventions as `orbit_cameras`).

    Args:
        elevation_deg, azimuth_deg, distance, fov_deg: (B,) tensors (degrees, world units, vertical
            degrees).
        width, height: image size.
        target: world point looked at.
    Returns:
        float32 Cameras.
    """
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float64))
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float64))
    dist = torch.as_tensor(distance, dtype=torch.float64)
    el, az, dist = torch.broadcast_tensors(el, az, dist)
    tgt = torch.as_tensor(target, dtype=torch.float64)
    offset = torch.stack([torch.cos(el) * torch.sin(az), -torch.cos(el) * torch.cos(az), torch.sin(el)], -1)
    eye = tgt + dist[:, None] * offset
    c2w = look_at(eye, tgt.expand_as(eye))
    fov = torch.as_tensor(fov_deg, dtype=torch.float64).expand(el.shape[0])
    fx, fy, cx, cy = intrinsics_from_fov(fov, width, height)
    return Cameras(c2w.float(), fx.float(), fy.float(), cx.float(), cy.float(), width, height)


def fixed_rig(c2w: Tensor, intrinsics: Tensor) -> Cameras:
    """Cameras from explicit poses and pixel intrinsics (e.g. Blender cameras sent by the add-on).

    All rig cameras must share one resolution; rescale each first with `Cameras.rescaled` when they differ.

    Args:
        c2w: (N, 4, 4) camera-to-world matrices (Blender matrix_world, scale removed).
        intrinsics: (N, 6) rows [fx, fy, cx, cy, width, height] in pixels (pixel centres at integers, y down).
    Returns:
        Cameras of batch N.
    """
    c2w = torch.as_tensor(c2w)
    intr = torch.as_tensor(intrinsics)
    if c2w.dim() != 3 or c2w.shape[-2:] != (4, 4):
        raise RequestError("c2w", f"expected (N, 4, 4) matrices, got {tuple(c2w.shape)}")
    if intr.dim() != 2 or intr.shape[-1] != 6 or intr.shape[0] != c2w.shape[0]:
        raise RequestError("intrinsics", f"expected ({c2w.shape[0]}, 6) rows [fx, fy, cx, cy, width, "
                                         f"height], got {tuple(intr.shape)}")
    if not bool(torch.isfinite(c2w).all()) or not bool(torch.isfinite(intr).all()):
        raise RequestError("c2w", "camera matrices and intrinsics must be finite")
    widths = {int(round(float(w))) for w in intr[:, 4]}
    heights = {int(round(float(h))) for h in intr[:, 5]}
    if len(widths) != 1 or len(heights) != 1:
        raise RequestError("intrinsics", f"all rig cameras must share width/height (rescale them first), got "
                                         f"widths {sorted(widths)} heights {sorted(heights)}")
    if bool((intr[:, :2] <= 0).any()):
        raise RequestError("intrinsics", "fx and fy must be > 0")
    dtype = c2w.dtype if c2w.is_floating_point() else torch.float32
    intr = intr.to(dtype=dtype, device=c2w.device)
    return Cameras(c2w.to(dtype), intr[:, 0], intr[:, 1], intr[:, 2], intr[:, 3], widths.pop(), heights.pop())
