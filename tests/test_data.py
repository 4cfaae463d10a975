"""fnn.data: IDX reader/writer, bundled MNIST, Fashion-MNIST lookup, normalize, batching."""

import gzip
import hashlib
import re
import shutil
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn.data as D
from fnn.data import datasets

FASHION_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _sample(dtype, shape=(3, 4, 5)):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        a.flat[:2] = info.min, info.max  # extremes exercise the byte-order conversion
        return a
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = _sample(dtype)
    path = tmp_path / f"a{suffix}"
    D.write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    b = D.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.flags.writeable
    np.testing.assert_array_equal(b, a)


def test_idx_header_is_big_endian_idx(tmp_path):
    D.write_idx(tmp_path / "a.idx", np.array([[1, 2, 3]], dtype=np.int16))
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw == bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 1, 3) + struct.pack(">3h", 1, 2, 3)


def test_idx_compression_detected_by_magic_not_name(tmp_path):
    a = _sample(np.int32, (7,))
    D.write_idx(tmp_path / "raw.idx", a)
    raw = (tmp_path / "raw.idx").read_bytes()
    (tmp_path / "gz_without_suffix").write_bytes(gzip.compress(raw))
    (tmp_path / "raw_named.gz").write_bytes(raw)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "gz_without_suffix"), a)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "raw_named.gz"), a)


