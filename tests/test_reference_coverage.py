"""Every public function and documented option of fnn has a PyTorch fixture case.

Reads every tests/torch_reference/*.json (see the README there): each case names the fnn
API it checks ("api", a dotted public name) and the options it exercises ("kwargs", by fnn's
argument names; a default value counts). An (api, option) pair is covered when some case
of some file has that option in its kwargs. The public API is

- fnn.functional: every public function (its ``__all__`` when it has one), minus submodules,
  the ``*_backward`` functions (covered through their op: the fixtures compare them too) and
  the helpers in HELPERS;
- fnn.nn: every Layer and Loss class of ``__all__`` except the abstract bases;
- fnn.init: ``__all__``;
- fnn.optim: the optimizers (the functions that build a named optimizer), the schedules, the
  clipping and max-norm functions, and ReduceLROnPlateau. The building blocks (chain, scale,
  scale_by_*, apply_updates, ...) have no torch counterpart of their own and are checked
  through the optimizers they make up.

The options of a function are its parameters with a default or keyword-only; of a class, its
constructor's, plus the mode argument of a Layer's apply (``train``), covered when a case's
"steps" run in both modes. EXEMPT lists what torch
cannot check, each with its reason; an exemption that names nothing real, or a pair a fixture
does cover, fails too, so the list stays short and true.
"""

import dataclasses
import importlib
import inspect
import json
import pathlib
import types

import pytest

import fnn.functional as F
from fnn import init, nn, optim

REF = pathlib.Path(__file__).parent / "torch_reference"
REPO = pathlib.Path(__file__).parent.parent

HELPERS = {"backward_of"}  # builds the backward of a function from its VJP: nothing of torch's
EXEMPT = {
    ("*", "key"): "a JAX PRNG key: torch's random stream differs (distributions: test_init, test_dropout)",
    ("*", "dtype"): "a dtype switch; the fixtures run in float64 and test_reference_init in both dtypes",
    ("fnn.nn.FunctionLoss", "*"): "wraps any user function; torch has no counterpart",
    ("fnn.nn.Linear", "weight_init"): "fnn's hook for any fnn.init function; those are covered",
    ("fnn.nn.Linear", "bias_init"): "fnn's hook for any fnn.init function; those are covered",
}
ABSTRACT = {nn.Layer, nn.Elementwise, nn.Loss}


def fixture_files():
    return sorted(REF.glob("*.json"))


def load(path):
    return json.loads(path.read_text())


def fixture_cases(doc):
    """The cases of one fixture: the dicts with an "api" in its top-level lists ("cases";
    max_norm.json keeps its older "renorm" and "sgd" lists)."""
    return [c for v in doc.values() if isinstance(v, list) for c in v if isinstance(c, dict) and "api" in c]


def covered():
    pairs = set()
    for path in fixture_files():
        for case in fixture_cases(load(path)):
            pairs.add((case["api"], "*"))
            pairs |= {(case["api"], k) for k in case.get("kwargs", {})}
            # layers.json runs each layer over "steps", each in a mode: the call's argument.
            modes = {step["train"] for step in case.get("steps", ()) if "train" in step}
            if modes == {True, False}:
                pairs.add((case["api"], "train"))
    return pairs


def _is_option(p):
    return p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)


def _parameters(obj):
    """(all named parameters, the options among them) of a function or a class."""
    # *args count as a name (Sequential(*layers) is written {"layers": [...]}), never as an option.
    params = [p for p in inspect.signature(obj).parameters.values() if p.kind is not p.VAR_KEYWORD]
    names, options = [p.name for p in params], [p.name for p in params if _is_option(p)]
    if inspect.isclass(obj) and issubclass(obj, nn.Layer):
        modes = [p.name for p in inspect.signature(obj.apply).parameters.values() if p.kind is p.KEYWORD_ONLY]
        names, options = names + modes, options + modes
    return names, options


def _is_optimizer(f):
    try:
        made = f()
    except (TypeError, ValueError):  # a required argument: not an optimizer with torch's defaults
        return False
    return isinstance(made, optim.GradientTransformation) and "name" in made.hyperparams


