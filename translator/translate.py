"""The `Translator` facade: text in, text out, from a run directory."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from translator.config import Config, DecodeConfig, config_from_dict
from translator.corpus import normalize
from translator.data import length_sorted_batches, pad_batch
from translator.rundir import MODEL_FILE, ModelNotFoundError, require_trained  # noqa: F401
from translator.search import Hypothesis, Searcher, max_output_lengths
from translator.tokenizers import BOS_ID, EOS_ID, Tokenizer, load_tokenizer


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
        model: a built `translator.model.Seq2Seq`.
        src_tokenizer: source tokenizer.
        tgt_tokenizer: target tokenizer.
        decode: default decoding settings.

    Example:
        >>> t = Translator.load("runs/ding-de-en-lstm")
        >>> t.translate("Das Auto steht in der Garage.")
        'The car is in the garage.'
    """

    def __init__(
        self,
        model,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        decode: DecodeConfig | None = None,
    ):
        self.model = model
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.decode = decode or DecodeConfig()
        self.searcher = Searcher(model)

    @classmethod
    def load(cls, run_dir: str | Path, model_file: str = MODEL_FILE) -> Translator:
        """Load config, tokenizers and the best model from a run directory."""
        import keras
        import yaml

        import translator.model  # noqa: F401  (registers the custom layers for loading)

        run_dir = Path(run_dir)
        config_path, model_path = require_trained(run_dir, model_file)
        config: Config = config_from_dict(yaml.safe_load(config_path.read_text(encoding="utf-8")))
        kind = config.tokenizer.type
        src_tok = load_tokenizer(run_dir / "tokenizers", kind, "src")
        tgt_tok = load_tokenizer(run_dir / "tokenizers", kind, "tgt")
        model = keras.saving.load_model(model_path, compile=False)
        return cls(model, src_tok, tgt_tok, config.decode)

    def _settings(self, **overrides) -> DecodeConfig:
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = dataclasses.replace(self.decode, **given)
        if settings.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {settings.beam_size}")
        if not 1 <= settings.n_best <= settings.beam_size:
            raise ValueError(
                f"n_best must be between 1 and beam_size ({settings.beam_size}), got {settings.n_best}"
            )
        if settings.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {settings.batch_size}")
        return settings

    def translate_hypotheses(self, sentences: Iterable[str], **options) -> list[list[Hypothesis]]:
        """Decode sentences; per input, a list of `n_best` hypotheses (token ids), best first.

        Inputs are sorted by length into batches; results come back in input order. An empty
        sentence gets one empty hypothesis with score 0.
        """
        settings = self._settings(**options)
        sentences = list(sentences)
        encoded = self.src_tokenizer.encode_batch([normalize(s) for s in sentences])
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in sentences]
        real = [i for i, ids in enumerate(encoded) if ids]
        lengths = [len(encoded[i]) for i in real]
        for batch in length_sorted_batches(lengths, settings.batch_size):
            idx = [real[j] for j in batch]
            src = pad_batch([encoded[i] for i in idx])
            max_len = max_output_lengths(
                np.array([len(encoded[i]) for i in idx]),
                settings.max_output_ratio,
                settings.max_output_extra,
            )
            hyps = self.searcher.search(
                src,
                max_len,
                beam_size=settings.beam_size,
                n_best=settings.n_best,
                length_penalty=settings.length_penalty,
                min_length=settings.min_output_length,
            )
            for i, h in zip(idx, hyps, strict=True):
                results[i] = h
        return results

    def translate(
        self,
        text: str | Iterable[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        length_penalty: float | None = None,
        batch_size: int | None = None,
        return_scores: bool = False,
        return_attention: bool = False,
    ):
        """Translate one sentence or a list of sentences.

        Returns:
            For a string, its translation; for a list, a list of translations. With `n_best > 1`
            or `return_scores=True`, each translation is instead a list of `(text, score)` pairs,
            best first, where score is the normalised score used for ranking. With
            `return_attention=True` (models with attention only), each translation is instead an
            :class:`Alignment` of the best hypothesis.
        """
        single = isinstance(text, str)
        sentences = [text] if single else list(text)
        options = dict(
            beam_size=beam_size, n_best=n_best, length_penalty=length_penalty, batch_size=batch_size
        )
        if return_attention:
            _require_attention(self.model)
        hyps = self.translate_hypotheses(sentences, **options)
        if return_attention:
            found = self._alignments(sentences, hyps, self._settings(**options).batch_size)
            return found[0] if single else found
        want_list = return_scores or (n_best or self.decode.n_best) > 1
        out = []
        for per_input in hyps:
            if want_list:
                out.append(
                    [(self.tgt_tokenizer.decode(h.tokens), h.normalized_score) for h in per_input]
                )
            else:
                out.append(self.tgt_tokenizer.decode(per_input[0].tokens))
        return out[0] if single else out

    def _alignments(
        self, sentences: list[str], hyps: list[list[Hypothesis]], batch_size: int
    ) -> list[Alignment]:
        """Alignments of the best hypotheses: search chose the tokens, one teacher-forced pass
        over `[BOS] + tokens` gives the attention of every step (EOS included)."""
        import tensorflow as tf

        if getattr(self, "_attention_fn", None) is None:
            self._attention_fn = tf.function(self.model.attention_weights, reduce_retracing=True)
        encoded = self.src_tokenizer.encode_batch([normalize(s) for s in sentences])
        best = [per_input[0] for per_input in hyps]
        matrices = [np.zeros((len(h.tokens) + 1, 0), np.float32) for h in best]
        real = [i for i, ids in enumerate(encoded) if ids]
        for batch in length_sorted_batches([len(encoded[i]) for i in real], batch_size):
            idx = [real[j] for j in batch]
            src = pad_batch([encoded[i] for i in idx])
            tgt_in = pad_batch([[BOS_ID, *best[i].tokens] for i in idx])
            weights = self._attention_fn(tf.constant(src), tf.constant(tgt_in)).numpy()
            for row, i in enumerate(idx):
                matrices[i] = weights[row, : len(best[i].tokens) + 1, : len(encoded[i])]
        return [
            Alignment(
                source_tokens=self.src_tokenizer.pieces(ids),
                target_tokens=self.tgt_tokenizer.pieces([*h.tokens, EOS_ID]),
                translation=self.tgt_tokenizer.decode(h.tokens),
                attention=matrix.astype(np.float32),
                score=float(h.normalized_score),
            )
            for ids, h, matrix in zip(encoded, best, matrices, strict=True)
        ]


def _require_attention(model) -> None:
    if getattr(model, "attention", None) is None:
        raise ValueError(
            "return_attention needs a model with attention, but this model's "
            "model.decoder.attention is none; train one with attention: bahdanau or luong"
        )
