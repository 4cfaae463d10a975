"""A file format: save and load any pytree with JSON metadata, atomically.

    save(path, tree, metadata={"lr": 0.1})
    tree, metadata = load(path, like=template)

This module knows nothing of training; ``fnn.train.checkpointing`` decides what ``fit``
stores in these files (a TrainState, its history and fingerprint) and under which names.

**What can be saved**: dicts (str keys), lists, tuples, NamedTuples, None, bool, int,
float, str, numpy and jax arrays of any dtype (bfloat16, float8, int4 ...) and typed PRNG
keys (``jax.random.key``; raw ``PRNGKey`` uint32 arrays are ordinary arrays). Anything
else raises TypeError naming its path; ``metadata`` is any JSON-serialisable value.

**The file** is an ``.npz`` at exactly ``path``: ``__manifest__`` is UTF-8 JSON (format,
version, the tree's node kinds, keys, fields, scalars, each array's dtype and shape, the
metadata); ``a0, a1, ...`` hold the arrays. Nothing is pickled. The write goes to a
temporary file in the same directory, fsynced, then ``os.replace``d over ``path``: a crash
leaves the old file or the new one, never a torn one.

**Loading** without ``like`` gives numpy arrays, typed keys, dicts, lists and tuples as
saved (NamedTuples as dicts). With ``like`` it returns exactly ``like``'s structure (its
NamedTuple classes, dict key order, jax or numpy arrays), bit-exact; the first mismatch of
structure, shape, dtype or key impl raises ValueError naming the leaf, e.g.
``params[1]['weight']: expected shape (512, 784), found (256, 784)``. A missing file raises
FileNotFoundError, an unreadable file or malformed manifest ValueError naming the file.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["load", "save"]

_FORMAT = "fnn.checkpoint"
_VERSION = 1
_MANIFEST = "__manifest__"
_ARRAY_TYPES = (np.ndarray, np.generic, jax.Array)


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _join(path: str, part: Any, how: str) -> str:
    """Child path: top-level dict keys and fields bare, deeper ones as ['k'] / .f; [i]."""
    if how == "index":
        return f"{path}[{part}]"
    if not path:
        return str(part)
    return f"{path}[{part!r}]" if how == "key" else f"{path}.{part}"


def _where(path: str) -> str:
    return path or "<root>"


# ---------------------------------------------------------------- saving


def _encode(x: Any, path: str, arrays: list[np.ndarray]) -> dict:
    """Manifest node for `x`; its arrays are appended to `arrays` and referenced by index."""
    if _is_key(x):
        arrays.append(np.asarray(jax.random.key_data(x)))
        return {"t": "key", "i": len(arrays) - 1, "impl": str(jax.random.key_impl(x)), "shape": list(x.shape)}
    if isinstance(x, _ARRAY_TYPES):  # before float: np.float64 subclasses float
        a = np.asarray(x)
        if a.dtype.hasobject:
            raise TypeError(f"{_where(path)}: object arrays cannot be saved without pickling")
        ext = a.dtype.type.__module__ != "numpy"  # ml_dtypes (bfloat16, ...): no npy descriptor
        arrays.append(a.view(f"u{a.dtype.itemsize}") if ext else a)
        return {
            "t": "array",
            "i": len(arrays) - 1,
            "dtype": a.dtype.name if ext else a.dtype.str,
            "ext": ext,
            "shape": list(a.shape),
            "scalar": isinstance(x, np.generic),
        }
    if x is None:
        return {"t": "none"}
    for kind in (bool, int, float, str):  # bool first: it subclasses int
        if isinstance(x, kind):
            return {"t": kind.__name__, "v": kind(x)}
    if _is_namedtuple(x):
        return {
            "t": "namedtuple",
            "name": type(x).__name__,
            "fields": list(x._fields),
            "v": [_encode(v, _join(path, f, "field"), arrays) for f, v in zip(x._fields, x, strict=True)],
        }
    if isinstance(x, (tuple, list)):
        return {
            "t": type(x).__name__,
            "v": [_encode(v, _join(path, i, "index"), arrays) for i, v in enumerate(x)],
        }
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{_where(path)}: dict keys must be str, got {bad[0]!r}")
        return {
            "t": "dict",
            "k": list(x),
            "v": [_encode(v, _join(path, k, "key"), arrays) for k, v in x.items()],
        }
    raise TypeError(
        f"{_where(path)}: cannot save a {type(x).__name__}; leaves must be arrays, "
        "PRNG keys, None, bool, int, float or str"
    )


def _fsync_dir(directory: str) -> None:
    """Make the rename durable; skipped where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path: str | os.PathLike, tree: Any, metadata: Any = None) -> None:
    """Write `tree` and JSON `metadata` to `path` atomically (see the module docstring).

    Args:
        path: the file to write, exactly (no suffix is added); its directory must exist.
        tree: the pytree to save (see "What can be saved" in the module docstring).
        metadata: any JSON-serialisable value, or None.

    Returns:
        None.

    Raises:
        TypeError: a leaf of an unsupported type (named by its path), or metadata that is
            not JSON-serialisable.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from fnn import checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "run.npz")
        >>> checkpoint.save(path, {"w": np.array([1.5, 2.0]), "epoch": 3}, metadata={"lr": 0.1})
        >>> tree, meta = checkpoint.load(path)
        >>> tree["w"].tolist(), tree["epoch"], meta
        ([1.5, 2.0], 3, {'lr': 0.1})
        >>> tmp.cleanup()
    """
    path = os.fspath(path)
    arrays: list[np.ndarray] = []
    manifest = {"format": _FORMAT, "version": _VERSION, "tree": _encode(tree, "", arrays)}
    try:
        manifest["metadata"] = json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serialisable, got {type(metadata).__name__} ({e})") from None
    entries = {f"a{i}": a for i, a in enumerate(arrays)}
    entries[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


# ---------------------------------------------------------------- loading


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Manifest and raw array entries of the file; any failure names the path."""
    try:
        # Our own handle: np.load leaves the file it opened unclosed when a truncated
        # archive makes it raise (a ResourceWarning, an error under filterwarnings).
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            manifest = json.loads(bytes(npz[_MANIFEST]).decode())
            entries = {name: npz[name] for name in npz.files if name != _MANIFEST}
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint file at {path}") from None
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        EOFError,
        AttributeError,
        TypeError,
        zipfile.BadZipFile,
    ) as e:
        raise ValueError(f"{path}: not a readable fnn checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError(f"{path}: not an fnn checkpoint (manifest has no format {_FORMAT!r})")
    if manifest.get("version") != _VERSION:
        raise ValueError(
            f"{path}: unsupported checkpoint version {manifest.get('version')!r} "
            f"(this fnn reads version {_VERSION})"
        )
    if "tree" not in manifest:
        raise ValueError(f"{path}: malformed checkpoint manifest: it has no 'tree' entry")
    _check_node(manifest["tree"], "", path)
    return manifest, entries


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(d) and d >= 0 for d in v)


# Per node kind: the keys it must have, each with its check and what the check expects.
_SCALAR = {"bool": bool, "int": int, "float": float, "str": str}
_FIELDS = {
    "array": {
        "i": (_is_int, "an int"),
        "dtype": (lambda v: isinstance(v, str), "a dtype name"),
        "ext": (lambda v: isinstance(v, bool), "a bool"),
        "shape": (_is_shape, "a list of ints >= 0"),
        "scalar": (lambda v: isinstance(v, bool), "a bool"),
    },
    "key": {
        "i": (_is_int, "an int"),
        "impl": (lambda v: isinstance(v, str), "a PRNG impl name"),
        "shape": (_is_shape, "a list of ints >= 0"),
    },
    "none": {},
    **{
        t: {
            "v": (
                (lambda v, k=k: isinstance(v, k) and (k is bool or not isinstance(v, bool))),
                f"{'an' if t == 'int' else 'a'} {t}",
            )
        }
        for t, k in _SCALAR.items()
    },
    "list": {"v": (lambda v: isinstance(v, list), "a list of nodes")},
    "tuple": {"v": (lambda v: isinstance(v, list), "a list of nodes")},
    "dict": {"k": (_is_str_list, "a list of str"), "v": (lambda v: isinstance(v, list), "a list of nodes")},
    "namedtuple": {
        "name": (lambda v: isinstance(v, str), "a str"),
        "fields": (_is_str_list, "a list of str"),
        "v": (lambda v: isinstance(v, list), "a list of nodes"),
    },
}


def _check_node(node: Any, path: str, file: str) -> None:
    """Check one manifest node and its children, so that loading never meets a bare
    KeyError or TypeError from a hand-edited or foreign manifest."""
    where = _where(path)

    def bad(what: str) -> ValueError:
        return ValueError(f"{file}: malformed checkpoint manifest at {where}: {what}")

    if not isinstance(node, dict):
        raise bad(f"a node must be a JSON object, got {type(node).__name__}")
    t = node.get("t")
    if t not in _FIELDS:
        raise bad(f"unknown node kind {t!r}" if "t" in node else "node has no kind ('t')")
    for name, (ok, expected) in _FIELDS[t].items():
        if name not in node:
            raise bad(f"{t} node has no {name!r}")
        if not ok(node[name]):
            raise bad(f"{t} node's {name!r} must be {expected}, got {node[name]!r}")
    if t == "array":
        try:
            _node_dtype(node)
        except (TypeError, ValueError):
            raise bad(f"unknown dtype {node['dtype']!r}") from None
    if t in ("dict", "namedtuple"):
        names = node["k"] if t == "dict" else node["fields"]
        if len(names) != len(node["v"]):
            raise bad(f"{t} node has {len(names)} names but {len(node['v'])} values")
        if len(set(names)) != len(names):
            raise bad(f"{t} node repeats a name: {names}")
        how = "key" if t == "dict" else "field"
        for k, v in zip(names, node["v"], strict=True):
            _check_node(v, _join(path, k, how), file)
    elif t in ("list", "tuple"):
        for i, v in enumerate(node["v"]):
            _check_node(v, _join(path, i, "index"), file)


def _node_dtype(node: dict) -> np.dtype:
    return jnp.dtype(node["dtype"]) if node["ext"] else np.dtype(node["dtype"])


def _array(node: dict, path: str, entries: dict[str, np.ndarray], file: str) -> np.ndarray:
    """The stored array of an 'array' or 'key' node, checked against the manifest."""
    name = f"a{node['i']}"
    if name not in entries:
        raise ValueError(f"{file}: corrupt checkpoint, entry {name} for {_where(path)} is missing")
    a = entries[name]
    if node["t"] == "array":
        if node["ext"]:
            a = a.view(_node_dtype(node))
        expected = (tuple(node["shape"]), _node_dtype(node))
        if (a.shape, a.dtype) != expected:
            raise ValueError(
                f"{file}: corrupt checkpoint, entry {name} for {_where(path)} is "
                f"{a.dtype} {a.shape}, manifest says {expected[1]} {expected[0]}"
            )
    return a


def _kind(node: dict) -> str:
    t = node["t"]
    if t == "namedtuple":
        return f"NamedTuple {node['name']}"
    return {"array": "an array", "key": "a PRNG key", "none": "None"}.get(t, t)


def _like_kind(like: Any) -> str | None:
    if _is_key(like):
        return "a PRNG key"
    if isinstance(like, _ARRAY_TYPES):
        return "an array"
    if like is None:
        return "None"
    if _is_namedtuple(like):
        return f"NamedTuple {type(like).__name__}"
    for kind in (bool, int, float, str, dict, list, tuple):  # bool first: it subclasses int
        if isinstance(like, kind):
            return kind.__name__
    return None


def _decode(node: dict, path: str, entries: dict, file: str) -> Any:
    """Rebuild a node without a template (see the module docstring for the types)."""
    t = node["t"]
    if t == "array":
        a = _array(node, path, entries, file)
        return a[()] if node["scalar"] else a
    if t == "key":
        return jax.random.wrap_key_data(_array(node, path, entries, file), impl=node["impl"])
    if t == "none":
        return None
    if t in ("bool", "int", "float", "str"):
        return node["v"]
    if t == "list" or t == "tuple":
        items = [_decode(v, _join(path, i, "index"), entries, file) for i, v in enumerate(node["v"])]
        return items if t == "list" else tuple(items)
    if t == "namedtuple" or t == "dict":
        names = node["fields"] if t == "namedtuple" else node["k"]
        how = "field" if t == "namedtuple" else "key"
        return {
            k: _decode(v, _join(path, k, how), entries, file) for k, v in zip(names, node["v"], strict=True)
        }
    raise ValueError(f"{file}: corrupt checkpoint, unknown node kind {t!r} at {_where(path)}")


def _restore(node: dict, like: Any, path: str, entries: dict, file: str) -> Any:
    """Rebuild a node in the exact structure of `like`, checking it matches."""
    where, t, expected = _where(path), node["t"], _like_kind(like)
    if expected is None:
        raise TypeError(
            f"like {where}: cannot restore into a {type(like).__name__}; leaves must be "
            "arrays, PRNG keys, None, bool, int, float or str"
        )
    if _kind(node) != expected:
        raise ValueError(f"{where}: expected {expected}, found {_kind(node)}")
    if _is_key(like):
        impl = str(jax.random.key_impl(like))
        if node["impl"] != impl:
            raise ValueError(f"{where}: expected PRNG key impl {impl}, found {node['impl']}")
        if tuple(node["shape"]) != like.shape:
            raise ValueError(f"{where}: expected key shape {like.shape}, found {tuple(node['shape'])}")
        return jax.random.wrap_key_data(_array(node, path, entries, file), impl=impl)
    if isinstance(like, _ARRAY_TYPES):
        if tuple(node["shape"]) != np.shape(like):
            raise ValueError(f"{where}: expected shape {np.shape(like)}, found {tuple(node['shape'])}")
        if _node_dtype(node) != like.dtype:
            raise ValueError(f"{where}: expected dtype {like.dtype}, found {_node_dtype(node)}")
        a = _array(node, path, entries, file)
        if isinstance(like, jax.Array):
            return jnp.asarray(a)
        return a[()] if isinstance(like, np.generic) else a
    if t in ("none", "bool", "int", "float", "str"):
        return node.get("v")
    if t == "namedtuple" or t == "dict":
        names = node["fields"] if t == "namedtuple" else node["k"]
        children = like._asdict() if t == "namedtuple" else like
        if set(names) != set(children):
            what = "fields" if t == "namedtuple" else "keys"
            raise ValueError(f"{where}: expected {what} {list(children)}, found {names}")
        how = "field" if t == "namedtuple" else "key"
        stored = dict(zip(names, node["v"], strict=True))
        values = {k: _restore(stored[k], v, _join(path, k, how), entries, file) for k, v in children.items()}
        return type(like)(**values) if t == "namedtuple" else values
    # list or tuple
    if len(node["v"]) != len(like):
        raise ValueError(f"{where}: expected {t} of length {len(like)}, found {t} of length {len(node['v'])}")
    items = [
        _restore(v, l, _join(path, i, "index"), entries, file)
        for i, (v, l) in enumerate(zip(node["v"], like, strict=True))
    ]
    return items if t == "list" else tuple(items)


def load(path: str | os.PathLike, like: Any = None) -> tuple[Any, Any]:
    """Read a checkpoint written by `save`; returns (tree, metadata). See the module docstring.

    Args:
        path: a file written by ``save``.
        like: None, or a pytree of the expected structure, whose NamedTuple classes, dict
            key order and array kinds (jax or numpy) the result takes. Its lists must have
            the saved length (load a growing history without ``like``).

    Returns:
        ``(tree, metadata)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file or a malformed manifest (naming the file and the
            node; the whole manifest is checked before any array is read), or a mismatch
            with ``like`` (naming the leaf's path).

    Example:
        >>> import os, tempfile, jax, jax.numpy as jnp
        >>> from fnn import checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "params.npz")
        >>> checkpoint.save(path, {"weight": jnp.ones((2, 3))})
        >>> checkpoint.load(path, like={"weight": jnp.zeros((3, 3))})
        Traceback (most recent call last):
        ...
        ValueError: weight: expected shape (3, 3), found (2, 3)
        >>> tree, _ = checkpoint.load(path, like={"weight": jnp.zeros((2, 3))})
        >>> isinstance(tree["weight"], jax.Array), tree["weight"].sum().tolist()  # jax, as in like
        (True, 6.0)
        >>> tmp.cleanup()
    """
    file = os.fspath(path)
    manifest, entries = _read(file)
    root = manifest["tree"]
    tree = _decode(root, "", entries, file) if like is None else _restore(root, like, "", entries, file)
    return tree, manifest.get("metadata")
