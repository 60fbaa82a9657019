"""`translator bench`: the exported model's decoding speed, measured beside the Python API's; useful
GFLOP/s and the fraction of the machine's matmul roof; the plain Keras reference model."""

import json
import math

import numpy as np

from .conftest import TINY
from .pipelines.helpers import cli


def test_export_decoding_throughput(tiny_attention_run):
    from translator.benchmark import export_decoding_throughput
    from translator.rundir import RunDir

    sources = ["Das ist gut.", "Wir hatten einen Mordsspaß.", "", "Hallo"] * 5
    # With the Python API's figures of the same sentences: their tokens and FLOPs per second.
    python = {"output_tokens": 100, "flops": 10**9}
    roof = {"matrix_size": 64, "float32_gflops": 10.0, "bfloat16_gflops": None}
    figures = export_decoding_throughput(
        RunDir(tiny_attention_run), sources, 2, python=python, roof=roof, batch_size=8
    )
    assert figures["sentences"] == 20
    assert figures["seconds"] > 0 and figures["sentences_per_s"] > 0
    assert figures["tokens_per_s"] > 0 and figures["precision"] == "float32"
    # `seconds` is rounded to the millisecond, `gflops` is not: 1e9 FLOPs in seconds +- 0.0005
    low, high = 1 / (figures["seconds"] + 0.0005), 1 / max(figures["seconds"] - 0.0005, 1e-6)
    assert 0.99 * low <= figures["gflops"] <= 1.01 * high
    assert math.isclose(figures["roof_fraction"], figures["gflops"] / 10.0, rel_tol=0.01)


def test_matmul_roof_and_bfloat16_support(tmp_path):
    from translator.benchmark import matmul_roof, roof_for
    from translator.precision import cpu_supports_bfloat16

    with_bf16 = tmp_path / "cpuinfo-bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\n")
    without = tmp_path / "cpuinfo"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n\n")
    assert cpu_supports_bfloat16(with_bf16) and not cpu_supports_bfloat16(without)
    assert not cpu_supports_bfloat16(tmp_path / "missing")

    roof = matmul_roof(64, runs=2, cpuinfo=with_bf16)
    assert roof["matrix_size"] == 64
    assert roof["float32_gflops"] > 0 and roof["bfloat16_gflops"] > 0
    roof = matmul_roof(64, runs=2, cpuinfo=without)
    assert roof["float32_gflops"] > 0 and roof["bfloat16_gflops"] is None  # not emulated
    assert roof_for("mixed_bfloat16", roof) == (roof["float32_gflops"], "float32")
    roof = {"float32_gflops": 100.0, "bfloat16_gflops": 200.0}
    assert roof_for("mixed_bfloat16", roof) == (200.0, "bfloat16")
    assert roof_for("float32", roof) == (100.0, "float32")


def _batches(n: int = 2, vocab: int = 300):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        src = rng.integers(3, vocab, (4, 7)).astype(np.int32)
        src[1, 5:] = 0
        tgt = rng.integers(3, vocab, (4, 6)).astype(np.int32)
        tgt[2, 3:] = 0
        tgt_in = np.concatenate([np.ones((4, 1), np.int32), tgt[:, :-1]], axis=1)
        out.append(((src, tgt_in * (tgt != 0)), tgt))
    return out


