"""CSD for Blender: the extension. Importing this package touches no bpy; `register()` does, lazily."""

_registered_modules: list = []


def register() -> None:
    """Register the add-on's classes and properties (called by Blender)."""
    from . import edit_props, generate_props, preferences, props, operators, panels

    for module in (preferences, props, generate_props, edit_props, operators, panels):
        module.register()
        _registered_modules.append(module)


def unregister() -> None:
    """Unregister everything `register()` added, in reverse order."""
    while _registered_modules:
        _registered_modules.pop().unregister()
