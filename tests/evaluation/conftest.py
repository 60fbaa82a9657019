"""Fixtures of the evaluation tests: two trained models and one CLI evaluation of both.

The models are the session's tiny run and a copy with slightly perturbed weights. The fixtures
are session-scoped so that the evaluation runs once for all the test modules here.
"""

import contextlib
import io
import json
import shutil

import pytest
from translator.pipelines.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
BEAMS = (1, 2)


@pytest.fixture(scope="session")
def runs(tiny_run, tmp_path_factory):
    """(base, noisy): copies of the tiny run, the second with perturbed weights."""
    import keras
    import numpy as np

    import translator.models  # noqa: F401  (registers the custom layers for loading)

    root = tmp_path_factory.mktemp("eval-runs")
    ignore = shutil.ignore_patterns("checkpoints", "tensorboard", "cache")
    base = shutil.copytree(tiny_run, root / "base", ignore=ignore)
    noisy = shutil.copytree(base, root / "noisy")
    model = keras.saving.load_model(noisy / "model.keras", compile=False)
    rng = np.random.default_rng(0)
    for w in model.weights:
        v = w.numpy()
        w.assign(v + rng.normal(0.0, 0.05, v.shape).astype(v.dtype))
    model.save(noisy / "model.keras")
    return base, noisy


@pytest.fixture(scope="session")
def evaluated(runs, tmp_path_factory):
    """One CLI evaluation: 2 models x 2 test sets (TSV and aligned text with an empty source) x 2 beams."""
    base, noisy = runs
    tmp = tmp_path_factory.mktemp("eval-out")
    pairs = (base / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()[:12]
    src, ref = tmp / "text.src", tmp / "text.ref"
    src.write_text("\n".join([""] + [p.split("\t")[0] for p in pairs[:5]]) + "\n", encoding="utf-8")
    ref.write_text(
        "\n".join(["Nothing to translate."] + [p.split("\t")[1] for p in pairs[:5]]) + "\n",
        encoding="utf-8",
    )
    out = tmp / "out"
    argv = [
        "evaluate",
        base,
        noisy,
        "--test",
        base / "data" / "test.tsv",
        "--test",
        f"text={src},{ref}",
    ]
    argv += ["--beam-size", *BEAMS, "--worst", "2", "--output-dir", out]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in argv]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {"out": out, "stdout": stdout.getvalue(), "results": results, "runs": runs}


def reference_lines(row: dict) -> list[str]:
    """The references of a `results.json` row, read again from its test data."""
    from translator.data.corpus import read_text_pair, read_tsv

    spec = row["test_data"]
    pairs = read_text_pair(*spec.split(",")) if "," in spec else read_tsv(spec)
    return [p.tgt for p in pairs]
