"""Ready-made model specs used by the command line, the benchmark and the experiments."""

from __future__ import annotations

import functools

from fnn import init as initializers
from fnn import nn

__all__ = ["ACTIVATIONS", "INITS", "mlp", "softmax_regression"]

ACTIVATIONS: dict[str, nn.Layer] = {
    "relu": nn.ReLU(),
    "leaky_relu": nn.LeakyReLU(),
    "elu": nn.ELU(),
    "tanh": nn.Tanh(),
    "sigmoid": nn.Sigmoid(),
}
INITS = ("torch", "kaiming", "xavier")

# torch.nn.init's nonlinearity names for calculate_gain; ELU has none, and its positive
# half is the identity, so He's ReLU gain is the usual choice.
_GAIN_NAME = {
    nn.ReLU: ("relu", None),
    nn.LeakyReLU: ("leaky_relu", "negative_slope"),
    nn.ELU: ("relu", None),
    nn.Tanh: ("tanh", None),
    nn.Sigmoid: ("sigmoid", None),
}


def softmax_regression(
    in_features: int = 784, num_classes: int = 10, *, dtype: str = "float32"
) -> nn.Sequential:
    """Flatten + one Linear layer: multinomial logistic regression on raw logits.

    Args:
        in_features: the flattened input width (default 784, a 28×28 image).
        num_classes: the number of logits (default 10).
        dtype: the Linear's parameter dtype, torch's factory keyword (DTYPE-1).

    Returns:
        The ``Sequential`` spec: Flatten, Linear(in_features, num_classes).

    Example:
        >>> from fnn import models
        >>> model = models.softmax_regression(4, 3)
        >>> model[0], model[1].in_features, model[1].out_features
        (Flatten(start_dim=1, end_dim=-1), 4, 3)
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes, dtype=dtype))


def _linear(
    in_features: int, out_features: int, scheme: str, activation: nn.Layer | None, dtype: str
) -> nn.Linear:
    """A Linear initialised by ``scheme`` for the nonlinearity that follows it (None: the output)."""
    if scheme == "torch":
        return nn.Linear(in_features, out_features, dtype=dtype)
    name, param_field = _GAIN_NAME.get(type(activation), ("linear", None))
    param = getattr(activation, param_field) if param_field else None
    if scheme == "kaiming":
        weight = functools.partial(initializers.kaiming_normal, a=param or 0, nonlinearity=name)
    else:
        weight = functools.partial(initializers.xavier_uniform, gain=initializers.calculate_gain(name, param))
    return nn.Linear(in_features, out_features, weight_init=weight, bias_init=initializers.zeros, dtype=dtype)


def mlp(
    in_features: int = 784,
    hidden: tuple[int, ...] = (512, 512),
    num_classes: int = 10,
    *,
    batch_norm: bool = True,
    dropout: float = 0.2,
    activation: nn.Layer | str = "relu",
    init: str = "torch",
    dtype: str = "float32",
) -> nn.Sequential:
    """Flatten, then per hidden width: Linear, [BatchNorm1d], activation, [Dropout(p)]; a
    final Linear to the class logits.

    Args:
        in_features: the flattened input width (default 784).
        hidden: the hidden widths, one block per entry (default (512, 512)).
        num_classes: the number of logits (default 10).
        batch_norm: put a BatchNorm1d after each hidden Linear (default True).
        dropout: the Dropout p after each activation (default 0.2; 0 leaves it out).
        activation: a layer, or a name from ``ACTIVATIONS`` (default 'relu').
        init: ``'torch'`` (nn.Linear's default, LIN-1), ``'kaiming'`` (He normal with the
            activation's gain, biases 0) or ``'xavier'`` (Glorot uniform with
            ``calculate_gain`` of the activation, biases 0); the output layer gets gain 1.
        dtype: torch's factory keyword (DTYPE-1), given to every Linear and BatchNorm1d:
            ``'float32'`` (default), ``'float64'`` (needs JAX's 64-bit mode), ``'bfloat16'``
            or ``'float16'``. The input must then be of that dtype too (DTYPE-2).

    Returns:
        The ``Sequential`` spec.

    Example:
        >>> from fnn import models
        >>> model = models.mlp(4, hidden=(8,), num_classes=3, activation="tanh")
        >>> [type(layer).__name__ for layer in model.layers]
        ['Flatten', 'Linear', 'BatchNorm1d', 'Tanh', 'Dropout', 'Linear']
    """
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        activation = ACTIVATIONS[activation]
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    layers: list[nn.Layer] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers.append(_linear(width, h, init, activation, dtype))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h, dtype=dtype))
        layers.append(activation)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(_linear(width, num_classes, init, None, dtype))
    return nn.Sequential(*layers)
