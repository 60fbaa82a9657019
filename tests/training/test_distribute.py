"""tf.distribute training: one step on a batch split across replicas equals one step on the
whole batch (mirrored on two logical CPUs; multi_worker with two processes on loopback ports),
and `translator train` runs, stops and resumes with each strategy."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY
from translator.distribute_bench import free_loopback_ports

STEP = Path(__file__).with_name("distributed_step.py")
# float32 sums in another order (per replica, then across replicas): a few ulps of the loss (about
# 4e-7 of 3.7) and of each updated weight.
RTOL, ATOL = 1e-5, 1e-6


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _tf_config(ports, index):
    workers = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def _step(mode, out, **env):
    return subprocess.Popen(
        [sys.executable, str(STEP), mode, str(out)],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs, timeout=240):
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _assert_same_step(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=RTOL)
    names = [k for k in a.files if k != "loss"]
    assert names and sorted(names) == sorted(k for k in b.files if k != "loss")
    for k in names:
        np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=ATOL, err_msg=k)


@pytest.fixture(scope="module")
def single_step(tmp_path_factory):
    out = tmp_path_factory.mktemp("step") / "single.npz"
    _finish([_step("single", out)])
    return out


def test_mirrored_step_on_two_cpus_equals_one_step_on_the_whole_batch(single_step, tmp_path):
    out = tmp_path / "mirrored.npz"
    _finish([_step("mirrored", out)])
    _assert_same_step(single_step, out)


def test_multi_worker_step_with_two_processes_equals_one_step(single_step, tmp_path):
    """Run once more (only) if a worker dies of SIGSEGV: TensorFlow 2.21's collective executor
    crashed a worker in 3 of 30 runs of this step here (inside
    `CollectiveReduceV2`, seen with faulthandler; the peer then reports "Socket closed"). Any
    other failure, a second crash, or a different result fails the test."""
    out = tmp_path / "multi.npz"
    for attempt in (1, 2):
        ports = free_loopback_ports(2)
        procs = [_step("multi_worker", out, TF_CONFIG=_tf_config(ports, i)) for i in (0, 1)]
        try:
            _finish(procs)
            break
        except AssertionError:
            if attempt == 2 or -signal.SIGSEGV not in [p.returncode for p in procs]:
                raise
    _assert_same_step(single_step, out)


def test_worker_roles_from_tf_config(monkeypatch):
    from translator.config import ConfigError
    from translator.training.distribute import worker_role

    assert worker_role("none").is_chief
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        worker_role("multi_worker")
    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2], 1))
    role = worker_role("multi_worker")
    assert role.num_workers == 2 and role.task_id == 1 and not role.is_chief
    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2], 0))
    assert worker_role("multi_worker").is_chief
    for bad in ("{not json", '{"cluster": {}}', _tf_config([1, 2], 5)):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(ConfigError, match="TF_CONFIG"):
            worker_role("multi_worker")


def test_bad_distribute_settings_are_config_errors():
    from translator.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="train.distribute.*mirrored"):
        load_config(TINY, overrides=["train.distribute=horovod"])
    with pytest.raises(ConfigError, match="train.accumulate_steps"):
        load_config(TINY, overrides=["train.accumulate_steps=0"])
    with pytest.raises(ConfigError, match="train.mixed_precision"):
        load_config(TINY, overrides=["train.mixed_precision=fp8"])
    # logical CPU devices serve only mirrored replicas: elsewhere they were silently ignored
    for distribute in ("none", "multi_worker"):
        with pytest.raises(ConfigError, match=f"train.cpu_devices: is 2.*{distribute}.*null"):
            load_config(TINY, overrides=[f"train.distribute={distribute}", "train.cpu_devices=2"])
    assert load_config(TINY, overrides=["train.cpu_devices=1"]).train.cpu_devices == 1


def _train(run_dir, *sets, env=None):
    args = [sys.executable, "-m", "translator.pipelines.cli", "train", str(TINY)]
    args += ["--run-dir", str(run_dir)]
    for s in sets:
        args += ["--set", s]
    return subprocess.Popen(
        args, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """configs/tiny.yaml prepared and tokenized once (the workers share it)."""
    from translator.pipelines.stages import Context, run_stage

    from translator.config import load_config

    run_dir = tmp_path_factory.mktemp("dist") / "base"
    ctx = Context(load_config(TINY), run_dir, verbose=0)
    for stage in ("prepare", "tokenize"):
        run_stage(ctx, stage)
    return run_dir


def _copy(tokenized, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tokenized, run)
    return run


def test_cli_trains_mirrored_with_mixed_bfloat16(tokenized, tmp_path):
    run = _copy(tokenized, tmp_path)
    sets = ["train.distribute=mirrored", "train.cpu_devices=2", "train.epochs=3"]
    sets += ["train.steps_per_epoch=4", "train.mixed_precision=mixed_bfloat16"]
    sets += ["train.learning_rate_scaling=linear"]
    p = _train(run, *sets)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert "mirrored: 2 replica(s) x 1024 target tokens = about 2048" in out
    assert "learning rate 0.02 (linear: 0.01 x 2); mixed_bfloat16" in out
    _assert_trained(run, epochs=3)
    # The logged loss is the global batch's: label-smoothed, so at least the log-perplexity (it
    # was divided by the replicas, and so were the gradients, when the logits carried a mask).
    import csv
    import math

    with open(run / "logs" / "metrics.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for prefix in ("", "val_"):
                loss, ppl = float(row[prefix + "loss"]), float(row[prefix + "perplexity"])
                assert loss >= math.log(ppl) - 0.05, row


def test_gradient_accumulation_with_mixed_bfloat16(tokenized, tmp_path, capsys):
    """`accumulate_steps: 2` updates the weights every second batch: 3 epochs of 4 batches are
    6 optimizer updates (Keras counts updates in `iterations`); bfloat16 trains to a finite,
    decreasing loss. (Float32 with a strategy is the mirrored test above.)"""
    from translator.pipelines.stages import Context, run_stage

    from translator.config import ConfigError, load_config
    from translator.models.saving import load_model

    run = _copy(tokenized, tmp_path)
    sets = ["train.epochs=3", "train.steps_per_epoch=4", "train.accumulate_steps=2"]
    config = load_config(TINY, overrides=[*sets, "train.mixed_precision=mixed_bfloat16"])
    run_stage(Context(config, run, verbose=0), "train")
    out = capsys.readouterr().out
    assert "x 2 accumulated steps" in out and "; mixed_bfloat16" in out
    _assert_trained(run, epochs=3)
    model = load_model(run / "checkpoints" / "last.keras", compile=True)
    assert int(model.optimizer.iterations.numpy()) == 6
    assert model.optimizer.gradient_accumulation_steps == 2
    import keras

    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after training
    with pytest.raises(ConfigError, match="train.accumulate_steps: must be 1 with"):
        load_config(TINY, overrides=["train.accumulate_steps=2", "train.distribute=mirrored"])


def _assert_trained(run, epochs):
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    header, rows = rows[0].split(","), [r.split(",") for r in rows[1:]]
    losses = [float(r[header.index("loss")]) for r in rows]
    assert len(losses) == epochs and all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses
    assert (run / "model.keras").is_file()


def test_multi_worker_training_resumes_after_a_worker_is_killed(tokenized, tmp_path):
    """Two workers on loopback ports; worker 1 is killed with SIGKILL after the first checkpoint,
    the chief is stopped, both restart and resume from the chief's last checkpoint (2 epochs of 2
    steps: every process's first epoch traces the distributed step, which is most of its time)."""
    run = _copy(tokenized, tmp_path)
    ports = free_loopback_ports(2)
    epochs = 2
    sets = ["train.distribute=multi_worker", f"train.epochs={epochs}", "train.steps_per_epoch=2"]
    envs = [_env(TF_CONFIG=_tf_config(ports, i)) for i in (0, 1)]
    procs = [_train(run, *sets, env=e) for e in envs]
    state = run / "checkpoints" / "state.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and not state.is_file():
            assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
            time.sleep(0.05)  # the kill comes while epoch 2 is still under way
        assert state.is_file(), "no checkpoint within the time limit"
        procs[1].send_signal(signal.SIGKILL)
        procs[0].send_signal(signal.SIGKILL)
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < epochs
    # The killed worker's scratch copy stays in the run directory (not in the system's temp).
    assert (run / "workers" / "worker-1" / "checkpoints").is_dir()

    procs = [_train(run, *sets, env=e) for e in envs]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    assert f"resuming from {run / 'checkpoints' / 'last.keras'} after epoch {done}" in outs[0]
    assert "resuming from" in outs[1] and "worker 1: writing to" in outs[1]
    assert json.loads(state.read_text())["epoch"] == epochs
    assert not list((run / "checkpoints").glob("*worker*"))
    assert not (run / "workers").exists()  # the restarted worker cleared and removed it


