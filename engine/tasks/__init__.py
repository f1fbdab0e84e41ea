"""The optimisation loops, one module per job: texture, generate (coarse, refine, bake stages), edit; `common/` holds
their shared scaffolding (view sampling, backgrounds, previews, bake, result packing, file writing).

Tasks may import guidance/, priors/, render/, fields/, mesh/, the registry and the protocol's params; never serve/,
batch/, commands/ or cli/. They take `should_stop()` and `progress(event)` callbacks and never touch sockets.
"""


def load_registries() -> None:
    """Import every task and guidance module so engine.registry.TASKS and GUIDANCE are complete.

    The server and the registry test both call this: a task module added here is served and checked
    against the protocol's TASK_NAMES.
    """
    from .. import guidance  # noqa: F401 - registers "csd", "sds"
    from . import (
        edit,  # noqa: F401 - registers "edit"
        generate,  # noqa: F401 - registers "generate"
        texture,  # noqa: F401 - registers "texture"
    )
