"""The benchmark's training epoch written with two peer libraries: Flax NNX and Equinox + optax.

(The CNN of ``benchmark_cnn.py`` is at the end: the same two forms, built from its layer list
and its shared weights; Flax in NHWC, its ``nnx.Conv``'s layout, with the head's input columns
permuted to match torch's C, H, W flattening.)

``benchmark_training.py`` times these beside fnn, its hand-written pure-JAX scan
(``reference_epoch``) and PyTorch eager, when the libraries are importable. They are never
dependencies of fnn: the ``bench`` extra of pyproject.toml installs them. Measured with
jax 0.10.2, flax 0.12.8, equinox 0.13.8, optax 0.2.8.

Each builder returns ``(jitted_epoch, carry)`` in ``reference_epoch``'s calling convention:
``jitted_epoch(*carry, key, x, y) -> (*carry, metrics)``, the carry donated, ``metrics`` the
per-step ``loss`` and ``accuracy``. The workload is every row's: MLP 784-512-512-10, Linear ->
BatchNorm1d -> ReLU -> Dropout(0.2) twice then Linear, mean cross-entropy, SGD lr 0.01 with
torch's momentum 0.9 (``buf = 0.9 buf + g``, ``p -= lr buf``) and weight decay 1e-4 on the
weight matrices only (``optax.add_decayed_weights`` masked to ``ndim >= 2``, chained before
``optax.sgd(0.01, momentum=0.9)``, which is torch's SGD), BatchNorm eps 1e-5. One
``jax.lax.scan`` per epoch over batches gathered by a shuffled index (``x[idx]``), one key per
step, as in ``reference_epoch``: the rows compare the libraries' steps, not Python dispatch.
Linear layers start from torch's init (weights and biases uniform in ±1/sqrt(fan_in)): the
speed does not depend on it, but the first loss then sits near ln 10 as in the other rows.

Flax NNX, its fastest documented form (the "functional training loop" of flax's performance
guide): ``nnx.Linear``, ``nnx.BatchNorm``, ``nnx.Dropout`` and ``nnx.Optimizer(model, tx,
wrt=nnx.Param)`` are built once, ``graphdef, state = nnx.split((model, optimizer))`` outside
``jax.jit``, and the scanned step does ``nnx.merge`` -> ``nnx.value_and_grad`` ->
``optimizer.update(model, grads)`` -> ``nnx.state((model, optimizer))`` as the new carry, so
the graph traversal happens only while tracing. The step's key reaches the two Dropout layers
as call-time keys (``rngs=key``, documented by ``nnx.Dropout.__call__``) instead of an
``nnx.Rngs`` stream kept in the model, so the masks come from the scan's per-step key like the
reference's. Conventions converted or noted:
- BatchNorm momentum: flax's ``momentum`` is the decay of the running average
  (``ra = m ra + (1 - m) batch``), so torch's 0.1 is ``momentum=0.9``.
- Running variance: flax averages the biased batch variance where torch uses the unbiased
  ``n / (n - 1)`` one; it changes the running statistics (eval only), not the work.
- Batch variance: flax's default ``use_fast_variance=True`` (E[x²] − E[x]², one fusion), kept as
  the library's default form.

Equinox + optax, the idiomatic stateful form: ``eqx.nn.Linear``, ``eqx.nn.BatchNorm`` (its
stateful API, ``eqx.nn.make_with_state`` and an ``eqx.nn.State`` in the carry),
``eqx.nn.Dropout``, the per-example model run under ``jax.vmap(axis_name="batch")``, trainable
leaves split off with ``eqx.partition(model, eqx.is_inexact_array)`` and recombined with
``eqx.combine`` inside the loss, ``jax.value_and_grad`` on them and ``optax`` for the update
(``eqx.apply_updates``). Conventions converted or noted:
- BatchNorm ``mode="batch"``: normalizes with the batch statistics in training, as torch does
  (the default ``"ema"`` normalizes with running averages, a different algorithm).
- BatchNorm momentum: equinox's is also the decay, so torch's 0.1 is ``momentum=0.9``.
- Running variance: biased, as in flax (and debiased by ``1 - m^count`` at inference);
  eval only, the work is the same.
- Dropout: the vmapped model takes one key per example (``jax.random.split(step_key, batch)``),
  the usual way to give a per-example layer its randomness; each row draws its own mask.
"""

from __future__ import annotations

import benchmark_training as bt  # the workload's constants; it imports this module lazily


