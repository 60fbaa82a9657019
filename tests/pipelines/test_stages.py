"""End-to-end: every stage on configs/tiny.yaml, skipping, resume, corpus kinds, fingerprints."""

import json
from pathlib import Path

import pytest
from translator.pipelines.stages import STAGES, Context, run_stage

from translator.config import load_config

from ..conftest import TINY


def test_all_stages_write_the_run_directory(tiny_run):
    for rel in [
        "config.yaml",
        "data/train.tsv",
        "data/valid.tsv",
        "data/test.tsv",
        "tokenizers/src.model",
        "tokenizers/tgt.model",
        "checkpoints/last.keras",
        "checkpoints/state.json",
        "model.keras",
        "logs/metrics.csv",
        "logs/learning_curve.png",
        "eval/test.hyp.txt",
        "eval/scores.json",
    ]:
        assert (tiny_run / rel).is_file(), rel
    assert any((tiny_run / "logs" / "tensorboard").iterdir())
    assert (tiny_run / "logs" / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads((tiny_run / "eval" / "scores.json").read_text())
    assert set(scores["scores"]) == {"bleu", "chrf"}
    assert "nrefs:1" in scores["scores"]["bleu"]["signature"]
    hyps = (tiny_run / "eval" / "test.hyp.txt").read_text().splitlines()
    assert len(hyps) == scores["sentences"] == 40
    metrics = (tiny_run / "logs" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch,steps,loss,accuracy,perplexity,val_loss")
    assert len(metrics) == 1 + 6  # header + configs/tiny.yaml epochs


def test_scores_match_sacrebleu_on_the_written_hypotheses(tiny_run):
    import sacrebleu

    from translator.data.corpus import read_tsv

    refs = [p.tgt for p in read_tsv(tiny_run / "data" / "test.tsv")]
    hyps = (tiny_run / "eval" / "test.hyp.txt").read_text(encoding="utf-8").split("\n")[:-1]
    scores = json.loads((tiny_run / "eval" / "scores.json").read_text())
    assert scores["scores"]["bleu"]["score"] == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs]).score
    )
    assert scores["scores"]["chrf"]["score"] == pytest.approx(
        sacrebleu.corpus_chrf(hyps, [refs]).score
    )


def test_second_run_skips_every_stage(tiny_run, capsys):
    ctx = Context(load_config(TINY), tiny_run)
    for stage in STAGES:
        assert run_stage(ctx, stage)["skipped"] is True
    out = capsys.readouterr().out
    assert out.count("skipped: up to date") == 4


