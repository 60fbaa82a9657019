"""Throughput benchmarks of a trained run: training tokens/s and decoding sentences/s, and each as
GFLOP/s of useful work and as a fraction of the machine's matmul roof.

All figures come from one process, measured side by side, so they can be compared as ratios. The
useful FLOPs are counted from the model's shapes and the real sentence lengths
(:mod:`translator.flops`); the roof is the best rate of one large `tf.matmul`
(:func:`matmul_roof`), measured in the same process.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from translator.config import Config
from translator.data.batching import BucketedDataset, pad_batch
from translator.data.corpus import Pair, normalize, read_tsv
from translator.data.tokenizers import BOS_ID, EOS_ID
from translator.decoding.search import max_output_lengths
from translator.flops import (
    FlopCounts,
    decoding_flops,
    flop_counts,
    flops_per_target_token,
    training_flops,
)
from translator.models import EncoderOutput, build_model, compile_model
from translator.precision import cpu_supports_bfloat16, policy_name
from translator.rundir import RunDir
from translator.translate import Translator


def _matmul_gflops(n: int, dtype: str, runs: int) -> float:
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((n, n), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), seed=(3, 4)), dtype)
    tf.matmul(a, b)[0, 0].numpy()  # warm-up (oneDNN primitive creation)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        tf.matmul(a, b)[0, 0].numpy()  # reading one value waits for the product
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def matmul_roof(n: int = 2048, runs: int = 5, cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The machine's matmul roof: GFLOP/s (`2 n^3 / seconds`) of `tf.matmul` of two `n x n`
    matrices on the default device, after a warm-up, best of `runs`.

    Returns:
        `{"matrix_size": n, "float32_gflops": ..., "bfloat16_gflops": ...}`; `bfloat16_gflops` is
        None when the CPU has no native bfloat16 instructions (see :func:`cpu_supports_bfloat16`):
        TensorFlow would emulate them, and an emulation is no roof.
    """
    return {
        "matrix_size": n,
        "float32_gflops": round(_matmul_gflops(n, "float32", runs), 1),
        "bfloat16_gflops": (
            round(_matmul_gflops(n, "bfloat16", runs), 1)
            if cpu_supports_bfloat16(cpuinfo)
            else None
        ),
    }


def roof_for(precision: str, roof: dict) -> tuple[float, str]:
    """The roof `(GFLOP/s, its precision)` that a model of dtype policy `precision` is measured
    against: the bfloat16 roof for a bfloat16 compute dtype when the CPU has one, else float32
    (also for `mixed_float16`: no float16 roof is measured)."""
    if "bfloat16" in precision and roof.get("bfloat16_gflops"):
        return roof["bfloat16_gflops"], "bfloat16"
    return roof["float32_gflops"], "float32"


def efficiency(flops: int, seconds: float, precision: str, roof: dict | None) -> dict:
    """`flops` (useful FLOPs done in `seconds`), `gflops` and, with a `roof`, `roof_fraction` and
    `roof_precision` (see :func:`roof_for`)."""
    gflops = flops / seconds / 1e9
    out: dict[str, Any] = {"flops": int(flops), "gflops": round(gflops, 2)}
    if roof is not None:
        peak, roof_precision = roof_for(precision, roof)
        out["roof_fraction"] = round(gflops / peak, 4)
        out["roof_precision"] = roof_precision
    return out


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build models under the Keras dtype policy `name`; the previous global policy (float32)
    comes back afterwards, as after training."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def training_batches(cfg: Config, train: list[Pair], translator: Translator, steps: int) -> list:
    """`steps` length-bucketed, shuffled training batches as NumPy arrays."""
    tc = cfg.train
    data = BucketedDataset(
        translator.src_tokenizer.encode_batch([p.src for p in train]),
        translator.tgt_tokenizer.encode_batch([p.tgt for p in train]),
        tc.batch_tokens,
        tc.max_batch_size,
        shuffle=True,
        seed=tc.seed,
    )
    return list(data.dataset(repeat=True).take(steps).as_numpy_iterator())


