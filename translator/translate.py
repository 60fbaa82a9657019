"""The `Translator` facade: text in, text out, from a run directory."""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from translator.config import DecodeConfig
from translator.data.batching import length_sorted_batches, length_sorted_windows, pad_batch
from translator.data.corpus import normalize
from translator.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    Tokenizer,
    load_tokenizer,
    tokenizer_digest,
)
from translator.decoding.contract import as_step_model
from translator.decoding.sampling import DEFAULT_SEED, Sampler, check_seed
from translator.decoding.search import Hypothesis, Searcher, max_output_lengths
from translator.io import unicode_problem
from translator.rundir import RunDir
from translator.scoring import ScoredPair, Scorer

# Greedy search decodes the length-sorted sentences in windows of up to WINDOW_BATCHES batches,
# `batch_size` rows at a time, refilling a row as soon as its sentence ends; a window also ends
# before padding its sources to its longest would add more than WINDOW_PADDING of its tokens
# (the attention reads the padding), or than WINDOW_TOKENS padded source positions: a window's
# encoder outputs are held at once (the flagship: 3 KB a position, 48 MB at most; long inputs get
# windows of fewer sentences, down to one; beam search's batches have the same cap). On the
# flagship's shape, valid and test together: 1.29-1.34x the sentences/s of fixed batches with the
# same outputs (32 batches, no cap: 1.37x).
WINDOW_BATCHES = 8
WINDOW_PADDING = 1.0
WINDOW_TOKENS = 16384

T = TypeVar("T")
R = TypeVar("R")
_ATTENTION_FN_LOCK = threading.Lock()


