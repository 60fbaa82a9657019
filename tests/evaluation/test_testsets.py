"""`translator.evaluation.testsets`: test set specs and readers."""

import pytest

from translator.data.corpus import CorpusError, Pair
from translator.evaluation.testsets import (
    default_test_set,
    load_test_set,
    load_test_sets,
    parse_test_spec,
)
from translator.rundir import RunDir


def test_test_specs():
    assert parse_test_spec("news=a/b.tsv") == ("news", "a/b.tsv")
    assert parse_test_spec("news=a.de,a.en") == ("news", "a.de,a.en")
    assert parse_test_spec("dir/mine.tsv.gz") == ("mine", "dir/mine.tsv.gz")
    with pytest.raises(ValueError, match="NAME=FILE"):
        parse_test_spec("=x.tsv")


def test_test_sets_from_files_and_memory(tmp_path):
    tsv = tmp_path / "news.tsv"
    tsv.write_text("Guten Morgen.\tGood morning.\n", encoding="utf-8")
    src, ref = tmp_path / "t.de", tmp_path / "t.en"
    src.write_text("Hallo.\n", encoding="utf-8")
    ref.write_text("Hello.\n", encoding="utf-8")
    sets = load_test_sets([str(tsv), f"text={src},{ref}"])
    assert list(sets) == ["news", "text"]
    assert sets["news"].pairs == [Pair("Guten Morgen.", "Good morning.")]
    assert sets["text"].origin == f"{src},{ref}" and sets["text"].references == ["Hello."]
    memory = load_test_set("mine", [("a", "b")])
    assert memory.origin == "<memory>" and memory.sources == ["a"]
    assert memory.digest == load_test_set("again", [Pair("a", "b")]).digest
    with pytest.raises(ValueError, match="given twice"):
        load_test_sets([str(tsv), f"news={tsv}"])
    with pytest.raises(CorpusError, match="no sentence pairs"):
        load_test_set("empty", [])
    with pytest.raises(CorpusError, match="data/test.tsv not found"):
        default_test_set(RunDir(tmp_path))


def test_a_test_set_that_is_neither_files_nor_pairs_is_refused(tmp_path):
    """Two paths that do not exist are an error, not a set of one-character "sentences" (their
    first letters were once scored as a test set); items that are not string pairs are named."""
    with pytest.raises((CorpusError, FileNotFoundError), match="srcX.txt"):
        load_test_set("t", (str(tmp_path / "srcX.txt"), str(tmp_path / "refX.txt")))
    with pytest.raises((CorpusError, FileNotFoundError), match="Hallo Welt"):
        load_test_set("b", ["Hallo Welt", "Hello world"])
    for bad, item in (
        ([(None, None)], "item 0"),
        ([("a", "b"), ("a", "b", "c")], "item 1"),
        ([("a", "b"), "ab"], "item 1"),
        (42, "got int"),
        ({"a": "b"}, "got dict"),
    ):
        with pytest.raises(ValueError, match=item):
            load_test_set("m", bad)
    assert load_test_set("two", [("a", "b"), ["c", "d"]]).references == ["b", "d"]


def test_a_list_of_test_sets_takes_pairs_of_files_and_names_what_it_cannot_read(tmp_path):
    src, ref = tmp_path / "t.de", tmp_path / "t.en"
    src.write_text("Hallo.\n", encoding="utf-8")
    ref.write_text("Hello.\n", encoding="utf-8")
    sets = load_test_sets([(src, str(ref))])
    assert list(sets) == ["t.de"] and sets["t.de"].references == ["Hello."]  # as SRC,REF names it
    # a tuple was read as the file "('a'" (its string form)
    for bad, shown in (([("a", "b", "c")], "test set 0"), ([str(src), 3], "test set 1.*got 3")):
        with pytest.raises(ValueError, match=shown):
            load_test_sets(bad)
    with pytest.raises(CorpusError, match="a"):
        load_test_sets([("a", "b")])  # a pair of paths, and "a" does not exist
