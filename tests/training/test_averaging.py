"""Checkpoint averaging: the mean of weight files, which epochs are kept, `val_bleu_avg`, the
best model that is an average, resuming after a kill, and `translator average`."""

import csv
import json
import os
import shutil
import stat

import keras
import numpy as np
import pytest
from translator.pipelines.cli import main

from translator.config import load_config
from translator.data.corpus import read_tsv
from translator.evaluation.metrics import bleu
from translator.io import ArtifactError
from translator.training.averaging import (
    average_checkpoints,
    epochs_to_keep,
    mean_weights,
    read_weights,
    save_weights,
    select_epochs,
    spare_model,
)

from ..conftest import TINY

STEPS = ["train.steps_per_epoch=4"]
# With dropout, so that the second model instance of averaging would show if it moved a random
# generator that training uses.
DROPOUT = "model.embedding_dropout=0.2"
AVERAGED = ["train.average_checkpoints=2", DROPOUT]


def _untrained_copy(tiny_run, path):
    """The session's tiny run, prepared and tokenized, without its training."""
    skip = ("checkpoints", "logs", "eval", "model.keras", "train.json", "evaluate.json")
    return shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns(*skip))


def _train(run_dir, epochs, *overrides):
    """`translator train` in-process; the state it saved."""
    from translator.pipelines.stages import Context, run_stage

    config = load_config(TINY, overrides=[f"train.epochs={epochs}", *STEPS, *overrides])
    run_stage(Context(config, run_dir, verbose=0), "train")
    return _state(run_dir)


def _state(run_dir):
    return json.loads((run_dir / "checkpoints" / "state.json").read_text(encoding="utf-8"))


def _metrics(run_dir):
    with open(run_dir / "logs" / "metrics.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _kept(run_dir):
    return sorted(int(p.name[6:10]) for p in (run_dir / "checkpoints").glob("epoch-*.weights.h5"))


def spare_model_of(run_dir):
    """A model of the run's architecture to load weight files into."""
    from translator.translate import Translator

    return spare_model(Translator.load(run_dir).model)


def _numpy_mean(vessel, paths):
    """The mean of weight files, computed here with NumPy from the files' weights."""
    sets = [read_weights(vessel, p) for p in paths]
    return [
        np.mean(np.stack(ws).astype(np.float64), axis=0).astype(ws[0].dtype)
        for ws in zip(*sets, strict=True)
    ]


@pytest.fixture(scope="module")
def averaged_run(tiny_run, tmp_path_factory):
    """The tiny run trained 3 epochs of 4 steps with train.average_checkpoints=2."""
    run_dir = _untrained_copy(tiny_run, tmp_path_factory.mktemp("avg") / "run")
    _train(run_dir, 3, *AVERAGED)
    return run_dir


# --------------------------------------------------------------------------------- the maths
def test_the_average_of_three_weight_files_is_their_numpy_mean(tmp_path):
    from translator.models import build_model

    model = build_model(load_config(TINY).model, 40, 50, seed=1)
    rng = np.random.default_rng(0)
    sets = [
        [rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()] for _ in range(3)
    ]
    paths = []
    for i, weights in enumerate(sets):
        model.set_weights(weights)
        paths.append(tmp_path / f"epoch-{i + 1:04d}.weights.h5")
        save_weights(model, paths[-1])
    vessel = spare_model(model)
    average_checkpoints(vessel, paths)
    for got, *three in zip(vessel.get_weights(), *sets, strict=True):
        want = np.mean(np.stack(three).astype(np.float64), axis=0).astype(np.float32)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    # The files hold the model's weights only, written atomically with a normal mode.
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError, match="another model"):
        mean_weights([sets[0], sets[1][:-1]])
    with pytest.raises(ValueError, match="no weights"):
        mean_weights([])
    damaged = tmp_path / "epoch-0009.weights.h5"
    damaged.write_bytes(paths[0].read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=str(damaged)):
        average_checkpoints(vessel, [paths[0], damaged])


