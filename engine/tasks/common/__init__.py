"""Scaffolding texture, generate and edit share: views, backgrounds, previews, turntables, bake, outputs.

One small module per concept; import from the module (`from engine.tasks.common.views import ViewSampler`) or
from this package.
"""

from .backgrounds import solid_backgrounds
from .bake import BakedTexture, bake_field
from .outputs import engine_versions, image_sha256, write_job_record, write_textured_mesh
from .preview import PREVIEW_VIEW, field_preview_png, preview_cameras
from .turntable import TURNTABLE_VIEWS, mesh_turntable, render_turntable
from .views import OrbitRanges, ViewSampler, fixed_views, jitter_c2w

__all__ = [
    "PREVIEW_VIEW",
    "TURNTABLE_VIEWS",
    "BakedTexture",
    "OrbitRanges",
    "ViewSampler",
    "bake_field",
    "engine_versions",
    "field_preview_png",
    "fixed_views",
    "image_sha256",
    "jitter_c2w",
    "mesh_turntable",
    "preview_cameras",
    "render_turntable",
    "solid_backgrounds",
    "write_job_record",
    "write_textured_mesh",
]
