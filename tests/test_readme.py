"""The README's recipes run as written, and compute what they say (checked here against
references of the test's own: jax.grad per example, the closed-form logistic Hessian)."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _recipes() -> list[str]:
    """The python blocks of the README's 'Derivatives of derivatives' section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Derivatives of derivatives", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture(scope="module")
def recipes():
    blocks = _recipes()
    assert len(blocks) == 2, f"expected the two recipes, found {len(blocks)} python blocks"
    return blocks


def _run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_recipe"}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_per_example_gradient_norms_recipe(recipes):
    ns = _run(recipes[0])
    model, loss, params, state, x, y = (ns[k] for k in ("model", "loss", "params", "state", "x", "y"))

    def one(p, xi, yi):
        return loss(model.apply(p, state, xi[None], train=False)[0], yi[None])

    grad_one = jax.jit(jax.grad(one))
    for i in range(x.shape[0]):
        g = grad_one(params, x[i], y[i])  # autodiff, one example at a time
        norm = np.sqrt(sum(float(jnp.sum(leaf**2)) for leaf in jax.tree.leaves(g)))
        np.testing.assert_allclose(ns["norms"][i], norm, rtol=1e-5)
    # clipping to norm <= 1 (DP-SGD's C = 1)
    clipped_norms = np.sqrt(
        sum(np.sum(np.reshape(g, (x.shape[0], -1)) ** 2, axis=1) for g in jax.tree.leaves(ns["clipped"]))
    )
    np.testing.assert_allclose(clipped_norms, np.minimum(np.asarray(ns["norms"]), 1.0), rtol=1e-5)


@pytest.mark.slow
def test_newton_step_recipe(recipes):
    ns = _run(recipes[1])
    X, y, theta = (np.asarray(ns[k], np.float64) for k in ("X", "y", "theta"))
    n = X.shape[0]
    X1 = np.concatenate([X, np.ones((n, 1))], axis=1)
    p = 1 / (1 + np.exp(-(X1 @ theta)))
    hessian = X1.T @ (X1 * (p * (1 - p))[:, None]) / n
    gradient = X1.T @ (p - y) / n
    assert np.asarray(ns["H"]).dtype == np.float64
    np.testing.assert_allclose(ns["H"], hessian, rtol=1e-12)
    np.testing.assert_allclose(ns["theta_new"], theta - np.linalg.solve(hessian, gradient), rtol=1e-10)


@pytest.mark.slow
def test_diagnostics_recipe(capsys):
    """'Reading a run': a healthy run has no diagnosis, lr 50 is diagnosed as a learning rate
    too large, and the suggestion is the range test's rule recomputed here in numpy."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Reading a run: what the course would diagnose", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    ns = _run(code)
    run, hot, found = ns["run"], ns["hot"], ns["found"]
    # 6000 // 128 = 46 steps an epoch, every max(1, 46 // 32) = 1: epoch 2 is global steps 47-92.
    assert run.history[-1]["probe"]["step"] == list(range(47, 93))
    assert run.history[-1]["diagnoses"] == []
    assert "lr-too-large" in [d["rule"] for d in hot["diagnoses"]]
    assert "[lr-too-large]" in capsys.readouterr().out
    # fastai's rule, by hand: the lr at the lowest valid smoothed loss, divided by 10.
    lrs, smoothed, valid = (np.asarray(a) for a in (found.lrs, found.smoothed, found.valid))
    best = np.flatnonzero(valid)[np.argmin(smoothed[valid])]
    assert found.suggested_lr == pytest.approx(lrs[best] / 10, rel=1e-6)
