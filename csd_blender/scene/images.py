"""Images <-> wire arrays: sRGB transfer, row order and the Blender image datablocks.

Images on the wire are (H, W, C) float32 sRGB, top row first; Blender float images are scene linear, bottom row
first. The conversions are plain numpy (tested without Blender); the two functions that read or write an image
take bpy data and import bpy inside.
"""
from __future__ import annotations

import numpy as np


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
