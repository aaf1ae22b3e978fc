"""Stopping a run on SIGINT or SIGTERM, at once or after the step in flight.

A signal handler in Python runs only when the main thread returns to the
interpreter, which a training step (minutes of TensorFlow kernels) does not.
So ``install`` blocks SIGINT and SIGTERM in the calling thread and every
thread started after it (call it before TensorFlow starts its threads), and
after ``listen`` a thread of its own takes them with ``sigwait``, whatever the
main thread is doing:

* while ``graceful`` is in force (the training loop), the first signal is
  acknowledged at once and asks the loop to stop after the step in flight,
  with a checkpoint (``requested``); a second one quits at once;
* otherwise (start-up, waiting for workers, loading data: nothing to save
  yet), a signal quits at once.

Quitting runs the registered cleanups (releasing the run's lock) and exits with
128 + the signal's number, as a shell reports a process killed by it.
"""

import os
import signal
import sys
import threading
from typing import Callable, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    """The stop requests of one process (see the module docstring)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.requested = threading.Event()
        self.signum: Optional[int] = None
        self._acknowledge: Optional[Callable[[], str]] = None
        self._cleanups = []
        self._lock = threading.Lock()

    def install(self) -> "Stopper":
        """Blocks the signals in this thread and those it starts; they stay
        pending until ``listen``."""
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        return self

    def listen(self) -> None:
        """Takes the signals in a thread of its own from now on. (Until then a
        signal stays pending, where vnca_tf.cluster_watch sees it while
        TensorFlow waits for a cluster: a thread in sigwait would take it and
        then wait for the interpreter lock that the waiting call holds.)"""
        threading.Thread(target=self._wait, daemon=True, name="stopper").start()

    def on_quit(self, cleanup: Callable[[], None]) -> None:
        """Runs ``cleanup`` before quitting at once (e.g. releasing a lock)."""
        self._cleanups.append(cleanup)

    def graceful(self, acknowledge: Callable[[], str]):
        """From now on a first signal asks to stop after the step in flight;
        ``acknowledge()`` says what happens then (e.g. "stopping after step 12,
        then a checkpoint")."""
        self._acknowledge = acknowledge

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    def handle(self, signum: int) -> None:
        """What a signal does (the waiting thread calls it; tests may too)."""
        with self._lock:
            first = not self.requested.is_set()
            self.signum = self.signum or signum
            self.requested.set()
            if first and self._acknowledge is not None:
                self._say(
                    f"{signal.Signals(signum).name}: {self._acknowledge()}; "
                    f"{signal.Signals(signum).name} or Ctrl-C again quits at once."
                )
                return
        what = "again" if not first else "before training began"
        self._say(f"{signal.Signals(signum).name} {what}: quitting at once.")
        self.quit()

    def quit(self, code: Optional[int] = None) -> None:
        """Runs the cleanups and ends the process with ``code`` (default: this
        stop's exit code)."""
        for cleanup in self._cleanups:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - quitting must not fail.
                pass
        self.stream.flush()
        sys.stdout.flush()
        os._exit(self.exit_code if code is None else code)

    def _say(self, text: str) -> None:
        sys.stdout.flush()
        print(f"\n{text}", file=self.stream, flush=True)

    def _wait(self):
        while True:
            self.handle(signal.sigwait(SIGNALS))
