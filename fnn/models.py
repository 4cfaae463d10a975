"""Ready-made model specs used by the command line, the benchmark and the experiments.

``softmax_regression`` and ``mlp`` flatten their input; ``lenet5`` and ``cnn`` start with
``Flatten()`` and ``Unflatten(1, (1, 28, 28))`` (FLAT-1, FLAT-2), so every model here takes
MNIST as fnn.data gives it, (N, 28, 28), and as rows (N, 784) or torch's (N, 1, 28, 28).
"""

from __future__ import annotations

import functools

from fnn import init as initializers
from fnn import nn

__all__ = ["ACTIVATIONS", "INITS", "cnn", "lenet5", "mlp", "softmax_regression"]

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


def _image(side: int) -> list[nn.Layer]:
    """The layers that make any (N, side·side)-element batch one (N, 1, side, side) image."""
    return [nn.Flatten(), nn.Unflatten(1, (1, side, side))]


def lenet5(*, dtype: str = "float32") -> nn.Sequential:
    """LeCun et al. 1998's LeNet-5 for 28×28 MNIST, with the paper's squashing function.

    C1: Conv2d(1, 6, 5, padding=2) → 6@28×28; S2: AvgPool2d(2) → 6@14×14; C3: Conv2d(6, 16, 5)
    → 16@10×10; S4: AvgPool2d(2) → 16@5×5; C5: Conv2d(16, 120, 5) → 120@1×1; F6: Linear(120,
    84); output Linear(84, 10): 61,706 parameters. Every C and F layer is followed by
    ``ScaledTanh()``, f(a) = 1.7159·tanh(2a/3) (ACT-9). C5 is a 5×5 convolution, as in the
    paper: on a 5×5 map it equals a Linear on the 400 flattened values (same 48,120
    parameters, same torch initialization, fan-in 400), and it stays a convolution on a
    larger input, the paper's reason for calling it one.

    Departures from the paper, each a modern default:

    - the 28×28 input is padded by 2 in C1 instead of centring the digits in 32×32 images;
    - C3 connects every S2 map to every C3 map, not the paper's table of 60 connections;
    - S2 and S4 average 2×2 windows; the paper's subsampling also multiplied by a trainable
      coefficient, added a trainable bias and squashed;
    - the 10 outputs are a Linear layer's logits for softmax cross-entropy, not the paper's
      Euclidean RBF units with fixed 7×12 bitmap codes and its MAP criterion;
    - the weights start from torch's default U(±1/√fan_in), not U(±2.4/fan_in).

    Args:
        dtype: the parameters' dtype, torch's factory keyword (DTYPE-1).

    Returns:
        The ``Sequential`` spec; it takes (N, 784), (N, 28, 28) or (N, 1, 28, 28) images.

    Example:
        >>> import jax
        >>> from fnn import models, nn
        >>> nn.num_params(models.lenet5().init(jax.random.key(0))[0])
        61706
    """
    return nn.Sequential(
        *_image(28),
        nn.Conv2d(1, 6, 5, padding=2, dtype=dtype),  # C1
        nn.ScaledTanh(),
        nn.AvgPool2d(2),  # S2
        nn.Conv2d(6, 16, 5, dtype=dtype),  # C3
        nn.ScaledTanh(),
        nn.AvgPool2d(2),  # S4
        nn.Conv2d(16, 120, 5, dtype=dtype),  # C5
        nn.ScaledTanh(),
        nn.Flatten(),
        nn.Linear(120, 84, dtype=dtype),  # F6
        nn.ScaledTanh(),
        nn.Linear(84, 10, dtype=dtype),  # the output: logits
    )


