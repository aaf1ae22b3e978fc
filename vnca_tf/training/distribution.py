"""tf.distribute: which strategy a machine gets, and who writes the run's files.

A multi-worker strategy waits, inside TensorFlow, until every worker of the
cluster has joined; while it does, vnca_tf.common.cluster_watch says within seconds
which worker it waits for (an address that does not answer) and how long it
has waited, and ends the wait after ``worker_timeout`` seconds or on a signal.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
from typing import Optional

import tensorflow as tf

from vnca_tf.common import cluster_watch
from vnca_tf.configs import STRATEGIES

# Training state every replica holds the same copy of (step, counters, pool).
MIRRORED = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def choose_strategy(name: str = "auto", worker_timeout: float = 600.0) -> tf.distribute.Strategy:
    """The strategy for this machine: MultiWorkerMirrored when TF_CONFIG names
    a cluster of several tasks, Mirrored on several local GPUs, else the default.
    Create it before any other TensorFlow work (multi-worker requires that).

    While a multi-worker strategy waits for its workers, vnca_tf.common.cluster_watch
    says which ones do not answer, and ends the run after ``worker_timeout``
    seconds or on SIGINT / SIGTERM.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}.")
    cluster = cluster_from_tf_config()
    if name == "auto":
        if sum(len(tasks) for kind, tasks in cluster.items() if kind != "ps") > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        with _watching_the_wait(cluster, worker_timeout):
            return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _peers(cluster: dict, task: Optional[dict] = None) -> list:
    """(name, address) of the cluster's tasks but ``task`` (default: TF_CONFIG's),
    e.g. ("worker 1", "10.0.0.2:2222")."""
    if task is None:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return [
        (f"{kind} {index}", address)
        for kind, addresses in cluster.items()
        for index, address in enumerate(addresses)
        if (kind, index) != (task.get("type"), task.get("index"))
    ]


@contextlib.contextmanager
def _watching_the_wait(cluster: dict, timeout: float):
    """Runs the block (which waits for the cluster, holding the interpreter)
    with vnca_tf.common.cluster_watch watching it from a process of its own."""
    watcher = subprocess.Popen(
        [
            sys.executable,
            cluster_watch.__file__,
            str(os.getpid()),
            str(timeout),
            json.dumps(_peers(cluster)),
        ],
        stdin=subprocess.PIPE,
    )
    try:
        yield
    finally:
        watcher.stdin.close()
        watcher.wait()


def cluster_from_tf_config() -> dict:
    """The cluster that the TF_CONFIG environment variable names ({} if unset).

    Raises:
      ValueError: TF_CONFIG is not JSON of the form tf.distribute reads.
    """
    text = os.environ.get("TF_CONFIG") or "{}"
    form = (
        'TF_CONFIG must be JSON like {"cluster": {"worker": ["host1:port", '
        '"host2:port"]}, "task": {"type": "worker", "index": 0}}, or unset'
    )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text!r}. {form}.") from None
    cluster = config.get("cluster", {}) if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not all(
        isinstance(tasks, list) for tasks in cluster.values()
    ):
        raise ValueError(f"TF_CONFIG has no cluster of address lists: {text!r}. {form}.")
    task = config.get("task", {})
    if cluster and not (
        isinstance(task, dict)
        and task.get("type") in cluster
        and isinstance(task.get("index"), int)
        and 0 <= task["index"] < len(cluster[task["type"]])
    ):
        raise ValueError(
            f"TF_CONFIG's task must name this host's type and index in its "
            f"cluster, got {task!r}. {form}."
        )
    return cluster


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The tf.distribute name a user knows the strategy by."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


# What a collective raises on the survivors when a worker of a multi-worker run
# is lost: a killed process within seconds (its connection resets), a frozen or
# vanished host when the coordination service misses its heartbeats (10 s on
# loopback: TensorFlow's default, which its public API does not set).
LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError)
_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def lost_peer(error: tf.errors.OpError, strategy: tf.distribute.Strategy) -> Optional[str]:
    """Which worker a multi-worker run lost, and how, in words; None if the run
    is not multi-worker or no peer is lost (the error is another)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    return describe_lost_peer(error.message, cluster, (resolver.task_type, resolver.task_id))


def describe_lost_peer(message: str, cluster: dict, me: tuple) -> Optional[str]:
    """The lost peer of TensorFlow's error ``message`` in words ("worker 1 at
    10.0.0.2:2222, which stopped sending heartbeats"): the tasks it names but
    ``me`` (type, index), else the peers of ``cluster`` that do not answer;
    None if there are neither."""
    named = [
        (kind, int(index))
        for kind, index in _TASK.findall(message)
        if (kind, int(index)) != tuple(me) and int(index) < len(cluster.get(kind, []))
    ]
    who = [f"{kind} {index} at {cluster[kind][index]}" for kind, index in dict.fromkeys(named)]
    if not who:
        task = {"type": me[0], "index": me[1]}
        who = cluster_watch.silent(_peers(cluster, task))
    if not who:
        return None
    if "heartbeat" in message:
        how = "which stopped sending heartbeats (a frozen or vanished host)"
    elif re.search(r"reset by peer|refused|socket closed|EOF", message, re.IGNORECASE):
        how = "whose connection closed (the process ended)"
    else:
        how = f"({message.strip().splitlines()[0][:200]})"
    return f"{', '.join(who)}, {how}"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this task writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def any_worker(strategy: tf.distribute.Strategy, *flags: bool) -> tuple:
    """For each flag, whether it is set on any worker: the same answers on all
    of them (one all-reduce under multi-worker training, for decisions that
    every worker must take at the same step: a checkpoint by time, a stop)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return tuple(flags)
    values = strategy.run(lambda: tf.constant([float(flag) for flag in flags]))
    summed = strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy()
    return tuple(bool(value > 0) for value in summed)
