"""Throughput benchmarks of a trained run: training tokens/s and decoding sentences/s.

All figures come from one process, measured side by side, so they can be compared as ratios.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from translator.config import Config
from translator.data.batching import BucketedDataset, pad_batch
from translator.data.corpus import Pair, read_tsv
from translator.data.tokenizers import BOS_ID, EOS_ID
from translator.decoding.search import max_output_lengths
from translator.models import EncoderOutput, build_model, compile_model
from translator.rundir import RunDir
from translator.translate import Translator


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


def training_throughput(cfg: Config, models: dict, batches: list, rounds: int = 2) -> dict:
    """Target tokens/s of optimizer steps over `batches` for each model, measured side by side.

    Models take turns (`rounds` times, after 2 warm-up steps each) so that a noisy machine
    affects all alike; each model's figure is its best round.
    """
    tc = cfg.train
    for model in models.values():
        compile_model(model, tc.learning_rate, tc.clip_norm, tc.label_smoothing)
        for x, y in batches[:2]:
            model.train_on_batch(x, y)
    tokens = sum(int((y != 0).sum()) for _, y in batches)
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            for x, y in batches:
                model.train_on_batch(x, y)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {
        name: {
            "steps": len(batches),
            "target_tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1),
        }
        for name, seconds in best.items()
    }


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


def decoding_throughput(translator: Translator, sources: list[str], **options) -> dict:
    """Sentences/s and output tokens/s of `translator` on `sources` (after a warm-up batch)."""
    translator.translate_hypotheses(sources[: options.get("batch_size", 64)], **options)
    t0 = time.perf_counter()
    hyps = translator.translate_hypotheses(sources, **options)
    seconds = time.perf_counter() - t0
    tokens = sum(len(h[0].tokens) + 1 for h in hyps)
    return {
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


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


def export_decoding_throughput(run: RunDir, sources: list[str], beam_size: int, **options) -> dict:
    """Sentences/s of the run's SavedModel export (`translator export`, decoding fixed at
    `beam_size` and `options`), loaded in this process and called with all `sources` at once
    (the graph sorts and batches them as the Python API does), after a warm-up call."""
    import tempfile

    import tensorflow as tf

    from translator.export import export_run

    with tempfile.TemporaryDirectory() as tmp:
        out = export_run(run, Path(tmp) / "export", beam_size=beam_size, **options)
        fn = tf.saved_model.load(str(out)).signatures["serving_default"]
        fn(text=tf.constant(sources[: options.get("batch_size", 64)]))
        t0 = time.perf_counter()
        fn(text=tf.constant(sources))
        seconds = time.perf_counter() - t0
    return {
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 2),
    }


def naive_decoding_throughput(translator: Translator, sources: list[str], cfg: Config) -> dict:
    """The reference decoder of the Keras `lstm_seq2seq` example: one sentence at a time, one
    `model.predict` call per output token."""
    encoder = _EncodeModel(translator.model, name="naive_encoder")
    step = _StepModel(translator.model, name="naive_step")
    d = cfg.decode
    tokens_out = 0
    t0 = time.perf_counter()
    for text in sources:
        ids = translator.src_tokenizer.encode(text) or [EOS_ID]
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
            if int(token[0]) == EOS_ID:
                break
    seconds = time.perf_counter() - t0
    return {
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 3),
        "tokens_per_s": round(tokens_out / seconds, 2),
    }


def run_benchmarks(
    run_dir: str | Path,
    train_steps: int = 20,
    naive_sentences: int = 100,
    verbose: bool = True,
    export: bool = True,
) -> dict:
    """Measure training and decoding throughput of a trained run on its own data splits.

    Returns a dict with `train` (target tokens/s) and, for decoding on the test split,
    `greedy_b1`, `greedy_b64`, `beam5_b1`, `beam5_b64` and `naive` (each with `sentences_per_s`
    and `tokens_per_s`), and, with `export` (SentencePiece runs), `export_greedy_b64` and
    `export_beam5_b64`: the same sentences through the SavedModel export, with the ratios
    `export_vs_python_greedy` and `export_vs_python_beam5`.
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

    def report(key: str, value: dict) -> None:
        results[key] = value
        if verbose:
            figures = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:>10}: {figures}", flush=True)

    sizes = (
        cfg.model,
        translator.src_tokenizer.vocab_size,
        translator.tgt_tokenizer.vocab_size,
    )
    models = {"train": build_model(*sizes, cfg.train.seed)}
    if cfg.model.encoder.cell == "rnn":
        # Our ElmanRNN (input projection outside the time loop) beside keras.layers.SimpleRNN.
        models["train_keras_simplernn"] = build_with_keras_simple_rnn(*sizes, cfg.train.seed)
    batches = training_batches(cfg, train, translator, train_steps)
    for name, figures in training_throughput(cfg, models, batches).items():
        report(name, figures)
    if "train_keras_simplernn" in results:
        results["elman_vs_simplernn_train"] = round(
            results["train"]["tokens_per_s"] / results["train_keras_simplernn"]["tokens_per_s"], 3
        )
    b1_sources = test[: max(1, min(len(test), 100))]
    report("greedy_b1", decoding_throughput(translator, b1_sources, beam_size=1, batch_size=1))
    report("greedy_b64", decoding_throughput(translator, test, beam_size=1, batch_size=64))
    report("beam5_b1", decoding_throughput(translator, b1_sources, beam_size=5, batch_size=1))
    report("beam5_b64", decoding_throughput(translator, test, beam_size=5, batch_size=64))
    if export and cfg.tokenizer.type == "sentencepiece":
        for name, beam in (("greedy", 1), ("beam5", 5)):
            key = f"export_{name}_b64"
            figures = export_decoding_throughput(
                run, test, beam, n_best=1, batch_size=64, length_penalty=cfg.decode.length_penalty
            )
            report(key, figures)
            results[f"export_vs_python_{name}"] = round(
                figures["sentences_per_s"] / results[f"{name}_b64"]["sentences_per_s"], 3
            )
    if naive_sentences > 0:
        report("naive", naive_decoding_throughput(translator, test[:naive_sentences], cfg))
        results["greedy_b64_vs_naive"] = round(
            results["greedy_b64"]["sentences_per_s"] / results["naive"]["sentences_per_s"], 1
        )
    results["beam5_b64_vs_greedy_b64"] = round(
        results["beam5_b64"]["sentences_per_s"] / results["greedy_b64"]["sentences_per_s"], 3
    )
    if verbose:
        for k in (
            "elman_vs_simplernn_train",
            "greedy_b64_vs_naive",
            "beam5_b64_vs_greedy_b64",
            "export_vs_python_greedy",
            "export_vs_python_beam5",
        ):
            if k in results:
                print(f"{k}: {results[k]}", flush=True)
    return results
