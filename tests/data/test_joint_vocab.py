"""A joint vocabulary (`tokenizer.joint_vocab`) and subword sampling (`train.sampling_*`) in a
whole tiny run: the config checks, the stage fingerprints of runs made before the keys existed,
the saved tokenizers, `Translator.load` and the export."""

import json

import pytest
import yaml
from translator.pipelines.stages import tokenizer_section, train_section

from tests.conftest import TINY
from tests.pipelines.helpers import cli, run_main
from translator.config import ConfigError, load_config
from translator.data.tokenizers import load_tokenizer, train_tokenizer

SENTENCES = ["Das Auto steht in der Garage.", "The car is in the garage.", "Guten Morgen!"]
OVERRIDES = [
    "--set", "tokenizer.joint_vocab=true", "--set", "train.sampling_alpha=0.1",
    "--set", "train.epochs=2", "--set", "model.decoder.attention=luong",
]  # fmt: skip


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    """`translator run configs/tiny.yaml` with a joint vocabulary and unigram subword sampling
    (2 epochs, Luong attention), as a user types it (`main`, in this process); returns the run
    directory and the command's result."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-joint"
    result = run_main("run", TINY, "--run-dir", run_dir, *OVERRIDES)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_run_with_joint_vocab_and_sampling(joint_run):
    run_dir, result = joint_run
    assert "(joint vocabulary)" in result.stdout
    assert (
        "subword sampling: unigram sampling, alpha 0.1 over all segmentations of the source "
        "and target (not seeded)" in result.stdout
    )
    assert json.loads((run_dir / "eval" / "scores.json").read_text())["scores"]["bleu"]
    tokenize = json.loads((run_dir / "stages" / "tokenize.json").read_text())["summary"]
    assert tokenize["joint_vocab"] and tokenize["src_vocab_size"] == tokenize["tgt_vocab_size"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["tokenizer"]["joint_vocab"] is True
    assert saved["train"]["sampling_alpha"] == 0.1
    # Nothing changed: a second run (`main` in this process) skips every stage.
    again = run_main("run", TINY, "--run-dir", run_dir, *OVERRIDES)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped: up to date") == 4


def test_joint_vocab_is_one_model_for_both_sides(joint_run):
    run_dir, _ = joint_run
    tokenizers = run_dir / "tokenizers"
    assert (tokenizers / "src.model").read_bytes() == (tokenizers / "tgt.model").read_bytes()
    src = load_tokenizer(tokenizers, "sentencepiece", "src")
    tgt = load_tokenizer(tokenizers, "sentencepiece", "tgt")
    assert src.same_as(tgt) and src.vocab_size == tgt.vocab_size == 300
    for text in SENTENCES:  # German and English text, the same ids on either side
        assert src.encode(text) == tgt.encode(text)
        assert src.decode(src.encode(text)) == tgt.decode(tgt.encode(text)) == text


def test_same_as_tells_different_tokenizers_apart():
    texts = ["Das Haus ist klein.", "Der Hund schläft."] * 5
    a = train_tokenizer("sentencepiece", texts, 30)
    assert a.same_as(train_tokenizer("sentencepiece", texts, 30))  # SentencePiece is deterministic
    assert not a.same_as(train_tokenizer("sentencepiece", texts, 30, lowercase=True))
    assert not a.same_as(train_tokenizer("sentencepiece", texts[:1] * 5, 20))
    word = train_tokenizer("word", texts, 30)
    assert word.same_as(train_tokenizer("word", texts, 30)) and not word.same_as(a)
    assert not word.same_as(train_tokenizer("char", texts, 30))


def test_translator_and_export_of_a_joint_vocab_run(joint_run, tmp_path):
    from translator.export import check_export, export_run
    from translator.translate import Translator

    run_dir, _ = joint_run
    translator = Translator.load(run_dir)
    assert translator.src_tokenizer.same_as(translator.tgt_tokenizer)
    assert isinstance(translator.translate(SENTENCES[0]), str)
    out = export_run(run_dir, tmp_path / "export")
    sources = [
        line.split("\t")[0]
        for line in (run_dir / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    ]
    report = check_export(out, sources + SENTENCES + [""])
    assert report.passed, report.mismatches


@pytest.mark.parametrize(
    "overrides, key, message",
    [
        (["tokenizer.joint_vocab=true", "tokenizer.tgt_vocab_size=500"], "tgt_vocab_size",
         "must equal tokenizer.src_vocab_size"),
        (["train.sampling_alpha=0.1", "tokenizer.type=word"], "train.sampling_alpha",
         "needs tokenizer.type: sentencepiece"),
        (["train.sampling_alpha=-0.1"], "train.sampling_alpha", "must be a number >= 0"),
        (["train.sampling_nbest_size=1"], "train.sampling_nbest_size", "sampling_alpha: 0"),
        (["train.sampling_nbest_size=1000"], "train.sampling_nbest_size", r"\[2, 512\]"),
        (["train.sampling_alpha=1.0", "tokenizer.model_type=bpe"], "train.sampling_alpha",
         "BPE-dropout probability"),
        (["train.sampling_alpha=0.1", "tokenizer.model_type=bpe", "train.sampling_nbest_size=64"],
         "train.sampling_nbest_size", "unigram models only"),
        (["train.sampling_sides=source"], "train.sampling_sides", "both, src, tgt"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(overrides, key, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(TINY, overrides=overrides)
    assert key in str(e.value)


def test_a_bad_sampling_option_is_one_line_on_the_command_line(tmp_path):
    r = cli("run", TINY, "--run-dir", tmp_path / "run", "--set", "train.sampling_nbest_size=0")
    assert r.returncode == 2
    assert r.stderr.startswith("translator: error: ") and r.stderr.count("\n") == 1
    assert "train.sampling_nbest_size" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_fingerprints_of_runs_made_before_the_keys_stay_valid():
    """At their defaults the new keys are left out of the stage fingerprints' sections, so a
    run directory made before they existed is up to date, not tokenized or trained again."""
    cfg = load_config(TINY)
    assert set(tokenizer_section(cfg)) == {
        "type", "model_type", "src_vocab_size", "tgt_vocab_size", "character_coverage",
        "lowercase", "min_frequency",
    }  # fmt: skip
    assert not any(key.startswith("sampling_") for key in train_section(cfg))
    # Sampling off, whatever its other options: still left out.
    off = load_config(TINY, overrides=["train.sampling_nbest_size=64", "train.sampling_sides=src"])
    assert train_section(off) == train_section(cfg)
    joint = load_config(TINY, overrides=["tokenizer.joint_vocab=true"])
    assert tokenizer_section(joint)["joint_vocab"] is True
    sampled = train_section(load_config(TINY, overrides=["train.sampling_alpha=0.2"]))
    assert (sampled["sampling_alpha"], sampled["sampling_nbest_size"]) == (0.2, -1)
    assert sampled["sampling_sides"] == "both"