def test_resume_after_interrupted_training(tiny_run, tmp_path):
    """Kill training after epoch 1 (simulated by training 1 epoch), then rerun with 2 epochs:
    the second run resumes at epoch 2 from the checkpoint with the optimizer state."""
    import shutil

    import keras

    run = tmp_path / "resume"
    shutil.copytree(tiny_run / "data", run / "data")
    steps = "train.steps_per_epoch=5"  # of 20: what is checked is the count, not its size
    cfg1 = load_config(TINY, overrides=["train.epochs=1", steps])
    ctx1 = Context(cfg1, run, verbose=0)
    run_stage(ctx1, "prepare")
    run_stage(ctx1, "tokenize")
    run_stage(ctx1, "train")
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    iterations = int(
        keras.saving.load_model(run / "checkpoints" / "last.keras").optimizer.iterations.numpy()
    )
    assert iterations > 0
    # Simulate a kill mid-run: the stage marker of train never got written.
    (run / "stages" / "train.json").unlink()
    ctx2 = Context(load_config(TINY, overrides=["train.epochs=2", steps]), run, verbose=0)
    run_stage(ctx2, "train")
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2
    assert [row["epoch"] for row in state["history"]] == [1, 2]
    resumed = keras.saving.load_model(run / "checkpoints" / "last.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 2 * iterations


def test_tsv_corpus_with_malformed_lines(tmp_path):
    from translator.data.corpus import bundled_path, read_tsv

    pairs = read_tsv(bundled_path("train"))[:300]
    f = tmp_path / "pairs.tsv"
    f.write_text("".join(f"{p.src}\t{p.tgt}\n" for p in pairs) + "broken line\n", encoding="utf-8")
    cfg = load_config(TINY, overrides=["data.corpus=tsv", f"data.train={f}"])
    ctx = Context(cfg, tmp_path / "run", verbose=0)
    from translator.data.corpus import CorpusError

    with pytest.raises(CorpusError, match=r"pairs.tsv:301"):
        run_stage(ctx, "prepare")
    cfg = load_config(
        TINY, overrides=["data.corpus=tsv", f"data.train={f}", "data.skip_malformed=true"]
    )
    summary = run_stage(Context(cfg, tmp_path / "run", verbose=0), "prepare")
    assert summary["malformed_skipped"] == 1
    assert summary["train_pairs"] + summary["valid_pairs"] + summary["test_pairs"] <= 300
    assert Path(tmp_path / "run" / "data" / "valid.tsv").is_file()


def test_too_few_training_pairs_name_the_file_and_what_cleaning_dropped(tmp_path):
    from translator.data.corpus import CorpusError

    f = tmp_path / "pairs.tsv"
    f.write_text("Hallo\tHello\n\n\nJa\tYes\n\n", encoding="utf-8")
    cfg = load_config(TINY, overrides=["data.corpus=tsv", f"data.train={f}"])
    with pytest.raises(CorpusError) as e:
        run_stage(Context(cfg, tmp_path / "run", verbose=0), "prepare")
    assert str(e.value).startswith(f"{f}: 2 of 2 pairs kept (0 with an empty side, 0 longer ")
    assert "3 blank lines skipped" in str(e.value) and "data.valid and data.test" in str(e.value)
    # Every pair filtered out: the train split is empty, and the message says why.
    cfg = load_config(TINY, overrides=["data.max_words=1", "data.max_train_pairs=5"])
    with pytest.raises(
        CorpusError, match=r"the train split is empty after cleaning: data.corpus "
    ) as e:
        run_stage(Context(cfg, tmp_path / "run2", verbose=0), "prepare")
    assert "longer than data.max_words: 1" in str(e.value)
    assert not (tmp_path / "run2" / "data" / "train.tsv").exists()
    # A given valid or test file without a usable pair is named.
    blanks = tmp_path / "test.tsv"
    blanks.write_text("a\t \n \tb\n", encoding="utf-8")
    sets = ["data.corpus=tsv", f"data.train={f}", f"data.valid={f}", f"data.test={blanks}"]
    with pytest.raises(CorpusError) as e:
        run_stage(
            Context(load_config(TINY, overrides=sets), tmp_path / "run3", verbose=0), "prepare"
        )
    assert str(e.value) == (
        f"{blanks}: the test split is empty after cleaning (2 pairs read, 2 with an empty side); "
        "give data.test a file of pairs"
    )


def test_evaluation_pairs_that_also_occur_in_train_are_counted_and_said(tmp_path, capsys):
    from translator.data.corpus import bundled_path, read_tsv

    pairs = read_tsv(bundled_path("train"))[:300]
    train, valid, test = tmp_path / "train.tsv", tmp_path / "valid.tsv", tmp_path / "test.tsv"
    train.write_text("".join(f"{p.src}\t{p.tgt}\n" for p in pairs), encoding="utf-8")
    # valid: a training pair, a training source with another target, and a new pair
    valid.write_text(
        f"{pairs[5].src}\t{pairs[5].tgt}\n{pairs[9].src}\tsomething else\nNeu hier\tNew here\n",
        encoding="utf-8",
    )
    test.write_text("Ganz neu\tAll new\n", encoding="utf-8")
    sets = ["data.corpus=tsv", f"data.train={train}", f"data.valid={valid}", f"data.test={test}"]
    summary = run_stage(Context(load_config(TINY, overrides=sets), tmp_path / "run"), "prepare")
    out = capsys.readouterr().out
    assert (summary["valid_in_train"], summary["valid_sources_in_train"]) == (1, 2)
    assert (summary["test_in_train"], summary["test_sources_in_train"]) == (0, 0)
    assert (
        "[prepare] note: 2 of the 3 valid pairs have a source sentence that is also in train "
        f"(1 the whole pair; {valid}): valid scores will read higher than on unseen text"
    ) in out
    assert "test pairs have" not in out
    # The training file given as the validation file: every pair.
    sets[2] = f"data.valid={train}"
    summary = run_stage(Context(load_config(TINY, overrides=sets), tmp_path / "run2"), "prepare")
    n = summary["valid_pairs"]
    assert summary["valid_in_train"] == summary["valid_sources_in_train"] == n > 0
    assert f"note: {n} of the {n} valid pairs" in capsys.readouterr().out


def test_a_split_given_as_a_file_is_not_also_cut_from_train(tmp_path):
    """Only data.valid given: test is cut from train, and no pair is lost to a second valid
    split that would be thrown away (20 of 400 pairs once ended in no split)."""
    pairs = [f"Satz {i}\tSentence {i}\n" for i in range(400)]
    train, valid = tmp_path / "train.tsv", tmp_path / "valid.tsv"
    train.write_text("".join(pairs), encoding="utf-8")
    valid.write_text("Neu\tNew\nAuch neu\tAlso new\n", encoding="utf-8")
    sets = ["data.corpus=tsv", f"data.train={train}", f"data.valid={valid}"]
    summary = run_stage(Context(load_config(TINY, overrides=sets), tmp_path / "run"), "prepare")
    assert summary["valid_pairs"] == 2
    assert summary["train_pairs"] + summary["test_pairs"] == 400, summary


def test_a_vocabulary_smaller_than_asked_for_is_said(tmp_path, capsys):
    """SentencePiece stops where the training text runs out of pieces (`hard_vocab_limit` off):
    the tokenize stage says so instead of leaving the smaller size to be noticed."""
    cfg = load_config(TINY, overrides=["tokenizer.src_vocab_size=100000"])
    ctx = Context(cfg, tmp_path / "run")
    run_stage(ctx, "prepare")
    summary = run_stage(ctx, "tokenize")
    out = capsys.readouterr().out
    assert summary["src_vocab_size"] < 100000 and summary["tgt_vocab_size"] == 300
    assert (
        f"[tokenize] note: the source vocabulary has {summary['src_vocab_size']} entries, fewer "
        "than tokenizer.src_vocab_size (100000): that is all the training text gives"
    ) in out
    assert "the target vocabulary has" not in out


@pytest.fixture
def no_gcs(monkeypatch):
    """Records every gs:// path handed to `tf.io.gfile` (how TFDS reaches its GCS buckets, e.g. its
    community registry; TensorFlow's GCS client first asks metadata.google.internal for
    credentials): a TFDS corpus must not touch the network at run time."""
    import tensorflow as tf

    reached = []

    def recording(f):
        def call(path, *args, **kwargs):
            if str(path).startswith("gs://"):
                reached.append(str(path))
            return f(path, *args, **kwargs)

        return call

    for name in ("exists", "listdir", "glob", "isdir", "GFile", "stat", "walk"):
        monkeypatch.setattr(tf.io.gfile, name, recording(getattr(tf.io.gfile, name)))
    yield reached
    assert not reached, f"TFDS reached GCS: {reached}"


def test_tfds_corpus_by_name_with_tfds_mock_data(tmp_path, no_gcs):
    import tensorflow_datasets as tfds

    cfg = load_config(
        TINY,
        overrides=[
            "data.corpus=tfds:ted_hrlr_translate/pt_to_en",
            "data.src_lang=pt",
            "data.tgt_lang=en",
        ],
    )
    with tfds.testing.mock_data(num_examples=30, policy=tfds.testing.MockPolicy.USE_CODE):
        summary = run_stage(Context(cfg, tmp_path / "run", verbose=0), "prepare")
    assert summary["train_pairs"] > 0 and summary["valid_pairs"] > 0 and summary["test_pairs"] > 0


def test_tfds_missing_dataset_is_a_clear_error(tmp_path, no_gcs):
    from translator.data.corpus import CorpusError

    cfg = load_config(
        TINY,
        overrides=[
            "data.corpus=tfds:ted_hrlr_translate/pt_to_en",
            f"data.tfds_data_dir={tmp_path}",
        ],
    )
    with pytest.raises(CorpusError, match="ted_hrlr_translate"):
        run_stage(Context(cfg, tmp_path / "run", verbose=0), "prepare")


def test_fingerprints_ignore_attention_keys_of_models_without_attention():
    from translator.pipelines.stages import model_section

    plain = model_section(load_config(TINY))
    assert "attention" not in plain["decoder"] and "input_feeding" not in plain["decoder"]
    with_attention = model_section(load_config(TINY, overrides=["model.decoder.attention=luong"]))
    assert with_attention["decoder"]["attention"] == "luong"


def test_decode_workers_never_change_the_evaluate_fingerprint():
    """How many batches are decoded at once does not change the outputs: evaluating again with
    another `decode.workers` reuses the evaluation."""
    from translator.pipelines.stages import decode_section

    default = decode_section(load_config(TINY))
    assert "workers" not in default
    for n in ("1", "2", "4"):
        assert decode_section(load_config(TINY, overrides=[f"decode.workers={n}"])) == default


NEW_KEYS = {  # options added after run directories existed: section -> {key: a non-default value}
    "model": {"model.tied_embeddings": "true", "model.src_word_dropout": "0.1",
              "model.embedding_initializer": "normal", "model.forget_bias": "0.0",
              "model.encoder.recurrent_dropout": "0.1",
              "model.decoder.recurrent_initializer": "glorot_uniform"},
    "train": {"train.warmup_steps": "100", "train.lr_decay_factor": "0.5",
              "train.average_checkpoints": "3", "train.valid_beam_size": "3",
              "train.sampling_alpha": "0.1"},
    "decode": {"decode.word_reward": "0.5", "decode.sampling_topk": "5"},
    "tokenizer": {"tokenizer.joint_vocab": "true"},
    "data": {"data.sentence_repeats": "2"},
}  # fmt: skip
BASE_OVERRIDES = {  # what a new key's non-default value needs
    "data": ["data.use_phrases=true"],
    "model": ["tokenizer.joint_vocab=true"],  # model.tied_embeddings
}


@pytest.mark.parametrize("section", sorted(NEW_KEYS))
def test_options_added_later_leave_fingerprints_alone_at_their_defaults(section):
    """A run directory made before an option existed is not retrained (or re-evaluated) after
    an upgrade; a non-default value does count."""
    from translator.pipelines import stages

    of = {
        "model": stages.model_section,
        "train": stages.train_section,
        "decode": stages.decode_section,
        "tokenizer": stages.tokenizer_section,
        "data": stages.data_section,
    }[section]
    base = BASE_OVERRIDES.get(section, [])

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    default = flat(of(load_config(TINY, overrides=base)), f"{section}.")
    for key, value in NEW_KEYS[section].items():
        assert key not in default
        changed = flat(of(load_config(TINY, overrides=[*base, f"{key}={value}"])), f"{section}.")
        assert key in changed, key


def test_split_files_with_a_corpus_that_does_not_read_them_are_an_error(tmp_path):
    """`data.train` with the bundled corpus (or a TFDS one) was ignored: prepare made the
    bundled splits and training ran on another corpus than the one named."""
    from translator.data.corpus import CorpusError

    for sets in (
        ["data.train=mine.tsv"],
        ["data.corpus=tfds:ted_hrlr_translate/pt_to_en", "data.test=t.tsv"],
    ):
        key = sets[-1].split("=")[0]
        cfg = load_config(TINY, overrides=sets)
        with pytest.raises(
            CorpusError, match=f"{key}: .* is read only with data.corpus: tsv or text"
        ):
            run_stage(Context(cfg, tmp_path / key, verbose=0), "prepare")
