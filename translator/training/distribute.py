"""Training on several devices or machines with `tf.distribute` (`train.distribute`).

- `none`: the default strategy, one device.
- `mirrored`: `tf.distribute.MirroredStrategy` over this machine's GPUs, or, without GPUs, over
  its CPU split into `train.cpu_devices` logical devices (useful to test, not faster: the
  devices share the cores).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, one process per worker, the
  cluster and this process' place in it read from the `TF_CONFIG` environment variable.

Each replica gets batches of `train.batch_tokens` target tokens (the batch of one replica): the
input pipeline of each worker reads every `num_workers`-th example (so an example is seen once
per pass across workers) and the replicas of a worker take its batches in turn. The loss is the
mean over the target tokens of the *global* batch (see `MaskedCrossEntropy`), and gradients are
clipped after they are summed across replicas (see :class:`translator.models.losses`'s optimizer
note), so a step on a batch split across replicas equals a step on the whole batch.

The chief (worker 0, or the task of type `chief`) writes checkpoints, logs and the best model;
the other workers write theirs to a scratch directory and read the chief's when they resume.
Decisions that end training (time budget) are agreed across workers, so no worker waits forever
on one that stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from typing import Any

from translator.config import ConfigError, TrainConfig
from translator.io import signal_handlers


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process' place in a multi-worker cluster (`TF_CONFIG`), or a lone process."""

    task_type: str = "worker"
    task_id: int = 0
    num_workers: int = 1
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        if self.has_chief_task:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_id == 0


def worker_role(distribute: str) -> WorkerRole:
    """The role of this process for `train.distribute` (reads `TF_CONFIG`; no TensorFlow import).

    Raises:
        ConfigError: `multi_worker` without a usable `TF_CONFIG`.
    """
    if distribute != "multi_worker":
        return WorkerRole()
    raw = os.environ.get("TF_CONFIG")
    example = (
        '{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not raw:
        raise ConfigError(
            "train.distribute: multi_worker needs the TF_CONFIG environment variable describing "
            f"the cluster and this worker, e.g. TF_CONFIG='{example}'"
        )
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_id = str(task["type"]), int(task["index"])
        workers = list(cluster.get("worker", []))
        chiefs = list(cluster.get("chief", []))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"TF_CONFIG is not a valid cluster description ({type(e).__name__}: {e}); "
            f"expected e.g. {example}"
        ) from None
    if task_type not in ("worker", "chief"):
        raise ConfigError(f"TF_CONFIG: task type {task_type!r}; valid choices: worker, chief")
    size = len(chiefs) if task_type == "chief" else len(workers)
    if not 0 <= task_id < size:
        raise ConfigError(
            f"TF_CONFIG: task index {task_id} but the cluster has {size} {task_type}s"
        )
    return WorkerRole(task_type, task_id, len(workers) + len(chiefs), bool(chiefs))


def configure_cpu_devices(count: int) -> None:
    """Split the CPU into `count` logical devices (before TensorFlow initialises its devices)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise ConfigError(
                f"train.cpu_devices: {count}, but TensorFlow has already started with {have} CPU "
                "device(s) in this process; set it in the config before training starts"
            ) from None


def make_strategy(tc: TrainConfig) -> Any:
    """The `tf.distribute.Strategy` for `tc.distribute` (the default strategy for `none`)."""
    import tensorflow as tf

    role = worker_role(tc.distribute)  # checks TF_CONFIG before TensorFlow starts anything
    if tc.cpu_devices:
        configure_cpu_devices(tc.cpu_devices)
    if tc.distribute == "none":
        return tf.distribute.get_strategy()
    if tc.distribute == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0])
        )
    print(
        f"[train] multi_worker: {role.task_type} {role.task_id} of {role.num_workers} in TF_CONFIG, "
        "waiting for the others to connect (each started with its own task index)",
        flush=True,
    )
    # That wait blocks in C++, where Python's handlers never run (a worker started alone ignored
    # Ctrl-C); nothing is written yet, so the default action (the process ends) is right.
    with signal_handlers(signal.SIG_DFL):
        return tf.distribute.MultiWorkerMirroredStrategy()


def input_context_shard(input_context: Any) -> tuple[int, int]:
    """`(num_shards, index)` of a worker's input pipeline."""
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def distribute_batches(strategy: Any, make_dataset) -> Any:
    """The training batches for `strategy`: `make_dataset(shard)` builds one worker's pipeline of
    per-replica batches from every `shard[0]`-th example starting at `shard[1]`."""
    if strategy.num_replicas_in_sync == 1 and not _multi_worker(strategy):
        return make_dataset(None)

    def per_worker(input_context):
        return make_dataset(input_context_shard(input_context))

    return strategy.distribute_datasets_from_function(per_worker)


def _multi_worker(strategy: Any) -> bool:
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def agree(strategy: Any, value: float) -> float:
    """The mean of `value` over all workers, the same number on each (the value itself outside
    multi-worker training): decisions taken on it are the same everywhere."""
    if not _multi_worker(strategy):
        return value
    import tensorflow as tf

    if not hasattr(strategy, "_translator_agree"):

        @tf.function
        def mean_over_workers(v):
            return strategy.reduce("MEAN", strategy.run(tf.identity, args=(v,)), axis=None)

        strategy._translator_agree = mean_over_workers
    return float(strategy._translator_agree(tf.constant(value, tf.float32)).numpy())


def describe(strategy: Any, tc: TrainConfig) -> str:
    """One line for the start of training: replicas, the effective batch, the learning rate."""
    replicas = strategy.num_replicas_in_sync
    effective = replicas * tc.accumulate_steps
    return (
        f"[train] {tc.distribute}: {replicas} replica(s) x {tc.batch_tokens} target tokens"
        + (f" x {tc.accumulate_steps} accumulated steps" if tc.accumulate_steps > 1 else "")
        + f" = about {effective * tc.batch_tokens} target tokens per update; learning rate "
        + f"{scaled_learning_rate(tc, replicas):g} ({tc.learning_rate_scaling}"
        + (
            f": {tc.learning_rate:g} x {effective})"
            if tc.learning_rate_scaling == "linear"
            else ")"
        )
    )


def scaled_learning_rate(tc: TrainConfig, replicas: int) -> float:
    """`train.learning_rate`, times replicas x accumulate_steps with `learning_rate_scaling:
    linear` (Goyal et al., 2017)."""
    if tc.learning_rate_scaling == "linear":
        return tc.learning_rate * replicas * tc.accumulate_steps
    return tc.learning_rate
