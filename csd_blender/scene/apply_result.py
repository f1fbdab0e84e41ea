"""Put a finished texture job into the scene without losing the file's layout.

Each material slot gets a copy of its own material with Base Color driven by the new image, in the same slot,
so face material indices never change (result_materials); the result is recorded in the object's Results
list and replaces the previous CSD result unless previous results are kept (results). Nothing is created
before the result is complete; if applying fails half-way, what was created is removed again, so a failed
job leaves the file as it was. The user's materials stay in the file, untouched.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from . import result_image, result_materials, results
from .mesh import MeshArrays, write_uv_layer
from .results import PARAMS_KEY, RESOLVED_KEY

log = logging.getLogger(__name__)

CSD_UV_NAME = "CSD_UV"


@dataclass
class AppliedTexture:
    """What apply_texture created."""

    image: object
    materials: list = field(default_factory=list)     # one per slot, slot order
    uv_name: str = ""
    new_uv_map: bool = False
    result_id: str = ""


@dataclass
class StoreOptions:
    """How results are kept (Scene.csd settings).

    Args:
        keep_previous: keep earlier results as variants instead of replacing them.
        depth: 8 or 16 bits per channel in the texture PNG.
        pack: pack the PNG into the .blend; False saves it to csd_textures/ beside the .blend.
    """

    keep_previous: bool = False
    depth: int = 8
    pack: bool = True

    @classmethod
    def from_settings(cls, settings) -> StoreOptions:
        """The options chosen in the texture panel.

        Args:
            settings: Scene.csd (keep_previous_results, texture_depth, texture_storage).
        """
        return cls(keep_previous=bool(settings.keep_previous_results), depth=int(settings.texture_depth),
                   pack=settings.texture_storage == "PACK")


def check_texture(texture: np.ndarray, uvs: np.ndarray | None, n_faces: int) -> None:
    """Raise ValueError when the engine's arrays do not fit the mesh that was sent.

    Args:
        texture: (S,S,3|4) float32 in [0, 1].
        uvs: (F,3,2) float32 or None.
        n_faces: triangles sent.
    """
    if texture.ndim != 3 or texture.shape[2] not in (3, 4) or texture.shape[0] < 1 or texture.shape[1] < 1:
        raise ValueError(f"texture: expected (S, S, 3|4), got shape {texture.shape}")
    if not np.isfinite(texture).all():
        raise ValueError("texture: contains NaN or infinite values")
    if uvs is not None and uvs.shape != (n_faces, 3, 2):
        raise ValueError(f"uvs: expected ({n_faces}, 3, 2) for the {n_faces} triangles sent, got {uvs.shape}")


def apply_texture(obj, mesh_info: MeshArrays, texture: np.ndarray, uvs: np.ndarray | None,
                  meta: dict, params_json: str, name: str = "CSD Texture",
                  options: StoreOptions | None = None, task: str = "texture") -> AppliedTexture:
    """Store the texture, give every slot a textured copy of its material, record and apply the result.

    Args:
        obj: the mesh object the job was run on.
        mesh_info: what mesh.mesh_arrays sent (UV map name, loop mapping).
        texture: (S,S,3|4) float32, top row first, sRGB.
        uvs: (F,3,2) float32 per-corner UVs the texture was baked for.
        meta: the result's meta ("unwrapped", "params").
        params_json: the request's parameters as stored for reproduction (props.job_params.dumps_params).
        name: base name of the image and materials.
        options: how to keep results (default: replace the previous result, 8-bit PNG, packed).
        task: the protocol task that made the texture.

    Raises:
        ValueError: the result does not fit the mesh, or cannot be stored (nothing is left behind).
    """
    import bpy

    options = options or StoreOptions()
    unwrapped = bool(meta.get("unwrapped", mesh_info.uv_name is None))
    # the returned UVs matter only when the engine made them; with the user's UVs the UV map is used as is
    check_texture(texture, uvs if unwrapped else None, mesh_info.faces.shape[0])
    if unwrapped and uvs is None:
        raise ValueError("the engine unwrapped the mesh but returned no uvs")
    if unwrapped and not mesh_info.maps_to_original:
        raise ValueError(f"{obj.name!r}: its modifiers change the topology, so the engine's UV unwrap cannot "
                         "be written back; add a UV map or apply the modifiers")
    resolved = meta.get("params", {}) if isinstance(meta.get("params"), dict) else {}
    mesh = obj.data
    if unwrapped and len(mesh.loops) != mesh_info.n_loops:
        raise ValueError(f"{obj.name!r} was edited while the job ran ({mesh_info.n_loops} corners then, "
                         f"{len(mesh.loops)} now); run the job again")
    result_id = results.new_result_id()
    image = layer = rec = None
    materials: list = []
    intended: list[str] = []
    uv_name = mesh_info.uv_name
    snapshot = results.snapshot_slots(obj)
    had_keys = {k: obj[k] for k in (PARAMS_KEY, RESOLVED_KEY) if k in obj}
    try:
        image = result_image.store_texture(name, texture, depth=options.depth, pack=options.pack)
        image[result_materials.RESULT_KEY] = result_id
        image[PARAMS_KEY] = params_json
        image[RESOLVED_KEY] = json.dumps(resolved, sort_keys=True)
        if unwrapped:
            layer = write_uv_layer(mesh, CSD_UV_NAME, uvs, mesh_info.tri_loops)
            uv_name = layer.name
        sources = results.slot_sources(obj)
        for i, source in enumerate(sources):
            if len(sources) == 1:
                mat_name = name
            else:
                mat_name = f"{name} ({source.name if source is not None else f'slot {i + 1}'})"
            intended.append(mat_name[:63])
            mat = result_materials.result_material(source, intended[-1], image, uv_name, result_id)
            mat[PARAMS_KEY] = params_json
            mat[RESOLVED_KEY] = image[RESOLVED_KEY]
            materials.append(mat)
        rec = results.add_result(obj, image=image, materials=materials, uv_name=uv_name,
                                 params_json=params_json, resolved=resolved, result_id=result_id, task=task)
        results.apply(obj, rec)
        mesh.update()
    except Exception:
        log.exception("applying the texture result failed; removing what was created")
        results.restore_slots(obj, snapshot)
        if rec is not None:
            idx = next(i for i, r in enumerate(obj.csd.results) if r.result_id == result_id)
            obj.csd.results.remove(idx)
            obj.csd.active_result = max(0, min(obj.csd.active_result, len(obj.csd.results) - 1))
        for key in (PARAMS_KEY, RESOLVED_KEY):
            if key in had_keys:
                obj[key] = had_keys[key]
            elif key in obj:
                del obj[key]
        for mat in materials:
            bpy.data.materials.remove(mat)
        if layer is not None:
            mesh.uv_layers.remove(mesh.uv_layers[uv_name])
        if image is not None:
            path = bpy.path.abspath(image.filepath) if image.packed_file is None and image.filepath else ""
            bpy.data.images.remove(image)
            if path and os.path.isfile(path):
                os.remove(path)
        raise
    if not options.keep_previous:
        results.remove_others(obj, rec)
        # the replaced result's names are free again: "CSD x" rather than "CSD x.001" after every run
        for item, wanted in ((image, name), *zip(materials, intended)):
            if item.name != wanted:
                item.name = wanted
    return AppliedTexture(image, materials, uv_name, unwrapped, result_id)