@dataclass
class TrainingSubject:
    """A model that :func:`training_throughput` times.

    Attributes:
        model: the compiled Keras model.
        step: `step(x, y)` runs one optimizer step on a batch (`x = (src, tgt_in)`, `y` the
            right-padded target output ids).
        counts: the model's :class:`~translator.flops.FlopCounts`.
        precision: the dtype policy the model was built under.
    """

    model: keras.Model
    step: Callable[[Any, Any], Any]
    counts: FlopCounts
    precision: str


def seq2seq_subject(cfg: Config, model: keras.Model, tgt_vocab_size: int) -> TrainingSubject:
    """Compile a `Seq2Seq` as the trainer does (call it under the model's dtype policy)."""
    tc = cfg.train
    compile_model(model, tc.learning_rate, tc.clip_norm, tc.label_smoothing)
    return TrainingSubject(
        model,
        model.train_on_batch,
        flop_counts(cfg.model, tgt_vocab_size),
        model.dtype_policy.name,
    )


def reference_subject(
    cfg: Config, src_vocab_size: int, tgt_vocab_size: int, precision: str
) -> TrainingSubject:
    """The plain Keras reference model (:mod:`translator.reference_model`) under the dtype policy
    `precision`, compiled with the run's learning rate and clipping."""
    from translator.reference_model import (
        build_reference_model,
        compile_reference_model,
        reference_flop_counts,
        reference_sample_weight,
    )

    tc = cfg.train
    with dtype_policy(precision):
        model = build_reference_model(cfg.model, src_vocab_size, tgt_vocab_size, tc.seed)
        compile_reference_model(model, tc.learning_rate, tc.clip_norm)

    def step(x: Any, y: Any) -> Any:
        return model.train_on_batch(x, y, sample_weight=reference_sample_weight(y))

    return TrainingSubject(
        model, step, reference_flop_counts(cfg.model, tgt_vocab_size), model.dtype_policy.name
    )


def batch_lengths(batches: list) -> tuple[np.ndarray, np.ndarray]:
    """Real source and target lengths (`[N]` each, over all batches) of `((src, tgt_in), y)`
    batches; the target length counts the output side's tokens, EOS included."""
    src = np.concatenate([(x[0] != 0).sum(axis=1) for x, _ in batches])
    tgt = np.concatenate([(y != 0).sum(axis=1) for _, y in batches])
    return src, tgt


def training_throughput(
    subjects: dict[str, TrainingSubject], batches: list, rounds: int = 2, roof: dict | None = None
) -> dict:
    """Target tokens/s of optimizer steps over `batches` for each subject, measured side by side.

    Subjects take turns (`rounds` times, after 2 warm-up steps each) so that a noisy machine
    affects all alike; each subject's figure is its best round. Each entry also has the useful
    training FLOPs of the batches (:func:`translator.flops.training_flops`), `gflops` and, with a
    `roof` (:func:`matmul_roof`), `roof_fraction`; and `precision` and `parameters`.
    """
    for subject in subjects.values():
        for x, y in batches[:2]:
            subject.step(x, y)
    src_lens, tgt_lens = batch_lengths(batches)
    tokens = int(tgt_lens.sum())
    best = {name: float("inf") for name in subjects}
    for _ in range(rounds):
        for name, subject in subjects.items():
            t0 = time.perf_counter()
            for x, y in batches:
                subject.step(x, y)
            best[name] = min(best[name], time.perf_counter() - t0)
    out = {}
    for name, seconds in best.items():
        subject = subjects[name]
        flops = training_flops(subject.counts, src_lens, tgt_lens)
        out[name] = {
            "steps": len(batches),
            "target_tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1),
            "precision": subject.precision,
            "parameters": int(subject.model.count_params()),
            **efficiency(flops, seconds, subject.precision, roof),
        }
    return out


def _keras_simple_rnn_factory(kind: str, units: int, **kwargs):
    """`make_rnn_layer`, but `rnn` layers are `keras.layers.SimpleRNN` (for the comparison)."""
    from translator.layers.bidirectional import BidirectionalRNN
    from translator.layers.rnn import make_rnn_layer

    if kind != "rnn":
        return make_rnn_layer(kind, units, **kwargs)
    layer = keras.layers.SimpleRNN(
        units,
        activation=kwargs.get("activation", "tanh"),
        recurrent_initializer=kwargs.get("recurrent_initializer", "orthogonal"),
        return_sequences=True,
        return_state=True,
        seed=kwargs.get("seed"),
        name=kwargs.get("name"),
    )
    return (
        BidirectionalRNN(layer, merge_mode=kwargs.get("merge", "concat"))
        if kwargs.get("bidirectional")
        else layer
    )


