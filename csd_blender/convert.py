"""Scene data <-> wire arrays: meshes, cameras and images (the add-on's only bpy data adapter).

The pure maths (camera intrinsics, projection, colour transfer, row flips, UV scatter) takes plain numbers
and numpy arrays so it is tested without Blender; the functions that read or write Blender data take bpy
objects as arguments and import nothing from bpy at module level.

Conventions (docs/INTERFACES.md): Z-up world; cameras look down local -Z with +Y up and c2w is matrix_world
with its scale removed; pixel intrinsics have the centre of the top-left pixel at (0, 0), x right, y down;
images on the wire are (H, W, C) float32 sRGB, top row first.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- cameras
def render_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """The rendered image size in pixels, as Blender computes it (integer division by 100).

    Args:
        resolution_x, resolution_y: scene.render.resolution_x / _y.
        percentage: scene.render.resolution_percentage.
    """
    return resolution_x * percentage // 100, resolution_y * percentage // 100


def pixel_intrinsics(lens: float, sensor_width: float, sensor_height: float, sensor_fit: str,
                     shift_x: float, shift_y: float, width: int, height: int,
                     pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0) -> np.ndarray:
    """Pinhole intrinsics of a perspective Blender camera in our pixel convention.

    Follows Blender's BKE_camera_params_compute_viewplane: the sensor dimension chosen by the fit maps to
    the image width (HORIZONTAL) or to height * pixel aspect (VERTICAL); AUTO fits the larger side and then
    always uses sensor_width. Shifts are in units of that fitted dimension.

    Args:
        lens: focal length in mm.
        sensor_width, sensor_height: sensor size in mm.
        sensor_fit: "AUTO", "HORIZONTAL" or "VERTICAL".
        shift_x, shift_y: lens shift (fractions of the fitted dimension).
        width, height: rendered size in pixels (resolution percentage already applied).
        pixel_aspect_x, pixel_aspect_y: scene.render.pixel_aspect_x / _y.

    Returns:
        (6,) float64: fx, fy, cx, cy, width, height; the centre of the top-left pixel is (0, 0), y down.
    """
    if sensor_fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
        raise ValueError(f"sensor_fit: must be AUTO, HORIZONTAL or VERTICAL, got {sensor_fit!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"render size must be positive, got {width}x{height}")
    if lens <= 0:
        raise ValueError(f"lens: must be > 0 mm, got {lens}")
    fit = sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if pixel_aspect_x * width >= pixel_aspect_y * height else "VERTICAL"
        sensor = sensor_width
    else:
        sensor = sensor_width if fit == "HORIZONTAL" else sensor_height
    ycor = pixel_aspect_y / pixel_aspect_x
    view_fac = width if fit == "HORIZONTAL" else ycor * height
    fx = lens / sensor * view_fac
    fy = fx / ycor
    cx = (width - 1) / 2.0 - shift_x * view_fac
    cy = (height - 1) / 2.0 + shift_y * view_fac / ycor
    return np.array([fx, fy, cx, cy, width, height], dtype=np.float64)


def remove_scale(matrix: np.ndarray) -> np.ndarray:
    """A 4x4 rigid transform from an object matrix: rotation columns normalised, translation kept.

    Args:
        matrix: (4,4) object-to-world matrix (possibly scaled).
    """
    m = np.array(matrix, dtype=np.float64).reshape(4, 4)
    norms = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(norms < 1e-12):
        raise ValueError("camera matrix has a zero scale axis; cannot build a camera-to-world transform")
    out = np.eye(4)
    out[:3, :3] = m[:3, :3] / norms
    out[:3, 3] = m[:3, 3]
    return out


def project_points(c2w: np.ndarray, intrinsics: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Project world points with our convention (looks down -Z, +Y up, pixel y down).

    Args:
        c2w: (4,4) camera-to-world.
        intrinsics: (6,) fx, fy, cx, cy, width, height.
        points: (N,3) world positions in front of the camera.

    Returns:
        (N,2) pixel coordinates (x right, y down, top-left pixel centre at (0, 0)).
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics[:4])
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    p = np.asarray(points, dtype=np.float64)
    cam = p @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -cam[:, 2]
    return np.stack([fx * cam[:, 0] / depth + cx, -fy * cam[:, 1] / depth + cy], axis=1)


def normalized_view_to_pixels(view: np.ndarray, width: int, height: int) -> np.ndarray:
    """bpy_extras world_to_camera_view coordinates ((0,0) bottom-left corner, (1,1) top-right) to our pixels.

    Args:
        view: (N,2) or (N,3) normalised frame coordinates.
        width, height: rendered size in pixels.
    """
    v = np.asarray(view, dtype=np.float64)
    return np.stack([v[:, 0] * width - 0.5, (1.0 - v[:, 1]) * height - 0.5], axis=1)


def camera_arrays(cameras: list, scene) -> tuple[np.ndarray, np.ndarray]:
    """Camera objects to the wire's rig arrays.

    Args:
        cameras: bpy camera objects (perspective).
        scene: the bpy scene (render resolution, percentage and pixel aspect).

    Returns:
        c2w (N,4,4) float32 and intrinsics (N,6) float32.
    """
    r = scene.render
    width, height = render_size(r.resolution_x, r.resolution_y, r.resolution_percentage)
    c2w, intr = [], []
    for obj in cameras:
        cam = obj.data
        if cam.type != "PERSP":
            raise ValueError(f"camera {obj.name!r}: only perspective cameras are supported, got {cam.type}")
        intr.append(pixel_intrinsics(cam.lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit,
                                     cam.shift_x, cam.shift_y, width, height,
                                     r.pixel_aspect_x, r.pixel_aspect_y))
        c2w.append(remove_scale(np.array(obj.matrix_world)))
    return (np.asarray(c2w, dtype=np.float32).reshape(-1, 4, 4),
            np.asarray(intr, dtype=np.float32).reshape(-1, 6))


# ---------------------------------------------------------------------------------------------- images
def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding (float32 in, float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding (float32 in, float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(np.maximum(x, 0), 1 / 2.4) - 0.055
                    ).astype(np.float32)


def to_blender_pixels(image: np.ndarray, srgb: bool = True) -> np.ndarray:
    """A wire image to the flat buffer of a float Blender image (RGBA, bottom row first, scene linear).

    Args:
        image: (H,W,C) float32, C in {1,3,4}, top row first, sRGB-encoded when `srgb`.
        srgb: decode sRGB colour channels to linear (Blender float images are scene linear).

    Returns:
        (H*W*4,) float32.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"image: expected (H, W, 1|3|4), got shape {img.shape}")
    h, w, c = img.shape
    rgba = np.ones((h, w, 4), dtype=np.float32)
    rgba[..., :3] = img[..., :3] if c >= 3 else img[..., :1]
    if c == 4:
        rgba[..., 3] = img[..., 3]
    if srgb:
        rgba[..., :3] = srgb_to_linear(rgba[..., :3])
    return np.ascontiguousarray(rgba[::-1]).ravel()


