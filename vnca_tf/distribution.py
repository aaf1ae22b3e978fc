"""tf.distribute: which strategy a machine gets, and who writes the run's files."""

import json
import os

import tensorflow as tf

from vnca_tf.configs import STRATEGIES

# Training state every replica holds the same copy of (step, counters, pool).
MIRRORED = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def choose_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy for this machine: MultiWorkerMirrored when TF_CONFIG names
    a cluster of several tasks, Mirrored on several local GPUs, else the default.
    Create it before any other TensorFlow work (multi-worker requires that)."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}.")
    if name == "auto":
        cluster = cluster_from_tf_config()
        if sum(len(tasks) for kind, tasks in cluster.items() if kind != "ps") > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cluster_from_tf_config() -> dict:
    """The cluster that the TF_CONFIG environment variable names ({} if unset).

    Raises:
      ValueError: TF_CONFIG is not JSON of the form tf.distribute reads.
    """
    text = os.environ.get("TF_CONFIG") or "{}"
    form = ('TF_CONFIG must be JSON like {"cluster": {"worker": ["host1:port", '
            '"host2:port"]}, "task": {"type": "worker", "index": 0}}, or unset')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text!r}. {form}.") from None
    cluster = config.get("cluster", {}) if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not all(isinstance(tasks, list)
                                                for tasks in cluster.values()):
        raise ValueError(f"TF_CONFIG has no cluster of address lists: {text!r}. {form}.")
    task = config.get("task", {})
    if cluster and not (isinstance(task, dict) and task.get("type") in cluster
                        and isinstance(task.get("index"), int)
                        and 0 <= task["index"] < len(cluster[task["type"]])):
        raise ValueError(f"TF_CONFIG's task must name this host's type and index in its "
                         f"cluster, got {task!r}. {form}.")
    return cluster


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The tf.distribute name a user knows the strategy by."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this task writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether ``flag`` is set on any worker: the same answer on all of them
    (an all-reduce under multi-worker training, for decisions such as a
    checkpoint by time that every worker must take at the same step)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return flag
    flags = strategy.run(lambda: tf.constant(float(flag)))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None) > 0)
