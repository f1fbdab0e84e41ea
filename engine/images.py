"""Image helpers: float arrays ⇄ PNG bytes, contact sheets. Arrays are (H, W, C) float32 in [0, 1], top row first."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] → uint8 (rounded, clipped, NaN → 0); C = 1 is squeezed to grey."""
    img = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"image: expected (H, W, 1|3|4), got {img.shape}")
    out = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return out[..., 0] if out.shape[2] == 1 else out


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H, W, 3|4) float image (top row first) as PNG."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to an (H, W, C) float32 array in [0, 1], top row first."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA" if img.mode in ("RGBA", "LA") else "RGB"), dtype=np.float32) / 255.0


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 1|3|4) float image (top row first) to `path` as an 8-bit PNG; returns the path."""
    p = Path(path)
    Image.fromarray(to_uint8(image)).save(p, format="PNG")
    return p


def sheet(images: np.ndarray, cols: int) -> np.ndarray:
    """Tile (N, H, W, C) images into a (rows·H, cols·W, C) sheet, row-major; missing cells are white."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * h, cols * w, c), dtype=images.dtype)
    for i in range(n):
        r, k = divmod(i, cols)
        out[r * h:(r + 1) * h, k * w:(k + 1) * w] = images[i]
    return out