def from_blender_pixels(flat: np.ndarray, width: int, height: int, srgb: bool = True) -> np.ndarray:
    """The inverse of to_blender_pixels: (H,W,4) float32, top row first, sRGB-encoded when `srgb`.

    Args:
        flat: (H*W*4,) float32 as Image.pixels holds it.
        width, height: the image size.
        srgb: encode the colour channels to sRGB.
    """
    rgba = np.asarray(flat, dtype=np.float32).reshape(height, width, 4)[::-1].copy()
    if srgb:
        rgba[..., :3] = linear_to_srgb(rgba[..., :3])
    return rgba


def image_from_array(name: str, image: np.ndarray, *, srgb: bool = True, pack: bool = True):
    """A new float RGBA Blender image holding `image` (packed so a saved file keeps it).

    Args:
        name: datablock name (Blender may add a .001 suffix).
        image: (H,W,C) float32, top row first.
        srgb: the data is sRGB-encoded colour (albedo) rather than linear data.
        pack: pack the pixels into the .blend.
    """
    import bpy

    h, w = image.shape[:2]
    img = bpy.data.images.new(name, width=w, height=h, alpha=True, float_buffer=True)
    try:
        img.pixels.foreach_set(to_blender_pixels(image, srgb))
        img.update()
        if pack:
            img.pack()
    except Exception:
        bpy.data.images.remove(img)
        raise
    return img


