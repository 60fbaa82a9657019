"""`translator.evaluation.metrics`: corpus, sentence and length-bucket scores are sacrebleu's."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from translator.data.corpus import Pair
from translator.evaluation.metrics import (
    LENGTH_BUCKETS,
    METRICS,
    bleu_lengths,
    check_metrics,
    corpus_scores,
    length_buckets,
)

from .conftest import BEAMS, reference_lines


def test_scores_equal_sacrebleu_on_the_written_hypotheses(evaluated):
    import sacrebleu

    rows = evaluated["results"]["rows"]
    assert len(rows) == 2 * 2 * len(BEAMS)
    for row in rows:
        hyps = Path(row["files"]["hypotheses"]).read_text(encoding="utf-8").split("\n")[:-1]
        refs = reference_lines(row)
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        assert row["scores"]["bleu"]["score"] == pytest.approx(bleu.score)
        assert row["scores"]["chrf"]["score"] == pytest.approx(
            sacrebleu.corpus_chrf(hyps, [refs]).score
        )
        assert row["scores"]["ter"]["score"] == pytest.approx(
            sacrebleu.corpus_ter(hyps, [refs]).score
        )
        assert row["length_ratio"] == pytest.approx(bleu.sys_len / bleu.ref_len)
        assert "nrefs:1" in row["scores"]["bleu"]["signature"]
        with open(row["files"]["sentences"], encoding="utf-8", newline="") as f:
            sentences = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        assert sentences[0] == [
            "source",
            "reference",
            "hypothesis",
            "sentence_bleu",
            "sentence_chrf",
        ]
        assert [s[2] for s in sentences[1:]] == hyps and [s[1] for s in sentences[1:]] == refs
        for s in sentences[1:]:
            assert float(s[3]) == pytest.approx(
                sacrebleu.sentence_bleu(s[2], [s[1]]).score, abs=1e-4
            )
            assert float(s[4]) == pytest.approx(
                sacrebleu.sentence_chrf(s[2], [s[1]]).score, abs=1e-4
            )


def test_length_buckets_score_each_bucket_with_corpus_bleu():
    import sacrebleu

    pairs = [
        Pair("a b c", "the cat sat"),
        Pair("one two three four five six seven", "a b c d e f g"),
        Pair("x", "y z"),
    ]
    hyps = ["the cat sat", "a b c d e f x", "y"]
    buckets = length_buckets(pairs, hyps)
    assert [b["bucket"] for b in buckets] == [label for _, _, label in LENGTH_BUCKETS]
    assert [b["sentences"] for b in buckets] == [2, 1, 0, 0, 0, 0]
    short = sacrebleu.corpus_bleu([hyps[0], hyps[2]], [[pairs[0].tgt, pairs[2].tgt]]).score
    assert buckets[0]["bleu"] == pytest.approx(short)
    assert buckets[1]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([hyps[1]], [[pairs[1].tgt]]).score
    )
    assert all(b["bleu"] is None for b in buckets[2:])
    assert bleu_lengths(hyps, [p.tgt for p in pairs]) == (11, 12)


def test_corpus_scores_and_metric_names():
    text = "the cat sat on the mat"
    scores = corpus_scores([text], [text], list(METRICS))
    assert set(scores) == set(METRICS) and scores["bleu"].score == pytest.approx(100.0)
    assert check_metrics(" BLEU,chrf,bleu, ") == ["bleu", "chrf"]
    with pytest.raises(ValueError, match="valid choices: bleu, chrf, ter"):
        check_metrics("bleu,meteor")
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_scores(["a", "b"], ["a"], ["bleu"])


def test_metrics_module_imports_neither_tensorflow_nor_sacrebleu():
    """The config imports the metric names; that must stay cheap."""
    code = (
        "import sys; import translator.evaluation.metrics, translator.evaluation; "
        "heavy = [m for m in ('tensorflow', 'keras', 'sacrebleu', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