def cnn(
    channels: tuple[int, ...] = (32, 64),
    convs_per_stage: int = 2,
    num_classes: int = 10,
    *,
    hidden: int = 128,
    batch_norm: bool = True,
    dropout: float = 0.25,
    image_size: int = 28,
    dtype: str = "float32",
) -> nn.Sequential:
    """A modern small CNN: stages of 3×3 conv-BatchNorm-ReLU blocks, each stage closed by a
    2×2 max-pool, then dropout and a linear head.

    Per stage of width c: ``convs_per_stage`` × [Conv2d(·, c, 3, padding=1, bias=not
    batch_norm), BatchNorm2d(c), ReLU()], then MaxPool2d(2) and, when ``dropout`` > 0,
    Dropout2d(dropout / 2) (whole channels, as a conv layer's features are correlated in
    space). The head: Flatten, then with ``hidden`` > 0 Linear(c · s², hidden) [,
    BatchNorm1d(hidden)], ReLU, and last Dropout(dropout), Linear(·, num_classes); s is the
    side after the pools (7 for 28×28 and two stages). A layer followed by BatchNorm has no
    bias: BatchNorm's mean subtraction would cancel it, and its β takes its place.

    The hidden layer is there for SGD at the command line's lr 0.1: a Linear straight from
    the 3136 non-negative features of 32-32-pool-64-64-pool moves its logits by about
    lr·Σf² ≈ lr·4700 a step, and so trained (torch too) to only 15% test accuracy in 80
    steps, against 95% with BatchNorm1d on 128 hidden units between.

    Args:
        channels: the width of each stage (default (32, 64): 32-32-pool-64-64-pool).
        convs_per_stage: conv blocks per stage (default 2).
        num_classes: the number of logits (default 10).
        hidden: the head's hidden width (default 128; 0: one Linear from the features).
        batch_norm: a BatchNorm2d after each conv and a BatchNorm1d after the hidden Linear
            (default True).
        dropout: the head's Dropout p, and half of it for the stages' Dropout2d
            (default 0.25; 0 leaves both out).
        image_size: the input's side (default 28); it must survive the pools.
        dtype: the parameters' dtype, torch's factory keyword (DTYPE-1).

    Returns:
        The ``Sequential`` spec; it takes (N, s²), (N, s, s) or (N, 1, s, s) images.

    Example:
        >>> from fnn import models
        >>> model = models.cnn((8,), convs_per_stage=1, hidden=0, dropout=0.0)
        >>> [type(layer).__name__ for layer in model.layers]
        ['Flatten', 'Unflatten', 'Conv2d', 'BatchNorm2d', 'ReLU', 'MaxPool2d', 'Flatten', 'Linear']
    """
    if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
        raise ValueError(f"channels must be a non-empty tuple of ints >= 1, got {channels!r}")
    if not (isinstance(convs_per_stage, int) and convs_per_stage >= 1):
        raise ValueError(f"convs_per_stage must be an int >= 1, got {convs_per_stage!r}")
    if not (isinstance(hidden, int) and hidden >= 0):
        raise ValueError(f"hidden must be an int >= 0, got {hidden!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    side = image_size // 2 ** len(channels)
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for {len(channels)} 2x2 max-pools")
    layers, width = _image(image_size), 1
    for c in channels:
        for _ in range(convs_per_stage):
            layers.append(nn.Conv2d(width, c, 3, padding=1, bias=not batch_norm, dtype=dtype))
            layers += [nn.BatchNorm2d(c, dtype=dtype)] if batch_norm else []
            layers.append(nn.ReLU())
            width = c
        layers.append(nn.MaxPool2d(2))
        layers += [nn.Dropout2d(dropout / 2)] if dropout > 0 else []
    layers.append(nn.Flatten())
    width *= side * side
    if hidden:
        layers.append(nn.Linear(width, hidden, bias=not batch_norm, dtype=dtype))
        layers += [nn.BatchNorm1d(hidden, dtype=dtype)] if batch_norm else []
        layers.append(nn.ReLU())
        width = hidden
    layers += [nn.Dropout(dropout)] if dropout > 0 else []
    layers.append(nn.Linear(width, num_classes, dtype=dtype))
    return nn.Sequential(*layers)
