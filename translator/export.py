"""Export a trained run as a string -> string TensorFlow SavedModel (`translator export`).

The SavedModel stands alone: loading it needs TensorFlow and `tensorflow-text` (whose import
registers the SentencePiece ops), not this package and not Keras::

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    model = tf.saved_model.load("exports/ding-de-en")
    model.signatures["serving_default"](text=tf.constant(["Das Haus ist klein."]))["translation"]

Everything `Translator.translate` does runs inside the graph, in the same order and with the
same arithmetic, so that the outputs are equal string for string:

1. normalise the text (Unicode NFC, runs of whitespace -> one space, stripped; lowercased when
   the source tokenizer was trained lowercased);
2. SentencePiece-encode it (the run's `.model` files travel as SavedModel assets);
3. sort the non-empty sentences by length (longest first, ties in input order), cut them into
   batches of `batch_size`, pad each batch to its longest sentence; greedy search with batches
   of more than one sentence takes windows of sentences instead (up to `WINDOW_BATCHES`
   batches, cut as `batching.length_sorted_windows`), encoded a batch at a time;
4. greedy or beam search with the decode settings fixed at export (the same compiled loops as
   :mod:`translator.decoding.search`; greedy steps `batch_size` rows of a window and refills a
   row as soon as its sentence ends), with `max_lengths = ceil(ratio * src_len) + extra`
   computed in float64 as Python does; `decode.workers` loops decode every `workers`-th window
   or batch each, at once (as `Translator` decodes `workers` batches in threads);
5. detokenise, dropping the special ids. An empty input gives an empty translation, score 0.

Signatures (the batch axis N is free):

- `serving_default(text: string [N])` -> `translation: string [N]`, `score: float32 [N]` (the
  best hypothesis and its length-normalised score);
- `translate_nbest(text: string [N])` -> `hypotheses: string [N, n_best]`,
  `scores: float32 [N, n_best]`, best first; missing hypotheses are "" with score -inf;
- `align(text: string [])` (attention models) -> `source_tokens: string [S]`,
  `target_tokens: string [T]` (EOS included), `translation: string []`,
  `attention: float32 [T, S]`, as `Translator.align` gives them.

Only SentencePiece tokenizers run inside the graph; word and character tokenizers are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from translator.config import ConfigError, DecodeConfig
from translator.io import (
    ArtifactError,
    atomic_write_json,
    check_output_path,
    check_replaceable,
    current_umask,
    file_digest,
    leftover_prefix,
    remove_dead_leftovers,
    require_utf8_path,
)
from translator.rundir import RunDir

EXPORT_INFO = "translator_export.json"  # written beside saved_model.pb
SIGNATURES = ("serving_default", "translate_nbest")


class ExportError(ValueError):
    """A run that cannot be exported, or an export directory that cannot be used."""


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """Decoding settings fixed inside an export (the run's `decode` section, then flags)."""

    beam_size: int
    n_best: int
    length_penalty: float
    max_output_ratio: float
    max_output_extra: int
    min_output_length: int
    batch_size: int
    word_reward: float = 0.0
    workers: int = DecodeConfig.workers

    @classmethod
    def from_decode(cls, decode: DecodeConfig, **overrides: Any) -> ExportSettings:
        """The run's decode settings with the non-None `overrides`, validated by `DecodeConfig`
        (errors name the `decode.*` key)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "beam_size" in changes and "n_best" not in changes:
            changes["n_best"] = min(decode.n_best, changes["beam_size"])
        checked = decode.with_overrides(**changes)
        if getattr(checked, "sampling_topk", 1) != 1:
            raise ExportError(
                "an export decodes with greedy or beam search, but decode.sampling_topk is "
                f"{checked.sampling_topk} (sampling); set decode.sampling_topk: 1 in the run's "
                "config, or pass --beam-size N with N > 1"
            )
        return cls(**{f.name: getattr(checked, f.name) for f in dataclasses.fields(cls)})


def _whitespace_class() -> str:
    """An RE2 character class of exactly the characters Python's `str.split()` splits on."""
    chars = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def _build_module(model, src_model: Path, tgt_model: Path, lowercase: bool, s: ExportSettings):
    """The `tf.Module` that is saved: the model's variables, the two tokenizers (as assets) and
    the two signature functions."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    from translator.data.tokenizers import BOS_ID, EOS_ID
    from translator.decoding.contract import Seq2SeqStepModel
    from translator.decoding.search import beam_loop, greedy_decode, greedy_loop
    from translator.translate import WINDOW_BATCHES, WINDOW_PADDING, WINDOW_TOKENS

    def tokenizer(path: Path, name: str):
        # The op takes the model as an attribute, so the graph carries it; the `.model` file
        # also travels as an asset (`assets/`), for clients that tokenise outside the graph.
        # Distinct names: the op's resource is shared by name, and an unnamed target
        # tokenizer would silently get the source model once the export is loaded.
        tok = tf_text.SentencepieceTokenizer(model=path.read_bytes(), out_type=tf.int32, name=name)
        return tok, tf.saved_model.Asset(str(path))

    # The input tables (`Seq2Seq.input_tables`) are saved as variables: once, not per function.
    tables = tf.nest.map_structure(
        lambda x: None if x is None else tf.Variable(x, trainable=False, name="input_table"),
        model.input_tables(),
    )
    step_model = Seq2SeqStepModel(model, tables=tables)
    whitespace = _whitespace_class()
    n_best, k = s.n_best, s.beam_size
    neg_inf = tf.constant(-math.inf, tf.float32)

    def normalize(text):
        text = tf_text.normalize_utf8(text, "NFC")
        text = tf.strings.regex_replace(text, whitespace + "+", " ")
        text = tf.strings.regex_replace(text, "^ | $", "")
        return tf.strings.lower(text, encoding="utf-8") if lowercase else text

    min_len = tf.constant(s.min_output_length, tf.int32)
    # Greedy search with batches of more than one sentence decodes windows of sentences in
    # `batch_size` rows that are refilled, as `Translator.translate_hypotheses` does.
    windowed = k == 1 and s.batch_size > 1

    def max_lengths(src_len):
        """[N] source lengths -> [N] int32 `ceil(ratio * src_len) + extra`, in float64 as Python."""
        ratio = tf.constant(s.max_output_ratio, tf.float64)
        max_len = tf.cast(tf.math.ceil(ratio * tf.cast(src_len, tf.float64)), tf.int32)
        return max_len + s.max_output_extra

    def greedy_result(tokens, scores):
        """Greedy tokens [N, L] (EOS after the end) and scores [N] -> `decode_batch`'s outputs."""
        keep = tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, EOS_ID), tf.int32), axis=1), 0)
        lengths = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
        tokens = tf.where(keep, tokens, 0)
        # As `search._normalized`: float64, (score + word_reward * |Y|) / ((5 + |Y|) / 6) **
        # alpha, |Y| with EOS.
        n = tf.cast(lengths + 1, tf.float64)
        lp = ((5.0 + n) / 6.0) ** s.length_penalty
        norm = tf.cast((tf.cast(scores, tf.float64) + s.word_reward * n) / lp, tf.float32)
        return tokens[:, None, :], lengths[:, None], scores[:, None], norm[:, None]

    def window_size(sorted_len, start):
        """How many of the length-sorted sentences from `start` on make the next window: as
        `batching.length_sorted_windows` with the limits of `translate.py` (at least one
        sentence, at most `WINDOW_BATCHES` batches and `WINDOW_TOKENS` padded positions, and
        past `batch_size` sentences no more once padding them to the longest would add more
        than `WINDOW_PADDING` of their tokens)."""
        seg = sorted_len[start : start + WINDOW_BATCHES * s.batch_size]
        members = tf.range(1, tf.size(seg) + 1)
        padded = tf.cast(members * seg[0], tf.float64)
        grown = tf.cumsum(tf.cast(seg, tf.float64))
        ok = tf.logical_or(
            members == 1,
            tf.logical_and(
                padded <= WINDOW_TOKENS,
                tf.logical_or(members <= s.batch_size, padded <= (1 + WINDOW_PADDING) * grown),
            ),
        )
        return tf.reduce_sum(tf.math.cumprod(tf.cast(ok, tf.int32)))

    def decode_window(rows):
        """Greedy search of a window, ragged source ids [N, (S)] sorted longest first: encoded
        in chunks of `batch_size` rows, each padded to its own longest, the memories padded
        with zeros to the window's longest and joined, then `batch_size` rows stepped and
        refilled (as `Searcher.greedy` with `slots`)."""
        n = rows.nrows(out_type=tf.int32)
        chunks = (n + s.batch_size - 1) // s.batch_size

        def start(c):
            memory, state = step_model.start(
                rows[c * s.batch_size : (c + 1) * s.batch_size].to_tensor(0)
            )
            return tf.nest.flatten(memory), tf.nest.flatten(state), memory, state

        first_memory, first_state, memory, state = start(0)
        # The window's longest source: the first chunk's (as `Searcher._start_in_chunks`).
        width = tf.reduce_max([tf.shape(x)[1] for x in first_memory if x.shape.rank > 1])

        def padded(x):
            if x.shape.rank < 2:
                return x
            pad = [[0, 0], [0, width - tf.shape(x)[1]]] + [[0, 0]] * (x.shape.rank - 2)
            return tf.pad(x, pad)

        def arrays(parts):
            return [
                tf.TensorArray(x.dtype, size=chunks, infer_shape=False).write(0, x) for x in parts
            ]

        def body(c, mem_arrays, state_arrays):
            mem, st, _, _ = start(c)
            mem_arrays = [a.write(c, padded(x)) for a, x in zip(mem_arrays, mem, strict=True)]
            state_arrays = [a.write(c, x) for a, x in zip(state_arrays, st, strict=True)]
            return c + 1, mem_arrays, state_arrays

        _, mem_arrays, state_arrays = tf.while_loop(
            lambda c, *_: c < chunks,
            body,
            (tf.constant(1), arrays(first_memory), arrays(first_state)),
        )

        def joined(array, like, free_axes):
            """The chunks joined on the batch axis, with the first chunk's static shape on the
            axes that do not vary (a `TensorArray.concat` knows none)."""
            x = array.concat()
            x.set_shape([None] * free_axes + like.shape[free_axes:].as_list())
            return x

        memory = tf.nest.pack_sequence_as(
            memory,
            [
                joined(a, x, min(x.shape.rank, 2))
                for a, x in zip(mem_arrays, first_memory, strict=True)
            ],
        )
        state = tf.nest.pack_sequence_as(
            state, [joined(a, x, 1) for a, x in zip(state_arrays, first_state, strict=True)]
        )
        tokens, scores = greedy_decode(
            step_model,
            memory,
            state,
            max_lengths(rows.row_lengths()),
            min_len,
            BOS_ID,
            EOS_ID,
            slots=s.batch_size,
        )
        return greedy_result(tokens, scores)

    def decode_batch(src_ids):
        """src_ids [B, S] -> tokens [B, n_best, L], lengths [B, n_best] (without EOS), scores and
        normalised scores [B, n_best] (-inf where there is no hypothesis)."""
        max_len = max_lengths(tf.reduce_sum(tf.cast(tf.not_equal(src_ids, 0), tf.int64), axis=1))
        if k == 1:
            return greedy_result(
                *greedy_loop(step_model, src_ids, max_len, min_len, BOS_ID, EOS_ID)
            )
        seq, lengths, scores, norm = beam_loop(
            step_model,
            src_ids,
            max_len,
            min_len,
            s.length_penalty,
            k,
            BOS_ID,
            EOS_ID,
            word_reward=s.word_reward,
        )
        return seq[:, :n_best], lengths[:, :n_best] - 1, scores[:, :n_best], norm[:, :n_best]

    class ExportModule(tf.Module):
        def __init__(self):
            super().__init__(name="translator")
            # Keras 3 variables are not TensorFlow trackables: track the tf.Variables inside them
            # (as keras.export.ExportArchive does); the model itself stays out of the object graph.
            self.model_variables = [v.value for v in model.variables]
            self.input_tables = [x for x in tf.nest.flatten(tables) if x is not None]
            self.src_tokenizer, self.src_model_asset = tokenizer(src_model, "src_sentencepiece")
            self.tgt_tokenizer, self.tgt_model_asset = tokenizer(tgt_model, "tgt_sentencepiece")

        def _search(self, text):
            """text [N] -> hypotheses [N, n_best] string, scores [N, n_best] float32."""
            ids = self.src_tokenizer.tokenize(normalize(text))  # ragged [N, (S)]
            n = tf.shape(text)[0]
            lengths = tf.cast(ids.row_lengths(), tf.int32)
            real = tf.cast(tf.where(lengths > 0)[:, 0], tf.int32)
            # Longest first, ties in input order (`length_sorted_batches`).
            order = tf.gather(real, tf.argsort(-tf.gather(lengths, real), stable=True))
            sorted_len = tf.gather(lengths, order)
            total = tf.size(order)

            def group_end(start):
                """Where the window (greedy) or batch that starts at `start` ends."""
                if windowed:
                    return start + window_size(sorted_len, start)
                # `length_sorted_batches` with `WINDOW_TOKENS`: a long input has fewer rows.
                rows = tf.clip_by_value(WINDOW_TOKENS // sorted_len[start], 1, s.batch_size)
                return tf.minimum(start + rows, total)

            # The groups' bounds in `order`: [G + 1], 0 first and `total` last.
            def next_bound(start, ta):
                end = group_end(start)
                return end, ta.write(ta.size(), end)

            _, bounds = tf.while_loop(
                lambda start, _: start < total,
                next_bound,
                (tf.constant(0), tf.TensorArray(tf.int32, size=1, dynamic_size=True).write(0, 0)),
            )
            bounds = bounds.stack()

            def decode_group(g):
                """Group `g` -> its sentences' indices [n], their hypotheses' token ids (the
                values [T] and lengths [n * n_best] of a ragged [n * n_best, (L)]) and scores
                [n, n_best]."""
                idx = order[bounds[g] : bounds[g + 1]]
                if windowed:
                    tokens, out_len, _, norm = decode_window(tf.gather(ids, idx))
                else:
                    tokens, out_len, _, norm = decode_batch(
                        tf.gather(ids, idx).to_tensor(default_value=0)
                    )
                width = tf.shape(tokens)[2]
                flat = tf.reshape(tokens, [-1, width])
                valid = tf.logical_and(
                    tf.sequence_mask(tf.maximum(tf.reshape(out_len, [-1]), 0), width),
                    flat > EOS_ID,  # `decode` drops the special ids, as the Python API does
                )
                flat = tf.ragged.boolean_mask(flat, valid)
                return idx, flat.values, tf.cast(flat.row_lengths(), tf.int32), norm

            def stream(first):
                """Groups `first`, `first + workers`, ... decoded in order, their results
                joined. The streams share no state (and hold no stateful op: the tokenizer's
                resource would order them), so they run at once (`decode.workers`)."""
                kinds = ((tf.int32, [None]),) * 3 + ((tf.float32, [None, n_best]),)
                arrays = tuple(
                    tf.TensorArray(dtype, size=0, dynamic_size=True, element_shape=shape)
                    for dtype, shape in kinds
                )

                def body(g, k, arrays):
                    parts = decode_group(g)
                    arrays = tuple(a.write(k, x) for a, x in zip(arrays, parts, strict=True))
                    return g + s.workers, k + 1, arrays

                _, _, arrays = tf.while_loop(
                    lambda g, *_: g < tf.size(bounds) - 1,
                    body,
                    (tf.constant(first), tf.constant(0), arrays),
                )
                return [a.concat() for a in arrays]

            parts = [stream(j) for j in range(s.workers)]
            idx, values, row_lengths, norm = (tf.concat([p[i] for p in parts], 0) for i in range(4))
            hyps = tf.RaggedTensor.from_row_lengths(values, row_lengths)
            strings = tf.reshape(self.tgt_tokenizer.detokenize(hyps), [-1, n_best])
            found = tf.math.is_finite(norm)
            strings, norm = tf.where(found, strings, ""), tf.where(found, norm, neg_inf)
            empty_scores = tf.concat(
                [tf.zeros([n, 1], tf.float32), tf.fill([n, n_best - 1], neg_inf)], axis=1
            )
            texts = tf.tensor_scatter_nd_update(tf.fill([n, n_best], ""), idx[:, None], strings)
            scores = tf.tensor_scatter_nd_update(empty_scores, idx[:, None], norm)
            return texts, scores

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def translate(self, text):
            texts, scores = self._search(text)
            return {"translation": texts[:, 0], "score": scores[:, 0]}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def translate_nbest(self, text):
            texts, scores = self._search(text)
            return {"hypotheses": texts, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="text")])
        def align(self, text):
            """One sentence -> its pieces, the best hypothesis' pieces (EOS included), the
            translation and the attention [T_out, S], as `Translator.align` gives them."""
            ids = self.src_tokenizer.tokenize(normalize(text[None]))  # ragged [1, (S)]
            src = ids.to_tensor(default_value=0)

            def found():
                tokens, out_len, _, _ = decode_batch(src)
                best = tokens[0, 0, : out_len[0, 0]]
                tgt_in = tf.concat([[BOS_ID], best], 0)[None]
                return best, model.attention_weights(src, tgt_in)[0]

            def empty():
                return tf.zeros([0], tf.int32), tf.zeros([1, 0], tf.float32)

            best, weights = tf.cond(tf.shape(src)[1] > 0, found, empty)
            kept = tf.boolean_mask(best, best > EOS_ID)
            return {
                "source_tokens": self.src_tokenizer.id_to_string(ids.flat_values),
                "target_tokens": self.tgt_tokenizer.id_to_string(tf.concat([best, [EOS_ID]], 0)),
                "translation": self.tgt_tokenizer.detokenize(kept[None])[0],
                "attention": tf.cast(weights, tf.float32),
            }

    if getattr(model, "attention", None) is None:
        del ExportModule.align  # saving traces every tf.function; this one needs attention
    return ExportModule()