def build_with_keras_simple_rnn(model_config, src_vocab: int, tgt_vocab: int, seed: int):
    """The same model with `keras.layers.SimpleRNN` in place of our `ElmanRNN` encoder layers."""
    from unittest import mock

    with mock.patch("translator.models.encoder.make_rnn_layer", _keras_simple_rnn_factory):
        return build_model(model_config, src_vocab, tgt_vocab, seed)


def source_lengths(translator: Translator, sources: list[str]) -> np.ndarray:
    """Source tokens per sentence `[N]`, as `Translator.translate_hypotheses` encodes them."""
    encoded = translator.src_tokenizer.encode_batch([normalize(s) for s in sources])
    return np.array([len(ids) for ids in encoded], dtype=np.int64)


def decoding_throughput(
    translator: Translator,
    sources: list[str],
    *,
    counts: FlopCounts | None = None,
    roof: dict | None = None,
    warm_up_all: bool = False,
    rounds: int = 2,
    **options,
) -> dict:
    """Sentences/s and output tokens/s (EOS included) of `translator` on `sources`, the best of
    `rounds` passes (after a warm-up on two batches, so that greedy search's refilled window is
    traced too; with `warm_up_all`, after a pass over all of them, timed as
    `warm_up_seconds`: XLA compiles once per batch shape). `workers` is the number of batches
    decoded at once (`decode.workers`).

    With `counts` (the model's :class:`~translator.flops.FlopCounts`) also `flops`, the useful
    decoding FLOPs of the sentences (:func:`translator.flops.decoding_flops`: source lengths from
    the tokenizer, output lengths from the best hypotheses, the beam size of `options`), `gflops`
    and, with a `roof`, `roof_fraction`; `precision` is the model's dtype policy.
    """
    t0 = time.perf_counter()
    translator.translate_hypotheses(
        sources if warm_up_all else sources[: 2 * options.get("batch_size", 64)], **options
    )
    warm_up = time.perf_counter() - t0
    seconds = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        hyps = translator.translate_hypotheses(sources, **options)
        seconds = min(seconds, time.perf_counter() - t0)
    src_lens = source_lengths(translator, sources)
    out_lens = np.array([len(h[0].tokens) for h in hyps], dtype=np.int64)
    tokens = int((out_lens[src_lens > 0] + 1).sum())
    figures: dict[str, Any] = {
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 2),
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "workers": translator.settings(**options).workers,
    }
    if warm_up_all:
        figures["warm_up_seconds"] = round(warm_up, 3)
    if counts is not None:
        beam = translator.settings(**options).beam_size
        precision = translator.model.dtype_policy.name
        flops = decoding_flops(counts, src_lens, out_lens, beam)
        figures["precision"] = precision
        figures.update(efficiency(flops, seconds, precision, roof))
    return figures


class _EncodeModel(keras.Model):
    def __init__(self, s2s, **kwargs):
        super().__init__(**kwargs)
        self.s2s = s2s

    def call(self, src_ids):
        enc = self.s2s.encode(src_ids)
        return [enc.outputs, enc.mask, *enc.states]


class _StepModel(keras.Model):
    def __init__(self, s2s, **kwargs):
        super().__init__(**kwargs)
        self.s2s = s2s

    def call(self, inputs):
        tokens, outputs, mask, *states = inputs
        logits, new_states = self.s2s.decode_step(
            tokens, list(states), EncoderOutput(outputs, mask, list(states))
        )
        return [logits, *new_states]


