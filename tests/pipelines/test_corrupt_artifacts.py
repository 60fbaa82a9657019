"""Damaged run-directory files: an error that names the file and says what to do, or, for the latest
checkpoint, a fallback to the one before it (through the CLI, as a user meets them: training in a
subprocess, the error messages from `main` in this process)."""

import csv
import gzip
import json
import shutil

import pytest
import sentencepiece
from translator.pipelines.stages import Context, training_fingerprint

from translator.config import load_config
from translator.data.corpus import read_tsv
from translator.data.tokenizers import save_tokenizer, train_tokenizer
from translator.io import ArtifactError
from translator.rundir import RunDir
from translator.training.trainer import resume

from ..conftest import TINY
from .helpers import cli, run_main


def _copy(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    return run_dir


def _epochs(run_dir):
    with open(run_dir / "logs" / "metrics.csv", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_corrupt_files_are_named_in_the_error(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    for rel, content, says in (
        ("model.keras", b"PK\x03\x04 truncated", "not a readable Keras model"),
        ("tokenizers/src.model", b"\x00garbage", "not a readable sentencepiece tokenizer"),
        ("tokenizers/src.model", b"", "not a readable sentencepiece tokenizer"),
        ("tokenizers/tgt.model.json", b"{", "translator tokenize"),
        ("config.yaml", b"model: [unclosed", "config.yaml"),
    ):
        path = run_dir / rel
        good = path.read_bytes()
        path.write_bytes(content)
        r = run_main("translate", run_dir, "Das Haus.")
        assert r.returncode == 2, r.stderr
        assert str(path) in r.stderr and says in r.stderr and "Traceback" not in r.stderr
        assert "File not found" not in r.stderr
        path.write_bytes(good)
    marker = run_dir / "stages" / "tokenize.json"
    marker.write_text("{not json")
    r = run_main("run", TINY, "--run-dir", run_dir)
    assert r.returncode == 2 and str(marker) in r.stderr and "delete it" in r.stderr, r.stderr


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    run = RunDir(run_dir)
    assert run.previous_checkpoint.is_file() and run.previous_train_state.is_file()
    run.last_checkpoint.write_bytes(run.last_checkpoint.read_bytes()[:1000])  # truncated
    r = cli("train", TINY, "--run-dir", run_dir, "--set", "train.epochs=7")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stdout and "last.keras" in r.stdout and "resuming from" in r.stdout
    assert "after epoch 5" in r.stdout
    assert _epochs(run_dir) == [1, 2, 3, 4, 5, 6, 7]  # none missing, none twice


def test_a_damaged_state_file_falls_back_in_process(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    ctx = Context(load_config(TINY), run_dir, verbose=0)
    fp = training_fingerprint(ctx)
    state, _, path = resume(ctx.run, fp)
    assert state.epoch == 6 and path == ctx.run.last_checkpoint
    ctx.run.train_state.write_text("{")
    state, _, path = resume(ctx.run, fp)
    # previous.json (epoch 5) pairs with previous.keras by the optimizer's step count.
    assert state.epoch == 5 and path == ctx.run.previous_checkpoint
    # Nothing whole left: an error that says what to do, never a silent restart from epoch 1.
    ctx.run.previous_train_state.write_text("[]]")
    with pytest.raises(ArtifactError, match="--force"):
        resume(ctx.run, fp)


def test_force_trains_from_scratch_and_says_so(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    r = run_main("train", TINY, "--run-dir", run_dir, "--force", "--set", "train.epochs=2")
    assert r.returncode == 0, r.stderr
    assert "training from scratch" in r.stdout and "resuming" not in r.stdout
    assert _epochs(run_dir) == [1, 2]


def _one_line_error(r, *says):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for text in says:
        assert str(text) in r.stderr, r.stderr


def test_a_damaged_gzip_corpus_is_named_with_the_line_reached(tmp_path):
    corpus = tmp_path / "pairs.tsv.gz"
    data = gzip.compress("".join(f"Satz {i}.\tsentence {i}.\n" for i in range(3000)).encode())
    tsv = ["--set", "data.corpus=tsv", "--set", f"data.train={corpus}"]
    for content, says in (
        (data[: len(data) // 2], "the gzip stream ends early after line"),
        (b"Satz.\tsentence.\n", "not a valid gzip file"),  # plain text named .gz
    ):
        corpus.write_bytes(content)
        r = run_main("prepare", TINY, "--run-dir", tmp_path / "run", *tsv)
        _one_line_error(r, f"{corpus}: {says}")


def test_sentencepiece_refusing_a_setting_names_the_config_key(tiny_run, tmp_path, monkeypatch):
    run_dir = _copy(tiny_run, tmp_path)
    kept = {
        f: f.read_bytes() for f in [*(run_dir / "tokenizers").iterdir(), run_dir / "model.keras"]
    }
    small = ["--set", "tokenizer.tgt_vocab_size=12"]
    r = run_main("tokenize", TINY, "--run-dir", run_dir, "--force", *small)
    _one_line_error(r, "tokenizer.tgt_vocab_size: 12 is too small", "raise it to at least")
    assert "SentencePiece" in r.stderr and "trainer_interface" not in r.stderr
    # Nothing lost: the run keeps its tokenizers and its model.
    assert {f: f.read_bytes() for f in kept} == kept

    # SentencePiece's other refusal (with hard_vocab_limit, which the tokenizers do not set).
    def too_high(**options):
        raise RuntimeError(
            "INTERNAL: src/unigram_model_trainer.cc(600) [(trainer_spec_.vocab_size()) == "
            f"(model_proto->pieces_size())] Vocabulary size too high ({options['vocab_size']}). "
            "Please set it to a value <= 120."
        )

    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", too_high)
    r = run_main("tokenize", TINY, "--run-dir", run_dir, "--force")
    _one_line_error(r, "tokenizer.src_vocab_size: 300 is too large", "lower it to at most 120")
    assert {f: f.read_bytes() for f in kept} == kept


def test_tokenizers_replaced_after_training_are_refused_at_load(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    run = RunDir(run_dir)
    texts = [p.src for p in read_tsv(run.split("train"))]
    save_tokenizer(train_tokenizer("sentencepiece", texts, 400), run.tokenizers, "src")
    r = run_main("translate", run_dir, "Das Haus ist groß und schön, aber Zürich.")
    _one_line_error(r, run.tokenizer_file("sentencepiece", "src"), run.model_file, "400", "300")
    assert "translator train" in r.stderr
    # Continuing the training with them (more epochs): refused before an epoch, not an index
    # error inside it (the records are rewritten with the new tokenizers first).
    r = run_main("train", TINY, "--run-dir", run_dir, "--set", "train.epochs=7")
    _one_line_error(r, run.tokenizer_file("sentencepiece", "src"), run.last_checkpoint, "400")
    assert _epochs(run_dir) == [1, 2, 3, 4, 5, 6]


def test_tokenizers_of_the_same_size_replaced_after_training_are_refused_at_load(
    tiny_run, tmp_path
):
    """`tokenize --force` leaves the trained model: with vocabularies of the same size, translate
    and evaluate ran on with ids that mean other pieces (nonsense, low BLEU, exit 0)."""
    run_dir = _copy(tiny_run, tmp_path)
    run = RunDir(run_dir)
    assert set(run.stage_record("train")["summary"]["tokenizer_digests"]) == {"src", "tgt"}
    size = run.stage_record("tokenize")["summary"]["src_vocab_size"]
    texts = [p.tgt for p in read_tsv(run.split("train"))]  # other pieces, as many of them
    tok = train_tokenizer("sentencepiece", texts, size)
    assert tok.vocab_size == size
    save_tokenizer(tok, run.tokenizers, "src")
    src_file = run.tokenizer_file("sentencepiece", "src")
    r = run_main("translate", run_dir, "Das Haus ist groß.")
    _one_line_error(r, src_file, run.model_file, "tokenize stage ran again", "--force")
    r = run_main("evaluate", run_dir)  # its progress line, then the same error
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"translator: error: {src_file} is not")
    # a damaged record is no record: the model still loads (unchecked)
    (run_dir / "stages" / "train.json").write_text("{", encoding="utf-8")
    assert run_main("translate", run_dir, "Das Haus ist groß.").returncode == 0


def test_a_damaged_export_is_one_error_naming_it(tiny_attention_export, tmp_path):
    export = tmp_path / "export"
    data = "variables/variables.data-00000-of-00001"
    for rel, damage in (
        ("saved_model.pb", lambda b: b""),
        ("saved_model.pb", lambda b: b[: len(b) // 2]),
        (data, lambda b: b[: len(b) // 2]),
        ("variables/variables.index", lambda b: b[:100]),
        ("fingerprint.pb", lambda b: b"\x00garbage"),
    ):
        shutil.rmtree(export, ignore_errors=True)
        shutil.copytree(tiny_attention_export, export)
        path = export / rel
        path.write_bytes(damage(path.read_bytes()))
        r = run_main("serve", export, "--port", "0", "--timeout", "1")
        _one_line_error(r, export, "damaged export", "translator export")


def test_a_damaged_lengths_file_or_shard_is_written_again_by_train(tiny_run, tmp_path):
    """The records are derived data (train.tsv through the run's tokenizers): train writes them
    again when a shard or the lengths file is damaged, as when one is missing, and resumes."""
    run_dir = _copy(tiny_run, tmp_path)
    data = run_dir / "data"
    manifest = json.loads((data / "train.records.json").read_text())
    lengths, shard = data / manifest["lengths"], data / manifest["shards"][0]["file"]
    originals = {path: path.read_bytes() for path in (lengths, shard)}
    for epochs, (path, content) in enumerate(
        (
            (lengths, b""),  # np.load: EOFError
            (lengths, originals[lengths][:-7]),
            (shard, originals[shard][: len(originals[shard]) // 2]),  # read as fewer pairs
        ),
        start=7,
    ):
        path.write_bytes(content)
        r = run_main("train", TINY, "--run-dir", run_dir, "--set", f"train.epochs={epochs}")
        assert r.returncode == 0, r.stderr
        assert "resuming" in r.stdout
        assert {p: p.read_bytes() for p in originals} == originals  # the same records again
    assert _epochs(run_dir) == list(range(1, 10))
