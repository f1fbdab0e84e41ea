"""Region jobs: optimise one part of an object and give every texel outside it back unchanged.

A region arrives as a per-face mask (rasterised here into the object's UV layout) or as a texel mask
(`csd_blender/protocol/params/region.py` defines both and what is kept). From the region's texels the weight map is
1 on the region and falls linearly to 0 over `border` texels (Chebyshev distance in the texture), 0 beyond; the
border only covers texels of the region's own UV charts (faces joined to it by shared UV edges) and the empty
texels next to them, so a chart that merely lies near it in the texture keeps every texel. Across a UV seam the
region ends at the seam.

- Training views are aimed at the region (`Region.aimed`) when it faces one way.
- While optimising, every render composites the field over the object's own colours with that weight, sampled at
  each pixel's UV: the prior sees the whole object, and only the region (and its border) receives gradient.
- After the bake, `blend` writes weight·new + (1 − weight)·input where the weight is above 0 and copies the input
  texel for texel everywhere else, so those texels are bit-identical.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ...mesh import Mesh
from ...render.rasterize import interpolate, rasterize
from ...render.rasterize import texture as sample_texture
from ...render.surface import SurfaceHits
from .views import OrbitRanges

AIM_SPREAD = 25.0          # degrees of elevation around the region's mean normal (twice that in azimuth)
AIM_MIN_ALIGNMENT = 0.3    # |mean of the region's unit normals| below which the region is not aimed at
NEUTRAL = 0.5     # what the surface outside the region looks like to the prior when there is no input texture


def face_texels(uvs: np.ndarray, selected: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool, top row first: texels whose centre lies on a selected face in UV space.

    Args:
        uvs: (F, 3, 2) per-corner UVs.
        selected: (F,) bool.
        shape: (H, W) of the texture.
    """
    uv = torch.from_numpy(np.ascontiguousarray(uvs[selected], dtype=np.float32)).reshape(-1, 2)
    if uv.shape[0] == 0:
        return np.zeros(shape, bool)
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], 1)
    tri = torch.arange(uv.shape[0], dtype=torch.int32).view(-1, 3)
    rast = rasterize(clip, tri, (int(shape[0]), int(shape[1])))
    return torch.flip(rast[0, ..., 3] > 0, dims=[0]).numpy()   # raster row 0 is v ≈ 0; ours is v = 1


def texel_owners(uvs: np.ndarray, shape: tuple[int, int], rings: int) -> np.ndarray:
    """(H, W) int64, top row first: the face whose UV triangle holds each texel centre, extended `rings` texels
    into the empty space around the charts (a neighbour's owner; -1 where none)."""
    uv = torch.from_numpy(np.ascontiguousarray(uvs, dtype=np.float32)).reshape(-1, 2)
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], 1)
    tri = torch.arange(uv.shape[0], dtype=torch.int32).view(-1, 3)
    owner = torch.flip(rasterize(clip, tri, (int(shape[0]), int(shape[1])))[0, ..., 3].round().long() - 1, dims=[0])
    for _ in range(rings):
        near = F.max_pool2d(owner[None, None].double(), 3, stride=1, padding=1)[0, 0].long()
        owner = torch.where(owner < 0, near, owner)
    return owner.numpy()


def uv_charts(uvs: np.ndarray) -> np.ndarray:
    """(F,) int chart label per face: faces joined by a shared UV edge (both corners equal) share a label."""
    n = uvs.shape[0]
    corners = np.round(np.asarray(uvs, np.float64) * 2**20).astype(np.int64)              # (F, 3, 2)
    a, b = corners, corners[:, [1, 2, 0]]
    first = (a[..., 0] < b[..., 0]) | ((a[..., 0] == b[..., 0]) & (a[..., 1] <= b[..., 1]))
    lo = np.where(first[..., None], a, b)
    hi = np.where(first[..., None], b, a)
    keys = np.concatenate([lo, hi], -1).reshape(-1, 4)
    _, edge = np.unique(keys, axis=0, return_inverse=True)
    face = np.repeat(np.arange(n), 3)
    order = np.argsort(edge.reshape(-1), kind="stable")
    e, f = edge.reshape(-1)[order], face[order]
    same = e[1:] == e[:-1]
    pa, pb = f[1:][same], f[:-1][same]
    labels = np.arange(n)
    while True:
        m = np.minimum(labels[pa], labels[pb])
        new = labels.copy()
        np.minimum.at(new, pa, m)
        np.minimum.at(new, pb, m)
        new = new[new]                      # pointer jumping
        if np.array_equal(new, labels):
            return labels
        labels = new


