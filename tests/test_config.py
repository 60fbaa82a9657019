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
