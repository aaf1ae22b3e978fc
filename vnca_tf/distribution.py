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
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
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
