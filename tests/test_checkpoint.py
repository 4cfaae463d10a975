"""fnn.checkpoint: bit-exact pytree round trips, atomic writes, leaf-naming mismatch errors."""

import json
import os
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import checkpoint


class MomentumState(NamedTuple):
    momentum: object
    count: object


def _state():
    """A training state shaped like the trainer's: params, BN state, optimizer, key, history."""
    rng = np.random.default_rng(0)
    params = (
        {
            "weight": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32),
            "bias": jnp.asarray(rng.standard_normal(4), jnp.bfloat16),
        },
        {},
        {"weight": rng.standard_normal((2, 4)).astype(np.float16)},
    )
    return {
        "params": params,
        "state": (
            {},
            {
                "running_mean": jnp.zeros(4),
                "running_var": jnp.ones(4),
                "num_batches_tracked": jnp.array(7, jnp.int32),
            },
            {},
        ),
        "opt_state": MomentumState(
            momentum=jax.tree_util.tree_map(jnp.zeros_like, params), count=jnp.array(12, jnp.int32)
        ),
        "key": jax.random.key(42),
        "keys": jax.random.split(jax.random.key(1), 3),
        "raw_key": jax.random.PRNGKey(5),  # a uint32 array, saved as one
        "epoch": 3,
        "lr": 0.1,
        "best": float("nan"),
        "done": False,
        "name": "mlp",
        "scheduler": None,
        "history": [{"loss": 2.3, "acc": 0.1}, {"loss": 0.5, "acc": 0.9}],
        "numpy": (
            np.arange(6, dtype=np.int64).reshape(2, 3),
            np.array([True, False]),
            np.array([1 + 2j], np.complex64),
            np.uint8(200),
            np.zeros((0, 5), np.float32),
        ),
        "float8": jnp.array([0.5, -2.0], jnp.float8_e4m3fn),
    }


def _assert_same(a, b, path="tree"):
    """Bit-exact equality of two pytrees, leaf types included (NaN == NaN)."""
    if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        assert isinstance(b, jax.Array) and b.dtype == a.dtype and b.shape == a.shape, path
        np.testing.assert_array_equal(jax.random.key_data(b), jax.random.key_data(a))
    elif isinstance(a, (np.ndarray, np.generic, jax.Array)):
        assert type(b) is type(a) or (isinstance(a, jax.Array) and isinstance(b, jax.Array)), path
        assert (b.dtype, b.shape) == (a.dtype, a.shape), path
        assert np.asarray(b).tobytes() == np.asarray(a).tobytes(), path
    elif isinstance(a, dict):
        assert type(b) is dict and list(b) == list(a), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(b) == len(a), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, path
    else:
        assert type(b) is type(a) and b == a, path


def test_round_trip_with_like_is_exact(tmp_path):
    tree = _state()
    checkpoint.save(tmp_path / "ckpt", tree)
    back, metadata = checkpoint.load(tmp_path / "ckpt", like=tree)
    assert metadata is None
    _assert_same(tree, back)
    assert type(back["opt_state"]) is MomentumState
    # The restored key is the same key: it draws the same numbers.
    np.testing.assert_array_equal(jax.random.normal(back["key"], (3,)), jax.random.normal(tree["key"], (3,)))


def test_round_trip_without_like_gives_numpy_and_dicts(tmp_path):
    tree = _state()
    checkpoint.save(tmp_path / "ckpt", tree)
    back, _ = checkpoint.load(tmp_path / "ckpt")

    # Documented: without `like`, arrays are numpy and NamedTuples come back as dicts.
    def as_saved(x):  # what load without `like` promises (insertion order kept)
        if isinstance(x, jax.Array) and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return np.asarray(x)
        if isinstance(x, tuple) and hasattr(x, "_asdict"):
            return {k: as_saved(v) for k, v in x._asdict().items()}
        if isinstance(x, dict):
            return {k: as_saved(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(as_saved(v) for v in x)
        return x

    _assert_same(as_saved(tree), back)
    assert isinstance(back["params"][0]["weight"], np.ndarray)
    assert isinstance(back["numpy"][3], np.uint8)


def test_float64_and_int64_jax_leaves(tmp_path, x64):
    tree = {"w": jnp.array([np.pi, -0.0, np.inf], jnp.float64), "n": jnp.array([2**40], jnp.int64)}
    checkpoint.save(tmp_path / "ckpt", tree)
    _assert_same(tree, checkpoint.load(tmp_path / "ckpt", like=tree)[0])


def test_other_key_impl_round_trips(tmp_path):
    key = jax.random.key(7, impl="rbg")
    checkpoint.save(tmp_path / "ckpt", key)
    back, _ = checkpoint.load(tmp_path / "ckpt")
    assert str(jax.random.key_impl(back)) == "rbg"
    np.testing.assert_array_equal(jax.random.key_data(back), jax.random.key_data(key))
    with pytest.raises(ValueError, match="<root>: expected PRNG key impl threefry2x32, found rbg"):
        checkpoint.load(tmp_path / "ckpt", like=jax.random.key(0))


def test_metadata_round_trip(tmp_path):
    metadata = {"fnn": "0.1.0", "lr": 0.1, "layers": [784, 512, 10], "note": None, "ok": True}
    checkpoint.save(tmp_path / "ckpt", {"w": np.ones(2)}, metadata=metadata)
    assert checkpoint.load(tmp_path / "ckpt")[1] == metadata
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable, got dict"):
        checkpoint.save(tmp_path / "other", {}, metadata={"a": np.ones(2)})
    assert not (tmp_path / "other").exists()


def test_path_is_used_exactly_and_overwritten(tmp_path):
    path = tmp_path / "model.ckpt"
    checkpoint.save(str(path), {"v": 1})
    checkpoint.save(path, {"v": 2})
    assert os.listdir(tmp_path) == ["model.ckpt"]
    assert checkpoint.load(path)[0] == {"v": 2}


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, failing):
    path = tmp_path / "ckpt"
    checkpoint.save(path, {"epoch": 1, "w": np.arange(3.0)})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(f"simulated {failing} failure")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match=f"simulated {failing} failure"):
        checkpoint.save(path, {"epoch": 2, "w": np.arange(4.0)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt"]
    assert path.read_bytes() == before
    assert checkpoint.load(path)[0]["epoch"] == 1


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("no rename")))
    with pytest.raises(OSError, match="no rename"):
        checkpoint.save(tmp_path / "ckpt", {"w": np.ones(3)})
    assert os.listdir(tmp_path) == []


