"""Where the add-on may write: the extension's user folder (logs, previews), never its own install folder."""
from __future__ import annotations

import logging
import os
import tempfile

log = logging.getLogger(__name__)

PACKAGE = __package__.rpartition(".")[0]   # the add-on's root package (bl_ext.<repo>.csd_blender when installed)


def user_dir(*parts: str) -> str:
    """An existing folder under bpy.utils.extension_path_user(<this extension>, ...).

    Falls back to a folder in the system temp directory when the package was not installed as an extension
    (e.g. imported from a source checkout), where Blender has no user folder for it.

    Args:
        parts: sub-folders, e.g. ("logs",).
    """
    import bpy

    sub = os.path.join(*parts) if parts else ""
    try:
        return bpy.utils.extension_path_user(PACKAGE, path=sub, create=True)
    except ValueError:
        path = os.path.join(tempfile.gettempdir(), "csd_blender", sub)
        os.makedirs(path, exist_ok=True)
        log.debug("%s is not an installed extension; using %s", PACKAGE, path)
        return path
