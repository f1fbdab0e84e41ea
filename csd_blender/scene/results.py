"""The Results list of an object: record a result, apply one (switch the slots), delete one, replace old ones.

A result (props.results.CSDResult on Object.csd.results) owns one material per material slot and one image.
Applying it puts its materials into the slots with the same index, so face material indices never change.
When the mesh is shared by other objects, slots are switched at object level (`slot.link = 'OBJECT'`) so the
other objects keep their materials. Removing a result removes its materials and image once nothing else
uses them; the user's own materials are never removed.
"""
from __future__ import annotations

import logging
import time
import uuid

from .result_materials import source_of

# Custom property names on results (image, material, object).
PARAMS_KEY = "csd_params"             # the request as sent (JSON), seed included: re-running it reproduces
RESOLVED_KEY = "csd_resolved_params"  # the engine's resolved parameters (presets expanded), JSON

log = logging.getLogger(__name__)


def mesh_is_shared(obj) -> bool:
    """Whether other objects use `obj`'s mesh (then slots are switched at object level)."""
    mesh = obj.data
    return mesh.users - (1 if mesh.use_fake_user else 0) > 1


def new_result_id() -> str:
    return uuid.uuid4().hex[:16]


def snapshot_slots(obj) -> list[tuple[str, object, object]]:
    """(link, object-level material, mesh material) per slot: what restore_slots() puts back."""
    out = []
    for i, slot in enumerate(obj.material_slots):
        mesh_mat = obj.data.materials[i] if i < len(obj.data.materials) else None
        obj_mat = slot.material if slot.link == "OBJECT" else None
        out.append((slot.link, obj_mat, mesh_mat))
    return out


def restore_slots(obj, snapshot) -> None:
    """Put back what snapshot_slots() saw (removing slots added since)."""
    mesh = obj.data
    while len(obj.material_slots) > len(snapshot):
        mesh.materials.pop(index=len(mesh.materials) - 1)
    for i, (link, obj_mat, mesh_mat) in enumerate(snapshot):
        slot = obj.material_slots[i]
        mesh.materials[i] = mesh_mat
        if link == "OBJECT":
            slot.link = "OBJECT"
            slot.material = obj_mat
        elif slot.link == "OBJECT":
            slot.material = None
            slot.link = "DATA"


def slot_sources(obj) -> list:
    """The user's material behind each slot (None for empty slots); [None] when the object has no slots."""
    return [source_of(slot.material) for slot in obj.material_slots] or [None]


def assign(obj, index: int, mat, shared: bool) -> None:
    """Put `mat` into slot `index`, at object level when the mesh is shared or the slot already is."""
    while len(obj.material_slots) <= index:
        obj.data.materials.append(None)
    slot = obj.material_slots[index]
    if shared and slot.link != "OBJECT":
        slot.link = "OBJECT"
    slot.material = mat


def result_prompt(params: dict) -> str:
    """What a result is called in the Results list: its prompt; an edit's "edit → target" (it has no `prompt`)."""
    if params.get("prompt"):
        return str(params["prompt"])
    target, was = str(params.get("target_prompt", "")), str(params.get("edit_prompt", ""))
    return f"{was} → {target}" if target and was else target


def add_result(obj, *, image, materials: list, uv_name: str, params_json: str, resolved: dict,
               result_id: str, task: str = "texture"):
    """Append a record to obj.csd.results and make it the active entry; return it.

    Args:
        obj: the object the result is for.
        image: the result image.
        materials: one material per slot, slot order.
        uv_name: the UV map the texture was made for.
        params_json: the request as stored (props.job_params.dumps_params).
        resolved: the engine's resolved parameters (result meta "params").
        result_id: the id the materials and image are tagged with.
        task: the protocol task that made it.
    """
    import json

    params = json.loads(params_json)
    rec = obj.csd.results.add()
    rec.result_id = result_id
    rec.task = task
    rec.prompt = result_prompt(params)
    rec.name = rec.prompt[:60] or task
    rec.model = str(params.get("model", ""))
    seed = int(params.get("seed", 0))
    rec.seed = seed if -2**31 <= seed < 2**31 else 0
    rec.steps = int(resolved.get("steps") or params.get("steps") or 0)
    rec.texture_size = int(resolved.get("texture_size") or params.get("texture_size") or 0)
    rec.date = time.strftime("%Y-%m-%d %H:%M")
    rec.image = image
    rec.uv_name = uv_name
    rec.params_json = params_json
    rec.resolved_json = json.dumps(resolved, sort_keys=True)
    for mat in materials:
        rec.slots.add().material = mat
    obj.csd.active_result = len(obj.csd.results) - 1
    return rec


def stored_task(obj) -> str:
    """The task of the settings stored on `obj` (obj[PARAMS_KEY]): its applied result's, else read from the keys
    ("" when there are none)."""
    import json

    stored = obj.get(PARAMS_KEY)
    if stored is None:
        return ""
    for rec in obj.csd.results:
        if rec.params_json == stored and rec.task:
            return rec.task
    try:
        data = json.loads(stored)
    except (TypeError, ValueError):
        return "texture"
    if not isinstance(data, dict):
        return "texture"
    if data.get("task") in ("texture", "edit", "generate"):     # props.job_params.dumps_params stores it
        return data["task"]
    return "edit" if "target_prompt" in data else "generate" if "steps_coarse" in data else "texture"


def apply(obj, rec) -> None:
    """Switch `obj`'s slots to the materials of result `rec` (same slot indices) and mark it applied."""
    shared = mesh_is_shared(obj)
    for i, entry in enumerate(rec.slots):
        if entry.material is not None:
            assign(obj, i, entry.material, shared)
    for other in obj.csd.results:
        other.applied = other == rec
    obj[PARAMS_KEY] = rec.params_json
    obj[RESOLVED_KEY] = rec.resolved_json


def unapply(obj, rec) -> None:
    """Put the user's materials back into the slots that show result `rec`."""
    for i, entry in enumerate(rec.slots):
        if i < len(obj.material_slots) and entry.material is not None \
                and obj.material_slots[i].material == entry.material:
            obj.material_slots[i].material = source_of(entry.material)
    rec.applied = False
    for key in (PARAMS_KEY, RESOLVED_KEY):
        if key in obj:
            del obj[key]


def remove(obj, index: int) -> None:
    """Delete result `index` of `obj`: unapply it if applied, then remove its datablocks nobody else uses."""
    results = obj.csd.results
    rec = results[index]
    if rec.applied:
        unapply(obj, rec)
    materials = [e.material for e in rec.slots if e.material is not None]
    image = rec.image
    results.remove(index)
    obj.csd.active_result = max(0, min(obj.csd.active_result, len(results) - 1))
    purge(materials, image)


def remove_others(obj, keep_rec) -> None:
    """Delete every result of `obj` except `keep_rec` (one CSD result per object)."""
    keep_id = keep_rec.result_id
    i = 0
    while i < len(obj.csd.results):
        if obj.csd.results[i].result_id == keep_id:
            i += 1
        else:
            remove(obj, i)
    obj.csd.active_result = next(j for j, r in enumerate(obj.csd.results) if r.result_id == keep_id)


def purge(materials: list, image) -> None:
    """Remove result materials, then the image, that have no users left."""
    import bpy

    for mat in {m.name: m for m in materials}.values():
        if mat.users == 0:
            bpy.data.materials.remove(mat)
    if image is not None and image.users == 0:
        bpy.data.images.remove(image)
