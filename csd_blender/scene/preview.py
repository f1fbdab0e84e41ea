"""The live preview image ("CSD Preview"): PNG bytes from progress events, decoded by Blender via a temp file.

Blender has no in-memory PNG decoder in its Python API, so each preview is written to the extension's user
folder, loaded into a temporary datablock, copied into the generated "CSD Preview" image, and the temporary
datablock and file are removed at once: the preview image never depends on a file.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from .paths import user_dir

log = logging.getLogger(__name__)

PREVIEW_NAME = "CSD Preview"


def decode_png(png: bytes, tag: str = "decode") -> tuple[np.ndarray, int, int]:
    """PNG bytes to (flat RGBA float32 pixels, bottom row first as Image.pixels, width, height).

    Args:
        png: the bytes of a PNG file.
        tag: makes the temporary file name unique.
    """
    import bpy

    path = os.path.join(user_dir("previews"), f"preview_{tag}.png")
    with open(path, "wb") as f:
        f.write(png)
    try:
        tmp = bpy.data.images.load(path, check_existing=False)
        try:
            w, h = tmp.size
            if w == 0 or h == 0:
                raise RuntimeError("the preview PNG could not be decoded")
            flat = np.empty(w * h * 4, dtype=np.float32)
            tmp.pixels.foreach_get(flat)
        finally:
            bpy.data.images.remove(tmp)
    finally:
        try:
            os.remove(path)
        except OSError as exc:
            log.debug("could not remove %s: %s", path, exc)
    return flat, w, h


class LivePreview:
    """Shows one job's (or batch's) preview PNGs in the file's one "CSD Preview" image.

    The job reuses the existing "CSD Preview" whatever its size (remembering its size and pixels) or creates
    it, so a file never collects "CSD Preview.001", ".002", .... `discard()` (failed or cancelled job) removes
    what it created and restores what it reused, so the file is left as it was; `keep()` packs the image so a
    saved file keeps it.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.name = ""                       # the datablock in use
        self.created = False
        self._original: tuple[np.ndarray, int, int] | None = None   # reused image: pixels, width, height

    def update(self, png: bytes) -> None:
        """Show `png` (bytes of a PNG file).

        Args:
            png: the preview from a Progress event.
        """
        import bpy

        flat, w, h = decode_png(png, self.job_id[:12])
        image = bpy.data.images.get(self.name) if self.name else None
        if image is None:
            image = bpy.data.images.get(PREVIEW_NAME)
            if image is not None:
                ow, oh = image.size
                original = np.empty(ow * oh * 4, dtype=np.float32)
                if ow and oh:
                    image.pixels.foreach_get(original)
                self._original = (original, ow, oh)
            else:
                image = bpy.data.images.new(PREVIEW_NAME, width=w, height=h, alpha=True)
                self.created = True
            self.name = image.name
        if tuple(image.size) != (w, h):
            image.scale(w, h)
        image.pixels.foreach_set(flat)
        image.update()
        if image.preview is not None:
            image.preview.reload()

    def image(self):
        """The preview datablock in use, or None."""
        import bpy

        return bpy.data.images.get(self.name) if self.name else None

    def _restore(self, image) -> None:
        if self._original is not None:
            pixels, w, h = self._original
            if w and h:
                if tuple(image.size) != (w, h):
                    image.scale(w, h)
                image.pixels.foreach_set(pixels)
                image.update()
            self._original = None

    def discard(self) -> None:
        """Remove the datablock if this job created it, or restore the pixels of the one it reused."""
        import bpy

        image = self.image()
        if image is not None:
            if self.created:
                bpy.data.images.remove(image)
            else:
                self._restore(image)
        self.name, self.created = "", False

    def keep(self) -> None:
        """Leave the datablock, packed so a saved file keeps it."""
        image = self.image()
        if image is not None:
            try:
                image.pack()
            except RuntimeError as exc:
                log.debug("could not pack the preview: %s", exc)
