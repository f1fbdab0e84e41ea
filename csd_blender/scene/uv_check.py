"""Is a UV map fit for one texture? Faces outside the 0-1 square (UDIM tiles) and stacked faces (numpy; bpy only
through the objects `uv_warnings` is given).

One square texture can show each part of the surface differently only when every face has its own place in
0-1. UVs outside it (UDIM tiles, tiling) wrap onto the same texels; overlapping faces (mirrored or stacked
islands) share texels. Both "succeed" but paint several places with one colour, so the add-on warns first.

Overlap is measured by rasterising the UV triangles at texel centres (`resolution`²) and counting texels that
more than one face covers; an inside test strictly inside each edge keeps faces that only share an edge apart.
Before a job, `check_mesh_uvs` refuses such UVs until the user chose (operators.uv_choice is the dialog).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mesh import MeshArrays, mesh_arrays

OUTSIDE_EPS = 1e-3          # UVs this far past 0 or 1 still count as inside (seam padding, float noise)
OUTSIDE_LIMIT = 0.01        # warn when more than this share of the UV area lies outside 0-1
OVERLAP_LIMIT = 0.01        # warn when more than this share of the covered texels is shared by several faces
MAX_CANDIDATES = 4_000_000  # texel tests per rasterisation chunk (memory bound)


@dataclass
class UVReport:
    """How a UV map fits one 0-1 texture.

    Args:
        uv_name: the UV map's name.
        outside: share of the UV area (triangles weighted by their UV area) with a corner outside 0-1.
        tiles: UDIM tile numbers (1001 + u + 10 v) the triangles' corners fall in, sorted.
        overlap: share of the covered texels that more than one triangle covers.
        coverage: share of the texture's texels covered by some triangle.
    """

    uv_name: str
    outside: float = 0.0
    tiles: list = field(default_factory=list)
    overlap: float = 0.0
    coverage: float = 0.0

    def problems(self) -> list[str]:
        """One sentence per problem (empty when the UV map is fit for one texture)."""
        out = []
        if self.outside > OUTSIDE_LIMIT:
            other = [t for t in self.tiles if t != 1001]
            udim = other and all(1001 <= t <= 1100 for t in self.tiles)
            where = f"UDIM tiles {', '.join(map(str, self.tiles))}" if udim else "tiles beyond 0-1"
            out.append(f"{self.outside:.0%} of the UV area of {self.uv_name!r} lies outside the 0-1 square "
                       f"({where}); those faces would repeat other faces' texels")
        if self.overlap > OVERLAP_LIMIT:
            out.append(f"{self.overlap:.0%} of the texels {self.uv_name!r} uses are shared by overlapping faces "
                       "(stacked or mirrored islands); they would all get the same colours")
        return out


def _triangle_areas(uvs: np.ndarray) -> np.ndarray:
    e1, e2 = uvs[:, 1] - uvs[:, 0], uvs[:, 2] - uvs[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def coverage_counts(uvs: np.ndarray, resolution: int) -> np.ndarray:
    """(resolution, resolution) int32: how many triangles cover each texel centre (row 0 = v near 0).

    Args:
        uvs: (F, 3, 2) per-corner UVs; parts outside 0-1 are ignored.
        resolution: texels per side.
    """
    r = int(resolution)
    counts = np.zeros(r * r, dtype=np.int64)
    p = np.asarray(uvs, dtype=np.float64) * r - 0.5              # texel centre i sits at i
    area2 = 2.0 * _triangle_areas(p)
    keep = np.abs(area2) > 1e-12
    p, area2 = p[keep], area2[keep]
    lo = np.clip(np.ceil(p.min(axis=1)), 0, r - 1).astype(np.int64)      # (F, 2) first texel in the bbox
    hi = np.clip(np.floor(p.max(axis=1)), -1, r - 1).astype(np.int64)
    size = hi - lo + 1                                                    # texels per axis (<= 0: none)
    valid = (size > 0).all(axis=1)
    p, area2, lo, size = p[valid], area2[valid], lo[valid], size[valid]
    if not len(p):
        return counts.reshape(r, r).astype(np.int32)
    # bucket the triangles by the power of two that holds their bbox, so each bucket is one dense array op
    bucket = np.maximum(np.ceil(np.log2(np.maximum(size, 1))), 0).astype(np.int64)
    sign = np.sign(area2)[:, None]
    for bx, by in {tuple(b) for b in bucket.tolist()}:
        sel = np.nonzero((bucket[:, 0] == bx) & (bucket[:, 1] == by))[0]
        w, h = 1 << bx, 1 << by
        oy, ox = np.mgrid[0:h, 0:w]
        offsets = np.stack([ox.ravel(), oy.ravel()], axis=1)             # (w*h, 2)
        chunk = max(1, MAX_CANDIDATES // (w * h))
        for start in range(0, len(sel), chunk):
            idx = sel[start:start + chunk]
            pts = lo[idx][:, None, :] + offsets[None]                     # (n, w*h, 2) texel coordinates
            tri = p[idx]
            inside = np.ones(pts.shape[:2], dtype=bool)
            for k in range(3):
                a, b = tri[:, k][:, None, :], tri[:, (k + 1) % 3][:, None, :]
                edge = (b[..., 0] - a[..., 0]) * (pts[..., 1] - a[..., 1]) - \
                       (b[..., 1] - a[..., 1]) * (pts[..., 0] - a[..., 0])
                inside &= edge * sign[idx] > 1e-9 * np.abs(area2[idx])[:, None]
            inside &= (pts < lo[idx][:, None, :] + size[idx][:, None, :]).all(axis=2)
            inside &= (pts < r).all(axis=2)
            hit = pts[inside]
            counts += np.bincount(hit[:, 1] * r + hit[:, 0], minlength=r * r)
    return counts.reshape(r, r).astype(np.int32)


def uv_report(uvs: np.ndarray, uv_name: str, resolution: int = 256) -> UVReport:
    """Measure how `uvs` fit one 0-1 texture.

    Args:
        uvs: (F, 3, 2) float per-corner UVs.
        uv_name: the UV map's name (for the messages).
        resolution: texels per side for the overlap measure (lowered for huge UV layouts to bound the work).
    """
    uvs = np.asarray(uvs, dtype=np.float64).reshape(-1, 3, 2)
    if not len(uvs):
        return UVReport(uv_name)
    areas = np.abs(_triangle_areas(uvs))
    total = float(areas.sum())
    out_tri = ((uvs < -OUTSIDE_EPS) | (uvs > 1 + OUTSIDE_EPS)).any(axis=(1, 2))
    outside = float(areas[out_tri].sum() / total) if total > 0 else float(out_tri.mean())
    # tiles the corners fall in, each corner nudged towards its triangle's centre so a corner on a tile border
    # (u = 1.0) counts for the tile its triangle lies in
    centre = uvs.mean(axis=1, keepdims=True)
    cells = np.floor(uvs + (centre - uvs) * 1e-4).astype(np.int64).reshape(-1, 2)
    tiles = np.unique(1001 + cells[:, 0] + 10 * cells[:, 1]).tolist()
    # bound the rasterisation work: about 4x the summed bbox areas in texels
    extent = np.clip(uvs.max(axis=1), 0, 1) - np.clip(uvs.min(axis=1), 0, 1)
    res = resolution
    while res > 16 and float(((extent * res + 2).prod(axis=1)).sum()) > 1e7:
        res //= 2
    counts = coverage_counts(uvs, res)
    covered = int((counts > 0).sum())
    overlap = float((counts > 1).sum() / covered) if covered else 0.0
    return UVReport(uv_name, outside=outside, tiles=tiles, overlap=overlap, coverage=covered / (res * res))


def summary(reports: dict[str, UVReport]) -> list[str]:
    """Warning lines for several objects: "Cube: <problem>" for each problem found.

    Args:
        reports: object name -> its UV report.
    """
    return [f"{name}: {problem}" for name, report in reports.items() for problem in report.problems()]


# ---------------------------------------------------------------------------------------------- before a job
MODIFIER_ONLY_KEEP = ("Its modifiers (Mirror, Subdivision, …) change its faces, so a new unwrap cannot be written "
                      "back to the object: only 'Use These UVs' fits (mirrored halves share texels, so they get "
                      "the same texture).")


class UVProblem(ValueError):
    """The chosen UV map does not fit one texture and the user has not decided what to do."""


def job_uv_source(settings, uv_action: str) -> tuple[str | None, bool]:
    """(UV map name or None for the render UV map, unwrap) for a job from the panel settings and the choice.

    Args:
        settings: Scene.csd (uv_map, uv_unwrap).
        uv_action: "ASK", "KEEP" or "UNWRAP".
    """
    unwrap = bool(settings.uv_unwrap) or uv_action == "UNWRAP"
    return (settings.uv_map.strip() or None), unwrap


def check_mesh_uvs(obj_name: str, mesh_info: MeshArrays, uv_action: str) -> None:
    """Raise UVProblem when the UVs about to be sent do not fit one texture and the choice is still "ASK".

    Args:
        obj_name: the object (for the message).
        mesh_info: what mesh_arrays read (uvs None: the engine unwraps, nothing to check).
        uv_action: the operator's choice.
    """
    if uv_action != "ASK" or mesh_info.uvs is None:
        return
    problems = uv_report(mesh_info.uvs, mesh_info.uv_name or "").problems()
    if problems and not mesh_info.maps_to_original:
        raise UVProblem(f"{obj_name}: {' '.join(problems)}. {MODIFIER_ONLY_KEEP} Choose 'Use These UVs' "
                        "(uv_action='KEEP'), or apply the modifiers and unwrap")
    if problems:
        raise UVProblem(f"{obj_name}: {' '.join(problems)}. Choose 'Unwrap New UV Map' (uv_action='UNWRAP') "
                        "or 'Use These UVs' (uv_action='KEEP')")


def uv_warnings(context, objects) -> list[str]:
    """The UV problems of `objects` for the current settings, "Name: problem" per line (empty: all fit).

    Args:
        objects: mesh objects about to be textured.
    """
    settings = context.scene.csd
    uv_name, unwrap = job_uv_source(settings, "ASK")
    if unwrap:
        return []
    depsgraph = context.evaluated_depsgraph_get()
    reports = {}
    modifier_bound = []
    for obj in objects:
        try:
            info = mesh_arrays(obj, depsgraph, uv_name=uv_name)
        except ValueError:
            continue                       # prepare() reports it with the job's other checks
        if info.uvs is not None:
            reports[obj.name] = uv_report(info.uvs, info.uv_name or "")
            if not info.maps_to_original and reports[obj.name].problems():
                modifier_bound.append(obj.name)
    lines = summary(reports)
    if lines and modifier_bound:
        lines.append(f"{', '.join(modifier_bound)}: {MODIFIER_ONLY_KEEP}")
    return lines