def border_weight(core: np.ndarray, border: int) -> np.ndarray:
    """(H, W) float32 weight: 1 on `core`, 1 − d/(border + 1) at Chebyshev distance d ≤ `border`, 0 beyond."""
    reach = torch.from_numpy(core.astype(np.float32))[None, None]
    weight = reach.clone()
    for d in range(1, border + 1):
        reach = F.max_pool2d(reach, 3, stride=1, padding=1)
        weight = torch.maximum(weight, reach * (1.0 - d / (border + 1)))
    return weight[0, 0].numpy().astype(np.float32)


class Region:
    """A region on an object's UVs: the weight map, and the object's own colours to composite renders over.

    Args:
        weight: (H, W) float32 weight map, top row first (see `border_weight`).
        uvs: (F, 3, 2) the UVs the weight map (and `base`) belong to.
        base: (H, W, 3|4) the input texture, or None (the rest of the surface renders `NEUTRAL` grey).
        device: where the renders happen.
    """

    def __init__(self, weight: np.ndarray, uvs: np.ndarray, base: np.ndarray | None, device: torch.device):
        self.weight, self.base, self.uvs = weight, base, np.asarray(uvs, np.float32)
        corner_uv = torch.tensor(np.ascontiguousarray(uvs, dtype=np.float32), device=device).reshape(-1, 2)
        self.corner_uv = corner_uv
        self.tri = torch.arange(corner_uv.shape[0], dtype=torch.int32, device=device).view(-1, 3)
        # texture() addresses memory row 0 as v = 0; our images store v = 1 first
        self.weight_tex = torch.tensor(weight, device=device).flip(0)[None, ..., None].contiguous()
        self.base_tex = (torch.tensor(np.ascontiguousarray(base[..., :3], dtype=np.float32), device=device)
                         .flip(0)[None].contiguous() if base is not None else None)

    @classmethod
    def from_mask(cls, arrays: dict, name: str, uvs: np.ndarray, keep: np.ndarray, shape: tuple[int, int],
                  border: int, base: np.ndarray | None, device) -> Region:
        """The region of a job's `face_mask` or `texel_mask`.

        Args:
            arrays: the job's arrays (as sent: `face_mask` indexes the faces before degenerate ones were dropped).
            name: "face_mask" or "texel_mask".
            uvs: (F', 3, 2) UVs of the kept faces.
            keep: (F,) bool, the sent faces that were kept.
            shape: (H, W) of the texture the region lives on.
            border: soft border in texels.
            base: the input texture or None.
            device: the job's device.
        """
        owner = texel_owners(uvs, shape, border + 1)
        if name == "face_mask":
            selected = np.asarray(arrays[name]).astype(bool)[keep]
            core = face_texels(uvs, selected, shape)
        else:
            core = np.asarray(arrays[name]) > 0
            selected = np.zeros(len(uvs), bool)
            selected[np.unique(owner[core & (owner >= 0)])] = True
        charts = uv_charts(uvs)
        own_chart = np.isin(charts, charts[selected])          # the border stays on the region's own charts
        allowed = (owner >= 0) & own_chart[np.maximum(owner, 0)]
        weight = np.where(core, np.float32(1), np.where(allowed, border_weight(core, border), np.float32(0)))
        return cls(weight.astype(np.float32), uvs, base, torch.device(device))

    def pixel_uv(self, rast: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 2) UVs at the pixels of a rasterisation of the same faces."""
        return interpolate(self.corner_uv, rast, self.tri)

    def composite(self, image: torch.Tensor, hits: SurfaceHits, original: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """A render of the field `image (B, H, W, 3)` with the object's own colours outside the region.

        Args:
            image: the field shaded over its background (`shade_field`).
            hits: where the cameras see the surface (same faces as the UVs).
            original: (B, H, W, 3) the object's own colours at the hits when the caller has them (edit), else
                they are sampled from `base` (or NEUTRAL grey).
        """
        uv = self.pixel_uv(hits.rast)
        b = uv.shape[0]
        w = sample_texture(self.weight_tex.expand(b, *self.weight_tex.shape[1:]).contiguous(), uv.contiguous())
        if original is None:
            if self.base_tex is not None:
                original = sample_texture(self.base_tex.expand(b, *self.base_tex.shape[1:]).contiguous(),
                                          uv.contiguous())
            else:
                original = torch.full_like(image, NEUTRAL)
        w = torch.where(hits.mask[..., None], w, torch.ones_like(w))   # off the surface: the background as is
        return w * image + (1 - w) * original.to(image.dtype)

    def blend(self, new: np.ndarray) -> np.ndarray:
        """The output texture: `new` (baked at the weight map's size) blended into the input by the weight; texels
        where the weight is 0 are copied from the input (bit-identical). Without an input: RGBA, alpha = weight,
        exactly 0 outside.

        Args:
            new: (H, W, ≥3) float32 bake of the field.
        """
        w = self.weight[..., None]
        inside = w > 0
        if self.base is None:
            rgb = np.where(inside, new[..., :3], np.float32(0.0))
            return np.ascontiguousarray(np.concatenate([rgb, w], axis=2), dtype=np.float32)
        out = self.base.astype(np.float32, copy=True)
        mixed = w * new[..., :3] + (1 - w) * out[..., :3]
        out[..., :3] = np.where(inside, mixed, out[..., :3])
        return out

    def aimed(self, ranges: OrbitRanges, mesh_n: Mesh) -> OrbitRanges:
        """Orbit ranges that look at the region: centred on the direction its faces face on average (area-weighted
        unit normals of the faces whose UV centroid lies on the region), `AIM_SPREAD` degrees around it; the job's
        own ranges when the region faces every way (a band, a whole side and its back)."""
        h, w = self.weight.shape
        centroid = self.uvs.mean(1)
        col = np.clip((centroid[:, 0] * w).astype(int), 0, w - 1)
        row = np.clip(((1 - centroid[:, 1]) * h).astype(int), 0, h - 1)
        faces = self.weight[row, col] >= 1
        tri = mesh_n.vertices[mesh_n.faces[faces]].astype(np.float64)
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).sum(0)    # area-weighted
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        if area <= 0 or np.linalg.norm(normal) / (2 * area) < AIM_MIN_ALIGNMENT:
            return ranges
        n = normal / np.linalg.norm(normal)
        el = float(np.degrees(np.arcsin(np.clip(n[2], -1, 1))))
        az = float(np.degrees(np.arctan2(n[0], -n[1])))
        lo, hi = max(el - AIM_SPREAD, -80.0), min(el + AIM_SPREAD, 85.0)
        azimuth = ranges.azimuth if abs(el) > 60 else (az - 2 * AIM_SPREAD, az + 2 * AIM_SPREAD)
        return dataclasses.replace(ranges, elevation=(min(lo, hi - 5), hi), azimuth=azimuth)

    def stats(self) -> dict:
        """Texel counts of the region, its border and what is kept (for job.json)."""
        return {"region_texels": int((self.weight >= 1).sum()),
                "border_texels": int(((self.weight > 0) & (self.weight < 1)).sum()),
                "kept_texels": int((self.weight == 0).sum())}


class RegionInput:
    """A job's checked region mask, before the job knows its device: which array, and which sent faces were kept.

    Args:
        arrays: the job's arrays as sent.
        texture_shape: the input texture's shape, or None.
        geometry: the job moves the surface (refused with a region).
    """

    def __init__(self, arrays: dict, texture_shape: tuple[int, ...] | None, geometry: bool = False):
        from csd_blender.protocol.params import check_mask_arrays

        from ...mesh.validate import degenerate_faces

        self.name = check_mask_arrays(arrays, texture_shape, geometry)
        self.arrays = {self.name: np.array(arrays[self.name], copy=True)} if self.name else {}
        faces = np.asarray(arrays["faces"], dtype=np.int64)
        self.keep = ~degenerate_faces(np.asarray(arrays["vertices"], dtype=np.float32), faces)
        if self.name == "face_mask" and not self.arrays[self.name].astype(bool)[self.keep].any():
            from csd_blender.protocol.errors import ErrorCode, ProtocolError

            raise ProtocolError(ErrorCode.BAD_MASK, "face_mask: every selected face has zero area",
                                field="face_mask")

    def __bool__(self) -> bool:
        return self.name is not None

    def region(self, uvs: np.ndarray, shape: tuple[int, int], border: int, base: np.ndarray | None,
               device) -> Region:
        """The Region on `uvs` (of the kept faces) at texture size `shape`."""
        return Region.from_mask(self.arrays, self.name, uvs, self.keep, shape, border, base, device)