def test_shape_mismatch_names_the_leaf(tmp_path):
    saved = {"params": [{"weight": np.zeros((2, 2))}, {"weight": np.zeros((256, 784), np.float32)}]}
    like = {"params": [{"weight": np.zeros((2, 2))}, {"weight": jnp.zeros((512, 784))}]}
    checkpoint.save(tmp_path / "ckpt", saved)
    with pytest.raises(
        ValueError, match=re.escape("params[1]['weight']: expected shape (512, 784), found (256, 784)")
    ):
        checkpoint.load(tmp_path / "ckpt", like=like)


def test_structure_and_dtype_mismatches_name_the_first_leaf(tmp_path):
    tree = _state()
    checkpoint.save(tmp_path / "ckpt", tree)

    def expect(message, **changes):
        with pytest.raises(ValueError, match=re.escape(message)):
            checkpoint.load(tmp_path / "ckpt", like=dict(tree, **changes))

    opt = tree["opt_state"]
    expect(
        "opt_state.count: expected dtype float32, found int32", opt_state=opt._replace(count=jnp.array(0.0))
    )
    expect(
        "state[1]: expected keys ['running_mean', 'running_var', 'num_batches_tracked', 'extra'], "
        "found ['running_mean', 'running_var', 'num_batches_tracked']",
        state=({}, dict(tree["state"][1], extra=jnp.zeros(1)), {}),
    )
    expect("history: expected list of length 3, found list of length 2", history=tree["history"] + [{}])
    expect("scheduler: expected an array, found None", scheduler=np.zeros(1))
    expect("params: expected list, found tuple", params=list(tree["params"]))
    expect("epoch: expected float, found int", epoch=3.0)
    expect("key: expected an array, found a PRNG key", key=jax.random.key_data(tree["key"]))
    expect("keys: expected key shape (2,), found (3,)", keys=jax.random.split(tree["key"]))
    # Two mismatches: the first in traversal order is named.
    expect(
        "params[0]['weight']: expected shape (3, 4), found (4, 3)",
        params=(
            {"weight": jnp.zeros((3, 4)), "bias": jnp.zeros(4, jnp.bfloat16)},
            {},
            {"weight": np.zeros((4, 2), np.float16)},
        ),
    )


def test_namedtuple_fields_checked(tmp_path):
    class Other(NamedTuple):
        momentum: object
        step: object

    checkpoint.save(tmp_path / "ckpt", MomentumState(np.zeros(2), 0))
    with pytest.raises(
        ValueError, match=r"<root>: expected NamedTuple Other, found NamedTuple MomentumState"
    ):
        checkpoint.load(tmp_path / "ckpt", like=Other(np.zeros(2), 0))


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no checkpoint file at {missing}")):
        checkpoint.load(missing)
    good = tmp_path / "good"
    checkpoint.save(good, {"w": np.arange(1000.0)})
    cases = {"garbage": b"not a checkpoint at all", "empty": b"", "cut": good.read_bytes()[:300]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name}: not a readable fnn checkpoint")):
            checkpoint.load(tmp_path / name)
    with open(tmp_path / "plain.npz", "wb") as f:
        np.savez(f, w=np.ones(2))
    with pytest.raises(
        ValueError, match=re.escape(f"{tmp_path / 'plain.npz'}: not a readable fnn checkpoint")
    ):
        checkpoint.load(tmp_path / "plain.npz")


