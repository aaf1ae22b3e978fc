"""One live run per folder: MODEL_DIR/run.lock.

The lock file holds who runs there (host, pid, the process's start, when the
run began) and is created atomically (O_EXCL), so that of two runs started
together in one folder only one gets it. The holder refreshes the file's time
every ``heartbeat_seconds`` from a thread of its own. A lock is stale, and is
taken over with a warning, when its process no longer exists on this host, or
when it has not been refreshed for ``stale_seconds`` (a run on another host
that died or was preempted: its host cannot be asked). Anything else refuses
the second run with one line that says who holds the folder.
"""

import datetime
import json
import os
import socket
import threading
import time
import uuid
from typing import Optional

LOCK_FILE = "run.lock"


class LockedError(RuntimeError):
    """The folder is in use by a live run."""


def _process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started, in clock ticks since boot (Linux), so that a
    reused pid is not taken for the run that held it; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: Optional[str]) -> bool:
    """Whether process ``pid`` (started at ``start``, if known) runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's process: it exists.
    return start is None or _process_start(pid) in (None, start)


class RunLock:
    """The lock of ``model_dir`` (see the module docstring)."""

    def __init__(
        self, model_dir: str, heartbeat_seconds: float = 30.0, stale_seconds: float = 120.0
    ):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self.created_folder = False
        self._record = None
        self._stop = threading.Event()

    def acquire(self) -> Optional[str]:
        """Takes the lock; returns a warning if it took over a stale one.

        Raises:
          LockedError: a live run holds the folder.
          OSError: the folder cannot be made or written.
        """
        if not os.path.isdir(self.model_dir):
            os.makedirs(self.model_dir)
            self.created_folder = True
        self._record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex,
        }
        warning = None
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._holder()
            reason = self._stale_reason(holder)
            if reason is None:
                raise LockedError(self._describe(holder)) from None
            warning = f"took over {self.path}, left by the run {self._who(holder)}: {reason}."
            self._write_replacing()
        else:
            with os.fdopen(descriptor, "w") as f:
                json.dump(self._record, f)
        threading.Thread(target=self._heartbeat, daemon=True, name="run-lock").start()
        return warning

    def release(self, remove_empty_folder: bool = False) -> None:
        """Gives the lock up (if it is still ours); with ``remove_empty_folder``,
        also the folder if acquire made it and nothing else was written there."""
        self._stop.set()
        if self._record is None:
            return
        if self._holder().get("token") == self._record["token"]:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self._record = None
        if remove_empty_folder and self.created_folder:
            try:
                os.rmdir(self.model_dir)
            except OSError:
                pass

    def _holder(self) -> dict:
        """The lock file's record ({} if it is gone or cannot be read)."""
        try:
            with open(self.path) as f:
                holder = json.load(f)
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def _stale_reason(self, holder: dict) -> Optional[str]:
        """Why the lock ``holder`` is stale, or None if its run may be alive."""
        try:
            age = time.time() - os.path.getmtime(self.path)
        except FileNotFoundError:
            return "it was just released"
        if not holder:
            # Being written right now, or left unreadable: only age tells.
            return (
                f"unreadable and not refreshed for {age:.0f} s"
                if age > self.stale_seconds
                else None
            )
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if not _alive(holder["pid"], holder.get("process_start")):
                return f"process {holder['pid']} no longer exists"
            return None
        if age > self.stale_seconds:
            return f"not refreshed for {age:.0f} s (more than {self.stale_seconds:.0f} s)"
        return None

    @staticmethod
    def _who(holder: dict) -> str:
        return (
            f"started {holder.get('started', 'at an unknown time')} on "
            f"{holder.get('host', 'an unknown host')} (pid {holder.get('pid', '?')})"
        )

    def _describe(self, holder: dict) -> str:
        elsewhere = holder.get("host") != socket.gethostname()
        return (
            f"{self.model_dir} is in use by the run {self._who(holder)}: one run per "
            "folder. Wait for it to end (Ctrl-C stops it with a checkpoint), or pick "
            "another --model_dir."
            + (
                f" If that run is gone, its lock is taken over {self.stale_seconds:.0f} s "
                "after its last refresh."
                if elsewhere
                else ""
            )
        )

    def _write_replacing(self) -> None:
        """Replaces a stale lock atomically; a second taker that raced us is
        found by reading our token back."""
        temporary = f"{self.path}.{self._record['token']}"
        with open(temporary, "w") as f:
            json.dump(self._record, f)
        os.replace(temporary, self.path)
        time.sleep(0.2)
        if self._holder().get("token") != self._record["token"]:
            raise LockedError(self._describe(self._holder()))

    def _heartbeat(self):
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                os.utime(self.path)
            except OSError:
                pass  # A full or read-only disk: the run itself will say so.
