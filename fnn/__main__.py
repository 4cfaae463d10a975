"""Command line: ``python -m fnn train | evaluate | lr-find | report | gradcheck``.

``train`` fits a model on MNIST (bundled) or Fashion-MNIST, prints one line per epoch (and
one per diagnosis) and, last, ``test_accuracy=<float>``. Its run directory (``--out``,
default a new one under ``runs/``; ``fnn.runs`` lists its files) must not hold a run
unless ``--resume`` (the config must match) or ``--overwrite`` is given. The defaults (a
BatchNorm + Dropout MLP 784-512-512-10, SGD momentum 0.9, lr 0.1 with cosine decay, weight
decay 5e-4, 10 epochs of batch 128) reach >= 98% on MNIST in under a minute on 2 CPU cores.
The per-layer probe runs inside the compiled epoch unless ``--no-monitor``. ``--model``
picks ``fnn.models``' softmax, mlp (the default), lenet5 or cnn; the config records it, so
``evaluate`` and ``report`` rebuild the same model.

``--dtype``: float32 (default) or float64 parameters and compute (float64 with JAX's 64-bit
mode on for that command only); bfloat16 or float16 compute on float32 master weights
(mixed precision, ``fnn.nn.precision``, no loss scaling).

``lr-find`` runs the LR range test (``fnn.diagnostics.lr_find``) on train's model, data
and optimizer, writes ``lr_find.json`` and ``lr_find.svg``, and prints
``suggested_lr=<float>`` last. ``evaluate DIR`` prints a run's ``test_loss=… test_accuracy=…``;
``report DIR`` rebuilds ``DIR/report.html``; ``gradcheck`` prints the three-way gradient
table of an MNIST-sized MLP, or with ``--model cnn`` of a small CNN.

Exit status: 0 done; 2 a bad argument, a bad run directory or a missing dataset
(argparse's one ``error:`` line); 3 training diverged (one line says where; lr-find: a
non-finite first loss); 1 any other failure, as one line (``FNN_TRACEBACK=1`` shows the
traceback instead). Never a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax

from fnn import data, nn, optim, runs
from fnn import functional as F
from fnn import train as T
from fnn._cli_args import UsageError, check_combinations
from fnn._cli_args import parser as cli_parser
from fnn.runs import build_model, build_optimizer, load_data, numerics
from fnn.train.checkpointing import RunExistsError, paths

EXIT_DIVERGED = 3


def _training_data(args: argparse.Namespace, config: dict) -> tuple:
    """The run's (train, test) data, refusing a batch larger than the training set."""
    train_data, test_data = load_data(args.dataset, args.data_dir, runs.param_dtype(config))
    n = len(train_data[0])
    if args.batch_size > n:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training set ({n} samples)")
    return train_data, test_data


def _print_epoch(epochs: int, run, h: dict) -> None:
    """The epoch's line, then one line per diagnosis found in it."""
    lr = f"  lr {h['lr']:.3g}" if "lr" in h else ""
    print(
        f"epoch {h['epoch']:3d}/{epochs}  train_loss {h['train_loss']:.4f}  "
        f"train_acc {h['train_accuracy']:.4f}  "
        f"test_loss {h['test_loss']:.4f}  test_acc {h['test_accuracy']:.4f}{lr}  {h['seconds']:.1f}s",
        flush=True,
    )
    _print_diagnoses(h.get("diagnoses", []))


def _print_diagnoses(diagnoses: list[dict]) -> None:
    from fnn.diagnostics.rules import format_diagnosis  # diagnostics sits above train: imported late

    for d in diagnoses:
        print(format_diagnosis(d), flush=True)


def train(args: argparse.Namespace) -> int:
    check_combinations(args)
    config = runs.config_of(args)
    with numerics(config["dtype"]):
        return _train(args, config)