def export_decoding_throughput(
    run: RunDir,
    sources: list[str],
    beam_size: int,
    *,
    python: dict | None = None,
    roof: dict | None = None,
    rounds: int = 2,
    **options,
) -> dict:
    """Sentences/s of the run's SavedModel export (`translator export`, decoding fixed at
    `beam_size` and `options`), loaded in this process and called with all `sources` at once
    (the graph sorts and batches them as the Python API does), the best of `rounds` calls
    after a warm-up call.

    `python`: the :func:`decoding_throughput` figures of the Python API on the same sentences with
    the same settings. The export decodes the same hypotheses, so their output tokens and useful
    FLOPs are taken from there (not decoded back from the returned text) and give the export's
    `tokens_per_s`, `gflops` and `roof_fraction` (the export runs in float32)."""
    import tempfile

    import tensorflow as tf

    from translator.export import export_run

    with tempfile.TemporaryDirectory() as tmp:
        out = export_run(run, Path(tmp) / "export", beam_size=beam_size, **options)
        fn = tf.saved_model.load(str(out)).signatures["serving_default"]
        fn(text=tf.constant(sources[: options.get("batch_size", 64)]))
        seconds = math.inf
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn(text=tf.constant(sources))
            seconds = min(seconds, time.perf_counter() - t0)
    figures: dict[str, Any] = {
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 2),
    }
    if python is not None:
        figures["tokens_per_s"] = round(python["output_tokens"] / seconds, 1)
        if "flops" in python:
            figures["precision"] = "float32"
            figures.update(efficiency(python["flops"], seconds, "float32", roof))
    return figures


def naive_decoding_throughput(
    translator: Translator,
    sources: list[str],
    cfg: Config,
    counts: FlopCounts | None = None,
    roof: dict | None = None,
) -> dict:
    """The reference decoder of the Keras `lstm_seq2seq` example: one sentence at a time, one
    `model.predict` call per output token. With `counts` (and `roof`) also its useful FLOPs, as
    :func:`decoding_throughput`."""
    encoder = _EncodeModel(translator.model, name="naive_encoder")
    step = _StepModel(translator.model, name="naive_step")
    d = cfg.decode
    tokens_out = 0
    src_lens, out_lens = [], []
    t0 = time.perf_counter()
    for text in sources:
        ids = translator.src_tokenizer.encode(text) or [EOS_ID]
        src_lens.append(len(ids))
        out_lens.append(-1)  # the steps run, EOS included, are out_len + 1
        src = pad_batch([ids])
        max_len = int(
            max_output_lengths(np.array([len(ids)]), d.max_output_ratio, d.max_output_extra)[0]
        )
        outputs, mask, *states = encoder.predict(src, verbose=0)
        token = np.array([BOS_ID], dtype=np.int32)
        for _ in range(max_len + 1):
            logits, *states = step.predict([token, outputs, mask, *states], verbose=0)
            token = np.argmax(logits, axis=-1).astype(np.int32)
            tokens_out += 1
            out_lens[-1] += 1
            if int(token[0]) == EOS_ID:
                break
    seconds = time.perf_counter() - t0
    figures: dict[str, Any] = {
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 3),
        "tokens_per_s": round(tokens_out / seconds, 2),
    }
    if counts is not None:
        precision = translator.model.dtype_policy.name
        figures["precision"] = precision
        flops = decoding_flops(counts, src_lens, out_lens, 1)
        figures.update(efficiency(flops, seconds, precision, roof))
    return figures


