"""The live preview image ("CSD Preview"): PNG bytes from progress events, decoded by Blender via a temp file."""
from __future__ import annotations

import logging
import os

from .paths import user_dir

log = logging.getLogger(__name__)

PREVIEW_NAME = "CSD Preview"


class LivePreview:
    """Shows a job's preview PNGs in one image datablock.

    The datablock is created at the first preview; `discard()` removes it again when this job created it
    (a failed or cancelled job leaves no new datablocks behind), `keep()` leaves it for the user.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.path = ""
        self.created = False

    def update(self, png: bytes) -> None:
        """Show `png` (bytes of a PNG file).

        Args:
            png: the preview from a Progress event.
        """
        import bpy

        # A fresh file name per update: Blender caches decoded files by path.
        folder = user_dir("previews")
        path = os.path.join(folder, f"preview_{self.job_id[:12]}.png")
        with open(path, "wb") as f:
            f.write(png)
        image = bpy.data.images.get(PREVIEW_NAME)
        if image is None:
            image = bpy.data.images.load(path, check_existing=False)
            image.name = PREVIEW_NAME
            self.created = True
        else:
            if image.filepath != path:
                image.filepath = path
            image.reload()
        self.path = path
        if image.preview is not None:
            image.preview.reload()

    def image(self):
        """The preview datablock, or None."""
        import bpy

        return bpy.data.images.get(PREVIEW_NAME)

    def discard(self) -> None:
        """Remove the datablock if this job created it, and the temp file."""
        import bpy

        if self.created:
            image = bpy.data.images.get(PREVIEW_NAME)
            if image is not None:
                bpy.data.images.remove(image)
            self.created = False
        self._remove_file()

    def keep(self) -> None:
        """Leave the datablock; pack it so it does not depend on the temp file."""
        image = self.image()
        if image is not None and self.path:
            try:
                image.pack()
            except RuntimeError as exc:
                log.debug("could not pack the preview: %s", exc)
        self._remove_file()

    def _remove_file(self) -> None:
        if self.path and os.path.exists(self.path):
            try:
                os.remove(self.path)
            except OSError as exc:
                log.debug("could not remove %s: %s", self.path, exc)
        self.path = ""