def _broken(tmp_path, data: bytes, name="broken.idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path, re.escape(str(path))


def test_idx_truncated_payload_names_file_and_sizes(tmp_path):
    D.write_idx(tmp_path / "ok.idx", np.arange(12, dtype=np.uint8).reshape(3, 4))
    path, name = _broken(tmp_path, (tmp_path / "ok.idx").read_bytes()[:-2])
    with pytest.raises(ValueError, match=f"{name}.*expected 12 bytes of data, found 10"):
        D.read_idx(path)


def test_idx_truncated_gzip_names_file(tmp_path):
    data = gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 1000) + bytes(range(250)) * 4)
    path, name = _broken(tmp_path, data[: len(data) // 2], "cut.gz")
    with pytest.raises(ValueError, match=f"{name}: corrupt gzip stream"):
        D.read_idx(path)


def test_idx_bad_magic_names_file(tmp_path):
    path, name = _broken(tmp_path, bytes([1, 0, 8, 1]) + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match=f"{name}: bad IDX magic number 01000801"):
        D.read_idx(path)


def test_idx_unknown_type_code_names_file(tmp_path):
    path, name = _broken(tmp_path, bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match=f"{name}: unknown IDX type code 0x0A"):
        D.read_idx(path)


def test_idx_wrong_dims_names_file(tmp_path):
    # Header says 2 x 3 int32 (24 bytes) but 5 int32 follow.
    data = bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3) + struct.pack(">5i", *range(5))
    path, name = _broken(tmp_path, data)
    with pytest.raises(
        ValueError, match=rf"{name}: dims \(2, 3\) of int32 expected 24 bytes of data, found 20"
    ):
        D.read_idx(path)


def test_idx_truncated_header_and_zero_dims(tmp_path):
    path, name = _broken(tmp_path, bytes([0, 0, 8, 3]) + struct.pack(">I", 2))
    with pytest.raises(
        ValueError, match=f"{name}: truncated header \\(expected 16 bytes for 3 dimensions, found 8\\)"
    ):
        D.read_idx(path)
    path, name = _broken(tmp_path, bytes([0, 0]), "short.idx")
    with pytest.raises(ValueError, match=f"{name}: too short for an IDX header"):
        D.read_idx(path)
    path, name = _broken(tmp_path, bytes([0, 0, 8, 0, 7]), "zero.idx")
    with pytest.raises(ValueError, match=f"{name}: IDX header declares 0 dimensions"):
        D.read_idx(path)


def test_write_idx_rejects_unsupported_arrays(tmp_path):
    with pytest.raises(TypeError, match=r"array dtype must be one of .*, got int64"):
        D.write_idx(tmp_path / "a.idx", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"array must have 1 to 255 dimensions for IDX, got shape \(\)"):
        D.write_idx(tmp_path / "a.idx", np.uint8(3))


# ---------------------------------------------------------------- MNIST (bundled)


@pytest.mark.slow
def test_mnist_train_and_test_splits():
    x, y = D.mnist("train")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.int32
    assert y.min() == 0 and y.max() == 9
    np.testing.assert_array_equal(y[:5], [5, 0, 4, 1, 9])  # the well-known first training labels
    xt, yt = D.mnist("test")
    assert xt.shape == (10000, 28, 28) and xt.dtype == np.uint8 and yt.shape == (10000,)
    np.testing.assert_array_equal(yt[:5], [7, 2, 1, 0, 4])
    assert set(np.unique(yt)) == set(range(10))


@pytest.mark.slow
def test_mnist_is_cached_and_read_only():
    x1, y1 = D.mnist("test")
    x2, y2 = D.mnist("test")
    assert x1 is x2 and y1 is y2
    with pytest.raises(ValueError, match="read-only"):
        x1[0, 0, 0] = 1


def test_mnist_bad_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        D.mnist("valid")


def _bundled_dir() -> Path:
    return Path(str(datasets._bundled_mnist()))


def _fake_bundle(d: Path, files: dict[str, np.ndarray]) -> Path:
    """A stand-in for fnn/data/mnist: IDX files plus a matching SHA256SUMS."""
    lines = []
    for name, array in files.items():
        D.write_idx(d / name, array)
        lines.append(f"{hashlib.sha256((d / name).read_bytes()).hexdigest()}  {name}")
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return d


def test_mnist_checksum_mismatch_names_file_and_digests(tmp_path, monkeypatch):
    for name in ("SHA256SUMS", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(_bundled_dir() / name, tmp_path / name)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(labels.read_bytes())
    raw[-10] ^= 0xFF
    labels.write_bytes(bytes(raw))
    expected = hashlib.sha256((_bundled_dir() / labels.name).read_bytes()).hexdigest()
    actual = hashlib.sha256(bytes(raw)).hexdigest()
    monkeypatch.setattr(datasets, "_bundled_mnist", lambda: tmp_path)
    with pytest.raises(
        ValueError, match=f"{re.escape(str(labels))}: sha256 mismatch, expected {expected}, found {actual}"
    ):
        D.mnist("test")


def test_mnist_loads_from_a_verified_location(tmp_path, monkeypatch):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    d = _fake_bundle(
        tmp_path,
        {"t10k-images-idx3-ubyte.gz": images, "t10k-labels-idx1-ubyte.gz": np.array([3, 1, 4], np.uint8)},
    )
    monkeypatch.setattr(datasets, "_bundled_mnist", lambda: d)
    x, y = D.mnist("test")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, [3, 1, 4])
    assert y.dtype == np.int32


def test_mnist_images_and_labels_must_have_same_length(tmp_path, monkeypatch):
    d = _fake_bundle(
        tmp_path,
        {
            "train-images-idx3-ubyte.gz": np.zeros((3, 28, 28), np.uint8),
            "train-labels-idx1-ubyte.gz": np.zeros(2, np.uint8),
        },
    )
    monkeypatch.setattr(datasets, "_bundled_mnist", lambda: d)
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        D.mnist("train")


def test_mnist_rejects_non_mnist_shapes(tmp_path, monkeypatch):
    d = _fake_bundle(
        tmp_path,
        {
            "train-images-idx3-ubyte.gz": np.zeros((2, 28, 27), np.uint8),
            "train-labels-idx1-ubyte.gz": np.zeros(2, np.uint8),
        },
    )
    monkeypatch.setattr(datasets, "_bundled_mnist", lambda: d)
    with pytest.raises(
        ValueError, match=r"images must be uint8 of shape \(N, 28, 28\), got uint8 \(2, 28, 27\)"
    ):
        D.mnist("train")


def test_mnist_rejects_labels_outside_the_ten_classes(tmp_path, monkeypatch):
    # LBL-1 (host side): a damaged label file fails when read, not as a NaN loss in training.
    d = _fake_bundle(
        tmp_path,
        {
            "t10k-images-idx3-ubyte.gz": np.zeros((3, 28, 28), np.uint8),
            "t10k-labels-idx1-ubyte.gz": np.array([3, 12, 4], np.uint8),
        },
    )
    monkeypatch.setattr(datasets, "_bundled_mnist", lambda: d)
    with pytest.raises(
        ValueError, match=r"\(test\): labels must be in \[0, 10\), got 12 at index 1 \(1 of 3"
    ):
        D.mnist("test")


# ---------------------------------------------------------------- Fashion-MNIST


def _fashion_dir(d: Path, label: int) -> Path:
    """A tiny Fashion-MNIST-shaped directory whose labels all equal `label`."""
    d.mkdir()
    for split, n in (("train", 4), ("t10k", 2)):
        D.write_idx(d / f"{split}-images-idx3-ubyte.gz", np.full((n, 28, 28), label, np.uint8))
        D.write_idx(d / f"{split}-labels-idx1-ubyte.gz", np.full(n, label, np.uint8))
    return d


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    root, env, default = (_fashion_dir(tmp_path / n, i) for i, n in enumerate(("root", "env", "default")))
    monkeypatch.setattr(datasets, "FASHION_MNIST_DEFAULT_DIR", str(default))
    monkeypatch.setenv("FNN_DATA_DIR", str(env))
    assert D.fashion_mnist("train", root=root)[1].tolist() == [0] * 4
    assert D.fashion_mnist("test", root=str(root))[1].tolist() == [0] * 2
    assert D.fashion_mnist("train")[1].tolist() == [1] * 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert D.fashion_mnist("train", root=empty)[1].tolist() == [1] * 4  # root lacks the files
    monkeypatch.delenv("FNN_DATA_DIR")
    x, y = D.fashion_mnist("test")
    assert x.shape == (2, 28, 28) and y.dtype == np.int32 and y.tolist() == [2] * 2


def test_fashion_mnist_not_found_lists_every_place(tmp_path, monkeypatch):
    missing = [tmp_path / n for n in ("root", "env", "default")]
    monkeypatch.setattr(datasets, "FASHION_MNIST_DEFAULT_DIR", str(missing[2]))
    monkeypatch.setenv("FNN_DATA_DIR", str(missing[1]))
    with pytest.raises(FileNotFoundError) as info:
        D.fashion_mnist("train", root=missing[0])
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "looked in" in message
    assert [message.index(str(p)) for p in missing] == sorted(message.index(str(p)) for p in missing)
    monkeypatch.delenv("FNN_DATA_DIR")
    with pytest.raises(FileNotFoundError, match=f"looked in:\n  {re.escape(str(missing[2]))}\n"):
        D.fashion_mnist("test")


def test_fashion_mnist_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        D.fashion_mnist("val", root=tmp_path)


def test_fashion_mnist_rejects_labels_outside_the_ten_classes(tmp_path):
    # LBL-1 (host side), as for MNIST: the value, its index, the range.
    root = _fashion_dir(tmp_path / "root", 10)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\), got 10 at index 0 \(4 of 4"):
        D.fashion_mnist("train", root=root)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not found at {FASHION_DIR}")
def test_fashion_mnist_real_files_and_stats():
    x, y = D.fashion_mnist("train", root=FASHION_DIR)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.shape == (60000,)
    assert np.bincount(y).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    # The constants are the mean and std of pixel/255 rounded to 4 decimals.
    assert abs(x.mean(dtype=np.float64) / 255 - D.FASHION_MNIST_MEAN) < 1e-4
    assert abs(x.std(dtype=np.float64) / 255 - D.FASHION_MNIST_STD) < 1e-4
    z = D.normalize(x, D.FASHION_MNIST_MEAN, D.FASHION_MNIST_STD)
    assert abs(float(z.mean(dtype=np.float64))) < 1e-3 and abs(float(z.std(dtype=np.float64)) - 1) < 1e-3
    xt, yt = D.fashion_mnist("test", root=FASHION_DIR)
    assert xt.shape == (10000, 28, 28) and yt.min() == 0 and yt.max() == 9


# ---------------------------------------------------------------- normalize


@pytest.mark.slow
def test_normalize_mnist_statistics():
    x, _ = D.mnist("train")
    assert abs(x.mean(dtype=np.float64) / 255 - D.MNIST_MEAN) < 1e-4
    assert abs(x.std(dtype=np.float64) / 255 - D.MNIST_STD) < 1e-4
    z = D.normalize(x)
    assert isinstance(z, np.ndarray) and z.dtype == np.float32 and z.shape == x.shape
    assert abs(float(z.mean(dtype=np.float64))) < 1e-3 and abs(float(z.std(dtype=np.float64)) - 1) < 1e-3


def test_normalize_formula_numpy_and_jax():
    raw = np.array([0, 1, 128, 255], np.uint8)
    expected = (raw / 255 - 0.5) / 0.25
    z = D.normalize(raw, mean=0.5, std=0.25)
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    zj = D.normalize(jnp.asarray(raw), mean=0.5, std=0.25)
    assert isinstance(zj, jax.Array) and zj.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(zj), expected, rtol=1e-6, atol=1e-6)