def run_benchmarks(
    run_dir: str | Path,
    train_steps: int = 20,
    naive_sentences: int = 100,
    verbose: bool = True,
    export: bool = True,
    reference: bool = False,
    roof_size: int = 2048,
    xla: bool = False,
) -> dict:
    """Measure training and decoding throughput of a trained run on its own data splits.

    Returns a dict with

    - `roof`: the machine's matmul roof (:func:`matmul_roof` of `roof_size`);
    - `flops_per_target_token`: forward and training FLOPs per target token of the timed training
      batches, by part (:func:`translator.flops.flops_per_target_token`);
    - `train`: target tokens/s of optimizer steps of the run's model, built under the run's
      `train.mixed_precision` policy as the trainer builds it (`precision`);
    - with `reference`: `train_reference`, the plain Keras model of the same shape
      (:mod:`translator.reference_model`) in float32 on the same batches, side by side, and under
      a mixed policy also `train_reference_<policy>`; `reference_parameters`, and the ratios
      `train_vs_reference` (train tokens/s / float32 reference tokens/s) and
      `train_vs_reference_<policy>`;
    - for decoding on the test split, `greedy_b1`, `greedy_b64`, `beam5_b1`, `beam5_b64` and
      `naive` (each with `sentences_per_s` and `tokens_per_s`), and, with `export`
      (SentencePiece runs), `export_greedy_b64` and `export_beam5_b64`: the same sentences
      through the SavedModel export, with the ratios `export_vs_python_greedy` and
      `export_vs_python_beam5`;
    - with `xla`: `greedy_b64_xla` and `beam5_b64_xla`, the same decoding as XLA-compiled loops
      (`decode.xla`), timed after a pass that compiles every batch shape (`warm_up_seconds`),
      and the ratios `xla_vs_graph_greedy` and `xla_vs_graph_beam5`.

    Every throughput entry also has `flops` (useful FLOPs of the timed work), `gflops`,
    `roof_fraction` (of the roof of its `precision`, see :func:`roof_for`) and `roof_precision`.
    `verbose` writes each entry to stderr as it is measured.
    """
    run = RunDir(run_dir)
    translator = Translator.load(run)
    cfg = run.load_config()
    train = read_tsv(run.split("train"))
    test = [p.src for p in read_tsv(run.split("test"))]
    results: dict = {
        "run_dir": str(run.path),
        "config": cfg.name,
        "parameters": int(translator.model.count_params()),
    }

    def report(key: str, value: Any) -> None:
        results[key] = value
        if verbose:
            figures = (
                ", ".join(f"{k} {v}" for k, v in value.items())
                if isinstance(value, dict)
                else value
            )
            print(f"[bench] {key}: {figures}", file=sys.stderr, flush=True)

    roof = matmul_roof(roof_size)
    report("roof", roof)
    src_vocab = translator.src_tokenizer.vocab_size
    tgt_vocab = translator.tgt_tokenizer.vocab_size
    sizes = (cfg.model, src_vocab, tgt_vocab)
    precision = policy_name(cfg.train.mixed_precision)
    subjects: dict[str, TrainingSubject] = {}
    with dtype_policy(precision):  # as the trainer builds and compiles its model
        subjects["train"] = seq2seq_subject(cfg, build_model(*sizes, cfg.train.seed), tgt_vocab)
        if cfg.model.encoder.cell == "rnn":
            # Our ElmanRNN (input projection outside the time loop) beside keras.layers.SimpleRNN.
            subjects["train_keras_simplernn"] = seq2seq_subject(
                cfg, build_with_keras_simple_rnn(*sizes, cfg.train.seed), tgt_vocab
            )
    if reference:
        subjects["train_reference"] = reference_subject(cfg, src_vocab, tgt_vocab, "float32")
        if precision != "float32":
            subjects[f"train_reference_{precision}"] = reference_subject(
                cfg, src_vocab, tgt_vocab, precision
            )
    batches = training_batches(cfg, train, translator, train_steps)
    counts = subjects["train"].counts
    results["flops_per_target_token"] = flops_per_target_token(counts, *batch_lengths(batches))
    for name, figures in training_throughput(subjects, batches, roof=roof).items():
        report(name, figures)
    if "train_keras_simplernn" in results:
        results["elman_vs_simplernn_train"] = round(
            results["train"]["tokens_per_s"] / results["train_keras_simplernn"]["tokens_per_s"], 3
        )
    if reference:
        results["reference_parameters"] = results["train_reference"]["parameters"]
        for key in [k for k in results if k.startswith("train_reference")]:
            results[key.replace("train_reference", "train_vs_reference")] = round(
                results["train"]["tokens_per_s"] / results[key]["tokens_per_s"], 3
            )
    decode_counts = flop_counts(translator.model.config, tgt_vocab)
    b1_sources = test[: max(1, min(len(test), 100))]
    for key, sources, beam, batch in (
        ("greedy_b1", b1_sources, 1, 1),
        ("greedy_b64", test, 1, 64),
        ("beam5_b1", b1_sources, 5, 1),
        ("beam5_b64", test, 5, 64),
    ):
        figures = decoding_throughput(
            translator, sources, counts=decode_counts, roof=roof, beam_size=beam, batch_size=batch
        )
        report(key, figures)
    if xla:
        for name, beam in (("greedy", 1), ("beam5", 5)):
            figures = decoding_throughput(
                translator,
                test,
                counts=decode_counts,
                roof=roof,
                warm_up_all=True,
                beam_size=beam,
                batch_size=64,
                xla=True,
            )
            report(f"{name}_b64_xla", figures)
            results[f"xla_vs_graph_{name}"] = round(
                figures["sentences_per_s"] / results[f"{name}_b64"]["sentences_per_s"], 3
            )
    if export and cfg.tokenizer.type == "sentencepiece":
        for name, beam in (("greedy", 1), ("beam5", 5)):
            key = f"export_{name}_b64"
            figures = export_decoding_throughput(
                run,
                test,
                beam,
                python=results[f"{name}_b64"],
                roof=roof,
                n_best=1,
                batch_size=64,
                length_penalty=cfg.decode.length_penalty,
            )
            report(key, figures)
            results[f"export_vs_python_{name}"] = round(
                figures["sentences_per_s"] / results[f"{name}_b64"]["sentences_per_s"], 3
            )
    if naive_sentences > 0:
        figures = naive_decoding_throughput(
            translator, test[:naive_sentences], cfg, counts=decode_counts, roof=roof
        )
        report("naive", figures)
        results["greedy_b64_vs_naive"] = round(
            results["greedy_b64"]["sentences_per_s"] / results["naive"]["sentences_per_s"], 1
        )
    results["beam5_b64_vs_greedy_b64"] = round(
        results["beam5_b64"]["sentences_per_s"] / results["greedy_b64"]["sentences_per_s"], 3
    )
    return results


