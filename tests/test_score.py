"""Scoring given translations: `Translator.score`, `translator.scoring` and `translator score`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.pipelines.helpers import cli, run_main


def _pairs(run, n=24) -> list[tuple[str, str]]:
    lines = (run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines[:n]]


@pytest.fixture(scope="module")
def translators(tiny_run, tiny_attention_run) -> dict:
    """A model without attention, one with Luong attention, and their ensemble."""
    from translator.translate import Translator

    return {
        "lstm": Translator.load(tiny_run),
        "attention": Translator.load(tiny_attention_run),
        "ensemble": Translator.load([tiny_run, tiny_attention_run]),
    }


@pytest.mark.parametrize("name", ["lstm", "attention", "ensemble"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_score_of_a_search_output_is_the_search_score(translators, tiny_run, name, beam_size):
    """Scoring and search agree: the teacher-forced log-probability of the tokens search chose
    is the score search computed step by step (for an ensemble, from the mean per step)."""
    from translator.data.corpus import normalize

    t = translators[name]
    sources = [s for s, _ in _pairs(tiny_run)]
    hyps = t.translate_hypotheses(sources, beam_size=beam_size, n_best=beam_size)
    src_ids = t.src_tokenizer.encode_batch([normalize(s) for s in sources])
    flat = [(ids, h) for ids, per_input in zip(src_ids, hyps, strict=True) for h in per_input]
    scored = t.scorer.score([ids for ids, _ in flat], [h.tokens for _, h in flat], batch_size=7)
    assert len(flat) == len(sources) * beam_size
    np.testing.assert_allclose([s.total for s in scored], [h.score for _, h in flat], atol=1e-4)
    assert [s.tokens for s in scored] == [len(h.tokens) + 1 for _, h in flat]
    # From text: sources and translations are normalised and tokenised as for translation; where
    # the target tokenizer gives back the tokens search chose (SentencePiece may segment a
    # detokenised output otherwise), that is the search's score again.
    best = [per_input[0] for per_input in hyps]
    texts = [t.tgt_tokenizer.decode(h.tokens) for h in best]
    tgt_ids = t.tgt_tokenizer.encode_batch([normalize(text) for text in texts])
    from_text = [s.total for s in t.score(sources, texts)]
    from_ids = [s.total for s in t.scorer.score(src_ids, tgt_ids)]
    np.testing.assert_allclose(from_text, from_ids, atol=1e-6)
    same = [i for i, h in enumerate(best) if tgt_ids[i] == h.tokens]
    np.testing.assert_allclose(
        [from_text[i] for i in same], [best[i].score for i in same], atol=1e-4
    )


def test_padding_does_not_change_a_score(translators, tiny_run):
    pairs = _pairs(tiny_run)
    short = min(pairs, key=lambda p: len(p[0]) + len(p[1]))
    longer = sorted(pairs, key=lambda p: -len(p[0]) - len(p[1]))[:6]
    for t in translators.values():
        alone = t.score([short[0]], [short[1]])[0]
        for batch_size in (7, 64):
            batch = [*longer[:3], short, *longer[3:]]
            together = t.score([s for s, _ in batch], [r for _, r in batch], batch_size)
            assert together[3].tokens == alone.tokens
            assert together[3].total == pytest.approx(alone.total, abs=1e-5)


def test_an_ensemble_scores_with_the_mean_of_its_members(translators, tiny_run):
    """Per token the ensemble's log-probability is the members' mean, so its total is too."""
    pairs = _pairs(tiny_run, 12)
    sources, targets = [s for s, _ in pairs], [r for _, r in pairs]
    a, b = (translators[k].score(sources, targets) for k in ("lstm", "attention"))
    both = translators["ensemble"].score(sources, targets)
    np.testing.assert_allclose(
        [s.total for s in both],
        [(x.total + y.total) / 2 for x, y in zip(a, b, strict=True)],
        atol=1e-4,
    )


def test_scored_pairs(translators, tiny_run):
    from translator.scoring import ScoredPair

    t = translators["attention"]
    (source, target), *_ = _pairs(tiny_run, 1)
    scored = t.score([source, source, "", "", source], [target, "", "", target, target + target])
    assert all(isinstance(s, ScoredPair) for s in scored)
    full, empty_target, both_empty, no_source, doubled = scored
    assert full.tokens == len(t.tgt_tokenizer.encode(target)) + 1
    assert full.per_token == pytest.approx(full.total / full.tokens)
    assert full.total < 0 and doubled.total < full.total  # more tokens, more log-probabilities
    assert empty_target.tokens == 1 and -math.inf < empty_target.total < 0  # EOS only
    # An empty source translates to the empty output with score 0, and to nothing else.
    assert (both_empty.total, both_empty.tokens, both_empty.per_token) == (0.0, 1, 0.0)
    assert no_source.total == -math.inf and no_source.tokens == full.tokens
    assert t.score([], []) == []
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        t.score([source, source], [target])
    with pytest.raises(TypeError, match="list of sources"):
        t.score(source, target)


class StepOnly:
    """A model seen only through the decoding contract (start and step)."""

    def __init__(self, model):
        from translator.decoding.contract import Seq2SeqStepModel

        self.inner = Seq2SeqStepModel(model)

    def start(self, src_ids):
        return self.inner.start(src_ids)

    def step(self, tokens, state, memory):
        return self.inner.step(tokens, state, memory)


@pytest.mark.parametrize("name", ["lstm", "attention"])
def test_any_step_model_scores_as_its_teacher_forced_model(translators, tiny_run, name):
    """The contract's step loop and the model's whole-sequence pass give the same scores."""
    from translator.data.corpus import normalize
    from translator.data.tokenizers import BOS_ID, EOS_ID
    from translator.scoring import Scorer

    t = translators[name]
    pairs = _pairs(tiny_run, 16)
    src = t.src_tokenizer.encode_batch([normalize(s) for s, _ in pairs])
    tgt = t.tgt_tokenizer.encode_batch([normalize(r) for _, r in pairs])
    stepped = Scorer(StepOnly(t.model), bos_id=BOS_ID, eos_id=EOS_ID).score(src, tgt, 5)
    forced = Scorer(t.model, bos_id=BOS_ID, eos_id=EOS_ID).score(src, tgt, 5)
    np.testing.assert_allclose([s.total for s in stepped], [s.total for s in forced], atol=1e-4)


# -- command line -----------------------------------------------------------------------------------


def _expected_lines(translator, pairs) -> list[str]:
    from translator.pipelines.score_cmd import format_score

    scores = translator.score([s for s, _ in pairs], [r for _, r in pairs])
    return [format_score(s).rstrip("\n") for s in scores]


def test_cli_scores_a_tsv_file_and_aligned_files(translators, tiny_run, tmp_path):
    pairs = _pairs(tiny_run, 10) + [("", "")]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{r}\n" for s, r in pairs), encoding="utf-8")
    want = _expected_lines(translators["lstm"], pairs)
    r = run_main("score", tiny_run, "--input", tsv, "--batch-size", "4")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == want
    assert want[-1] == "0.000000\t0.000000\t1"
    total, per_token, tokens = want[0].split("\t")
    assert float(per_token) == pytest.approx(float(total) / int(tokens), abs=1e-5)
    # SRC_FILE,TGT_FILE, written atomically to --output; in a subprocess, whose stderr is seen whole.
    src, tgt = tmp_path / "test.de", tmp_path / "test.en"
    src.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    out = tmp_path / "out" / "scores.txt"
    r = cli("score", tiny_run, "--input", f"{src},{tgt}", "--output", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr.startswith("scored 11 pairs")
    assert len(r.stderr.strip().splitlines()) == 1  # no TensorFlow start-up lines
    assert out.read_text(encoding="utf-8").splitlines() == want
    assert [p.name for p in out.parent.iterdir()] == ["scores.txt"]


def test_cli_scores_with_an_ensemble(translators, tiny_run, tiny_attention_run, tmp_path):
    pairs = _pairs(tiny_run, 5)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{r}\n" for s, r in pairs), encoding="utf-8")
    r = run_main("score", f"{tiny_run}+{tiny_attention_run}", "--input", tsv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == _expected_lines(translators["ensemble"], pairs)


def test_cli_score_errors(tiny_run, tmp_path):
    pairs = _pairs(tiny_run, 3)
    bad = tmp_path / "bad.tsv"
    lines = [f"{s}\t{r}" for s, r in pairs]
    bad.write_text("\n".join([*lines[:2], "no tab here", lines[2]]) + "\n", encoding="utf-8")
    out = tmp_path / "scores.txt"
    uneven = tmp_path / "one.txt"
    uneven.write_text("a\n", encoding="utf-8")
    cases = (
        (["--input", bad, "--output", out], f"{bad}:3: expected source<TAB>target, found 0 tabs"),
        (["--input", tmp_path / "missing.tsv"], "input file not found"),
        (["--input", f"{uneven},{bad}"], "aligned files must match"),
        (["--input", bad, "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["--input", bad, "--output", tmp_path], "is a directory"),
        # an empty name was the path ".", reported as a directory
        (["--input", f"{uneven},"], f"--input '{uneven},': expected FILE.tsv or SRC_FILE,TGT_FILE"),
        (["--input", " "], "--input ' ': expected FILE.tsv or SRC_FILE,TGT_FILE"),
    )
    for args, message in cases:  # `main` in this process; the last error in a subprocess
        r = run_main("score", tiny_run, *args)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()  # nothing is written when scoring fails
    r = cli("score", tmp_path / "no-run", "--input", bad)
    assert r.returncode == 2 and r.stderr.startswith("translator: error: run directory not found")
