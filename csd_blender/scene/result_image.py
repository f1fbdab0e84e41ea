"""Result textures as Blender images: 8-bit (or 16-bit) sRGB PNG, packed into the .blend or saved beside it.

An 8-bit texture is a byte image whose pixels are the engine's sRGB values (Blender stores byte images in
their colour space, so nothing is converted); packing a byte image writes a PNG. A 16-bit texture goes
through a float image saved as a 16-bit PNG and loaded back from that file. Either way the image in the file
is a PNG, never a float OpenEXR (16.8 MB at 1024²).
"""
from __future__ import annotations

import logging
import os
import re
import tempfile

import numpy as np

from .images import to_blender_pixels

log = logging.getLogger(__name__)

TEXTURE_FOLDER = "csd_textures"     # beside the .blend when textures are saved as files


def file_stem(name: str) -> str:
    """A file-name-safe version of a datablock name ("CSD a red cube" -> "CSD_a_red_cube")."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return stem[:80] or "texture"


def texture_folder() -> str:
    """The absolute folder beside the saved .blend where texture files go.

    Raises:
        ValueError: the .blend has never been saved (there is no "beside" yet).
    """
    import bpy

    if not bpy.data.filepath:
        raise ValueError("save the .blend first to store textures beside it (or pack them)")
    return os.path.join(os.path.dirname(bpy.data.filepath), TEXTURE_FOLDER)


def _unique_path(folder: str, stem: str) -> str:
    path = os.path.join(folder, f"{stem}.png")
    n = 1
    while os.path.exists(path):
        path = os.path.join(folder, f"{stem}.{n:03d}.png")
        n += 1
    return path


def store_texture(name: str, texture: np.ndarray, *, depth: int = 8, pack: bool = True):
    """A new sRGB PNG image datablock holding `texture`.

    Args:
        name: datablock name (Blender may add a .001 suffix).
        texture: (H,W,3|4) float32 in [0, 1], top row first, sRGB-encoded.
        depth: 8 or 16 bits per channel in the PNG.
        pack: pack the PNG into the .blend; False saves it to csd_textures/ beside the .blend.

    Raises:
        ValueError: bad depth, or pack=False in a never-saved file; nothing is left behind.
    """
    import bpy

    if depth not in (8, 16):
        raise ValueError(f"texture depth: must be 8 or 16, got {depth}")
    folder = None if pack else texture_folder()
    h, w = texture.shape[:2]
    if depth == 8 and pack:
        img = bpy.data.images.new(name, width=w, height=h, alpha=True, float_buffer=False)
        try:
            img.colorspace_settings.name = "sRGB"
            img.pixels.foreach_set(to_blender_pixels(texture, srgb=False))
            img.file_format = "PNG"
            img.pack()
        except Exception:
            bpy.data.images.remove(img)
            raise
        return img
    # through a file: 16-bit PNGs, and every texture saved beside the .blend
    tmp_dir = None
    if folder is None:
        tmp_dir = tempfile.mkdtemp(prefix="csd_texture_")
        path = os.path.join(tmp_dir, f"{file_stem(name)}.png")
    else:
        os.makedirs(folder, exist_ok=True)
        path = _unique_path(folder, file_stem(name))
    writer = bpy.data.images.new(name + " (writing)", width=w, height=h, alpha=True, float_buffer=depth == 16)
    img = None
    try:
        writer.colorspace_settings.name = "sRGB"
        # float images hold scene-linear values; byte images hold the sRGB values themselves
        writer.pixels.foreach_set(to_blender_pixels(texture, srgb=depth == 16))
        writer.filepath_raw = path
        writer.file_format = "PNG"
        writer.save()
        img = bpy.data.images.load(path, check_existing=False)
        img.name = name
        img.colorspace_settings.name = "sRGB"
        if pack:
            img.pack()
            img.filepath = f"//{TEXTURE_FOLDER}/{os.path.basename(path)}"   # where "unpack" would write it
        else:
            img.filepath = bpy.path.relpath(path)
    except Exception:
        if img is not None:
            bpy.data.images.remove(img)
        if folder is not None and os.path.exists(path):
            os.remove(path)
        raise
    finally:
        bpy.data.images.remove(writer)
        if tmp_dir is not None:
            for f in os.listdir(tmp_dir):
                os.remove(os.path.join(tmp_dir, f))
            os.rmdir(tmp_dir)
    return img
