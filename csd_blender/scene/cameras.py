"""Cameras -> wire arrays (c2w, pixel intrinsics), the render size, and the camera rig's geometry.

The maths takes plain numbers and numpy arrays, so it is tested without Blender; `camera_arrays` takes bpy
objects. Conventions (docs/INTERFACES.md): Z-up world; cameras look down local -Z with +Y up and c2w is
matrix_world with its scale removed; pixel intrinsics have the centre of the top-left pixel at (0, 0), x right,
y down.
"""
from __future__ import annotations

import math

import numpy as np


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


# ---------------------------------------------------------------------------------------------- camera rig
RIG_COLLECTION = "CSD Camera Rig"
RIG_SENSOR_MM = 36.0


def rig_cameras(settings) -> list:
    """The perspective cameras of the chosen camera collection (sorted by name)."""
    coll = settings.camera_collection
    if coll is None:
        return []
    return sorted((o for o in coll.all_objects if o.type == "CAMERA" and o.data.type == "PERSP"),
                  key=lambda o: o.name)


def selection_bounds(objects) -> tuple[np.ndarray, float]:
    """World-space centre and bounding radius of the objects' bounding boxes.

    Args:
        objects: bpy objects (any type with a bound_box).
    """
    corners = []
    for obj in objects:
        m = np.array(obj.matrix_world, dtype=np.float64)
        box = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
        corners.append(box @ m[:3, :3].T + m[:3, 3])
    pts = np.concatenate(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    return centre, radius


def orbit_positions(centre: np.ndarray, distance: float, elevation: float, count: int) -> np.ndarray:
    """(count, 3) camera positions evenly spaced in azimuth on a circle at `elevation` (radians).

    Args:
        centre: (3,) orbit centre.
        distance: orbit radius.
        elevation: angle above the horizontal plane.
        count: number of cameras.
    """
    az = np.arange(count) * (2 * math.pi / count) - math.pi / 2     # first camera looks from -Y (front)
    ring = np.stack([np.cos(az) * math.cos(elevation), np.sin(az) * math.cos(elevation),
                     np.full(count, math.sin(elevation))], axis=1)
    return np.asarray(centre) + distance * ring


def add_camera_rig(scene, targets: list, *, count: int, elevation: float, distance_factor: float, lens: float):
    """Cameras on an orbit around `targets`, in a new collection linked to the scene; return (collection, distance).

    Args:
        scene: the scene (its render size decides the field of view that must hold the objects).
        targets: the objects to frame.
        count: number of cameras.
        elevation: orbit elevation in radians.
        distance_factor: orbit radius in multiples of the targets' bounding radius (at least far enough to
            frame them).
        lens: focal length in mm (36 mm sensor, AUTO fit).
    """
    import bpy
    from mathutils import Vector

    centre, radius = selection_bounds(targets)
    r = scene.render
    w, h = render_size(r.resolution_x, r.resolution_y, r.resolution_percentage)
    # AUTO sensor fit: the sensor width spans the longer side; the object must fit the shorter one.
    half_fov = math.atan(RIG_SENSOR_MM / 2 * min(w, h) / max(w, h) / lens)
    distance = max(distance_factor * radius, radius / math.sin(half_fov) * 1.05)
    coll = bpy.data.collections.new(RIG_COLLECTION)
    scene.collection.children.link(coll)
    for i, pos in enumerate(orbit_positions(centre, distance, elevation, count)):
        cam = bpy.data.cameras.new(f"CSD Camera {i + 1:02d}")
        cam.lens = lens
        cam.sensor_width = RIG_SENSOR_MM
        cam.sensor_fit = "AUTO"
        cam.clip_start = max(1e-3, (distance - radius) * 0.1)
        cam.clip_end = distance + 4 * radius
        obj = bpy.data.objects.new(cam.name, cam)
        obj.location = Vector(pos)
        direction = Vector(centre) - Vector(pos)
        obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
        coll.objects.link(obj)
    return coll, distance
