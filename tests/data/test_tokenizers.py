import pytest

from translator.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

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
