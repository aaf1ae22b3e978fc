"""A script's console: a progress line, one line per event above it, and a
watchdog that never lets it fall silent.

On a terminal the progress line is redrawn in place after every step; in a
log file (no terminal) it is written as a line of its own every
``log_seconds``. Events (resume, validation, checkpoint, images) are printed as
lines above it. The rate and the ETA count the timed work only (training
steps, not the time spent on validation, images and checkpoints), and leave
out the first step, which builds (traces, compiles) the step.

Whatever the script is doing (``working("loading celeb_a")``), once
``quiet_seconds`` pass without a line, the console says what it is doing and
for how long; a background thread does it, so a step or a load of many
minutes still shows signs of life.
"""

import collections
import contextlib
import sys
import threading
import time
from typing import Optional

_RATE_WINDOW = 50  # Steps over which steps/s is measured.
_BAR_WIDTH = 20


def duration(seconds: float) -> str:
    """``seconds`` as H:MM:SS (or D days, H:MM:SS)."""
    seconds = int(round(seconds))
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    text = f"{hours}:{seconds // 60:02d}:{seconds % 60:02d}"
    return f"{days} days, {text}" if days else text


class Console:
    """Progress and events of a run of ``total`` units (steps, images),
    written to ``stream`` (default stdout); ``enabled=False`` writes nothing."""

    def __init__(
        self,
        total: int,
        stream=None,
        enabled: bool = True,
        log_seconds: float = 30.0,
        unit: str = "step",
        quiet_seconds: float = 30.0,
        estimate_from_first: bool = False,
    ):
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.log_seconds = log_seconds
        self.quiet_seconds = quiet_seconds
        self.terminal = self.stream.isatty()
        self.first_seconds = None  # The first call's time (it builds the step) ...
        self._first_count = 0  # ... and units.
        # Until a second call, estimate the rate from the first (building included).
        self.estimate_from_first = estimate_from_first
        self._step_seconds = collections.deque(maxlen=_RATE_WINDOW)
        self._line = ""  # The progress line (terminal only) ...
        self._shown = ""  # ... and what is on screen now (with a status after it).
        self._last_logged = -float("inf")  # The last progress line (log file).
        self._last_output = time.monotonic()
        self._activity = None  # (what, since when), shown when the console is quiet.
        self._lock = threading.RLock()
        self._watchdog = None
        self._closed = threading.Event()

    def step_done(self, seconds: float, count: int = 1) -> None:
        """Counts ``count`` units done in ``seconds``."""
        if self.first_seconds is None:
            self.first_seconds, self._first_count = seconds, count
        else:
            self._step_seconds.append((count, seconds))

    @property
    def steps_per_second(self) -> Optional[float]:
        """Units per second over the last calls' time only, leaving out the
        first, which builds the graphs; None until there is a second (with
        ``estimate_from_first``, the first call's rate until then)."""
        if not self._step_seconds:
            if self.estimate_from_first and self.first_seconds:
                return self._first_count / self.first_seconds
            return None
        return sum(c for c, _ in self._step_seconds) / max(
            sum(s for _, s in self._step_seconds), 1e-9
        )

    def eta_seconds(self, done: int) -> Optional[float]:
        """The time the remaining units take at the current rate, or None."""
        rate = self.steps_per_second
        return None if rate is None else (self.total - done) / rate

    def progress_line(self, step: int, status: str) -> str:
        filled = int(_BAR_WIDTH * min(step / max(self.total, 1), 1.0))
        parts = [
            f"{self.unit} {step:,}/{self.total:,} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}]",
            status,
        ]
        rate = self.steps_per_second
        if rate is not None:
            parts.append(f"{rate:.3g} {self.unit}s/s")
            parts.append(f"ETA {duration(self.eta_seconds(step))}")
        return " | ".join(parts)

    def progress(self, step: int, status: str, force: bool = False) -> None:
        """Shows the progress at ``step`` with ``status`` (e.g. the loss);
        ``force``: also in a log file, whenever the last line was."""
        if not self.enabled:
            return
        line = self.progress_line(step, status)
        with self._lock:
            if self.terminal:
                self._redraw(line)
                self._line = line
            elif force or time.monotonic() - self._last_logged >= self.log_seconds:
                self._write(line + "\n")
                self._last_logged = time.monotonic()

    def event(self, text: str) -> None:
        """Prints ``text`` on a line of its own, above the progress line."""
        if not self.enabled:
            return
        with self._lock:
            if self.terminal and self._shown:
                self.stream.write("\r" + " " * len(self._shown) + "\r")
            self._write(text + "\n")
            self._shown = ""
            if self.terminal and self._line:
                self._write(self._line)
                self._shown = self._line

    @contextlib.contextmanager
    def working(self, activity: str):
        """Names what the script does during the block ("loading celeb_a",
        "step 3"): if it is quiet for ``quiet_seconds``, the console says so."""
        with self._lock:
            previous, self._activity = self._activity, (activity, time.monotonic())
            if self.enabled and self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch, daemon=True, name="console-watchdog"
                )
                self._watchdog.start()
        try:
            yield
        finally:
            with self._lock:
                self._activity = previous

    def close(self) -> None:
        """Ends the progress line and the watchdog."""
        self._closed.set()
        with self._lock:
            if self.enabled and self.terminal and self._shown:
                self._write("\n")
            self._line = self._shown = ""

    def _watch(self):
        while not self._closed.wait(min(1.0, self.quiet_seconds / 4)):
            with self._lock:
                now = time.monotonic()
                if not self.enabled or self._activity is None:
                    continue
                what, since = self._activity
                # Quiet for long enough, in something that is not just starting
                # (a fast step's own progress line is due at its end).
                if (
                    now - self._last_output < self.quiet_seconds
                    or now - since < self.quiet_seconds / 3
                ):
                    continue
                status = f"... {what} ({duration(now - since)} so far)"
                if self.terminal:
                    self._redraw(f"{self._line} | {status}" if self._line else status)
                else:
                    self._write(status + "\n")

    def _redraw(self, line: str) -> None:
        self._write("\r" + line + " " * max(len(self._shown) - len(line), 0))
        self._shown = line

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self._last_output = time.monotonic()
