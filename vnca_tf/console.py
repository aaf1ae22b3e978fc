"""A script's console: a progress line, and one line per event above it.

On a terminal the progress line is redrawn in place after every step; in a
log file (no terminal) it is written as a line of its own every
``log_seconds``. Events (resume, validation, checkpoint, images) are printed as
lines above it. The rate and the ETA count the timed work only (training
steps, not the time spent on validation, images and checkpoints).
"""

import collections
import sys
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

    def __init__(self, total: int, stream=None, enabled: bool = True,
                 log_seconds: float = 60.0, unit: str = "step"):
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.log_seconds = log_seconds
        self.terminal = self.stream.isatty()
        self._traced = False  # Whether the first call (which traces) is done.
        self._step_seconds = collections.deque(maxlen=_RATE_WINDOW)
        self._line = ""  # The progress line on screen (terminal only).
        self._last_logged = -float("inf")

    def step_done(self, seconds: float, count: int = 1) -> None:
        """Counts ``count`` units done in ``seconds``."""
        if self._traced:
            self._step_seconds.append((count, seconds))
        self._traced = True

    @property
    def steps_per_second(self) -> Optional[float]:
        """Units per second over the last calls' time only, leaving out the
        first, which traces the graphs; None until there is a second."""
        if not self._step_seconds:
            return None
        return (sum(c for c, _ in self._step_seconds)
                / max(sum(s for _, s in self._step_seconds), 1e-9))

    def progress_line(self, step: int, status: str) -> str:
        filled = int(_BAR_WIDTH * step / self.total)
        parts = [f"{self.unit} {step:,}/{self.total:,} "
                 f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}]", status]
        rate = self.steps_per_second
        if rate is not None:
            parts.append(f"{rate:.3g} {self.unit}s/s")
            parts.append(f"ETA {duration((self.total - step) / rate)}")
        return " | ".join(parts)

    def progress(self, step: int, status: str, force: bool = False) -> None:
        """Shows the progress at ``step`` with ``status`` (e.g. the loss);
        ``force``: also in a log file, whenever the last line was."""
        if not self.enabled:
            return
        line = self.progress_line(step, status)
        if self.terminal:
            padding = " " * max(len(self._line) - len(line), 0)
            self.stream.write("\r" + line + padding)
            self._line = line
        elif force or time.monotonic() - self._last_logged >= self.log_seconds:
            self.stream.write(line + "\n")
            self._last_logged = time.monotonic()
        self.stream.flush()

    def event(self, text: str) -> None:
        """Prints ``text`` on a line of its own, above the progress line."""
        if not self.enabled:
            return
        if self.terminal and self._line:
            self.stream.write("\r" + " " * len(self._line) + "\r")
        self.stream.write(text + "\n")
        if self.terminal and self._line:
            self.stream.write(self._line)
        self.stream.flush()

    def close(self) -> None:
        """Ends the progress line."""
        if self.enabled and self.terminal and self._line:
            self.stream.write("\n")
            self.stream.flush()
            self._line = ""
