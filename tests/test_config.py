import pytest

from translator.config import ConfigError, config_from_dict, load_config

from .conftest import ROOT, TINY


def test_every_shipped_config_loads():
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        assert cfg.name


def test_default_names_follow_the_path():
    assert load_config(TINY).name == "tiny"
    assert load_config(ROOT / "configs" / "ding-de-en" / "lstm.yaml").name == "ding-de-en-lstm"


def test_overrides_parse_yaml_values():
    cfg = load_config(
        TINY, overrides=["train.epochs=3", "model.encoder.cell=gru", "train.learning_rate=1e-3"]
    )
    assert cfg.train.epochs == 3
    assert cfg.model.encoder.cell == "gru"
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match=r"data.corpus: .*valid choices"):
        load_config(TINY, overrides=["data.corpus=tfds:"])  # YAML alone reads {"tfds": None}
    for bad in ("train..epochs=3", ".train.epochs=3", "train.epochs.=3"):
        with pytest.raises(ConfigError, match="the key has an empty part"):
            load_config(TINY, overrides=[bad])


def test_unknown_key_names_the_path_and_the_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config(TINY, overrides=["train.epoch=3"])
    assert "train.epoch" in str(e.value)
    assert "epochs" in str(e.value) and "batch_tokens" in str(e.value)


def test_bad_choice_lists_the_valid_choices():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": {"encoder": {"cell": "transformer"}}})
    msg = str(e.value)
    assert "model.encoder.cell" in msg and "rnn" in msg and "gru" in msg and "lstm" in msg


