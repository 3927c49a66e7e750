"""Distribution strategies for the training loop: default, mirrored, or multi-worker from TF_CONFIG.

A multi-worker cluster is described the standard TensorFlow way, by the ``TF_CONFIG`` variable of
each process, e.g. ``{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
"task": {"type": "worker", "index": 0}}``. The chief (task ``chief``, or worker 0 when the cluster
has no chief) is the only process that writes checkpoints, logs and models into the run folder;
the others write the same files into a temporary folder they delete (saving can involve
collective operations, so every worker takes part). Each worker's input pipeline samples only
its own shard of the patches (`tf.distribute.InputContext`).
"""

from __future__ import annotations

import dataclasses
import json
import os

STRATEGIES = ("default", "mirrored", "multi_worker")
TASK_TYPES = ("chief", "worker")


class StrategyError(ValueError):
    """The requested strategy cannot be set up (unknown name, missing or malformed TF_CONFIG)."""


@dataclasses.dataclass(frozen=True)
class ClusterRole:
    """This process's place in the cluster.

    Args:
        task_type: "chief" or "worker" ("worker" for a single process).
        task_id: The task's index within its type.
        num_workers: Processes in the cluster (1 for a single process).
        is_chief: Whether this process writes the run folder.

    Example:
        >>> cluster_role("mirrored")
        ClusterRole(task_type='worker', task_id=0, num_workers=1, is_chief=True)
    """

    task_type: str
    task_id: int
    num_workers: int
    is_chief: bool


def read_tf_config() -> dict:
    """Parses and checks the ``TF_CONFIG`` environment variable of a multi-worker run.

    Raises:
        StrategyError: TF_CONFIG is missing, not JSON, or lacks the cluster or this task.

    Example:
        >>> os.environ["TF_CONFIG"] = json.dumps(
        ...     {"cluster": {"worker": ["localhost:2222"]}, "task": {"type": "worker", "index": 0}})
        >>> read_tf_config()["task"]
        {'type': 'worker', 'index': 0}
        >>> del os.environ["TF_CONFIG"]
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise StrategyError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable in every process, e.g. "
            '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({error}): {text!r}") from error
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise StrategyError(f"TF_CONFIG needs a 'cluster' and a 'task' object; got {text!r}")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in TASK_TYPES:
        raise StrategyError(f"TF_CONFIG task type must be one of {TASK_TYPES}; got {task_type!r}")
    if not isinstance(index, int) or not 0 <= index < len(cluster.get(task_type, [])):
        raise StrategyError(
            f"TF_CONFIG task index {index!r} is not an index into cluster[{task_type!r}] = {cluster.get(task_type)}"
        )
    return config


def cluster_role(strategy_name: str) -> ClusterRole:
    """This process's role for a strategy name; single-process strategies are always chief.

    Args:
        strategy_name: One of `STRATEGIES`.

    Example:
        >>> cluster_role("default").is_chief
        True
    """
    if strategy_name not in STRATEGIES:
        raise StrategyError(f"strategy must be one of {STRATEGIES}; got {strategy_name!r}")
    if strategy_name != "multi_worker":
        return ClusterRole("worker", 0, 1, True)
    config = read_tf_config()
    cluster, task = config["cluster"], config["task"]
    task_type, task_id = task["type"], task["index"]
    has_chief = bool(cluster.get("chief"))
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    num_workers = sum(len(cluster.get(kind, [])) for kind in TASK_TYPES)
    return ClusterRole(task_type, task_id, num_workers, is_chief)


def make_strategy(strategy_name: str):
    """Creates the `tf.distribute.Strategy` for a name.

    "default" is TensorFlow's default (one device), "mirrored" a `MirroredStrategy` over all
    local GPUs (or the CPU), "multi_worker" a `MultiWorkerMirroredStrategy` from TF_CONFIG.

    Args:
        strategy_name: One of `STRATEGIES`.

    Example:
        >>> make_strategy("default").num_replicas_in_sync  # "mirrored": one replica per local GPU
        1
    """
    import tensorflow as tf

    cluster_role(strategy_name)
    if strategy_name == "default":
        return tf.distribute.get_strategy()
    if strategy_name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()
