"""Progress of long work (stage i/n, epoch e/E, elapsed and ETA) on stderr, for a terminal and for logs.

On a terminal the active progress bars share one line that is rewritten in place, outermost first:

    [shadows 3/500 · ETA 41m] training original shadow_2 | epoch 4/30 · ETA 12s

Elsewhere (a log file, CI) the same text is written as plain lines: every step of the outermost progress, and
inner progress (epochs) at most once per `log_interval` seconds, so a 500-shadow run logs 500 lines, not 15 000.

Quiet when TFPRUNE_MIA_PROGRESS=0 (the test suite sets it), on by default otherwise. The library writes
progress only through this module; binaries decide nothing beyond the environment variable.

Usage:
    with Progress(len(roles), "shadows") as stages:
        for role in roles:
            stages.start(f"training {role}")
            fit(..., callbacks=[ProgressCallback()])   # epoch e/E under the stage
            stages.step()
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, List, Optional, TextIO

ENV = "TFPRUNE_MIA_PROGRESS"
LOG_INTERVAL = 30.0  # seconds between plain lines of an inner progress
TTY_INTERVAL = 0.2  # seconds between rewrites of the terminal line (batch updates are frequent)

_active: List["Progress"] = []  # outermost first


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Progress of `total` units of work named `label`; nestable (the innermost is shown last).

    `done` counts finished units; ETA extrapolates the rate of the units finished in this process, so work
    resumed from a checkpoint (initial `done` > 0) does not make the estimate optimistic.
    """

    def __init__(self, total: int, label: str = "", *, stream: Optional[TextIO] = None,
                 quiet: Optional[bool] = None, log_interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, is_tty: Optional[bool] = None):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream
        self.quiet = (not enabled()) if quiet is None else quiet
        self.log_interval = log_interval
        self.clock = clock
        self._is_tty = is_tty
        self.done = 0
        self.note = ""
        self._start_time: Optional[float] = None
        self._start_done = 0
        self._last_emit = float("-inf")
        self._open = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> "Progress":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, done: int = 0) -> "Progress":
        self.done = min(max(int(done), 0), self.total) if self.total else max(int(done), 0)
        self._start_time = self.clock()
        self._start_done = self.done
        self._open = True
        _active.append(self)
        return self

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self in _active:
            _active.remove(self)
        if self.quiet:
            return
        if self._tty():
            # Leave the finished outermost line on screen; an inner one just hands the line back to its parent.
            if not _active:
                self._write("\n")
            else:
                _render(force=True)

    # -- updates -----------------------------------------------------------------------------------------

    def start(self, note: str) -> None:
        """Name the unit now being worked on (done is unchanged)."""
        self.note = note
        self._emit(force=self.is_outermost)

    def step(self, count: int = 1, note: Optional[str] = None) -> None:
        self.update(self.done + count, note)

    def update(self, done: int, note: Optional[str] = None, force: bool = False) -> None:
        if not self._open:
            self.open()
        self.done = done
        if note is not None:
            self.note = note
        # In a log, a step is worth a line only when it completes the work (start() names each unit); on a
        # terminal the line is cheap and rewritten anyway.
        self._emit(force=force or done >= self.total or (self.is_outermost and self._tty()))

    # -- text --------------------------------------------------------------------------------------------

    @property
    def is_outermost(self) -> bool:
        return not _active or _active[0] is self

    def eta(self) -> Optional[float]:
        """Seconds left at the rate of this process's finished units; None before the first one."""
        finished = self.done - self._start_done
        if self._start_time is None or finished <= 0 or not self.total:
            return None
        elapsed = self.clock() - self._start_time
        return elapsed / finished * max(self.total - self.done, 0)

    def segment(self) -> str:
        head = f"{self.label} {self.done}/{self.total}" if self.label else f"{self.done}/{self.total}"
        eta = self.eta()
        if self.done >= self.total and self.total and self._start_time is not None:
            head += f" · {format_duration(self.clock() - self._start_time)}"
        elif eta is not None:
            head += f" · ETA {format_duration(eta)}"
        return f"[{head}] {self.note}".rstrip() if self.note else f"[{head}]"

    # -- output ------------------------------------------------------------------------------------------

    def _tty(self) -> bool:
        if self._is_tty is not None:
            return self._is_tty
        stream = self._out()
        return bool(getattr(stream, "isatty", lambda: False)())

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _write(self, text: str) -> None:
        stream = self._out()
        stream.write(text)
        stream.flush()

    def _emit(self, force: bool) -> None:
        if self.quiet or not self._open:
            return
        now = self.clock()
        interval = TTY_INTERVAL if self._tty() else self.log_interval
        if not force and now - self._last_emit < interval:
            return
        self._last_emit = now
        if self._tty():
            _render(force=True)
        else:
            self._write(_line() + "\n")


def _line() -> str:
    return " | ".join(progress.segment() for progress in _active)


def _render(force: bool = False) -> None:
    """Rewrite the terminal line with every active progress (the outermost decides the stream)."""
    if not _active:
        return
    owner = _active[0]
    if owner.quiet:
        return
    width = _terminal_width()
    text = _line()
    if len(text) > width - 1:
        text = text[:width - 2] + "…"
    owner._write("\r" + text + "\x1b[K")


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 120


def _keras_callback_base():
    from tfprune_mia.backend import keras

    return keras.callbacks.Callback


class ProgressCallback(_keras_callback_base()):
    """Keras callback: epoch e/E (and batch b/B on a terminal) with ETA, nested under any active stage.

    Keras' own per-epoch output stays off (`verbose=0` in fit); this is the one progress line.
    """

    def __init__(self, label: str = "epoch", **progress_options):
        super().__init__()
        self.label = label
        self.progress_options = progress_options
        self.progress: Optional[Progress] = None

    def on_train_begin(self, logs=None):
        self.progress = Progress(int(self.params.get("epochs") or 0), self.label, **self.progress_options)

    def on_epoch_begin(self, epoch, logs=None):
        if self.progress is not None and not self.progress._open:
            # Opened at the first epoch, which is `initial_epoch` when fit resumes a checkpoint: the epochs
            # before it were not run here and must not count for the ETA.
            self.progress.open(done=epoch)

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if self.progress is not None and steps:
            self.progress.update(self.progress.done, note=f"batch {batch + 1}/{steps}{_loss(logs)}")

    def on_epoch_end(self, epoch, logs=None):
        if self.progress is not None:
            self.progress.update(epoch + 1, note=_loss(logs).lstrip(" ,"), force=epoch + 1 >= self.progress.total)

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.close()
            self.progress = None


def _loss(logs) -> str:
    if logs and "loss" in logs:
        try:
            return f", loss {float(logs['loss']):.4f}"
        except (TypeError, ValueError):
            return ""
    return ""
