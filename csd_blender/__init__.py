"""CSD for Blender: the extension. Importing this package touches no bpy; `register()` does, lazily.

The folders are the layers, each importing only the ones before it: `protocol` (the wire format, stdlib only) <
`link` (client, session, engine process; no bpy) < `scene` (Blender data <-> arrays, results) < `props` (saved
settings) < `operators` < `panels` < `preferences` and this file, which registers them.
"""

_registered_modules: list = []


def _modules() -> tuple:
    """The modules with Blender classes, in registration order (panels appear in the tab in this order)."""
    from . import preferences
    from .operators import edit as edit_ops
    from .operators import engine as engine_ops
    from .operators import generate as generate_ops
    from .operators import job_operator
    from .operators import models as models_ops
    from .operators import results as result_ops
    from .operators import setup as setup_ops
    from .operators import texture as texture_ops
    from .panels import edit as edit_panel
    from .panels import engine as engine_panel
    from .panels import generate as generate_panel
    from .panels import results as results_panel
    from .panels import texture as texture_panel
    from .props import edit as edit_props
    from .props import generate as generate_props
    from .props import results as result_props
    from .props import texture as texture_props

    return (preferences, result_props, texture_props, generate_props, edit_props,
            setup_ops, models_ops, job_operator, texture_ops, generate_ops, edit_ops, result_ops, engine_ops,
            engine_panel, texture_panel, generate_panel, edit_panel, results_panel)


def register() -> None:
    """Register the add-on's classes and properties (called by Blender): each module's CLASSES, then its
    `register()` hook (properties on Scene/Object, the engine session) when it has one."""
    import bpy

    for module in _modules():
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()
        _registered_modules.append(module)


def unregister() -> None:
    """Unregister everything `register()` added, in reverse order (each module's `unregister()` hook first)."""
    import bpy

    while _registered_modules:
        module = _registered_modules.pop()
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