def test_bench_distribute_checks_its_config_before_training(capsys):
    from translator.pipelines.cli import main

    assert main(["bench-distribute", str(TINY), "--set", "train.cpu_devices=0"]) == 2
    assert "train.cpu_devices" in capsys.readouterr().err


def test_the_distribute_bench_stops_the_other_workers_when_one_fails():
    """A failed worker of `bench-distribute` does not leave its peer waiting for it forever."""
    from translator.distribute_bench import _wait

    def python(code):
        return subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    failing = python("import sys; sys.exit('worker 0 failed')")
    waiting = python("import time; time.sleep(120)")
    with pytest.raises(RuntimeError, match="worker 0 failed"):
        _wait([failing, waiting], timeout=60)
    assert waiting.poll() is not None  # killed, not left running


def test_a_worker_started_alone_says_it_waits_and_stops_on_ctrl_c(tokenized, tmp_path):
    """A worker whose peers never come waited in TensorFlow's C++ start-up, silent (without
    --verbose) and deaf to Ctrl-C: only kill -9 ended it."""
    run = _copy(tokenized, tmp_path)
    ports = free_loopback_ports(2)
    env = _env(TF_CONFIG=_tf_config(ports, 0))
    p = _train(run, "train.distribute=multi_worker", "train.epochs=50", env=env)
    try:
        line = p.stdout.readline()
        deadline = time.time() + 120
        while "waiting for the others to connect" not in line and time.time() < deadline:
            line = p.stdout.readline()
        assert "worker 0 of 2 in TF_CONFIG, waiting for the others to connect" in line, line
        time.sleep(2)  # inside TensorFlow's wait
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        assert p.returncode != 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
