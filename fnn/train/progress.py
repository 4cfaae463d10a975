"""A one-line progress bar on stderr that moves during the compiled epoch.

The compiled epoch (``make_train_epoch(..., progress_every=k)``) calls ``tick(steps_done)``
on the host every k steps through ``jax.debug.callback``; ``tick`` redraws the bar that
``fit`` made active. The bar is drawn only when stderr is a terminal: otherwise ``fit``
compiles the epoch without the callback and nothing at all changes.
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "callback_interval", "tick"]

_active: ProgressBar | None = None


def tick(steps_done) -> None:
    """The epoch's host callback: redraw the active bar, if any.

    Args:
        steps_done: the steps done in this epoch (a concrete scalar).
    """
    if _active is not None:
        _active.update(int(steps_done))


def callback_interval(n_steps: int, updates: int = 50) -> int:
    """Steps between host callbacks: about ``updates`` redraws per epoch, at most one a step.

    Args:
        n_steps: the steps in an epoch.
        updates: the redraws wanted per epoch.

    Returns:
        The interval in steps, >= 1.

    Example:
        >>> callback_interval(468), callback_interval(10)
        (9, 1)
    """
    return max(1, n_steps // updates)


class ProgressBar:
    """``epoch 3/10 [#######-----] 210/468 steps  35.2k samples/s  ETA 4s``; as a context
    manager, the bar that ``tick`` draws on.

    Args:
        enabled: draw at all (only ever on a terminal: ``.enabled`` says whether it draws).
        stream: where to draw (default ``sys.stderr``).

    Example:
        >>> import io
        >>> ProgressBar(True, io.StringIO()).enabled  # not a terminal: stays silent
        False
    """

    WIDTH = 100

    def __init__(self, enabled: bool, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled) and self.stream.isatty()
        self.shown = False
        self.label, self.total, self.batch_size, self.start = "", 0, 0, 0.0

    def __enter__(self) -> ProgressBar:
        global _active
        _active = self if self.enabled else None
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        self.done()

    def begin_epoch(self, label: str, total_steps: int, batch_size: int) -> None:
        """Start a new epoch's line.

        Args:
            label: the text before the bar, e.g. ``'epoch 3/10'``.
            total_steps: the steps in the epoch.
            batch_size: samples per step (for samples/s).
        """
        self.label, self.total, self.batch_size = label, total_steps, batch_size
        self.start = time.perf_counter()
        self.show(f"{label} compiling / starting ...")

    def update(self, steps_done: int) -> None:
        """Redraw the bar for ``steps_done`` steps of the epoch.

        Args:
            steps_done: the steps done so far in this epoch.
        """
        elapsed = time.perf_counter() - self.start
        rate = steps_done * self.batch_size / elapsed if elapsed > 0 else 0.0
        left = (self.total - steps_done) * self.batch_size / rate if rate > 0 else 0.0
        filled = int(20 * steps_done / max(self.total, 1))
        self.show(
            f"{self.label} [{'#' * filled}{'-' * (20 - filled)}] {steps_done}/{self.total} steps  "
            f"{rate / 1000:.1f}k samples/s  ETA {left:.0f}s"
        )

    def show(self, text: str) -> None:
        """Overwrite the line with ``text``, padded and cut to ``WIDTH``, when enabled.

        Args:
            text: the line to show.
        """
        if self.enabled:
            self.stream.write("\r" + text.ljust(self.WIDTH)[: self.WIDTH])
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        """End the line (before anything else prints)."""
        if self.enabled and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
