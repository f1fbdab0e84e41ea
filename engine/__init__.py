"""CSD engine: Classifier Score Distillation for textures, meshes and edits (no bpy, imports torch lazily)."""

__version__ = "0.1.0"
