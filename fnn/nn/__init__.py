"""fnn.nn: immutable, hashable layer specs with pure init / apply / apply_vjp (and the
backward derived from it), torch.nn's loss specs (CrossEntropyLoss, MSELoss, ...), and
fold_batchnorm, which merges eval-mode Linear/Conv -> BatchNorm pairs."""

from fnn.nn import precision
from fnn.nn.activations import (
    ELU,
    Abs,
    LeakyReLU,
    LogSoftmax,
    Maxout,
    PReLU,
    ReLU,
    ScaledTanh,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from fnn.nn.base import DTYPES, Elementwise, Layer
from fnn.nn.conv import Conv1d, Conv2d
from fnn.nn.dropout import Dropout, Dropout2d
from fnn.nn.fold import fold_batchnorm
from fnn.nn.linear import Flatten, Linear, Unflatten
from fnn.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    FunctionLoss,
    HuberLoss,
    L1Loss,
    Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
    as_loss,
)
from fnn.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from fnn.nn.pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from fnn.nn.sequential import Sequential, num_params

__all__ = [
    "DTYPES",
    "ELU",
    "Abs",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "Elementwise",
    "Flatten",
    "FunctionLoss",
    "HuberLoss",
    "L1Loss",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Maxout",
    "NLLLoss",
    "PReLU",
    "ReLU",
    "ScaledTanh",
    "Sequential",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Tanh",
    "Unflatten",
    "as_loss",
    "fold_batchnorm",
    "num_params",
    "precision",
]
