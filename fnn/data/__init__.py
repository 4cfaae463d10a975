"""Data for fnn: the IDX reader, bundled MNIST, Fashion-MNIST, normalisation, batching.

images, labels = fnn.data.mnist("train")        # uint8 (60000, 28, 28), int32 (60000,)
x = fnn.data.normalize(images).reshape(len(images), -1)
for xb, yb in fnn.data.batches(x, labels, 64, key=epoch_key):
    ...
"""

from fnn.data.batching import batches, epoch_permutation, num_batches
from fnn.data.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_CLASSES,
    MNIST_MEAN,
    MNIST_STD,
    fashion_mnist,
    mnist,
    normalize,
)
from fnn.data.idx import read_idx, write_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_CLASSES",
    "MNIST_MEAN",
    "MNIST_STD",
    "batches",
    "epoch_permutation",
    "fashion_mnist",
    "mnist",
    "normalize",
    "num_batches",
    "read_idx",
    "write_idx",
]
