"""A one-line progress bar on stderr that moves during the compiled epoch.

The compiled epoch (``make_train_epoch(..., progress_every=k)``) calls ``tick(steps_done)``
on the host every k steps through ``jax.debug.callback``; ``tick`` forwards to the bar
that ``fit`` made active. The bar shows the steps done, samples/s and the time left in
the epoch. It is drawn only when stderr is a terminal: otherwise ``fit`` compiles the
epoch without the callback and nothing at all changes (``ProgressBar.enabled`` is False).
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "callback_interval", "tick"]

_active: ProgressBar | None = None


def tick(steps_done) -> None:
    """Host side of the epoch's callback (runs on the host, never traced)."""
    if _active is not None:
        _active.update(int(steps_done))


def callback_interval(n_steps: int, updates: int = 50) -> int:
    """Steps between host callbacks: about ``updates`` redraws per epoch, at least every step."""
    return max(1, n_steps // updates)


class ProgressBar:
    """``epoch 3/10 [#######-----] 210/468 steps  35.2k samples/s  ETA 4s``"""

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
        self.label, self.total, self.batch_size = label, total_steps, batch_size
        self.start = time.perf_counter()
        self.show(f"{label} compiling / starting ...")

    def update(self, steps_done: int) -> None:
        elapsed = time.perf_counter() - self.start
        rate = steps_done * self.batch_size / elapsed if elapsed > 0 else 0.0
        left = (self.total - steps_done) * self.batch_size / rate if rate > 0 else 0.0
        filled = int(20 * steps_done / max(self.total, 1))
        self.show(
            f"{self.label} [{'#' * filled}{'-' * (20 - filled)}] {steps_done}/{self.total} steps  "
            f"{rate / 1000:.1f}k samples/s  ETA {left:.0f}s"
        )

    def show(self, text: str) -> None:
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
