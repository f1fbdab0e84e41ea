"""MLP and TextureField: shapes, ranges, the point mapping, configs, and that they can learn."""
from __future__ import annotations

import math

import pytest
import torch

from engine.fields import MLP, HashGrid, TextureField, TextureFieldConfig


def test_mlp_shapes_and_layers():
    mlp = MLP(8, 3, hidden_dim=16, n_hidden_layers=2, bias=False)
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 3)]
    assert all(m.bias is None for m in linears)
    assert mlp(torch.randn(5, 8)).shape == (5, 3)
    assert len([m for m in MLP(4, 2, n_hidden_layers=0).modules() if isinstance(m, torch.nn.Linear)]) == 1
    with pytest.raises(ValueError, match="hidden_dim"):
        MLP(4, 2, hidden_dim=0)


def test_texture_field_defaults():
    cfg = TextureFieldConfig()
    assert cfg.resolved_per_level_scale() == pytest.approx(math.exp(math.log(512 / 16) / 11))
    field = TextureField(cfg)
    assert field.encoding.levels[-1].resolution == 512
    assert field.encoding.n_levels == 12 and field.encoding.log2_hashmap_size == 16
    rgb = field(torch.rand(100, 3) - 0.5)
    assert rgb.shape == (100, 3) and (rgb > 0).all() and (rgb < 1).all()


def test_points_map_to_unit_cube_and_clamp():
    torch.manual_seed(0)
    cfg = TextureFieldConfig(n_levels=4, log2_hashmap_size=10, max_resolution=32, backend="torch")
    field = TextureField(cfg)
    seen = []
    field.encoding.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    p = torch.tensor([[-0.5, 0.0, 0.5], [-0.7, 0.2, 0.9]])
    field(p)
    torch.testing.assert_close(seen[0], torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.7, 1.0]]))


def test_texture_field_learns_a_colour_pattern():
    torch.manual_seed(0)
    cfg = TextureFieldConfig(n_levels=6, log2_hashmap_size=12, max_resolution=64, hidden_dim=32)
    field = TextureField(cfg)
    opt = torch.optim.Adam(field.parameters(), lr=2e-2)
    target = lambda p: torch.stack([(p[:, 0] > 0).float(), 0.5 + 0.4 * torch.sin(6 * p[:, 1]),
                                    torch.full_like(p[:, 0], 0.2)], 1)
    p_test = torch.rand(2000, 3) - 0.5
    before = (field(p_test) - target(p_test)).abs().mean().item()
    for _ in range(60):
        p = torch.rand(1024, 3) - 0.5
        loss = (field(p) - target(p)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (field(p_test) - target(p_test)).abs().mean().item()
    assert after < 0.08 < before


def test_config_validation():
    with pytest.raises(ValueError, match="max_resolution"):
        TextureFieldConfig(base_resolution=64, max_resolution=32)
    with pytest.raises(ValueError, match="points: expected shape"):
        TextureField(TextureFieldConfig(n_levels=2, log2_hashmap_size=8))(torch.rand(4, 2))


def test_state_dict_keys_are_backend_independent():
    field = TextureField(TextureFieldConfig(n_levels=2, log2_hashmap_size=8))
    keys = set(field.state_dict())
    assert "encoding.params" in keys and not any("_tcnn" in k or "_scales" in k for k in keys)
    assert isinstance(field.encoding, HashGrid)