def test_bad_types_and_ranges():
    with pytest.raises(ConfigError, match="train.epochs"):
        config_from_dict({"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="train.epochs"):
        config_from_dict({"train": {"epochs": 0}})
    with pytest.raises(ConfigError, match="train.shuffle_buffer"):
        config_from_dict({"train": {"shuffle_buffer": 0}})
    assert config_from_dict({"train": {"shuffle_buffer": None}}).train.shuffle_buffer is None
    with pytest.raises(ConfigError, match="decode.n_best"):
        config_from_dict({"decode": {"beam_size": 2, "n_best": 3}})
    with pytest.raises(ConfigError, match="eval.metrics"):
        config_from_dict({"eval": {"metrics": ["bleu", "meteor"]}})


def test_last_bridge_needs_matching_sizes():
    with pytest.raises(ConfigError, match="init_hidden"):
        config_from_dict(
            {"model": {"init_hidden": "last", "encoder": {"units": 64}, "decoder": {"units": 32}}}
        )
    with pytest.raises(ConfigError, match="init_hidden"):
        config_from_dict(
            {
                "model": {
                    "init_hidden": "last",
                    "encoder": {"cell": "gru", "units": 32},
                    "decoder": {"cell": "lstm", "units": 32},
                }
            }
        )
    ok = config_from_dict(
        {
            "model": {
                "init_hidden": "last",
                "encoder": {"units": 16, "bidirectional": True},
                "decoder": {"units": 32},
            }
        }
    )
    assert ok.model.init_hidden == "last"


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


@pytest.mark.parametrize(
    "section, values, key, words",
    [
        ("data", {"corpus": "europarl"}, "data.corpus", "ding-de-en, tsv, text, tfds:NAME"),
        ("data", {"corpus": "tfds:"}, "data.corpus", "valid choices"),
        ("data", {"max_train_pairs": -5}, "data.max_train_pairs", "at least 1"),
        ("data", {"max_valid_pairs": 0}, "data.max_valid_pairs", "at least 1"),
        ("data", {"max_test_pairs": -1}, "data.max_test_pairs", "at least 1"),
        ("data", {"valid_fraction": float("nan")}, "data.valid_fraction", "in (0, 1)"),
        ("data", {"valid_fraction": 1.0}, "data.valid_fraction", "in (0, 1)"),
        ("data", {"test_fraction": 0}, "data.test_fraction", "in (0, 1)"),
        ("data", {"valid_fraction": 0.6, "test_fraction": 0.5}, "data.test_fraction", "below 1"),
        ("data", {"max_words": 0}, "data.max_words", "at least 1"),
        ("data", {"split_seed": -1}, "data.split_seed", "2**32"),
        ("data", {"src_lang": " "}, "data.src_lang", "non-empty"),
        ("tokenizer", {"character_coverage": 0.9}, "tokenizer.character_coverage", "0.98"),
        ("tokenizer", {"character_coverage": 1.5}, "tokenizer.character_coverage", "0.98"),
        ("tokenizer", {"min_frequency": -2}, "tokenizer.min_frequency", "at least 1"),
        ("model", {"embedding_dim": 0}, "model.embedding_dim", "at least 1"),
        ("train", {"seed": 2**32}, "train.seed", "2**32"),
        ("train", {"seed": -3}, "train.seed", "2**32"),
        ("train", {"min_learning_rate": 0.1}, "train.min_learning_rate", "must not exceed"),
        ("decode", {"workers": 0}, "decode.workers", "at least 1"),
        ("decode", {"workers": 1.5}, "decode.workers", "an integer"),
        # Values that fit a Python float but make float32 scores infinite, or buffers huge.
        ("decode", {"word_reward": 1e39}, "decode.word_reward", "from -100.0 to 100.0"),
        ("decode", {"word_reward": -101}, "decode.word_reward", "from -100.0 to 100.0"),
        ("decode", {"length_penalty": 1e308}, "decode.length_penalty", "from 0 to 10.0"),
        ("decode", {"length_penalty": -0.1}, "decode.length_penalty", "from 0 to 10.0"),
        ("decode", {"max_output_ratio": 1e6}, "decode.max_output_ratio", "at most 10.0"),
        ("decode", {"max_output_ratio": 0}, "decode.max_output_ratio", "above 0"),
        ("decode", {"max_output_extra": 10**9}, "decode.max_output_extra", "from 0 to 1000"),
        ("decode", {"beam_size": 10**6, "n_best": 1}, "decode.beam_size", "from 1 to 1000"),
        ("train", {"valid_beam_size": 1001}, "train.valid_beam_size", "from 1 to 1000"),
        ("decode", {"sampling_temperature": 1e-40}, "decode.sampling_temperature", "from 1e-06"),
        ("decode", {"sampling_temperature": 1e9}, "decode.sampling_temperature", "to 1e+06"),
        ("model", {"tied_embeddings": True}, "model.tied_embeddings", "tokenizer.joint_vocab"),
        ("eval", {"metrics": []}, "eval.metrics", "at least one metric; valid choices: bleu"),
        ("eval", {"metrics": ["bleu", "bleu"]}, "eval.metrics", "bleu given more than once"),
    ],
)
def test_out_of_range_values_fail_when_the_config_loads(section, values, key, words):
    """Not later, in the stage that first uses them (or as a library's traceback)."""
    with pytest.raises(ConfigError) as e:
        config_from_dict({section: values})
    assert str(e.value).startswith(key + ":") and words in str(e.value), str(e.value)


def test_the_corpus_kinds_and_edge_values_still_load():
    for corpus in ("ding-de-en", "tsv", "text", "tfds:ted_hrlr_translate/pt_to_en"):
        assert config_from_dict({"data": {"corpus": corpus}}).data.corpus == corpus
    edge = config_from_dict(
        {
            "data": {"max_train_pairs": 1, "valid_fraction": 0.01, "test_fraction": 0.98},
            "tokenizer": {"character_coverage": 0.98},
            "train": {"seed": 0},
            "eval": {"metrics": ["ter"]},
        }
    )
    assert edge.train.seed == 0 and edge.eval.metrics == ["ter"]


def test_a_key_given_twice_in_a_config_file_is_an_error(tmp_path):
    """PyYAML keeps the last value silently, so an edit above an old line would not apply."""
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  epochs: 3\n  seed: 2\n  epochs: 4\n")
    with pytest.raises(
        ConfigError, match=r"twice\.yaml.*'epochs' given twice \(line 2 and line 4\)"
    ):
        load_config(twice)
    sections = tmp_path / "sections.yaml"
    sections.write_text("train: {epochs: 3}\nmodel: {embedding_dim: 8}\ntrain: {seed: 2}\n")
    with pytest.raises(ConfigError, match=r"'train' given twice \(line 1 and line 3\)"):
        load_config(sections)
    fine = tmp_path / "fine.yaml"  # the same key in different sections is no repetition
    fine.write_text("train: {seed: 2}\ndata: {split_seed: 2}\n")
    assert load_config(fine).train.seed == 2


# --------------------------------------------------------------------------- attention keys


def test_config_defaults_and_errors():
    dec = config_from_dict({}).model.decoder
    assert (dec.attention, dec.attention_score, dec.input_feeding) == ("none", "general", True)
    with pytest.raises(ConfigError, match=r"model\.decoder\.attention.*none, bahdanau, luong"):
        config_from_dict({"model": {"decoder": {"attention": "additive"}}})
    with pytest.raises(ConfigError, match=r"model\.decoder\.attention_score.*general, dot"):
        config_from_dict({"model": {"decoder": {"attention": "luong", "attention_score": "x"}}})
    mismatched = {
        "encoder": {"units": 256, "bidirectional": True},
        "decoder": {"units": 256, "attention": "luong", "attention_score": "dot"},
    }
    with pytest.raises(ConfigError, match=r"model\.decoder\.attention_score.*\(512\).*\(256\)"):
        config_from_dict({"model": mismatched})
    mismatched["decoder"]["units"] = 512
    assert config_from_dict({"model": mismatched}).model.decoder.attention_score == "dot"