def export_run(
    run_dir: str | Path | RunDir,
    out_dir: str | Path,
    *,
    force: bool = False,
    **overrides: Any,
) -> Path:
    """Export the best model of a trained run to `out_dir` (see the module docstring).

    Args:
        run_dir: a run directory with a trained model and SentencePiece tokenizers.
        out_dir: the SavedModel directory to write (written under a temporary name, then renamed,
            so an interrupted export leaves nothing half-written). An existing non-empty directory
            is replaced only with `force`.
        overrides: `ExportSettings` fields (beam_size, n_best, length_penalty, max_output_ratio,
            max_output_extra, min_output_length, batch_size, workers); None keeps the run's value.

    Returns:
        The export directory.
    """
    import tensorflow as tf

    from translator.data.tokenizers import SentencePieceTokenizer, load_tokenizer

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run.require_trained()
    config = run.load_config()
    kind = config.tokenizer.type
    if kind != "sentencepiece":
        raise ExportError(
            f"{run.path}: tokenizer.type is {kind!r}; only sentencepiece tokenizers run inside an "
            "exported graph (word and char tokenizers do not export); train with tokenizer.type: "
            "sentencepiece to export, or serve the run directory itself: translator serve "
            f"{run.path}"
        )
    try:
        settings = ExportSettings.from_decode(config.decode, **overrides)
    except ConfigError as e:
        raise ExportError(str(e)) from None
    if not str(out_dir).strip():
        raise ExportError("OUT_DIR is empty; give the directory to write, e.g. exports/NAME")
    out = Path(out_dir)
    target = Path(os.path.abspath(out))  # "." and ".." resolved: the directory really replaced
    here = Path.cwd()
    if target == here or target in here.parents:
        raise ExportError(
            f"OUT_DIR {out_dir} is the working directory or holds it; give a new directory, "
            "e.g. exports/NAME"
        )
    if _occupied(out) and not force:
        raise ExportError(
            f"{out} already exists and is not empty; choose another OUT_DIR or pass --force to "
            "replace it"
        )
    if out.resolve() == run.path.resolve() or run.path.resolve() in out.resolve().parents:
        raise ExportError(f"{out} is inside the run directory {run.path}; export somewhere else")
    check_output_path(out, "OUT_DIR", directory=True)
    require_utf8_path(out, "OUT_DIR")
    if out.exists():
        check_replaceable(
            out,
            "OUT_DIR",
            run.path,
            lambda d: (d / "saved_model.pb").is_file() or (d / EXPORT_INFO).is_file(),
        )

    # The export is written into a hidden directory of its own beside OUT_DIR (made first: a
    # place that cannot be written fails now, not after building the graph), then renamed.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_leftovers(target.parent, target.name, "partial-")  # of killed exports
        prefix = leftover_prefix(target.name, "partial-")
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        tmp.chmod(0o777 & ~current_umask())  # as `mkdir` would make it (mkdtemp's is 0700)
    except OSError as e:
        raise ExportError(
            f"OUT_DIR {out}: cannot write in {target.parent} ({e.strerror or e})"
        ) from None
    try:
        translator, model_digest = _load_unchanged(run)
        has_attention = getattr(translator.model, "attention", None) is not None
        src = load_tokenizer(run.tokenizers, kind, "src")
        assert isinstance(src, SentencePieceTokenizer)
        module = _build_module(
            translator.model,
            run.tokenizer_file(kind, "src"),
            run.tokenizer_file(kind, "tgt"),
            src.lowercase,
            settings,
        )
        signatures = {
            "serving_default": module.translate,
            "translate_nbest": module.translate_nbest,
        }
        if has_attention:
            signatures["align"] = module.align
        try:
            tf.saved_model.save(module, str(tmp), signatures=signatures)
        except tf.errors.OpError as e:  # e.g. the disk filled up, or the place is not writable
            reason = (
                "no space left on device"
                if "No space left on device" in e.message
                else e.message.splitlines()[0][:300]
            )
            raise ExportError(f"OUT_DIR {out}: cannot write the SavedModel ({reason})") from None
        import tensorflow_text

        atomic_write_json(
            tmp / EXPORT_INFO,
            {
                "source_run": str(run.path.resolve()),
                "model_file": str(run.model_file.resolve()),
                "model_digest": model_digest,
                "decode": dataclasses.asdict(settings),
                "signatures": [*SIGNATURES, *(["align"] if has_attention else [])],
                "attention": has_attention,
                "tensorflow": tf.__version__,
                "tensorflow_text": tensorflow_text.__version__,
                "load": "import tensorflow_text before tf.saved_model.load (it registers the "
                "SentencePiece ops)",
            },
        )
        _replace_dir(tmp, target, force, out)
    finally:
        if tmp.exists():  # an error or an interruption: nothing half-written stays
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _occupied(path: Path) -> bool:
    """`path` exists and is not an empty directory (writing the export there needs `force`)."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _replace_dir(new: Path, target: Path, force: bool, given: Path) -> None:
    """Rename `new` to `target`, replacing what `target` was only once `new` is whole, and only
    with `force` (another export may have written it since this one started)."""
    if _occupied(target) and not force:
        raise ExportError(
            f"{given} was written by someone else while this export ran; choose another OUT_DIR "
            "or pass --force to replace it"
        )
    old = new.with_name(new.name + ".old")
    if target.exists():
        target.rename(old) if target.is_dir() else target.unlink()
    new.rename(target)
    if old.exists():
        shutil.rmtree(old)


def read_export_info(path: str | Path) -> dict:
    """The `translator_export.json` of an export directory ({} for a SavedModel made elsewhere)."""
    info = Path(path) / EXPORT_INFO
    if not info.is_file():
        return {}
    try:
        return json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{info} is not readable JSON ({e}); export again") from None


# Run with `python -I -c` in a temporary directory (its working directory, removed after):
# loads an export with TensorFlow and tensorflow-text alone. The project's package is made
# unimportable (a stand-in that raises, ahead of everything on the path, and no editable-install
# finder), so the check fails if the export needed it.
_STANDALONE = r"""
import json, os, sys
blocked = os.path.abspath("blocked")
os.makedirs(os.path.join(blocked, "translator"))
with open(os.path.join(blocked, "translator", "__init__.py"), "w") as f:
    f.write("raise ImportError('translator is not importable in the stand-alone check')\n")