def test_normalize_rejects_bad_std():
    with pytest.raises(ValueError, match="std must be > 0, got 0"):
        D.normalize(np.zeros(3, np.uint8), std=0)


# ---------------------------------------------------------------- batching


def _epoch(n, batch_size, **kw):
    x = np.arange(n)
    out = list(D.batches(x, x * 10, batch_size, **kw))
    for xb, yb in out:
        np.testing.assert_array_equal(yb, xb * 10)  # x and y stay paired
    return [xb for xb, _ in out]


def test_batches_shuffle_is_determined_by_key():
    k = jax.random.key(0)
    a, b = _epoch(50, 8, key=k), _epoch(50, 8, key=k)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    c = _epoch(50, 8, key=jax.random.key(1))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    np.testing.assert_array_equal(np.concatenate(a), D.epoch_permutation(k, 50))
    legacy = _epoch(50, 8, key=jax.random.PRNGKey(0))  # legacy uint32 keys work too
    assert sorted(np.concatenate(legacy).tolist()) == list(range(50))


@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (5, 8), (1, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_cover_each_index_once_and_drop_last(n, batch_size, drop_last):
    got = _epoch(n, batch_size, key=jax.random.key(n), drop_last=drop_last)
    sizes = [len(b) for b in got]
    full, rest = divmod(n, batch_size)
    assert sizes == [batch_size] * full + ([rest] if rest and not drop_last else [])
    assert len(got) == D.num_batches(n, batch_size, drop_last)
    seen = np.concatenate(got) if got else np.array([], int)
    assert len(np.unique(seen)) == len(seen)  # no index twice
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))