def array_from_image(img, *, srgb: bool = True) -> np.ndarray:
    """A Blender image as (H,W,4) float32, top row first (sRGB-encoded when `srgb`).

    Args:
        img: a bpy Image with pixels.
        srgb: encode linear float pixels to sRGB.
    """
    w, h = img.size
    flat = np.empty(w * h * 4, dtype=np.float32)
    img.pixels.foreach_get(flat)
    return from_blender_pixels(flat, w, h, srgb and img.is_float)


# ---------------------------------------------------------------------------------------------- meshes
@dataclass
class MeshArrays:
    """A triangulated, evaluated mesh in world space, ready for the wire.

    Args:
        vertices: (V,3) float32 world positions.
        faces: (F,3) int32 vertex indices (Blender loop triangles).
        uvs: (F,3,2) float32 per-corner UVs of the active UV map, or None.
        uv_name: name of that UV map, or None.
        tri_loops: (F,3) int64 loop index of each triangle corner (to write UVs back).
        maps_to_original: the evaluated mesh has the same loops and triangles as the object's own mesh, so
            per-corner results can be written to it.
        dropped: degenerate triangles left out (faces, uvs and tri_loops cover the others).
        n_loops: loops of the object's own mesh when it was read (to notice edits made during a job).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None
    uv_name: str | None
    tri_loops: np.ndarray
    maps_to_original: bool
    dropped: int = 0
    n_loops: int = 0


def triangle_loops(mesh) -> np.ndarray:
    """(F,3) int64 loop indices of a mesh's loop triangles.

    Args:
        mesh: a bpy Mesh.
    """
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("loops", tris)
    return tris.reshape(-1, 3)


def corner_uvs(loop_uvs: np.ndarray, tri_loops: np.ndarray) -> np.ndarray:
    """Per-loop UVs (L,2) gathered to per-triangle-corner UVs (F,3,2) float32.

    Args:
        loop_uvs: (L,2) UVs of the mesh's loops.
        tri_loops: (F,3) loop index per triangle corner.
    """
    return np.asarray(loop_uvs, dtype=np.float32)[np.asarray(tri_loops)].astype(np.float32)


def loop_uvs_from_corners(uvs: np.ndarray, tri_loops: np.ndarray, n_loops: int) -> tuple[np.ndarray, int]:
    """Scatter per-corner UVs back to loops.

    A polygon split into several triangles shares loops between them; when the corners of one loop disagree
    (a UV seam cut through the polygon) the last triangle wins and the loop is counted as a conflict.

    Args:
        uvs: (F,3,2) per-corner UVs.
        tri_loops: (F,3) loop index per corner.
        n_loops: number of loops of the mesh.

    Returns:
        ((L,2) float32 UVs per loop, number of loops whose corners disagreed by more than 1e-5).
    """
    uvs = np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
    loops = np.asarray(tri_loops, dtype=np.int64).reshape(-1)
    if uvs.shape[0] != loops.shape[0]:
        raise ValueError(f"uvs: {uvs.shape[0] // 3} triangles, but the mesh has {loops.shape[0] // 3}")
    out = np.zeros((n_loops, 2), dtype=np.float32)
    out[loops] = uvs
    conflicts = np.abs(out[loops] - uvs).max(axis=1) > 1e-5
    return out, int(np.unique(loops[conflicts]).size)


def degenerate_triangles(vertices: np.ndarray, faces: np.ndarray, rel_eps: float = 1e-12) -> np.ndarray:
    """(F,) bool: triangles with a repeated vertex or (near) zero area relative to the mesh extent.

    The engine drops zero-area triangles (area test at 1e-14 of the squared extent); dropping them here with a
    looser bound first keeps the returned per-corner arrays aligned with the triangles that were sent.

    Args:
        vertices: (V,3) positions.
        faces: (F,3) vertex indices.
        rel_eps: area threshold as a fraction of the squared largest extent.
    """
    faces = np.asarray(faces)
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    v = np.asarray(vertices, dtype=np.float64)
    if len(v) == 0 or len(faces) == 0:
        return repeated
    tri = v[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    extent = float(np.ptp(v, axis=0).max())
    return repeated | (area2 <= extent * extent * rel_eps)


def render_uv_name(mesh) -> str | None:
    """The UV map a mesh renders with (its active render UV map; the first one when none is marked), or None.

    Args:
        mesh: a bpy Mesh.
    """
    layers = list(mesh.uv_layers)
    if not layers:
        return None
    return next((layer.name for layer in layers if layer.active_render), layers[0].name)


def mesh_arrays(obj, depsgraph, uv_name: str | None = None, unwrap: bool = False) -> MeshArrays:
    """The evaluated (modifiers applied) mesh of `obj` in world space, triangulated.

    Args:
        obj: a bpy mesh object (the original, not the evaluated one).
        depsgraph: the evaluated depsgraph (context.evaluated_depsgraph_get()).
        uv_name: the UV map to send; None: the active render UV map (none when the mesh has no UV map).
        unwrap: send no UVs, so the engine unwraps the mesh into a new UV map.

    Raises:
        ValueError: `uv_name` is not a UV map of the object.
    """
    if obj.type != "MESH":
        raise ValueError(f"{obj.name!r} is a {obj.type.lower()}, not a mesh")
    obj_eval = obj.evaluated_get(depsgraph)
    mesh = obj_eval.to_mesh()
    try:
        n_vertices = len(mesh.vertices)
        co = np.empty(n_vertices * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(obj_eval.matrix_world, dtype=np.float64)
        world = co.reshape(-1, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
        mesh.calc_loop_triangles()
        faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
        tri_loops = triangle_loops(mesh)
        uvs = None
        if uv_name is not None and mesh.uv_layers.get(uv_name) is None:
            raise ValueError(f"{obj.name!r} has no UV map {uv_name!r} (it has: "
                             f"{', '.join(layer.name for layer in mesh.uv_layers) or 'none'})")
        uv_name = None if unwrap else (uv_name or render_uv_name(mesh))
        if uv_name is not None:
            loop_uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            mesh.uv_layers[uv_name].data.foreach_get("uv", loop_uvs)
            uvs = corner_uvs(loop_uvs.reshape(-1, 2), tri_loops)
        n_loops = len(mesh.loops)
    finally:
        obj_eval.to_mesh_clear()
    original = obj.data
    maps = len(original.loops) == n_loops and len(original.vertices) == n_vertices
    if maps:
        orig_loops = triangle_loops(original)
        maps = orig_loops.shape == tri_loops.shape and bool(np.array_equal(orig_loops, tri_loops))
    vertices = world.astype(np.float32)
    faces = faces.reshape(-1, 3)
    keep = ~degenerate_triangles(vertices, faces)
    if not keep.all():
        log.info("%r: not sending %d degenerate triangles", obj.name, int((~keep).sum()))
        faces, tri_loops = faces[keep], tri_loops[keep]
        uvs = None if uvs is None else uvs[keep]
    return MeshArrays(vertices, np.ascontiguousarray(faces), uvs, uv_name, tri_loops, maps,
                      int((~keep).sum()), len(original.loops))


def write_uv_layer(mesh, name: str, uvs: np.ndarray, tri_loops: np.ndarray):
    """Add a UV map `name` to `mesh` filled from per-corner UVs; return the new layer.

    Args:
        mesh: the object's bpy Mesh (whose loop triangles match `tri_loops`).
        name: new UV map name (Blender may add a suffix if it exists).
        uvs: (F,3,2) per-corner UVs.
        tri_loops: (F,3) loop index of each corner.
    """
    loop_uvs, conflicts = loop_uvs_from_corners(uvs, tri_loops, len(mesh.loops))
    if conflicts:
        log.warning("%d loops of %r got different UVs from the triangles that share them (seam inside a "
                    "polygon); the last triangle's UVs were kept", conflicts, mesh.name)
    layer = mesh.uv_layers.new(name=name, do_init=False)
    if layer is None:
        raise ValueError(f"mesh {mesh.name!r} cannot take another UV map (Blender allows 8)")
    layer.data.foreach_set("uv", loop_uvs.ravel())
    mesh.update()
    return layer