RATIOS = (
    "train_vs_reference",
    "elman_vs_simplernn_train",
    "greedy_b64_vs_naive",
    "beam5_b64_vs_greedy_b64",
    "export_vs_python_greedy",
    "export_vs_python_beam5",
    "xla_vs_graph_greedy",
    "xla_vs_graph_beam5",
)


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(results: dict) -> str:
    """The human-readable report of :func:`run_benchmarks`' results: a table of the throughput
    entries (sentences/s, tokens/s, GFLOP/s, fraction of the roof and its precision), then the
    roof, the FLOPs per target token, the parameter counts and the ratios."""
    from tabulate import tabulate  # a dependency of sacrebleu, which the project requires

    rows = []
    for key, value in results.items():
        if not isinstance(value, dict) or "seconds" not in value:
            continue
        rows.append(
            [
                key,
                value.get("precision", "-"),
                _cell(value.get("sentences_per_s"), ",.2f"),
                _cell(value.get("tokens_per_s"), ",.1f"),
                _cell(value.get("gflops"), ",.2f"),
                _cell(value.get("roof_fraction"), ".3f"),
                value.get("roof_precision", "-"),
            ]
        )
    header = ["", "precision", "sentences/s", "tokens/s", "GFLOP/s", "of roof", "roof"]
    lines = [
        tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True, stralign="right")
    ]
    roof = results.get("roof")
    if roof:
        bf16 = roof["bfloat16_gflops"]
        lines.append(
            f"roof: tf.matmul {roof['matrix_size']}x{roof['matrix_size']}: float32 "
            f"{roof['float32_gflops']:,.1f} GFLOP/s, bfloat16 "
            + (f"{bf16:,.1f} GFLOP/s" if bf16 else "unsupported (no native bfloat16 on this CPU)")
        )
    workers = sorted(
        {v["workers"] for v in results.values() if isinstance(v, dict) and "workers" in v}
    )
    if workers:
        shown = "/".join(str(w) for w in workers)
        lines.append(f"decoding: {shown} batches (greedy: windows) at once (decode.workers)")
    per_token = results.get("flops_per_target_token")
    if per_token:
        parts = ", ".join(f"{k} {v / 1e6:,.2f}" for k, v in per_token.items())
        lines.append(f"MFLOP per target token: {parts}")
    if "reference_parameters" in results:
        lines.append(
            f"parameters: ours {results['parameters']:,}, "
            f"reference {results['reference_parameters']:,}"
        )
    for key, value in results.items():
        if key.startswith(RATIOS):
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
