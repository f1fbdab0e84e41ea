"""Neural fields: the hash-grid encoding (tiny-cuda-nn's formulas in torch; tinycudann when importable), MLPs,
the texture field, the NeRF density field, the DMTet grid and the environment background. May import
_optional and errors; nothing above."""
from .hashgrid import HashGrid, level_layout, n_hashgrid_params
from .mlp import MLP
from .texture_field import TextureField, TextureFieldConfig

__all__ = ["MLP", "HashGrid", "TextureField", "TextureFieldConfig", "level_layout", "n_hashgrid_params"]
