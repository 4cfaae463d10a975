"""Ready-made model specs used by the command line, the benchmark and the experiments."""
from __future__ import annotations

from fnn import nn


def softmax_regression(in_features: int = 784, num_classes: int = 10) -> nn.Sequential:
    """Flatten + one Linear layer: multinomial logistic regression on raw logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


def mlp(in_features: int = 784, hidden: tuple[int, ...] = (512, 512), num_classes: int = 10, *,
        batch_norm: bool = True, dropout: float = 0.2, activation: nn.Layer = nn.ReLU()) -> nn.Sequential:
    """Flatten, then per hidden width: Linear, [BatchNorm1d], activation, [Dropout(p)]; a
    final Linear to the class logits. ``dropout=0`` or ``batch_norm=False`` leaves them out."""
    layers: list[nn.Layer] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(activation)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
