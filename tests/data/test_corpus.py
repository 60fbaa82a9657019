import gzip
import os
import re

import pytest

from translator.data.corpus import (
    CorpusError,
    Pair,
    ReadReport,
    bundled_path,
    clean,
    count_lines,
    read_lines,
    read_text_pair,
    read_tsv,
    split_pairs,
)


def test_bundled_corpus_is_shipped_with_its_licence():
    pairs = read_tsv(bundled_path("train"))
    assert len(pairs) == 15648
    assert len(read_tsv(bundled_path("valid"))) == 1000
    assert len(read_tsv(bundled_path("test"))) == 1000
    readme = bundled_path("train").parent / "README.md"
    assert "GPL-2.0-or-later" in readme.read_text()


def test_tsv_without_one_tab_names_file_and_line(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text("a\tb\nno tab here\nc\td\n", encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        read_tsv(f)
    assert f"{f}:2" in str(e.value)
    report = ReadReport()
    pairs = read_tsv(f, skip_malformed=True, report=report)
    assert pairs == [Pair("a", "b"), Pair("c", "d")]
    assert report.malformed == 1


def test_invalid_utf8_names_file_and_line(tmp_path):
    f = tmp_path / "latin1.tsv"
    f.write_bytes(b"ok\tfine\n" + "Grüße\tgreetings\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.tsv:2: invalid UTF-8"):
        read_tsv(f)


def test_missing_file_a_directory_and_a_pipe_are_named(tmp_path):
    with pytest.raises(CorpusError, match="file not found"):
        read_tsv(tmp_path / "missing.tsv")
    with pytest.raises(CorpusError, match=f"{tmp_path} is a directory"):
        read_tsv(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CorpusError, match="fifo is not a regular file"):
        read_tsv(fifo)


GZIP_READERS = {
    "read_tsv": read_tsv,
    "read_lines": read_lines,
    "count_lines": count_lines,
    "read_text_pair": lambda f: read_text_pair(f, f),
}


@pytest.mark.parametrize("read", GZIP_READERS.values(), ids=GZIP_READERS.keys())
def test_a_damaged_gzip_file_is_named_with_the_line_reached(read, tmp_path):
    data = gzip.compress("".join(f"s{i}\tt{i}\n" for i in range(50_000)).encode())
    f = tmp_path / "pairs.tsv.gz"
    f.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CorpusError) as e:
        read(f)
    m = re.fullmatch(
        rf"{re.escape(str(f))}: the gzip stream ends early after line (\d+) \(truncated\?\).*",
        str(e.value),
    )
    assert m and 0 < int(m.group(1)) < 50_000, e.value  # how far the file is whole
    f.write_bytes(data[:-8] + b"\0" * 8)  # whole, but its checksum and length are wrong
    with pytest.raises(CorpusError, match=rf"{re.escape(str(f))}: damaged gzip data after line"):
        read(f)
    for content in (b"s\tt\n", b""):  # a plain text file named .gz; an empty file
        f.write_bytes(content)
        with pytest.raises(CorpusError, match=rf"{re.escape(str(f))}: not a valid gzip file"):
            read(f)


def test_aligned_text_files_must_match(tmp_path):
    (tmp_path / "s.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="has 2 lines"):
        read_text_pair(tmp_path / "s.txt", tmp_path / "t.txt")
    (tmp_path / "t.txt").write_text("x\ny\n", encoding="utf-8")
    assert read_text_pair(tmp_path / "s.txt", tmp_path / "t.txt")[1] == Pair("b", "y")


def test_clean_normalises_and_filters():
    decomposed = "Gru\u0308\u00dfe"  # u + combining diaeresis
    pairs = [Pair(decomposed, "greetings"), Pair(" ", "x"), Pair("a " * 30, "b")]
    kept, report = clean(pairs, max_words=10)
    assert kept == [Pair("Grüße", "greetings")]
    assert (report.kept, report.empty, report.too_long) == (1, 1, 1)


def test_split_is_deterministic_and_disjoint():
    pairs = [Pair(str(i), str(i)) for i in range(100)]
    a = split_pairs(pairs, 0.1, 0.1, seed=3)
    b = split_pairs(pairs, 0.1, 0.1, seed=3)
    assert a == b
    train, valid, test = a
    assert (len(train), len(valid), len(test)) == (80, 10, 10)
    assert not set(train) & set(valid) and not set(train) & set(test)


def test_sentence_repeats_weights_the_bundled_sentences_against_the_phrases():
    """`data.sentence_repeats: N`: each training sentence N times, then each phrase once;
    valid and test are untouched."""
    from translator.config import DataConfig
    from translator.data.corpus import iter_tsv, read_split

    sentences = list(iter_tsv(bundled_path("train")))
    phrases = list(iter_tsv(bundled_path("phrases")))
    once = list(read_split(DataConfig(use_phrases=True), "train"))
    assert once == sentences + phrases
    thrice = list(read_split(DataConfig(use_phrases=True, sentence_repeats=3), "train"))
    assert thrice == sentences * 3 + phrases
    for split in ("valid", "test"):
        assert list(read_split(DataConfig(use_phrases=True, sentence_repeats=3), split)) == list(
            iter_tsv(bundled_path(split))
        )


def test_sentence_repeats_has_no_effect_without_phrases_and_must_be_positive():
    """Without the phrases there is nothing to weight against: the flagship config (which sets
    it) can be pointed at another corpus or run without phrases unchanged."""
    from translator.pipelines.stages import data_section

    from translator.config import ConfigError, DataConfig, config_from_dict
    from translator.data.corpus import iter_tsv, read_split

    sentences = list(iter_tsv(bundled_path("train")))
    assert list(read_split(DataConfig(sentence_repeats=3), "train")) == sentences
    plain = config_from_dict({"data": {"sentence_repeats": 3}})
    assert data_section(plain) == data_section(config_from_dict({}))
    weighted = config_from_dict({"data": {"sentence_repeats": 3, "use_phrases": True}})
    assert data_section(weighted)["sentence_repeats"] == 3
    with pytest.raises(ConfigError, match="data.sentence_repeats"):
        config_from_dict({"data": {"sentence_repeats": 0, "use_phrases": True}})
