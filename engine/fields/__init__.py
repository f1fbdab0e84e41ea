"""Neural fields: hash-grid encoding (torch = tiny-cuda-nn formulas), MLPs, the texture field."""
from engine.fields.hashgrid import HashGrid, level_layout, n_hashgrid_params
from engine.fields.mlp import MLP
from engine.fields.texture_field import TextureField, TextureFieldConfig

__all__ = ["HashGrid", "MLP", "TextureField", "TextureFieldConfig", "level_layout", "n_hashgrid_params"]