def _start(args: argparse.Namespace, config: dict, model) -> str:
    """Write the run directory's config and print the run's first line; the directory."""
    out = args.out or runs.default_dir(args.dataset, args.model)
    try:
        runs.start_run(out, config, resume=args.resume, overwrite=args.overwrite)
    except RunExistsError:
        raise UsageError(
            f"--out {out} already holds a run: add --resume to go on from it, "
            "--overwrite to replace it, or choose another --out"
        ) from None
    print(
        f"fnn: {args.model} on {args.dataset}, {nn.num_params(model.init(jax.random.key(0))[0]):,} params, "
        f"{args.optimizer}(lr={config['lr']}, schedule={args.schedule}), grad={args.grad}, "
        f"{args.epochs} epochs of batch {args.batch_size}, {config['dtype']}, "
        f"device {jax.devices()[0].platform}, run dir {out}",
        flush=True,
    )
    return out


def _train(args: argparse.Namespace, config: dict) -> int:
    train_data, test_data = _training_data(args, config)
    model = build_model(config)
    out = _start(args, config, model)
    callbacks: list = [T.LambdaCallback(on_epoch_end=functools.partial(_print_epoch, args.epochs))]
    if args.early_stopping:
        callbacks.append(stopper := T.EarlyStopping("test_loss", patience=args.early_stopping))
    if args.reduce_lr_on_plateau:
        callbacks.append(optim.ReduceLROnPlateau(patience=2))
    try:
        result = T.fit(
            model,
            nn.CrossEntropyLoss(),
            build_optimizer(config, len(train_data[0]) // args.batch_size),
            train_data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            key=jax.random.key(args.seed),
            eval_data=test_data,
            grad=args.grad,
            callbacks=callbacks,
            progress=not args.no_progress,
            checkpoint_dir=out,
            resume=args.resume,
            overwrite=args.overwrite,
            keep_best="test_loss",
            probe=config["monitor"],
            compute_dtype=runs.compute_dtype(config),
        )
    except T.TrainingDiverged as e:
        return _diverged(e, out, config)
    # The report rebuilds the run from its directory, data included: the training set held
    # here would be a second copy at the run's peak memory.
    del train_data
    title = f"fnn {args.model} on {args.dataset}"
    for name, path in runs.write_results(
        out, config, result.history, data_dir=args.data_dir, title=title
    ).items():
        print(f"{name}: {path}")
    if args.early_stopping and stopper.stopped_epoch is not None:
        print(
            f"early stopping after epoch {stopper.stopped_epoch}; kept epoch {stopper.best_epoch} "
            f"(test_loss {stopper.best:.4f})"
        )
    scores = T.evaluate(model, result.params, result.state, test_data, loss=nn.CrossEntropyLoss())
    print(f"test_loss={scores['loss']:.4f}")
    print(f"test_accuracy={scores['accuracy']:.4f}")
    return 0


def _diverged(e: T.TrainingDiverged, out: str, config: dict) -> int:
    """Report a divergence: its diagnoses, diagnostics.json, and the one stderr line."""
    found = e.record.get("diagnoses", [])
    _print_diagnoses(found)
    runs.write_diagnostics(out, e.result.history, config["monitor"], found)
    lr = f" at learning rate {e.lr:.3g}" if e.lr is not None else ""
    print(
        f"fnn: training diverged at epoch {e.epoch}, step {e.step} (loss {e.loss}){lr}; "
        f"try a smaller --lr (the last good state is in {paths(out)['diverged']})",
        file=sys.stderr,
    )
    return EXIT_DIVERGED


def evaluate_run(args: argparse.Namespace) -> int:
    with runs.open_run(args.dir, args.checkpoint, args.data_dir, train_data=False) as run:
        ts = run.train_state
        scores = T.evaluate(run.model, ts.params, ts.state, run.test_data, loss=nn.CrossEntropyLoss())
    print(f"{run.checkpoint_path}: epoch {run.meta['epoch']}")
    print(f"test_loss={scores['loss']:.4f} test_accuracy={scores['accuracy']:.4f}")
    return 0


def lr_find_command(args: argparse.Namespace) -> int:
    check_combinations(args)
    if args.steps < 2:
        raise UsageError(f"--steps must be an integer >= 2 (the range needs its two ends), got {args.steps}")
    if not args.max_lr > args.min_lr:
        raise UsageError(f"--max-lr must be greater than --min-lr, got {args.min_lr} and {args.max_lr}")
    config = runs.config_of(args, "lr-find")
    with numerics(config["dtype"]):
        return _lr_find(args, config)


def _lr_find(args: argparse.Namespace, config: dict) -> int:
    from fnn.diagnostics import lr_find

    train_data, _ = _training_data(args, config)
    out = args.out or runs.default_dir(args.dataset, args.model, "lr-find")
    print(
        f"fnn lr-find: {args.model} on {args.dataset}, {args.optimizer}, {args.steps} steps of batch "
        f"{args.batch_size}, lr {args.min_lr:g} to {args.max_lr:g}, grad={args.grad}, {config['dtype']}, "
        f"device {jax.devices()[0].platform}, out {out}",
        flush=True,
    )
    try:
        result = lr_find(
            build_model(config),
            nn.CrossEntropyLoss(),
            lambda lr: build_optimizer({**config, "lr": lr, "schedule": "constant"}, 1),
            train_data,
            key=jax.random.key(args.seed),
            min_lr=args.min_lr,
            max_lr=args.max_lr,
            steps=args.steps,
            batch_size=args.batch_size,
            grad=args.grad,
            compute_dtype=runs.compute_dtype(config),
        )
    except FloatingPointError as e:
        print(f"fnn lr-find: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_DIVERGED
    title = f"LR range test: {args.model} on {args.dataset}, {args.optimizer}"
    json_path, svg_path = runs.write_lr_find(
        out, config, result, min_lr=args.min_lr, max_lr=args.max_lr, title=title
    )
    where = (
        f"diverged at step {result.diverged_at + 1} (lr {result.lrs[result.diverged_at]:.3g})"
        if result.diverged_at is not None
        else "did not diverge within the range"
    )
    print(f"range test {where}; {result.rule}")
    print(f"plot: {svg_path}")
    print(f"json: {json_path}")
    print(f"suggested_lr={result.suggested_lr:.6g}")
    return 0


def _gradcheck_model(name: str) -> nn.Sequential:
    """gradcheck's model: an MNIST-sized MLP, or a small CNN with every conv-chapter layer."""
    if name == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 28)),
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Dropout2d(0.2),
            nn.Flatten(),
            nn.Linear(8 * 6 * 6, 10),
        )
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def gradcheck_table(args: argparse.Namespace) -> int:
    from fnn import gradcheck

    model = _gradcheck_model(args.model)
    images, labels = data.mnist("train")
    x = data.normalize(images[: args.batch_size])
    y = labels[: args.batch_size]
    k_init, k_drop = jax.random.split(jax.random.key(args.seed))
    params, state = model.init(k_init)
    # Max-pool is not differentiable where a window's two largest values meet. MNIST's flat
    # background leaves windows whose top two differ by ~1e-5, which BatchNorm's 1/σ lets a
    # weight step of 1e-6 cross, so the CNN's central differences take a step of 1e-8.
    tolerances = gradcheck.Tolerances(eps=1e-8) if args.model == "cnn" else gradcheck.Tolerances()
    report = gradcheck.check_model(
        model, F.cross_entropy, params, state, x, y, key=k_drop, train=True, tolerances=tolerances
    )
    what = " of a small CNN" if args.model == "cnn" else ""
    step = "; FD step 1e-8 (max-pool's near-ties)" if args.model == "cnn" else ""
    print(
        f"gradient check{what} on {args.batch_size} MNIST images, float64, train mode (BatchNorm batch "
        "statistics, a fixed dropout mask); Hv: Hessian-vector products along one random unit "
        f"direction{step}"
    )
    print(report)
    return 0 if report.passed else 1


def report_run(args: argparse.Namespace) -> int:
    from fnn.diagnostics.report import write_report

    print(f"report: {write_report(args.dir, data_dir=args.data_dir)}")
    return 0


COMMANDS = {
    "train": train,
    "evaluate": evaluate_run,
    "lr-find": lr_find_command,
    "report": report_run,
    "gradcheck": gradcheck_table,
}


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser(__doc__.split("\n")[0])
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, runs.RunError) as e:
        args.command_parser.error(str(e))  # argparse's one line and exit status 2
    except (ValueError, TypeError, OSError) as e:  # e.g. a checkpoint that does not match the model
        if os.environ.get("FNN_TRACEBACK"):
            raise
        print(f"fnn {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