def test_kept_epochs_are_the_last_n_and_the_best_n():
    scores = {1: 5.0, 2: 9.0, 3: 1.0, 4: 2.0, 5: 3.0}
    assert epochs_to_keep(scores, 2) == {1, 2, 4, 5}
    assert epochs_to_keep(scores, 3) == {1, 2, 3, 4, 5}
    assert select_epochs(scores, 2, "last") == [4, 5]
    assert select_epochs(scores, 2, "best") == [1, 2]
    assert select_epochs(scores, 3, "best") == [1, 2, 5]
    # Equal scores keep the later epochs; an epoch without a score is the worst.
    assert epochs_to_keep({1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, 2) == {3, 4}
    assert epochs_to_keep({1: None, 2: 0.0, 3: 0.0}, 1) == {3}


def test_the_config_key_and_the_train_fingerprint():
    from translator.pipelines.stages import train_section

    from translator.config import ConfigError

    for bad in ("1", "-2", "two"):
        with pytest.raises(ConfigError, match="train.average_checkpoints"):
            load_config(TINY, overrides=[f"train.average_checkpoints={bad}"])
    # Left out at its default, so runs trained before the key existed keep their fingerprint.
    assert "average_checkpoints" not in train_section(load_config(TINY))
    on = load_config(TINY, overrides=["train.average_checkpoints=5"])
    assert train_section(on)["average_checkpoints"] == 5


# ------------------------------------------------------------------------------ the callback
def test_the_callback_keeps_the_right_files_and_the_best_model_can_be_an_average(
    tiny_run, tmp_path
):
    from translator.training.callbacks import (
        BestModel,
        CheckpointAverage,
        ValidationBLEU,
        add_checkpoint_average,
        describe_best,
    )
    from translator.training.state import TrainState
    from translator.translate import Translator

    t = Translator.load(tiny_run)
    pairs = read_tsv(tiny_run / "data" / "valid.tsv")[:8]
    state = TrainState("fp")
    best_path, checkpoints = tmp_path / "model.keras", tmp_path / "checkpoints"
    callbacks = [
        ValidationBLEU(t, [p.src for p in pairs], [p.tgt for p in pairs]),
        BestModel(state, best_path, patience=10),
    ]
    average = add_checkpoint_average(callbacks, state, 2, checkpoints)
    assert [type(c) for c in callbacks] == [ValidationBLEU, CheckpointAverage, BestModel]
    for c in callbacks:
        c.set_model(t.model)
    average.on_train_begin()
    original = t.model.get_weights()
    # Epoch e: the weights are the original ones + 0.01 e; its (given) validation BLEU below.
    for epoch, val_bleu in enumerate([5.0, 9.0, 1.0, 2.0, 3.0]):
        trained = [w + 0.01 * (epoch + 1) for w in original]
        t.model.set_weights(trained)
        logs = {"val_bleu": val_bleu}
        average.on_epoch_end(epoch, logs)
        if epoch == 4:
            logs["val_bleu_avg"] = 20.0  # the average beats every epoch
        callbacks[2].on_epoch_end(epoch, logs)
        for got, want in zip(t.model.get_weights(), trained, strict=True):
            np.testing.assert_array_equal(got, want)  # training's weights untouched
        assert ("val_bleu_avg" in logs) == (epoch >= 1)
        if epoch >= 1:  # the spare model holds the mean of the last two epochs
            assert average.averaged_epochs == [epoch, epoch + 1]
            for got, w in zip(average.spare.get_weights(), original, strict=True):
                np.testing.assert_allclose(got, w + 0.01 * (epoch + 0.5), atol=1e-6)
    # Kept: the last 2 (4, 5) and the best 2 by validation BLEU (2: 9.0, 1: 5.0).
    assert _kept(tmp_path) == [1, 2, 4, 5]
    assert (state.best_bleu, state.best_epoch, state.best_averaged) == (20.0, 5, 2)
    assert describe_best(state) == "best 20.00 at epoch 5 (the average of epochs 4-5)"
    best = spare_model(t.model)
    read_weights(best, best_path)
    for got, want in zip(best.get_weights(), average.spare.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # A run resumed after epoch 4 (say, after a kill) forgets epoch 5's file and keeps the others.
    history = [{"epoch": e, "val_bleu": s} for e, s in enumerate([5.0, 9.0, 1.0, 2.0], 1)]
    resumed = CheckpointAverage(
        TrainState("fp", epoch=4, history=history), checkpoints, 2, callbacks[0]
    )
    resumed.set_model(t.model)
    resumed.on_train_begin()
    assert resumed.kept == {1: 5.0, 2: 9.0, 4: 2.0} and _kept(tmp_path) == [1, 2, 4]


# ------------------------------------------------------------------------------- training
def test_training_with_averaging_trains_exactly_as_without(averaged_run, tiny_run, tmp_path):
    plain = _untrained_copy(tiny_run, tmp_path / "plain")
    without = _train(plain, 3, DROPOUT)
    averaged = _state(averaged_run)
    for a, b in zip(without["history"], averaged["history"], strict=True):
        for key in ("loss", "val_loss", "val_bleu"):
            assert a[key] == b[key], (key, a, b)
    from translator.models.saving import load_model

    last = [
        load_model(r / "checkpoints" / "last.keras").get_weights() for r in (plain, averaged_run)
    ]
    for a, b in zip(*last, strict=True):
        np.testing.assert_array_equal(a, b)
    # Without averaging, no epoch files and an empty val_bleu_avg column.
    assert _kept(plain) == [] and [r["val_bleu_avg"] for r in _metrics(plain)] == ["", "", ""]


def test_training_logs_the_average_of_the_last_epochs(averaged_run):
    state, rows = _state(averaged_run), _metrics(averaged_run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[0]["val_bleu_avg"] == ""
    scores = {r["epoch"]: r["val_bleu"] for r in state["history"]}
    assert _kept(averaged_run) == sorted(epochs_to_keep(scores, 2))
    # Epoch 3's val_bleu_avg is the greedy BLEU of the NumPy mean of epochs 2 and 3.
    from translator.translate import Translator

    t = Translator.load(averaged_run)
    ckpt = averaged_run / "checkpoints"
    t.model.set_weights(
        _numpy_mean(
            spare_model(t.model), [ckpt / "epoch-0002.weights.h5", ckpt / "epoch-0003.weights.h5"]
        )
    )
    pairs = read_tsv(averaged_run / "data" / "valid.tsv")
    hyps = t.translate([p.src for p in pairs], beam_size=1)
    assert float(rows[2]["val_bleu_avg"]) == pytest.approx(bleu(hyps, [p.tgt for p in pairs]))
    assert state["history"][2]["val_bleu_avg"] == pytest.approx(float(rows[2]["val_bleu_avg"]))
    assert "best_averaged" in state


def test_an_interrupted_run_resumes_and_averages_the_files_it_kept(averaged_run, tmp_path, capsys):
    """A kill after an epoch's file is written but before its state is leaves a file of an epoch
    that the state does not include, and perhaps a half-written temporary file. The resumed run (a
    new process after a kill; a new `train` here, which reads everything from the run directory)
    deletes both, trains that epoch again and averages it with the file the first session kept."""
    run_dir = shutil.copytree(averaged_run, tmp_path / "run")
    ckpt = run_dir / "checkpoints"
    shutil.copyfile(ckpt / "epoch-0003.weights.h5", ckpt / "epoch-0004.weights.h5")
    (ckpt / ".epoch-0004.weights.h5.x1y2.tmp.weights.h5").write_bytes(b"half")
    kept_before = read_weights(spare_model_of(run_dir), ckpt / "epoch-0003.weights.h5")
    state = _train(run_dir, 4, *AVERAGED)
    assert f"resuming from {ckpt / 'last.keras'} after epoch 3" in capsys.readouterr().out
    rows = _metrics(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [r["val_bleu_avg"] != "" for r in rows] == [False, True, True, True]
    assert not list(ckpt.glob(".*.tmp*"))
    scores = {h["epoch"]: h["val_bleu"] for h in state["history"]}
    assert _kept(run_dir) == sorted(epochs_to_keep(scores, 2))
    vessel = spare_model_of(run_dir)
    for a, b in zip(read_weights(vessel, ckpt / "epoch-0003.weights.h5"), kept_before, strict=True):
        np.testing.assert_array_equal(a, b)  # the first session's file, kept
    retrained = read_weights(vessel, ckpt / "epoch-0004.weights.h5")
    assert any(not np.array_equal(a, b) for a, b in zip(retrained, kept_before, strict=True))
    # Epoch 4's average is of the first session's epoch 3 and the second session's epoch 4.
    from translator.translate import Translator

    t = Translator.load(run_dir)
    paths = [ckpt / "epoch-0003.weights.h5", ckpt / "epoch-0004.weights.h5"]
    t.model.set_weights(_numpy_mean(vessel, paths))
    pairs = read_tsv(run_dir / "data" / "valid.tsv")
    hyps = t.translate([p.src for p in pairs], beam_size=1)
    assert float(rows[3]["val_bleu_avg"]) == pytest.approx(bleu(hyps, [p.tgt for p in pairs]))


def test_a_state_and_log_from_before_averaging_still_resume(tiny_run, tmp_path):
    run_dir = _untrained_copy(tiny_run, tmp_path / "old")
    _train(run_dir, 1)
    for name in ("state.json", "previous.json"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            saved.pop("best_averaged")
            for row in saved["history"]:
                row.pop("val_bleu_avg")
            path.write_text(json.dumps(saved), encoding="utf-8")
    rows = _metrics(run_dir)
    columns = [c for c in rows[0] if c != "val_bleu_avg"]
    with open(run_dir / "logs" / "metrics.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    state = _train(run_dir, 2)
    assert state["epoch"] == 2 and state["best_averaged"] == 0
    assert [(r["epoch"], r["val_bleu_avg"]) for r in _metrics(run_dir)] == [("1", ""), ("2", "")]


# ----------------------------------------------------------------------- translator average
def test_average_command_writes_a_loadable_run_with_the_mean(averaged_run, tmp_path, capsys):
    from translator.evaluation import evaluate
    from translator.translate import Translator

    run_dir = shutil.copytree(averaged_run, tmp_path / "run")
    assert main(["average", str(run_dir), "--last", "2"]) == 0
    out = capsys.readouterr().out
    avg = tmp_path / "run-avg2"
    assert f"averaged epochs 2, 3 of {run_dir} (the last 2) into {avg / 'model.keras'}" in out
    assert "valid BLEU (greedy, 40 pairs" in out and "best single model" in out
    t = Translator.load(avg)
    assert isinstance(t.translate("Das Haus ist klein."), str)
    ckpt = run_dir / "checkpoints"
    want = _numpy_mean(
        spare_model(t.model), [ckpt / "epoch-0002.weights.h5", ckpt / "epoch-0003.weights.h5"]
    )
    for got, w in zip(Translator.load(avg).model.get_weights(), want, strict=True):
        np.testing.assert_array_equal(got, w)
    record = json.loads((avg / "average.json").read_text(encoding="utf-8"))
    assert record["selection"] == "last" and record["epochs"] == [2, 3]
    [row] = evaluate([avg], bootstrap=0)  # its own test split, like any run
    assert row.model == "run-avg2" and row.sentences == 40
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary dirs
    # --best with --output; --force replaces.
    other = tmp_path / "elsewhere" / "best"
    assert main(["average", str(run_dir), "--best", "2", "--output", str(other)]) == 0
    assert json.loads((other / "average.json").read_text())["selection"] == "best"
    stale = other / "stale.txt"
    stale.write_text("x")
    assert main(["average", str(run_dir), "--best", "2", "--output", str(other), "--force"]) == 0
    assert not stale.exists() and (other / "model.keras").is_file()


def test_average_command_errors(averaged_run, tiny_run, tmp_path, capsys):
    run_dir = shutil.copytree(averaged_run, tmp_path / "run")
    (tmp_path / "run-avg2").mkdir()
    few = shutil.copytree(averaged_run, tmp_path / "few")
    for path in (few / "checkpoints").glob("epoch-*.weights.h5"):
        if path.name != "epoch-0003.weights.h5":
            path.unlink()
    cases = [
        (
            ["--last", "3"],
            run_dir,
            "keeps the last 2 and the best 2 epoch checkpoints (train.average_checkpoints: 2)",
        ),
        (["--best", "2"], tiny_run, "train.average_checkpoints is 0"),
        (["--last", "2"], run_dir, "run-avg2 exists; give --force"),
        (["--last", "0"], run_dir, "--last must be at least 1"),
        (["--last", "2"], few, "has 1 epoch checkpoints (epochs: 3)"),
        (["--last", "2"], tmp_path / "nothing", "run directory not found"),
    ]
    for options, target, message in cases:
        assert main(["average", str(target), *options]) == 2
        err = capsys.readouterr().err
        assert err.startswith("translator: error:") and message in err, err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "few-avg2").exists()


def test_average_waits_for_no_writer_and_keeps_an_average_made_beside_it(
    averaged_run, tmp_path, capsys
):
    """Averages made while the run trained failed on epoch files deleted after planning, or said
    the training state was missing ("train it first") in the moment it is renamed; two averages
    into one --output both reported success and the later one silently replaced the other."""
    from translator.pipelines.average_cmd import write_run_dir

    from translator.rundir import RunDir

    run_dir = shutil.copytree(averaged_run, tmp_path / "run")
    with RunDir(run_dir).lock():  # as a training process holds it
        assert main(["average", str(run_dir), "--last", "2"]) == 2
    err = capsys.readouterr().err
    assert "in use by another translator process" in err and "its training" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run-avg2").exists()
    # killed between the training state's two writes: the state before is read, as resume does
    os.replace(run_dir / "checkpoints" / "state.json", run_dir / "checkpoints" / "previous.json")
    assert main(["average", str(run_dir), "--last", "2"]) == 0, capsys.readouterr().err
    assert (tmp_path / "run-avg2" / "model.keras").is_file()
    # an --output that appears while an average runs is kept without --force
    other = shutil.copytree(averaged_run, tmp_path / "other")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("kept", encoding="utf-8")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(FileExistsError, match="written by someone else while this average ran"):
        write_run_dir(RunDir(other), out, model, {}, force=False)
    assert (out / "mine.txt").read_text(encoding="utf-8") == "kept"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_an_interrupted_force_keeps_the_finished_run_until_its_first_epoch_replaces_it(
    averaged_run, tmp_path, monkeypatch, capsys
):
    """`train --force` over a finished run, interrupted at its first epoch's end before anything
    was replaced: the finished run is whole (its kept epoch files were once deleted as the new
    run began, and its stage record said "up to date" over a half-replaced run). Interrupted
    after its first epoch: a run to resume, not one that claims to be finished."""
    from translator.pipelines.stages import Context, run_stage

    from translator.training import callbacks

    run_dir = shutil.copytree(averaged_run, tmp_path / "run")
    marker = run_dir / "stages" / "train.json"
    kept, model = _kept(run_dir), (run_dir / "model.keras").read_bytes()
    config = load_config(TINY, overrides=["train.epochs=3", *STEPS, *AVERAGED])
    real = callbacks.ValidationBLEU.on_epoch_end

    def interrupt_at(epoch_end):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epoch_end:
                raise KeyboardInterrupt
            return real(self, epoch, logs)

        monkeypatch.setattr(callbacks.ValidationBLEU, "on_epoch_end", on_epoch_end)

    interrupt_at(1)
    with pytest.raises(KeyboardInterrupt):
        run_stage(Context(config, run_dir, verbose=0, force=True), "train")
    assert _kept(run_dir) == kept and (run_dir / "model.keras").read_bytes() == model
    monkeypatch.setattr(callbacks.ValidationBLEU, "on_epoch_end", real)
    run_stage(Context(config, run_dir, verbose=0), "train")  # the finished run, as it was
    assert marker.is_file() and _kept(run_dir) == kept
    assert (run_dir / "model.keras").read_bytes() == model
    capsys.readouterr()

    interrupt_at(2)
    with pytest.raises(KeyboardInterrupt):
        run_stage(Context(config, run_dir, verbose=0, force=True), "train")
    assert not marker.is_file()  # the new run has replaced the finished one's checkpoints
    assert _kept(run_dir) == [1]
    monkeypatch.setattr(callbacks.ValidationBLEU, "on_epoch_end", real)
    run_stage(Context(config, run_dir, verbose=0), "train")
    assert "after epoch 1" in capsys.readouterr().out  # resumed, not "up to date"
    assert marker.is_file() and [int(r["epoch"]) for r in _metrics(run_dir)] == [1, 2, 3]


def test_an_interrupted_continuation_leaves_a_run_to_resume_not_an_up_to_date_record(
    averaged_run, tmp_path, monkeypatch, capsys
):
    """A finished run continued with more epochs and interrupted after one of them: its model is
    the continuation's, so the stage record of the finished run must not say "up to date" over
    it (a later `run` with the first config skipped training and evaluated the new model under
    the old record)."""
    from translator.pipelines.stages import Context, run_stage

    from translator.training import callbacks

    run_dir = shutil.copytree(averaged_run, tmp_path / "run")
    marker = run_dir / "stages" / "train.json"
    more = load_config(TINY, overrides=["train.epochs=5", *STEPS, *AVERAGED])
    real = callbacks.ValidationBLEU.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == 5:
            raise KeyboardInterrupt
        return real(self, epoch, logs)

    monkeypatch.setattr(callbacks.ValidationBLEU, "on_epoch_end", on_epoch_end)
    with pytest.raises(KeyboardInterrupt):
        run_stage(Context(more, run_dir, verbose=0), "train")
    assert not marker.is_file()  # epoch 4 was written over the finished run
    assert [int(r["epoch"]) for r in _metrics(run_dir)] == [1, 2, 3, 4]
    monkeypatch.setattr(callbacks.ValidationBLEU, "on_epoch_end", real)
    first = load_config(TINY, overrides=["train.epochs=3", *STEPS, *AVERAGED])
    summary = run_stage(Context(first, run_dir, verbose=0), "train")
    assert not summary.get("skipped") and summary["epochs"] == 4  # what is on disk
    assert json.loads(marker.read_text())["summary"]["epochs"] == 4
    capsys.readouterr()