def test_num_batches_like_dataloader():
    assert [D.num_batches(10, 3), D.num_batches(10, 3, drop_last=True)] == [4, 3]
    assert [D.num_batches(0, 4), D.num_batches(3, 4, True), D.num_batches(60000, 64)] == [0, 0, 938]


def test_batches_without_shuffle_keep_order_and_array_type():
    got = _epoch(7, 3, shuffle=False)
    np.testing.assert_array_equal(np.concatenate(got), np.arange(7))
    xj = jnp.arange(6.0)
    (xb, yb), _ = list(D.batches(xj, jnp.arange(6), 4, key=jax.random.key(0)))
    assert isinstance(xb, jax.Array) and isinstance(yb, jax.Array) and xb.shape == (4,)


def test_epoch_permutation_is_a_permutation_and_jits():
    k = jax.random.key(3)
    p = D.epoch_permutation(k, 100)
    assert sorted(np.asarray(p).tolist()) == list(range(100))
    np.testing.assert_array_equal(jax.jit(D.epoch_permutation, static_argnums=1)(k, 100), p)


def test_batching_errors():
    x = np.zeros(4)
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        D.batches(x, x, 0, key=k)
    with pytest.raises(TypeError, match=r"batch_size must be an int, got 2\.5"):
        D.batches(x, x, 2.5, key=k)
    with pytest.raises(TypeError, match="batch_size must be an int, got True"):
        D.num_batches(4, True)
    with pytest.raises(ValueError, match="x and y must have the same length, got x 4 and y 3"):
        D.batches(x, x[:3], 2, key=k)
    with pytest.raises(
        ValueError, match=r"needs a PRNG key \(key=jax.random.key\(...\)\) when shuffle=True, got None"
    ):
        D.batches(x, x, 2)
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        D.num_batches(-1, 2)


def test_batches_check_class_labels_when_given_num_classes():
    # LBL-1 (host side): with num_classes, a bad label fails at the call, named with its index.
    x, y = np.zeros((5, 2)), np.array([0, 2, 3, 1, 0])
    with pytest.raises(ValueError, match=r"y labels must be in \[0, 3\), got 3 at index 2"):
        D.batches(x, y, 2, shuffle=False, num_classes=3)
    with pytest.raises(TypeError, match="y must have an integer dtype"):
        D.batches(x, y.astype(np.float32), 2, shuffle=False, num_classes=4)
    got = [yb.tolist() for _, yb in D.batches(x, y, 2, shuffle=False, num_classes=4)]
    assert got == [[0, 2], [3, 1], [0]]