def test_unsupported_leaves_are_rejected_with_their_path(tmp_path):
    with pytest.raises(TypeError, match=re.escape("opt[1]: cannot save a set")):
        checkpoint.save(tmp_path / "ckpt", {"opt": [1, {2}]})
    with pytest.raises(TypeError, match=re.escape("params: dict keys must be str, got 0")):
        checkpoint.save(tmp_path / "ckpt", {"params": {0: np.ones(1)}})
    with pytest.raises(TypeError, match="<root>: object arrays cannot be saved"):
        checkpoint.save(tmp_path / "ckpt", np.array([None]))
    assert os.listdir(tmp_path) == []
    checkpoint.save(tmp_path / "ckpt", {"w": [1, 2]})
    with pytest.raises(TypeError, match=re.escape("like w: cannot restore into a set")):
        checkpoint.load(tmp_path / "ckpt", like={"w": {1, 2}})


# ------------------------------------------------------------------ malformed manifests


def _tree_node(m, name):
    """The manifest node of top-level dict entry `name`."""
    return m["tree"]["v"][m["tree"]["k"].index(name)]


def _pop(key):
    return lambda node: node.pop(key)


def _set(key, value):
    return lambda node: node.__setitem__(key, value)


# (what to change in the manifest, the message it must give). The tree saved is
# {"w": array, "k": typed key, "h": [int, float, str, bool, None], "nt": MomentumState}.
MALFORMED = {
    "no-tree": (lambda m: m.pop("tree"), "<PATH>: malformed checkpoint manifest: it has no 'tree' entry"),
    "tree-not-object": (
        lambda m: m.__setitem__("tree", [1]),
        "at <root>: a node must be a JSON object, got list",
    ),
    "no-kind": (lambda m: _pop("t")(_tree_node(m, "w")), "at w: node has no kind ('t')"),
    "unknown-kind": (lambda m: _set("t", "set")(_tree_node(m, "w")), "at w: unknown node kind 'set'"),
    "array-no-shape": (lambda m: _pop("shape")(_tree_node(m, "w")), "at w: array node has no 'shape'"),
    "array-index-str": (
        lambda m: _set("i", "0")(_tree_node(m, "w")),
        "at w: array node's 'i' must be an int, got '0'",
    ),
    "array-shape-float": (
        lambda m: _set("shape", [2.0])(_tree_node(m, "w")),
        "at w: array node's 'shape' must be a list of ints >= 0, got [2.0]",
    ),
    "array-unknown-dtype": (
        lambda m: _set("dtype", "<f3")(_tree_node(m, "w")),
        "at w: unknown dtype '<f3'",
    ),
    "key-no-impl": (lambda m: _pop("impl")(_tree_node(m, "k")), "at k: key node has no 'impl'"),
    "int-value-str": (
        lambda m: _set("v", "1")(_tree_node(m, "h")["v"][0]),
        "at h[0]: int node's 'v' must be an int, got '1'",
    ),
    "float-value-bool": (
        lambda m: _set("v", True)(_tree_node(m, "h")["v"][1]),
        "at h[1]: float node's 'v' must be a float, got True",
    ),
    "list-values-not-list": (
        lambda m: _set("v", {"0": 1})(_tree_node(m, "h")),
        "at h: list node's 'v' must be a list of nodes, got {'0': 1}",
    ),
    "dict-keys-not-str": (
        lambda m: m["tree"]["k"].__setitem__(0, 0),
        "at <root>: dict node's 'k' must be a list of str, got [0,",
    ),
    "dict-lengths-differ": (
        lambda m: m["tree"]["v"].pop(),
        "at <root>: dict node has 4 names but 3 values",
    ),
    "dict-repeated-key": (
        lambda m: m["tree"]["k"].__setitem__(1, m["tree"]["k"][0]),
        "at <root>: dict node repeats a name",
    ),
    "namedtuple-no-fields": (
        lambda m: _pop("fields")(_tree_node(m, "nt")),
        "at nt: namedtuple node has no 'fields'",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_a_value_error_naming_file_and_problem(tmp_path, case):
    tree = {
        "w": np.ones(2, np.float32),
        "k": jax.random.key(0),
        "h": [1, 2.5, "a", True, None],
        "nt": MomentumState(np.zeros(1), 3),
    }
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, tree)
    with np.load(path) as npz:
        entries = {name: npz[name] for name in npz.files}
    manifest = json.loads(bytes(entries["__manifest__"]).decode())
    change, message = MALFORMED[case]
    change(manifest)
    entries["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **entries)
    expected = message.replace("<PATH>", str(path))
    if "<PATH>" not in message:
        expected = f"{path}: malformed checkpoint manifest {message}"
    for like in (None, tree):  # both loaders check before reading: no bare KeyError or TypeError
        with pytest.raises(ValueError, match=re.escape(expected)):
            checkpoint.load(path, like=like)