@dataclasses.dataclass
class Alignment:
    """A translation with the decoder's attention over the source (`return_attention=True`).

    source_tokens: the source pieces, S of them.
    target_tokens: the output pieces, EOS included, T_out of them.
    translation: the detokenised output.
    attention: float32 [T_out, S]; row `t` is the attention of the step that produced
        `target_tokens[t]` (each row sums to 1).
    score: the hypothesis' normalised score.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    translation: str
    attention: np.ndarray
    score: float


class Translator:
    """Translates sentences with a trained model.

    Args:
        model: a built `translator.models.Seq2Seq` (or any model the search contract accepts).
        src_tokenizer: source tokenizer.
        tgt_tokenizer: target tokenizer.
        decode: default decoding settings.
        fixed_weights: the model's weights do not change while this translator is used (as with
            :meth:`load`): search then gathers the first recurrent layers' input products from
            tables computed once (`Seq2Seq.input_tables`), the same results with less work.
            Leave it False for a model that is being trained.

    Example:
        >>> t = Translator.load("runs/ding-de-en-lstm")
        >>> t.translate("Das Auto steht in der Garage.")
        'The car is in the garage.'
        >>> t.translate_nbest("Das Auto steht in der Garage.", n_best=2, beam_size=5)
        [('The car is in the garage.', -0.41), ('The car stands in the garage.', -0.73)]
    """

    def __init__(
        self,
        model,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        decode: DecodeConfig | None = None,
        fixed_weights: bool = False,
    ):
        self.model = model
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.decode = decode or DecodeConfig()
        step_model = as_step_model(model, fixed_weights)
        make_tables = getattr(step_model, "input_tables", None)
        if callable(make_tables):
            make_tables()  # now, before any decoding thread traces a search
        self.searcher = Searcher(step_model, bos_id=BOS_ID, eos_id=EOS_ID)
        self.sampler = Sampler(step_model, bos_id=BOS_ID, eos_id=EOS_ID)
        self.scorer = Scorer(model, bos_id=BOS_ID, eos_id=EOS_ID)
        # The longest training source in tokens, when known: much longer inputs get a warning.
        self.max_train_src_tokens: int | None = None

    @classmethod
    def load(
        cls, run_dir: str | Path | RunDir | list | tuple, model_file: str | None = None
    ) -> Translator:
        """Load config, tokenizers and the best model (or `model_file`, a path inside the run
        directory) from a run directory; a list of run directories loads an ensemble (the mean
        of their log-probabilities at each step; their tokenizers must be the same, and the
        decode settings are the first run's)."""
        from translator.models.saving import load_model

        if isinstance(run_dir, list | tuple):
            return cls._load_ensemble(list(run_dir), model_file)
        if not isinstance(run_dir, str | os.PathLike | RunDir):
            raise TypeError(
                "run_dir: expected a run directory (a str or a path), or a list of them for an "
                f"ensemble, got {type(run_dir).__name__}"
            )
        if model_file is not None and not isinstance(model_file, str | os.PathLike):
            raise TypeError(
                f"model_file: expected a path inside the run directory, got "
                f"{type(model_file).__name__}"
            )

        run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        run.require_trained()
        config = run.load_config()
        kind = config.tokenizer.type
        src_tok = load_tokenizer(run.tokenizers, kind, "src")
        tgt_tok = load_tokenizer(run.tokenizers, kind, "tgt")
        path = run.path / model_file if model_file else run.model_file
        model = load_model(
            path,
            what_to_do=f"restore it, or train again: translator train CONFIG --run-dir {run.path} "
            "--force",
        )
        run.check_vocabularies(model, path, src_tok, tgt_tok)
        run.check_tokenizers_trained_with(path, src_tok, tgt_tok)
        saved = getattr(model, "config", None)
        if saved is not None and saved != config.model:
            warnings.warn(
                f"{run.config_file} describes another model than {path} (model sections differ); "
                "translating with the model as saved",
                UserWarning,
                stacklevel=2,
            )
        translator = cls(model, src_tok, tgt_tok, config.decode, fixed_weights=True)
        translator.max_train_src_tokens = run.stage_summary("tokenize").get("src_max_tokens")
        return translator

    @classmethod
    def _load_ensemble(cls, run_dirs: list, model_file: str | None) -> Translator:
        from translator.decoding.ensemble import EnsembleStepModel

        if len(run_dirs) < 2:
            if not run_dirs:
                raise ValueError("no run directory given")
            return cls.load(run_dirs[0], model_file)
        for r in run_dirs:
            if isinstance(r, list | tuple):
                raise TypeError("run_dir: an ensemble is one flat list of run directories")
        members = [cls.load(r, model_file) for r in run_dirs]
        first = members[0]
        for r, m in zip(run_dirs[1:], members[1:], strict=True):
            for side in ("src", "tgt"):
                if tokenizer_digest(getattr(m, f"{side}_tokenizer")) != tokenizer_digest(
                    getattr(first, f"{side}_tokenizer")
                ):
                    what = "source" if side == "src" else "target"
                    raise ValueError(
                        f"an ensemble's models must share their tokenizers: {run_dirs[0]} and {r} "
                        f"have different {what} vocabularies (train them on the same tokenize "
                        "stage, e.g. copies of one run directory with different train.seed)"
                    )
        model = EnsembleStepModel([m.model for m in members], fixed_weights=True)
        translator = cls(model, first.src_tokenizer, first.tgt_tokenizer, first.decode)
        translator.max_train_src_tokens = first.max_train_src_tokens
        return translator

    def settings(self, **overrides) -> DecodeConfig:
        """The default decoding settings with the given (non-None) overrides, validated (see
        `DecodeConfig.with_overrides`: asking for sampling drops a configured beam search)."""
        return self.decode.with_overrides(**overrides)

    def translate_hypotheses(
        self, sentences: Iterable[str], seed: int | None = None, **options
    ) -> list[list[Hypothesis]]:
        """Decode sentences; per input, a list of `n_best` hypotheses (token ids), best first.

        `options` are `DecodeConfig` fields (e.g. `beam_size`, `n_best`, `length_penalty`,
        `sampling_topk`, `batch_size`, `workers`). Inputs are sorted by length into batches,
        `workers` of them decoded at once; results come back in input order. An empty sentence
        gets one empty hypothesis with score 0. With `sampling_topk` != 1 each input gets one
        sampled hypothesis; `seed` (default 1) decides the samples (see
        :mod:`translator.decoding.sampling`).
        """
        settings = self.settings(**options)
        seed = DEFAULT_SEED if seed is None else seed
        check_seed(seed)
        sentences = _as_list(sentences)
        encoded = self.src_tokenizer.encode_batch([normalize(s) for s in sentences])
        _warn_before(self, encoded)
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in sentences]
        real = [i for i, ids in enumerate(encoded) if ids]
        lengths = [len(encoded[i]) for i in real]
        greedy = settings.sampling_topk == 1 and settings.beam_size == 1 and settings.batch_size > 1
        if greedy:  # windows of sentences, `batch_size` decoded at a time (see `greedy_decode`)
            groups = length_sorted_windows(
                lengths,
                settings.batch_size,
                WINDOW_BATCHES * settings.batch_size,
                WINDOW_PADDING,
                WINDOW_TOKENS,
            )
        else:
            groups = length_sorted_batches(lengths, settings.batch_size, WINDOW_TOKENS)

        def decode(batch: list[int]) -> list[list[Hypothesis]]:
            idx = [real[j] for j in batch]
            src = pad_batch([encoded[i] for i in idx])
            max_len = max_output_lengths(
                np.array([len(encoded[i]) for i in idx]),
                settings.max_output_ratio,
                settings.max_output_extra,
            )
            if settings.sampling_topk != 1:
                sampled = self.sampler.sample(
                    src,
                    max_len,
                    topk=settings.sampling_topk,
                    temperature=settings.sampling_temperature,
                    seed=seed,
                    min_length=settings.min_output_length,
                )
                return [[h] for h in sampled]
            return self.searcher.search(
                src,
                max_len,
                beam_size=settings.beam_size,
                n_best=settings.n_best,
                length_penalty=settings.length_penalty,
                min_length=settings.min_output_length,
                word_reward=settings.word_reward,
                xla=settings.xla,
                slots=settings.batch_size if greedy else None,
            )

        for batch, hyps in zip(
            groups, map_in_threads(decode, groups, settings.workers), strict=True
        ):
            for j, h in zip(batch, hyps, strict=True):
                results[real[j]] = h
        _warn_about(self, encoded, results)
        return results

    def translate(
        self,
        text: str | Iterable[str],
        beam_size: int | None = None,
        length_penalty: float | None = None,
        batch_size: int | None = None,
        word_reward: float | None = None,
        sampling_topk: int | None = None,
        sampling_temperature: float | None = None,
        seed: int | None = None,
        xla: bool | None = None,
        workers: int | None = None,
        **deprecated,
    ) -> str | list[str]:
        """Translate one sentence (-> its translation) or a list of sentences (-> a list).

        The best hypothesis of each input; `translate_nbest` gives n-best lists with scores and
        `align` the attention. (The keywords `n_best`, `return_scores` and `return_attention`
        still work here, with a `DeprecationWarning`, and return what those methods return.)
        `sampling_topk` != 1 samples instead of searching (0: the whole distribution, K > 1: the
        K most likely tokens), from log-probabilities divided by `sampling_temperature`; `seed`
        (default 1) decides the samples, a sentence's sample does not depend on its batch.
        `xla` runs the search as XLA-compiled loops (`decode.xla`); `workers` batches are
        decoded at once, each in a thread (`decode.workers`; the outputs do not depend on it).
        """
        options = dict(
            beam_size=beam_size,
            length_penalty=length_penalty,
            batch_size=batch_size,
            word_reward=word_reward,
            sampling_topk=sampling_topk,
            sampling_temperature=sampling_temperature,
            seed=seed,
            xla=xla,
            workers=workers,
        )
        if deprecated:
            return self._deprecated_translate(text, options, **deprecated)
        single = isinstance(text, str)
        hyps = self.translate_hypotheses([text] if single else text, n_best=1, **options)
        out = [self.tgt_tokenizer.decode(per_input[0].tokens) for per_input in hyps]
        return out[0] if single else out

    def translate_nbest(
        self,
        text: str | Iterable[str],
        n_best: int | None = None,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        batch_size: int | None = None,
        word_reward: float | None = None,
        sampling_topk: int | None = None,
        sampling_temperature: float | None = None,
        seed: int | None = None,
        xla: bool | None = None,
        workers: int | None = None,
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """The `n_best` best translations of one sentence, or of each of a list of sentences, as
        `(text, score)` pairs, best first; the score is the normalised score used for ranking.
        `n_best` defaults to the config's, and is at most `beam_size`. With sampling (see
        `translate`) the one sample and its score (the sum of its log-probabilities)."""
        single = isinstance(text, str)
        hyps = self.translate_hypotheses(
            [text] if single else text,
            n_best=n_best,
            beam_size=beam_size,
            length_penalty=length_penalty,
            batch_size=batch_size,
            word_reward=word_reward,
            sampling_topk=sampling_topk,
            sampling_temperature=sampling_temperature,
            seed=seed,
            xla=xla,
            workers=workers,
        )
        out = [
            [(self.tgt_tokenizer.decode(h.tokens), h.normalized_score) for h in per_input]
            for per_input in hyps
        ]
        return out[0] if single else out

    def score(
        self, sources: list[str], targets: list[str], batch_size: int | None = None
    ) -> list[ScoredPair]:
        """The log-probability the model gives each target as the translation of its source.

        Teacher-forced and batched (see :mod:`translator.scoring`): per pair, the sum of the
        log-probabilities of the target's tokens and EOS, their number and their mean. It is the
        score search gives the same output (an ensemble's, the mean of its members'
        log-probabilities per token). Sources and targets are normalised and tokenised as for
        translation.

        Example:
            >>> t.score(["Guten Morgen."], ["Good morning."])[0]
            ScoredPair(total=-2.31, tokens=4, per_token=-0.58)
        """
        if isinstance(sources, str) or isinstance(targets, str):
            raise TypeError("score() takes a list of sources and a list of targets")
        sources, targets = _as_list(sources, "source"), _as_list(targets, "target")
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets; give pairs")
        return self.scorer.score(
            self.src_tokenizer.encode_batch([normalize(s) for s in sources]),
            self.tgt_tokenizer.encode_batch([normalize(t) for t in targets]),
            batch_size=self.settings(batch_size=batch_size).batch_size,
        )

    def align(
        self,
        text: str | Iterable[str],
        beam_size: int | None = None,
        length_penalty: float | None = None,
        batch_size: int | None = None,
    ) -> Alignment | list[Alignment]:
        """Translate and return the :class:`Alignment` of the best hypothesis (attention models)."""
        if hasattr(self.model, "members"):
            raise ValueError("alignments come from one model; align with one run of the ensemble")
        if getattr(self.model, "attention", None) is None:
            raise ValueError(
                "alignments need a model with attention, but this model's "
                "model.decoder.attention is none; train one with attention: bahdanau or luong"
            )
        single = isinstance(text, str)
        sentences = [text] if single else _as_list(text)
        options = dict(beam_size=beam_size, length_penalty=length_penalty, batch_size=batch_size)
        hyps = self.translate_hypotheses(sentences, n_best=1, **options)
        found = _alignments(self, sentences, hyps, self.settings(**options).batch_size)
        return found[0] if single else found

    def _deprecated_translate(self, text, options: dict, **keywords):
        unknown = set(keywords) - {"n_best", "return_scores", "return_attention"}
        if unknown:
            raise TypeError(f"translate() got unexpected keyword arguments: {sorted(unknown)}")
        warnings.warn(
            "translate(n_best=..., return_scores=..., return_attention=...) is deprecated: use "
            "translate_nbest() for n-best lists with scores and align() for attention",
            DeprecationWarning,
            stacklevel=3,
        )
        if keywords.get("return_attention"):  # the best hypothesis: align's own options only
            keys = ("beam_size", "length_penalty", "batch_size")
            return self.align(text, **{k: options[k] for k in keys})
        n_best = keywords.get("n_best")
        if keywords.get("return_scores") or (n_best or self.decode.n_best) > 1:
            return self.translate_nbest(text, n_best=n_best, **options)
        return self.translate(text, **options)


def map_in_threads(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """`[fn(x) for x in items]`, with up to `workers` items at a time, each in a thread of its
    own (TensorFlow releases the GIL while its operations run). The results come in the items'
    order; the first exception is raised once the items started have ended, and those not
    started yet are dropped."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="translator-decode")
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _warn_about(t: Translator, encoded: list[list[int]], results: list[list[Hypothesis]]) -> None:
    """A warning a user would want after decoding: empty translations of real sentences."""
    empty = sum(1 for ids, h in zip(encoded, results, strict=True) if ids and not h[0].tokens)
    if empty:
        real = sum(1 for ids in encoded if ids)
        warnings.warn(
            f"{empty} of {real} sentences were translated to an empty string (the search "
            "ended at once); a larger beam, decode.min_output_length or more training may help",
            UserWarning,
            stacklevel=3,
        )


def _warn_before(t: Translator, encoded: list[list[int]]) -> None:
    """A warning a user would want before decoding (which can then take long): inputs much
    longer than any sentence the model was trained on."""
    limit = t.max_train_src_tokens
    long = [len(ids) for ids in encoded if limit and len(ids) > 2 * limit]
    if long:
        warnings.warn(
            f"{len(long)} sentences are much longer than any seen in training ({max(long)} "
            f"tokens; the longest training sentence has {limit}); expect poor translations",
            UserWarning,
            stacklevel=3,
        )


def _alignments(
    t: Translator, sentences: list[str], hyps: list[list[Hypothesis]], batch_size: int
) -> list[Alignment]:
    """Alignments of the best hypotheses: search chose the tokens, one teacher-forced pass
    over `[BOS] + tokens` gives the attention of every step (EOS included)."""
    import tensorflow as tf

    with _ATTENTION_FN_LOCK:  # a server may align in two threads at once
        if getattr(t, "_attention_fn", None) is None:
            t._attention_fn = tf.function(t.model.attention_weights, reduce_retracing=True)
    encoded = t.src_tokenizer.encode_batch([normalize(s) for s in sentences])
    best = [per_input[0] for per_input in hyps]
    matrices = [np.zeros((len(h.tokens) + 1, 0), np.float32) for h in best]
    real = [i for i, ids in enumerate(encoded) if ids]
    for batch in length_sorted_batches([len(encoded[i]) for i in real], batch_size, WINDOW_TOKENS):
        idx = [real[j] for j in batch]
        src = pad_batch([encoded[i] for i in idx])
        tgt_in = pad_batch([[BOS_ID, *best[i].tokens] for i in idx])
        weights = t._attention_fn(tf.constant(src), tf.constant(tgt_in)).numpy()
        for row, i in enumerate(idx):
            matrices[i] = weights[row, : len(best[i].tokens) + 1, : len(encoded[i])]
    return [
        Alignment(
            source_tokens=t.src_tokenizer.pieces(ids),
            target_tokens=t.tgt_tokenizer.pieces([*h.tokens, EOS_ID]),
            translation=t.tgt_tokenizer.decode(h.tokens),
            attention=matrix.astype(np.float32),
            score=float(h.normalized_score),
        )
        for ids, h, matrix in zip(encoded, best, matrices, strict=True)
    ]


def _as_list(sentences: Iterable[str], item: str = "sentence") -> list[str]:
    """A list of sentences; a clear `TypeError` for anything that is not a string, and a
    `ValueError` for a string that is not Unicode text (a lone surrogate, which no tokenizer
    takes). Messages name the bad one as `{item} {index}` (e.g. "target 3")."""
    if isinstance(sentences, str | bytes | Mapping) or not isinstance(sentences, Iterable):
        what = "a string" if isinstance(sentences, str) else type(sentences).__name__
        raise TypeError(f"expected a list of strings (sentences), got {what}")
    out = list(sentences)
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise TypeError(f"{item} {i}: expected a string, got {type(s).__name__}")
        problem = unicode_problem(s)
        if problem is not None:
            at, char = problem
            raise ValueError(
                f"{item} {i}: not valid Unicode: a lone surrogate ({char}) at character {at}"
            )
    return out