sys.path.insert(0, blocked)
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)
export, inputs, output = sys.argv[1:4]
texts = json.load(open(inputs, encoding="utf-8"))
model = tf.saved_model.load(export)
out = model.signatures["translate_nbest"](text=tf.constant(texts, tf.string))
best = model.signatures["serving_default"](text=tf.constant(texts, tf.string))
result = {
    "hypotheses": [[h.decode("utf-8") for h in row] for row in out["hypotheses"].numpy()],
    "scores": out["scores"].numpy().tolist(),
    "translation": [t.decode("utf-8") for t in best["translation"].numpy()],
    "project_imported": sorted(m for m in sys.modules if m.split(".")[0] == "translator"),
}
with open(output, "w", encoding="utf-8") as f:
    json.dump(result, f)
"""


@dataclasses.dataclass
class ExportCheck:
    """What `check_export` found: the export's outputs against `Translator` on the same inputs."""

    sentences: int
    equal: int  # sentences whose whole n-best list (strings) and best translation are equal
    max_score_difference: float
    mismatches: list[dict]  # the first few: index, source, python, export

    @property
    def passed(self) -> bool:
        return self.equal == self.sentences

    def summary(self) -> str:
        return (
            f"{self.equal}/{self.sentences} sentences translated identically by the stand-alone "
            f"export and the Python API (largest score difference {self.max_score_difference:.2g})"
        )


