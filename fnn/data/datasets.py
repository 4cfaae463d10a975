"""MNIST (bundled with fnn) and Fashion-MNIST (found on disk), plus normalisation.

Both loaders return ``(images, labels)`` as numpy arrays: images uint8 of shape
(N, 28, 28), labels **int32** of shape (N,), N = 60000 for ``split='train'`` and 10000
for ``split='test'``. Labels are int32 rather than the file's uint8 because int32 is
JAX's default integer, what the class-index losses expect, and safe for arithmetic
(uint8 wraps at 256). They are checked to lie in [0, 10) when read: a damaged file
raises ValueError naming the bad label and its index.

`mnist` reads the four original IDX files shipped inside the package
(``fnn/data/mnist``) through importlib.resources and checks each file's sha256 against
``fnn/data/mnist/SHA256SUMS`` before decoding it. The verified arrays are cached for the
life of the process and returned **read-only**, so repeated calls are cheap and no caller
can corrupt another's data; copy (or `normalize`) before writing.

`fashion_mnist` reads the same four file names from the first directory that holds
the split's two files, searching in order: the `root` argument (if given), the
``$FNN_DATA_DIR`` environment variable (if set), then Debian's
``/usr/share/datasets/fashion-mnist``. If none does, FileNotFoundError lists every
directory it looked in. Nothing is downloaded.

`normalize` maps raw pixels (0..255) to float32 ``(pixel/255 - mean) / std``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_classes_in_range, check_positive
from fnn.data.idx import parse_idx, read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_CLASSES",
    "MNIST_MEAN",
    "MNIST_STD",
    "fashion_mnist",
    "mnist",
    "normalize",
]

# Class names by label index: MNIST's digits, and Fashion-MNIST's from Xiao et al. (2017).
MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Mean and std of pixel/255 over the 60000 MNIST training images (the standard values).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
# Computed once as the mean and population std (ddof=0) of pixel/255 over all
# 60000 x 28 x 28 Fashion-MNIST training pixels, in float64: 0.286040597, 0.353024245.
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

# Both datasets have ten classes; their labels are checked against it when read.
NUM_CLASSES = 10

FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MNIST_CACHE: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def _split_files(split: str) -> tuple[str, str]:
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _FILES[split]


def _bundled_mnist() -> Any:
    """Directory (an importlib.resources Traversable) holding the bundled MNIST files."""
    return importlib.resources.files("fnn.data").joinpath("mnist")


def _pair(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check decoded IDX arrays are an MNIST-shaped image/label pair; labels to int32."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{where}: images must be uint8 of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{where}: labels must be uint8 of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
    # A damaged or foreign label file must fail here: in a compiled step a label >= 10
    # would only turn the loss NaN (LBL-1).
    check_classes_in_range(f"{where}:", labels, NUM_CLASSES, what="labels")
    return images, labels.astype(np.int32)


def mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST split as (images uint8 (N, 28, 28), labels int32 (N,)), read-only.

    The files are verified against SHA256SUMS on the first call; later calls return the
    cached arrays.

    Args:
        split: 'train' (60000 images, default) or 'test' (10000).

    Returns:
        ``(images, labels)``: uint8 (N, 28, 28) and int32 (N,) numpy arrays, read-only.

    Example:
        >>> from fnn import data
        >>> images, labels = data.mnist("test")
        >>> images.shape, images.dtype, labels.shape, labels.dtype, labels[:5].tolist()
        ((10000, 28, 28), dtype('uint8'), (10000,), dtype('int32'), [7, 2, 1, 0, 4])
    """
    names = _split_files(split)
    where = _bundled_mnist()
    cache_key = (str(where), split)
    if cache_key not in _MNIST_CACHE:
        sums = {}
        for line in where.joinpath("SHA256SUMS").read_text().splitlines():
            if line.strip():
                digest, name = line.split()
                sums[name.lstrip("*")] = digest
        arrays = []
        for name in names:
            raw = where.joinpath(name).read_bytes()
            actual = hashlib.sha256(raw).hexdigest()
            if sums.get(name) != actual:
                raise ValueError(
                    f"{where.joinpath(name)}: sha256 mismatch, expected {sums.get(name)}, "
                    f"found {actual} (the bundled file is damaged; reinstall fnn)"
                )
            arrays.append(parse_idx(raw, str(where.joinpath(name))))
        images, labels = _pair(*arrays, where=f"{where} ({split})")
        images.flags.writeable = False
        labels.flags.writeable = False
        _MNIST_CACHE[cache_key] = (images, labels)
    return _MNIST_CACHE[cache_key]


def fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST split as (images uint8 (N, 28, 28), labels int32 (N,)) from disk.

    Args:
        split: 'train' (default) or 'test'.
        root: a directory to search first, or None; then ``$FNN_DATA_DIR``, then
            ``/usr/share/datasets/fashion-mnist``.

    Returns:
        ``(images, labels)``: uint8 (N, 28, 28) and int32 (N,) numpy arrays.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from fnn import data
        >>> tmp = tempfile.TemporaryDirectory()  # two fake test images under the dataset's file names
        >>> root = tmp.name
        >>> data.write_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"), np.zeros((2, 28, 28), np.uint8))
        >>> data.write_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"), np.array([3, 9], np.uint8))
        >>> images, labels = data.fashion_mnist("test", root=root)
        >>> images.shape, labels.tolist(), labels.dtype
        ((2, 28, 28), [3, 9], dtype('int32'))
        >>> tmp.cleanup()
    """
    names = _split_files(split)
    candidates = []
    if root is not None:
        candidates.append(Path(root))
    if os.environ.get("FNN_DATA_DIR"):
        candidates.append(Path(os.environ["FNN_DATA_DIR"]))
    candidates.append(Path(FASHION_MNIST_DEFAULT_DIR))
    for d in candidates:
        if all((d / n).is_file() for n in names):
            return _pair(*(read_idx(d / n) for n in names), where=f"{d} ({split})")
    looked = "\n  ".join(str(d) for d in candidates)
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files {names[0]}, {names[1]} not found; looked in:\n  {looked}\n"
        "Pass root=..., or set FNN_DATA_DIR to the directory holding them."
    )


def normalize(images: Any, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> Any:
    """float32 ``(images/255 - mean)/std``; numpy in, numpy out; jax in, jax out.

    Args:
        images: raw pixels 0..255 (numpy or jax, any shape and numeric dtype).
        mean: the mean of pixel/255 to subtract (default MNIST's 0.1307).
        std: the std of pixel/255 to divide by, > 0 (default MNIST's 0.3081).

    Returns:
        A float32 array of the images' shape, numpy or jax as the input.

    Example:
        >>> import numpy as np
        >>> from fnn import data
        >>> data.normalize(np.array([0, 255], np.uint8), mean=0.5, std=0.5).tolist()
        [-1.0, 1.0]
    """
    check_positive("std", std)
    xp = jnp if isinstance(images, jax.Array) else np
    x = xp.asarray(images, dtype=xp.float32)
    # Fold the three constants into one multiply-add, computed in float64 then cast.
    scale = np.float32(1.0 / (255.0 * std))
    shift = np.float32(mean / std)
    return x * scale - shift
