"""A watcher process for a worker waiting for its cluster (``python
cluster_watch.py PID TIMEOUT PEERS``; distribution.choose_strategy starts it).

TensorFlow's MultiWorkerMirroredStrategy waits for every worker inside one C++
call that holds Python's interpreter lock: no thread of the waiting process
runs, and no signal handler. This process, which imports nothing but the
standard library, does what the waiting one cannot, until it reads the end of
its stdin (the wait is over, or the parent has gone):

* within seconds, and then every 15 s, it says which peers do not answer;
* when the parent has a SIGINT or SIGTERM pending (it blocks them; see
  vnca_tf.stopping), it ends the parent at once, with a line saying so;
* after TIMEOUT seconds it ends the parent with one ``Error:`` line.

It ends the parent with SIGKILL, the one way out of that call: the shell
reports such a run as killed (exit status 137).
"""

import json
import os
import select
import signal
import socket
import sys
import time

_STOPPING = (signal.SIGINT, signal.SIGTERM)


def pending_signals(pid: int) -> list:
    """The signals pending for process ``pid`` (Linux; [] where unknown)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [
                int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))
            ]
    except (OSError, ValueError, IndexError):
        return []
    pending = 0
    for mask in masks:
        pending |= mask
    return [signum for signum in _STOPPING if pending >> (signum - 1) & 1]


def answers(address: str) -> bool:
    """Whether something listens at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def silent(peers) -> list:
    """The peers ([name, address]) that do not answer, in words."""
    return [f"{name} at {address}" for name, address in peers if not answers(address)]


def watch(parent: int, timeout: float, peers, first_after: float = 3.0, every: float = 15.0) -> int:
    """Watches ``parent`` until stdin ends (see the module docstring)."""
    for signum in _STOPPING:  # A Ctrl-C reaches this process too: the parent's counts.
        signal.signal(signum, signal.SIG_IGN)
    began, next_report = time.monotonic(), first_after
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.25)
        if readable and not os.read(sys.stdin.fileno(), 1024):
            return 0  # The wait is over.
        waited = time.monotonic() - began
        caught = pending_signals(parent)
        if caught:
            print(
                f"{signal.Signals(caught[0]).name} while waiting for the cluster: "
                "quitting at once (nothing was trained yet).",
                file=sys.stderr,
                flush=True,
            )
            os.kill(parent, signal.SIGKILL)
            return 0
        if waited >= timeout:
            missing = silent(peers) or ["the other workers (they answer, but have not joined)"]
            print(
                f"Error: {', '.join(missing)} did not join the cluster within "
                f"{timeout:.0f} s (--worker_timeout). Start every worker with the same "
                "command and its own TF_CONFIG, or check TF_CONFIG's addresses.",
                file=sys.stderr,
                flush=True,
            )
            os.kill(parent, signal.SIGKILL)
            return 0
        if waited >= next_report:
            missing = silent(peers)
            who = (
                f"{', '.join(missing)} does not answer yet"
                if missing
                else "every worker answers; waiting for them to join"
            )
            print(
                f"Waiting for the cluster: {who} ({waited:.0f} s so far; giving up after "
                f"{timeout:.0f} s)",
                flush=True,
            )
            next_report = waited + every


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])))