def _load_unchanged(run: RunDir) -> tuple[Any, str]:
    """`Translator.load(run)` and the digest of the model file it read. A training run replaces
    `model.keras` as it goes (by a rename, so a load reads one whole version): the digest is
    taken before and after, and a load between two versions is tried again."""
    from translator.translate import Translator

    for _ in range(3):
        before = file_digest(run.model_file)
        translator = Translator.load(run)
        if file_digest(run.model_file) == before:
            return translator, before
    raise ExportError(
        f"{run.model_file} was replaced three times while it was read (a training run writes "
        "it); export once the training ends"
    )


def check_export(export_dir: str | Path, sentences: list[str], run_dir=None) -> ExportCheck:
    """Load `export_dir` in a fresh Python process with TensorFlow and tensorflow-text only (this
    package unimportable), translate `sentences` there, and compare with `Translator` on the
    export's source run (or `run_dir`) with the export's decode settings: strings must be equal.
    """
    import subprocess
    import tempfile

    export_dir = Path(export_dir).resolve()  # the check runs in another working directory
    info = read_export_info(export_dir)
    run = run_dir or info.get("source_run")
    if not run:
        raise ExportError(f"{export_dir}: no {EXPORT_INFO} naming its run; pass the run directory")
    s = info["decode"]
    run = run if isinstance(run, RunDir) else RunDir(run)
    translator, digest = _load_unchanged(run)
    if info.get("model_digest", digest) != digest:  # exports before the digest are not checked
        raise ExportError(
            f"{run.model_file} is not the model {export_dir} was exported from (it was "
            "replaced since, e.g. by a training run): nothing to compare with; export again"
        )
    python = translator.translate_nbest(
        sentences,
        n_best=s["n_best"],
        beam_size=s["beam_size"],
        length_penalty=s["length_penalty"],
        word_reward=s.get("word_reward", 0.0),
        batch_size=s["batch_size"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        inputs, output = Path(tmp) / "inputs.json", Path(tmp) / "output.json"
        inputs.write_text(json.dumps(sentences), encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _STANDALONE, str(export_dir), str(inputs), str(output)],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise ExportError(f"{export_dir} did not load stand-alone:\n{tail}")
        result = json.loads(output.read_text(encoding="utf-8"))
    if result["project_imported"]:
        raise ExportError(f"the stand-alone load imported {result['project_imported']}")
    equal, worst, mismatches = 0, 0.0, []
    for i, (src, hyps) in enumerate(zip(sentences, python, strict=True)):
        texts = [h for h, _ in hyps]
        exported = result["hypotheses"][i][: len(texts)]
        same = exported == texts and result["translation"][i] == texts[0]
        equal += same
        for (_, a), b in zip(hyps, result["scores"][i], strict=False):
            worst = max(worst, abs(a - b))
        if not same and len(mismatches) < 5:
            mismatches.append({"index": i, "source": src, "python": texts, "export": exported})
    return ExportCheck(len(sentences), equal, worst, mismatches)


def load_saved_model(path: str | Path, info: dict | None = None):
    """`tf.saved_model.load` of an export directory (tensorflow-text imported first).

    Raises:
        ExportError: the export is damaged (an empty or truncated saved_model.pb, damaged or
            missing variables/, a damaged fingerprint.pb): one line naming the directory, what
            TensorFlow said and the command that writes it again.
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    path = Path(path)
    info = read_export_info(path) if info is None else info
    source = info.get("source_run") or "RUN_DIR"
    again = f"export it again: translator export {source} {path} --force"
    pb = path / "saved_model.pb"
    if pb.is_file() and pb.stat().st_size == 0:
        raise ExportError(f"{path} is a damaged export ({pb.name} is empty); {again}")
    try:
        if (path / "fingerprint.pb").is_file():
            # A damaged fingerprint is only logged by the loader, with a traceback.
            tf.saved_model.experimental.read_fingerprint(str(path))
        return tf.saved_model.load(str(path))
    except Exception as e:  # protobuf, checkpoint-reader and op errors all mean "damaged"
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        reason = f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__
        raise ExportError(f"{path} is a damaged export ({reason}); {again}") from None


def _fixed_options(path: Path, info: dict) -> dict:
    """The decoding options an export's graph fixes (`beam_size`, `n_best`, `length_penalty`),
    from its `translator_export.json`; an `ExportError` naming that file when they are missing
    or invalid (the server answers each request with them)."""
    decode = info.get("decode")
    where = path / EXPORT_INFO
    again = (
        f"export it again: translator export {info.get('source_run') or 'RUN_DIR'} {path} --force"
    )
    if not isinstance(decode, dict):
        missing = "is missing" if not where.is_file() else "has no decode section"
        raise ExportError(
            f"{where} {missing}: it records the decoding options fixed in the export's graph, "
            f"which the server needs; {again}"
        )
    fixed = {k: decode.get(k) for k in ("beam_size", "n_best", "length_penalty")}
    try:
        DecodeConfig(**fixed)
    except (ConfigError, TypeError) as e:
        raise ExportError(f"{where}: decode is damaged ({e}); {again}") from None
    return fixed


class ExportBackend:
    """An export seen by the server (`translator serve EXPORT_DIR`): decoding options are fixed
    inside the graph, so a request may only ask for those (or fewer hypotheses)."""

    fixed_options = True

    def __init__(self, path: str | Path):
        self.path = Path(path)
        info = read_export_info(path)
        self._model = load_saved_model(path, info)
        if "translate_nbest" not in self._model.signatures:
            raise ExportError(f"{path} has no translate_nbest signature; export it again")
        self._nbest = self._model.signatures["translate_nbest"]
        self._align = self._model.signatures.get("align")
        self.has_attention = self._align is not None
        self.name = self.path.resolve().name
        self.defaults = _fixed_options(self.path, info)

    def translate(
        self, texts: list[str], *, beam_size: int, n_best: int, length_penalty: float
    ) -> list[list[tuple[str, float]]]:
        """texts -> per input, up to `n_best` `(translation, score)`, best first."""
        import tensorflow as tf

        if not texts:
            return []
        out = self._nbest(text=tf.constant(texts, tf.string))
        hyps, scores = out["hypotheses"].numpy(), out["scores"].numpy()
        results = []
        for i in range(len(texts)):
            pairs = [
                (h.decode("utf-8"), float(sc))
                for h, sc in zip(hyps[i][:n_best], scores[i][:n_best], strict=True)
            ]
            # Unused n-best slots have score -inf; the best hypothesis always stays.
            results.append(pairs[:1] + [p for p in pairs[1:] if math.isfinite(p[1])])
        return results

    def align(self, text: str) -> dict:
        """As `PythonBackend.align`: tokens, translation and attention of the best hypothesis."""
        import tensorflow as tf

        if self._align is None:
            raise ExportError("this export has no align signature (its model has no attention)")
        out = self._align(text=tf.constant(text, tf.string))
        return {
            "source_tokens": [t.decode("utf-8") for t in out["source_tokens"].numpy()],
            "target_tokens": [t.decode("utf-8") for t in out["target_tokens"].numpy()],
            "translation": out["translation"].numpy().decode("utf-8"),
            "attention": out["attention"].numpy().astype(float).tolist(),
        }


def load_export_backend(path: str | Path) -> ExportBackend:
    """The server's backend for an export directory."""
    return ExportBackend(path)