def _torch_linear_init(fan_in: int):
    """torch.nn.Linear's init: weight and bias uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    import jax

    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _sgd(mask=None):
    """torch's SGD with momentum, weight decay on the weight matrices only (``mask``: the
    leaves to decay, default those with ``ndim >= 2``), in optax."""
    import jax
    import optax

    return optax.chain(
        optax.add_decayed_weights(
            bt.WEIGHT_DECAY, mask=mask or (lambda params: jax.tree.map(lambda p: p.ndim >= 2, params))
        ),
        optax.sgd(bt.LR, momentum=bt.MOMENTUM),
    )


def _scan_epoch(step, batch_size: int):
    """``epoch(carry, key, x, y) -> (carry, metrics)``: shuffle, then one ``lax.scan`` of
    ``step(carry, xb, yb, key) -> (carry, loss, logits)`` over the gathered batches."""
    import jax
    import jax.numpy as jnp

    def epoch(carry, key, x, y):
        n_batches = x.shape[0] // batch_size
        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, x.shape[0])[: n_batches * batch_size]

        def body(carry, inputs):
            idx, k = inputs
            xb, yb = x[idx], y[idx]
            carry, loss, logits = step(carry, xb, yb, k)
            acc = jnp.mean((jnp.argmax(logits, axis=1) == yb).astype(jnp.float32))
            return carry, {"loss": loss, "accuracy": acc}

        return jax.lax.scan(
            body, carry, (order.reshape(n_batches, batch_size), jax.random.split(k_steps, n_batches))
        )

    return epoch


def flax_nnx_epoch(batch_size: int):
    """The benchmark's epoch in Flax NNX: ``(jitted_epoch, carry)`` with carry ``(state,)``,
    the ``nnx.State`` of ``(model, optimizer)``.

    Args:
        batch_size: rows per step; the last partial batch is dropped.

    Returns:
        ``jitted_epoch(state, key, x, y) -> (state, metrics)`` (state donated) and ``(state,)``.
    """
    import jax
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            def linear(fan_in, fan_out):
                init = _torch_linear_init(fan_in)
                return nnx.Linear(fan_in, fan_out, kernel_init=init, bias_init=init, rngs=rngs)

            def batch_norm():
                return nnx.BatchNorm(
                    bt.H,
                    momentum=1.0 - bt.BN_MOMENTUM,
                    epsilon=bt.BN_EPS,
                    use_running_average=False,
                    rngs=rngs,
                )

            self.linear0, self.bn0, self.drop0 = linear(bt.IN, bt.H), batch_norm(), nnx.Dropout(bt.P_DROP)
            self.linear1, self.bn1, self.drop1 = linear(bt.H, bt.H), batch_norm(), nnx.Dropout(bt.P_DROP)
            self.linear2 = linear(bt.H, bt.OUT)

        def __call__(self, x, key):
            k0, k1 = jax.random.split(key)
            h = self.drop0(nnx.relu(self.bn0(self.linear0(x))), rngs=k0)
            h = self.drop1(nnx.relu(self.bn1(self.linear1(h))), rngs=k1)
            return self.linear2(h)

    return _flax_epoch(MLP(nnx.Rngs(0)), batch_size)


def _flax_epoch(model, batch_size: int):
    """``(jitted_epoch, (state,))`` of an NNX ``model(x, key) -> logits`` trained with ``_sgd()``."""
    import jax
    import optax
    from flax import nnx

    optimizer = nnx.Optimizer(model, _sgd(), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    def step(state, xb, yb, key):
        model, optimizer = nnx.merge(graphdef, state)

        def objective(model):
            logits = model(xb, key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), logits

        (loss, logits), grads = nnx.value_and_grad(objective, has_aux=True)(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss, logits

    return jax.jit(_scan_epoch(step, batch_size), donate_argnums=0), (state,)


def equinox_epoch(batch_size: int):
    """The benchmark's epoch in Equinox + optax: ``(jitted_epoch, carry)`` with carry
    ``(params, bn_state, opt_state)``.

    Args:
        batch_size: rows per step; the last partial batch is dropped.

    Returns:
        ``jitted_epoch(params, bn_state, opt_state, key, x, y) -> (params, bn_state, opt_state,
        metrics)`` (the three donated) and ``(params, bn_state, opt_state)``.
    """
    import equinox as eqx
    import jax

    class MLP(eqx.Module):
        linear0: eqx.nn.Linear
        bn0: eqx.nn.BatchNorm
        drop0: eqx.nn.Dropout
        linear1: eqx.nn.Linear
        bn1: eqx.nn.BatchNorm
        drop1: eqx.nn.Dropout
        linear2: eqx.nn.Linear

        def __init__(self, key):
            k0, k1, k2 = jax.random.split(key, 3)

            def batch_norm():
                return eqx.nn.BatchNorm(
                    bt.H, axis_name="batch", eps=bt.BN_EPS, momentum=1.0 - bt.BN_MOMENTUM, mode="batch"
                )

            # eqx.nn.Linear's default init is torch's (uniform in ±1/sqrt(fan_in)).
            self.linear0, self.bn0, self.drop0 = (
                eqx.nn.Linear(bt.IN, bt.H, key=k0),
                batch_norm(),
                eqx.nn.Dropout(bt.P_DROP),
            )
            self.linear1, self.bn1, self.drop1 = (
                eqx.nn.Linear(bt.H, bt.H, key=k1),
                batch_norm(),
                eqx.nn.Dropout(bt.P_DROP),
            )
            self.linear2 = eqx.nn.Linear(bt.H, bt.OUT, key=k2)

        def __call__(self, x, state, key):  # one example: x of shape (784,)
            k0, k1 = jax.random.split(key)
            h, state = self.bn0(self.linear0(x), state)
            h = self.drop0(jax.nn.relu(h), key=k0)
            h, state = self.bn1(self.linear1(h), state)
            h = self.drop1(jax.nn.relu(h), key=k1)
            return self.linear2(h), state

    model, bn_state = eqx.nn.make_with_state(MLP)(jax.random.key(0))
    return _equinox_epoch(model, bn_state, _sgd(), batch_size)


def _equinox_epoch(model, bn_state, tx, batch_size: int):
    """``(jitted_epoch, (params, bn_state, opt_state))`` of a per-example Equinox
    ``model(x, bn_state, key) -> (logits, bn_state)``, vmapped over the batch, trained by ``tx``."""
    import equinox as eqx
    import jax
    import optax

    params, static = eqx.partition(model, eqx.is_inexact_array)

    def objective(params, bn_state, xb, yb, key):
        batched = jax.vmap(
            eqx.combine(params, static), axis_name="batch", in_axes=(0, None, 0), out_axes=(0, None)
        )
        logits, bn_state = batched(xb, bn_state, jax.random.split(key, xb.shape[0]))
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), (logits, bn_state)

    def step(carry, xb, yb, key):
        params, bn_state, opt_state = carry
        (loss, (logits, bn_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            params, bn_state, xb, yb, key
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (eqx.apply_updates(params, updates), bn_state, opt_state), loss, logits

    epoch = _scan_epoch(step, batch_size)

    def run(params, bn_state, opt_state, key, x, y):
        (params, bn_state, opt_state), metrics = epoch((params, bn_state, opt_state), key, x, y)
        return params, bn_state, opt_state, metrics

    return jax.jit(run, donate_argnums=(0, 1, 2)), (params, bn_state, tx.init(params))


# ---------------------------------------------------------------- the CNN (benchmark_cnn.py)
# ``arch`` is benchmark_cnn's layer list (dicts: op conv / bn / bn1d / relu / maxpool / gap /
# dropout / dropout2d / flatten / linear) and ``weights`` a torch state_dict of numpy arrays
# (keys "<index>.weight", ...): every row starts from the same values.


def _flatten_perms(arch) -> dict[int, tuple[int, int, int]]:
    """Linear layers fed by a Flatten of a (C, H, W) map with H·W > 1 -> that (C, H, W): the
    NHWC rows must permute their input columns (torch flattens C, H, W; NHWC flattens H, W, C)."""
    import benchmark_cnn

    perms, pending = {}, None
    for i, (spec, shape) in enumerate(zip(arch, benchmark_cnn.shapes(arch)[:-1], strict=True)):
        if spec["op"] == "flatten" and len(shape) == 3 and shape[1] * shape[2] > 1:
            pending = shape
        elif spec["op"] == "unflatten":  # undoes the flatten, in either layout
            pending = None
        elif spec["op"] == "linear":
            perms[i], pending = pending, None
    return {i: s for i, s in perms.items() if s is not None}


def _flax_cnn(arch, weights):
    """An NNX module of ``arch`` for NHWC inputs, holding ``weights`` (conv kernels as HWIO),
    called as ``model(x, key)`` (``key`` None in eval mode)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    perms = _flatten_perms(arch)

    class CNN(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            layers = []
            for spec in arch:
                op = spec["op"]
                if op == "conv":
                    k, p = spec["k"], spec["padding"]
                    layers.append(
                        nnx.Conv(
                            spec["in"],
                            spec["out"],
                            (k, k),
                            strides=spec["stride"],
                            padding=((p, p), (p, p)),
                            use_bias=spec["bias"],
                            rngs=rngs,
                        )
                    )
                elif op == "linear":
                    layers.append(nnx.Linear(spec["in"], spec["out"], use_bias=spec["bias"], rngs=rngs))
                elif op in ("bn", "bn1d"):
                    layers.append(
                        nnx.BatchNorm(
                            spec["c"],
                            momentum=1.0 - bt.BN_MOMENTUM,
                            epsilon=bt.BN_EPS,
                            use_running_average=False,
                            rngs=rngs,
                        )
                    )
                elif op.startswith("dropout"):
                    # dropout2d: one draw per (sample, channel), shared over H and W of NHWC
                    layers.append(nnx.Dropout(spec["p"], broadcast_dims=(1, 2) if op == "dropout2d" else ()))
            self.layers = nnx.List(layers)

        def __call__(self, x, key):
            n_random = sum(spec["op"].startswith("dropout") for spec in arch)
            keys = iter(
                jax.random.split(key, n_random) if key is not None and n_random else [None] * n_random
            )
            modules = iter(self.layers)
            for spec in arch:
                op = spec["op"]
                if op in ("conv", "linear", "bn", "bn1d"):
                    x = next(modules)(x)
                elif op.startswith("dropout"):
                    x = next(modules)(x, rngs=next(keys))
                elif op == "relu":
                    x = nnx.relu(x)
                elif op == "maxpool":
                    x = nnx.max_pool(x, (spec["k"],) * 2, strides=(spec["stride"],) * 2)
                elif op == "gap":
                    x = jnp.mean(x, axis=(1, 2), keepdims=True)
                elif op == "flatten":
                    x = x.reshape(x.shape[0], -1)
                elif op == "unflatten":  # (C, H, W) in NHWC
                    x = x.reshape(x.shape[0], *spec["shape"][1:], spec["shape"][0])
            return x

    model = CNN(nnx.Rngs(0))
    modules = iter(model.layers)
    for i, spec in enumerate(arch):
        if spec["op"] not in ("conv", "linear", "bn", "bn1d", "dropout", "dropout2d"):
            continue
        layer, w = next(modules), weights.get(f"{i}.weight")
        if spec["op"] == "conv":
            layer.kernel.set_value(jnp.asarray(w.transpose(2, 3, 1, 0)))
        elif spec["op"] == "linear":
            if i in perms:
                w = w.reshape(w.shape[0], *perms[i]).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            layer.kernel.set_value(jnp.asarray(w.T))
        elif spec["op"] in ("bn", "bn1d"):
            layer.scale.set_value(jnp.asarray(w))
            layer.mean.set_value(jnp.asarray(weights[f"{i}.running_mean"]))
            layer.var.set_value(jnp.asarray(weights[f"{i}.running_var"]))
        if f"{i}.bias" in weights:
            layer.bias.set_value(jnp.asarray(weights[f"{i}.bias"]))
    return model


def flax_nnx_cnn_epoch(arch, weights, batch_size: int):
    """benchmark_cnn's epoch in Flax NNX (NHWC inputs): ``(jitted_epoch, (state,))`` as
    ``flax_nnx_epoch``'s."""
    return _flax_epoch(_flax_cnn(arch, weights), batch_size)


def flax_nnx_cnn_eval(arch, weights, batch_size: int):
    """``(jitted_eval, state)`` for ``benchmark_cnn.scan_eval``'s run: the NNX CNN in eval mode."""
    import benchmark_cnn
    from flax import nnx

    model = _flax_cnn(arch, weights)
    model.eval()
    graphdef, state = nnx.split(model)
    return benchmark_cnn.scan_eval(lambda s, xb: nnx.merge(graphdef, s)(xb, None), batch_size), state


def _equinox_cnn(arch, weights):
    """``(model, bn_state)``: a per-example Equinox module of ``arch`` holding ``weights``,
    called as ``model(x, bn_state, key) -> (logits, bn_state)`` on one (C, H, W) image under
    ``jax.vmap(axis_name="batch")`` (``key`` None in inference mode)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    class Dropout2d(eqx.Module):
        """One keep decision per channel of a (C, H, W) example (equinox has no Dropout2d)."""

        p: float = eqx.field(static=True)
        inference: bool = False

        def __call__(self, x, *, key=None):
            if self.inference:
                return x
            keep = jax.random.bernoulli(key, 1.0 - self.p, (x.shape[0],) + (1,) * (x.ndim - 1))
            return jnp.where(keep, x / (1.0 - self.p), 0.0)

    def layer(spec, key):
        op = spec["op"]
        if op == "conv":
            return eqx.nn.Conv2d(
                spec["in"],
                spec["out"],
                spec["k"],
                spec["stride"],
                spec["padding"],
                use_bias=spec["bias"],
                key=key,
            )
        if op == "linear":
            return eqx.nn.Linear(spec["in"], spec["out"], use_bias=spec["bias"], key=key)
        if op in ("bn", "bn1d"):
            return eqx.nn.BatchNorm(
                spec["c"], axis_name="batch", eps=bt.BN_EPS, momentum=1.0 - bt.BN_MOMENTUM, mode="batch"
            )
        if op == "maxpool":
            return eqx.nn.MaxPool2d(spec["k"], spec["stride"])
        return {"dropout": lambda: eqx.nn.Dropout(spec["p"]), "dropout2d": lambda: Dropout2d(spec["p"])}.get(
            op, lambda: None
        )()

    class CNN(eqx.Module):
        layers: tuple

        def __init__(self, key):
            self.layers = tuple(
                layer(s, k) for s, k in zip(arch, jax.random.split(key, len(arch)), strict=True)
            )

        def __call__(self, x, state, key):
            n_random = sum(spec["op"].startswith("dropout") for spec in arch)
            keys = iter(
                jax.random.split(key, n_random) if key is not None and n_random else [None] * n_random
            )
            for spec, module in zip(arch, self.layers, strict=True):
                op = spec["op"]
                if op in ("bn", "bn1d"):
                    x, state = module(x, state)
                elif op.startswith("dropout"):
                    x = module(x, key=next(keys))
                elif module is not None:  # conv, linear, maxpool
                    x = module(x)
                elif op == "relu":
                    x = jax.nn.relu(x)
                elif op == "gap":
                    x = jnp.mean(x, axis=(1, 2), keepdims=True)
                elif op == "flatten":
                    x = x.reshape(-1)
                elif op == "unflatten":
                    x = x.reshape(spec["shape"])
            return x, state

    model, bn_state = eqx.nn.make_with_state(CNN)(jax.random.key(0))
    for i, spec in enumerate(arch):
        w, b = weights.get(f"{i}.weight"), weights.get(f"{i}.bias")
        if spec["op"] in ("conv", "linear", "bn", "bn1d"):
            model = eqx.tree_at(lambda m, i=i: m.layers[i].weight, model, jnp.asarray(w))
        if b is not None and spec["op"] in ("conv", "linear", "bn", "bn1d"):
            shape = (-1, 1, 1) if spec["op"] == "conv" else (-1,)
            model = eqx.tree_at(lambda m, i=i: m.layers[i].bias, model, jnp.asarray(b).reshape(shape))
        if spec["op"] in ("bn", "bn1d"):
            stats = (jnp.asarray(weights[f"{i}.running_mean"]), jnp.asarray(weights[f"{i}.running_var"]))
            bn_state = bn_state.set(model.layers[i].batch_state_index, stats)
    return model, bn_state


def equinox_cnn_epoch(arch, weights, batch_size: int):
    """benchmark_cnn's epoch in Equinox + optax: ``(jitted_epoch, (params, bn_state, opt_state))``
    as ``equinox_epoch``'s; weight decay on the conv and linear weights (not on equinox's
    (C, 1, 1) conv biases, which an ``ndim >= 2`` mask would catch)."""
    import equinox as eqx
    import jax

    model, bn_state = _equinox_cnn(arch, weights)
    params = eqx.filter(model, eqx.is_inexact_array)
    mask = jax.tree.map(lambda _: False, params)
    for i, spec in enumerate(arch):
        if spec["op"] in ("conv", "linear"):
            mask = eqx.tree_at(lambda m, i=i: m.layers[i].weight, mask, True)
    return _equinox_epoch(model, bn_state, _sgd(lambda _: mask), batch_size)


def equinox_cnn_eval(arch, weights, batch_size: int):
    """``(jitted_eval, (params, bn_state))`` for ``benchmark_cnn.scan_eval``'s run: the
    Equinox CNN in inference mode, vmapped over the batch."""
    import benchmark_cnn
    import equinox as eqx
    import jax

    model, bn_state = _equinox_cnn(arch, weights)
    params, static = eqx.partition(eqx.nn.inference_mode(model), eqx.is_inexact_array)

    def logits(carry, xb):
        params, bn_state = carry
        one = eqx.combine(params, static)
        return jax.vmap(lambda x: one(x, bn_state, None)[0], axis_name="batch")(xb)

    return benchmark_cnn.scan_eval(logits, batch_size), (params, bn_state)
