import json

import pytest

from translator.data.corpus import CorpusError
from translator.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    TokenizerTrainingError,
    _training_error,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from translator.io import ArtifactError

TEXTS = [
    "Das Auto steht in der Garage.",
    "Der Hund schläft im Garten.",
    "Ich habe keine Zeit, sagte er!",
    "Die Katze sitzt auf dem Dach.",
] * 10


@pytest.mark.parametrize("kind", ["sentencepiece", "word", "char"])
def test_round_trip_and_save_load(kind, tmp_path):
    tok = train_tokenizer(kind, TEXTS, 60)
    ids = tok.encode(TEXTS[0])
    assert ids and all(i > EOS_ID or i == UNK_ID for i in ids)
    assert tok.decode(ids) == TEXTS[0]
    assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == TEXTS[0]
    save_tokenizer(tok, tmp_path, "src")
    again = load_tokenizer(tmp_path, kind, "src")
    assert again.encode(TEXTS[2]) == tok.encode(TEXTS[2])
    assert again.vocab_size == tok.vocab_size


def test_word_tokenizer_unknown_words():
    tok = train_tokenizer("word", TEXTS, 100)
    ids = tok.encode("Das Flugzeug steht.")
    assert UNK_ID in ids
    assert tok.decode(ids) == "Das <unk> steht."


def test_missing_tokenizer_says_which_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenize"):
        load_tokenizer(tmp_path, "sentencepiece", "src")


def _vocab_file(**data) -> bytes:
    return json.dumps(data).encode()


DAMAGED = {
    "sentencepiece": [
        ("src.model", b""),  # SentencePiece would load nothing and fail at the first encode
        ("src.model", b"\x00garbage"),
        ("src.model.json", b"{"),
        ("src.model.json", b"[]"),
        ("src.model.json", _vocab_file(lowercase="yes")),
    ],
    "word": [
        ("src.json", b""),
        ("src.json", b"[]"),
        ("src.json", _vocab_file(vocab=5)),
        ("src.json", _vocab_file(vocab=[])),  # valid JSON that would load and fail later
        ("src.json", _vocab_file(vocab=["a", "b"])),
        ("src.json", _vocab_file(vocab=[*SPECIALS, 7])),
        ("src.json", _vocab_file(vocab=[*SPECIALS, "x", "x"])),
        ("src.json", _vocab_file(type="char", vocab=[*SPECIALS, "x"])),
    ],
}
DAMAGED["char"] = [(name, content) for name, content in DAMAGED["word"] if b"char" not in content]


@pytest.mark.parametrize("kind", ["sentencepiece", "word", "char"])
def test_a_damaged_tokenizer_file_is_named(kind, tmp_path):
    tok = train_tokenizer(kind, TEXTS, 60)
    for name, content in DAMAGED[kind]:
        save_tokenizer(tok, tmp_path, "src")
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ArtifactError) as e:
            load_tokenizer(tmp_path, kind, "src")
        message = str(e.value)
        assert str(tmp_path / name) in message and "translator tokenize" in message, message


def test_sentencepiece_refusing_its_settings_says_which_and_why():
    with pytest.raises(TokenizerTrainingError) as e:
        train_tokenizer("sentencepiece", TEXTS, 9)
    assert (e.value.option, e.value.problem) == ("vocab_size", "too_small")
    assert e.value.limit > 9 and "required_chars" in e.value.reason
    assert "trainer_interface.cc" not in e.value.reason  # SentencePiece's source location
    # SentencePiece's other refusals (not reachable with hard_vocab_limit false).
    too_high = RuntimeError(
        "INTERNAL: src/unigram_model_trainer.cc(600) [(trainer_spec_.vocab_size()) == "
        "(model_proto->pieces_size())] Vocabulary size too high (8000). Please set it to a "
        "value <= 3120."
    )
    e = _training_error(too_high)
    assert (e.option, e.problem, e.limit) == ("vocab_size", "too_large", 3120)
    assert e.reason == "Vocabulary size too high (8000). Please set it to a value <= 3120."
    coverage = RuntimeError(
        "INTERNAL: src/trainer_interface.cc(80) [trainer_spec.character_coverage() >= 0.98 && "
        "trainer_spec.character_coverage() <= 1.0] "
    )
    assert _training_error(coverage).option == "character_coverage"


def test_an_error_of_the_sentences_is_raised_as_itself():
    """SentencePiece would turn it into a RuntimeError of its own."""

    def sentences():
        yield from TEXTS
        raise CorpusError("train.tsv.gz: the gzip stream ends early after line 40")

    with pytest.raises(CorpusError, match="ends early"):
        train_tokenizer("sentencepiece", sentences(), 60)