def test_reference_model_has_our_shape_and_trains():
    """Stock Keras layers only; our parameter count (less the context input of a Bahdanau
    decoder, which stock layers cannot feed back); a finite masked loss."""
    import keras

    from translator.config import load_config
    from translator.models import build_model
    from translator.reference_model import (
        build_reference_model,
        compile_reference_model,
        reference_flop_counts,
        reference_sample_weight,
    )

    for overrides, missing in (
        ([], 0),
        (["model.decoder.attention=luong", "model.decoder.input_feeding=false"], 0),
        (["model.decoder.attention=bahdanau", "model.decoder.input_feeding=false"], 4 * 48 * 48),
    ):
        cfg = load_config(TINY, overrides=overrides)
        ours = build_model(cfg.model, 300, 300).count_params()
        ref = build_reference_model(cfg.model, 300, 300, seed=1)
        assert ours - ref.count_params() == missing, overrides
        assert all(type(layer).__module__.startswith("keras.") for layer in ref.layers)
        if not overrides:  # the tiny config: within 10% (here: the same), and it trains
            assert abs(ref.count_params() - ours) <= 0.1 * ours
            compile_reference_model(ref, cfg.train.learning_rate, cfg.train.clip_norm)
            x, y = _batches(1)[0]
            loss = ref.train_on_batch(x, y, sample_weight=reference_sample_weight(y))
            assert math.isfinite(float(np.asarray(loss).reshape(-1)[0]))
        # Its FLOPs are twice its kernels' weights, as ours are.
        counts = reference_flop_counts(cfg.model, 300)
        kernel = ref.get_layer("output_projection").kernel
        assert counts.output_per_tgt_token == 2 * int(np.prod(kernel.shape))
        decoder = ref.get_layer("decoder_0")
        weights = [w for w in decoder.weights if w.name in ("kernel", "recurrent_kernel")]
        assert counts.decoder_per_tgt_token == 2 * sum(int(np.prod(w.shape)) for w in weights)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_training_throughput_under_the_runs_policy():
    """The model is built under the trainer's policy; the reference in float32 and that policy;
    the global policy is float32 again afterwards."""
    import keras

    from translator.benchmark import (
        dtype_policy,
        reference_subject,
        seq2seq_subject,
        training_throughput,
    )
    from translator.config import load_config
    from translator.models import build_model

    cfg = load_config(TINY, overrides=["train.mixed_precision=mixed_bfloat16"])
    with dtype_policy("mixed_bfloat16"):
        subjects = {"train": seq2seq_subject(cfg, build_model(cfg.model, 300, 300), 300)}
    assert keras.mixed_precision.global_policy().name == "float32"
    subjects["train_reference_bf16"] = reference_subject(cfg, 300, 300, "mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert reference_subject(cfg, 300, 300, "float32").precision == "float32"
    roof = {"matrix_size": 64, "float32_gflops": 50.0, "bfloat16_gflops": 100.0}
    results = training_throughput(subjects, _batches(3), rounds=1, roof=roof)
    for figures in results.values():
        assert figures["precision"] == "mixed_bfloat16" and figures["roof_precision"] == "bfloat16"
    for figures in results.values():
        assert figures["target_tokens"] == 3 * (24 - 3)
        assert figures["gflops"] > 0 and 0 < figures["roof_fraction"] < 1.5


def test_run_benchmarks_reports_flops_roof_and_reference(tiny_attention_run):
    from translator.benchmark import format_report, run_benchmarks

    results = run_benchmarks(
        tiny_attention_run,
        train_steps=3,
        naive_sentences=0,
        verbose=False,
        export=False,
        reference=True,
        roof_size=256,
    )
    roof = results["roof"]
    assert roof["matrix_size"] == 256 and roof["float32_gflops"] > 0
    assert results["flops_per_target_token"]["training"] > 0
    for key in ("train", "train_reference", "greedy_b1", "greedy_b64", "beam5_b1", "beam5_b64"):
        figures = results[key]
        assert figures["precision"] == "float32" and figures["roof_precision"] == "float32", key
        assert figures["flops"] > 0 and figures["gflops"] > 0, key
        assert 0 < figures["roof_fraction"] < 1.5, key
    assert "train_reference_float32" not in results  # the run trains in float32
    assert results["train"]["parameters"] == results["parameters"]
    assert results["reference_parameters"] == results["train_reference"]["parameters"] > 0
    assert results["train_vs_reference"] == round(
        results["train"]["tokens_per_s"] / results["train_reference"]["tokens_per_s"], 3
    )
    # Beam 5 does about 5x greedy's work per output token.
    assert results["beam5_b64"]["flops"] > results["greedy_b64"]["flops"] * (
        results["beam5_b64"]["output_tokens"] / results["greedy_b64"]["output_tokens"]
    )
    report = format_report(results)
    assert "GFLOP/s" in report and "train_reference" in report
    assert "roof: tf.matmul 256x256" in report and "train_vs_reference:" in report
    assert results["greedy_b64"]["workers"] == results["beam5_b64"]["workers"] == 2
    assert "decoding: 2 batches (greedy: windows) at once (decode.workers)" in report


def test_bench_json_alone_prints_only_json(tiny_attention_run):
    """`translator bench RUN --json | jq .`: stdout holds the JSON and nothing else."""
    r = cli(
        "bench",
        tiny_attention_run,
        "--json",
        "--no-export",
        "--naive-sentences",
        "0",
        "--train-steps",
        "2",
        "--roof-size",
        "128",
    )
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert results["roof"]["matrix_size"] == 128
    assert results["train"]["gflops"] > 0 and "roof_fraction" in results["greedy_b64"]
    assert "[bench] train:" in r.stderr  # progress goes to stderr


def test_xla_decoding_throughput_warms_up_every_shape(tiny_attention_run):
    from translator.benchmark import decoding_throughput
    from translator.data.corpus import read_tsv
    from translator.rundir import RunDir
    from translator.translate import Translator

    translator = Translator.load(tiny_attention_run)
    sources = [p.src for p in read_tsv(RunDir(tiny_attention_run).split("test"))][:24]
    graph = decoding_throughput(translator, sources, beam_size=2, batch_size=8)
    xla = decoding_throughput(
        translator, sources, warm_up_all=True, beam_size=2, batch_size=8, xla=True
    )
    assert xla["warm_up_seconds"] > 0 and "warm_up_seconds" not in graph
    assert xla["output_tokens"] == graph["output_tokens"]  # the same outputs