def public_api():
    """{dotted name: the object} of every public function and class that needs a fixture."""
    api = {}
    names = getattr(F, "__all__", [n for n in dir(F) if not n.startswith("_")])
    for n in names:
        obj = getattr(F, n)
        if isinstance(obj, types.ModuleType) or not callable(obj) or n.endswith("_backward") or n in HELPERS:
            continue
        api[f"fnn.functional.{n}"] = obj
    for n in nn.__all__:
        obj = getattr(nn, n)
        if inspect.isclass(obj) and issubclass(obj, (nn.Layer, nn.Loss)) and obj not in ABSTRACT:
            api[f"fnn.nn.{n}"] = obj
    api |= {f"fnn.init.{n}": getattr(init, n) for n in init.__all__}
    kinds = ("fnn.optim.schedules", "fnn.optim.clip", "fnn.optim.constraints")
    for n in optim.__all__:
        obj = getattr(optim, n)
        if inspect.isfunction(obj) and (obj.__module__ in kinds or _is_optimizer(obj)):
            api[f"fnn.optim.{n}"] = obj
    api["fnn.optim.ReduceLROnPlateau"] = optim.ReduceLROnPlateau
    return api


API = public_api()
COVERED = covered()


def exempt(api, option):
    return (api, option) in EXEMPT or ("*", option) in EXEMPT or (api, "*") in EXEMPT


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_fixture_names_its_generator_and_torch_2_13(path):
    doc = load(path)
    assert doc["generator"] == f"tests/torch_reference/{path.stem}.py"
    assert (REPO / doc["generator"]).is_file()
    assert doc["torch"].startswith("2.13"), doc["torch"]
    cases = fixture_cases(doc)
    assert cases, f"{path.name} has no case with an 'api'"
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "case names must be unique within a file"


def resolve(api):
    """The object a dotted fnn name names (any fnn module: a fixture may check more than the
    API that needs coverage, e.g. fnn.models.mlp), or None."""
    module, _, name = api.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None) if api.startswith("fnn.") else None
    except ImportError:
        return None


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_every_case_names_a_public_fnn_object_and_its_real_arguments(path):
    wrong = []
    for case in fixture_cases(load(path)):
        obj = resolve(case["api"])
        if obj is None or case["api"].rpartition(".")[2].startswith("_"):
            wrong.append(f"{case['name']}: {case['api']} is not a public fnn name")
            continue
        names, _ = _parameters(obj)
        unknown = set(case.get("kwargs", {})) - set(names)
        if unknown:
            wrong.append(f"{case['name']}: {case['api']} has no argument {sorted(unknown)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("api", sorted(API))
def test_public_api_has_a_fixture_for_every_option(api):
    if exempt(api, "*"):
        return
    missing = [o for o in ["*", *_parameters(API[api])[1]] if (api, o) not in COVERED and not exempt(api, o)]
    assert "*" not in missing, f"{api} has no fixture case in tests/torch_reference/*.json"
    assert not missing, f"{api}: no fixture case sets {missing} in its kwargs (nor are they in EXEMPT)"


@pytest.mark.parametrize("pair", sorted(p for p in EXEMPT if p[0] != "*"), ids=str)
def test_exemption_names_a_real_uncovered_option(pair):
    api, option = pair
    assert api in API, f"EXEMPT names {api}, which is not in the public API"
    if option != "*":
        assert option in _parameters(API[api])[1], f"{api} has no option {option}"
    assert pair not in COVERED, f"{pair} is covered by a fixture: drop it from EXEMPT"
    assert EXEMPT[pair]


def test_api_discovery_finds_each_kind():
    # the discovery above is what the coverage rests on: a sample of each kind it must find
    for name in [
        "fnn.functional.cross_entropy",
        "fnn.nn.BatchNorm1d",
        "fnn.nn.CrossEntropyLoss",
        "fnn.init.kaiming_uniform",
        "fnn.optim.adamw",
        "fnn.optim.warmup_cosine",
        "fnn.optim.clip_grad_norm",
        "fnn.optim.ReduceLROnPlateau",
    ]:
        assert name in API, name
    for name in [
        "fnn.functional.relu_backward",
        "fnn.nn.Layer",
        "fnn.optim.chain",
        "fnn.optim.scale_by_adam",
    ]:
        assert name not in API, name
    assert "train" in _parameters(nn.Dropout)[1] and "p" in _parameters(nn.Dropout)[1]
    assert dataclasses.is_dataclass(nn.Linear) and "bias" in _parameters(nn.Linear)[1]
