"""A small fully connected network (ReLU hidden layers), threestudio's VanillaMLP in plain torch."""
from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """`n_hidden_layers` hidden layers of `hidden_dim` units with ReLU, then a linear output layer.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden_dim: units per hidden layer.
        n_hidden_layers: number of hidden layers (0 = a single linear layer).
        bias: whether the linear layers have biases (threestudio's VanillaMLP has none).

    `forward(x: (N, in_dim)) -> (N, out_dim)`, no output activation.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 64, n_hidden_layers: int = 1,
                 bias: bool = True):
        super().__init__()
        for name, value, lo in (("in_dim", in_dim, 1), ("out_dim", out_dim, 1), ("hidden_dim", hidden_dim, 1),
                                ("n_hidden_layers", n_hidden_layers, 0)):
            if value < lo:
                raise ValueError(f"{name}: must be >= {lo}, got {value}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(dim, hidden_dim, bias=bias), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (N, in_dim). Returns (N, out_dim)."""
        return self.net(x)
