import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """All stages of configs/tiny.yaml, run once for the session (in-process)."""
    from translator.pipelines.stages import STAGES, Context, run_stage

    from translator.config import load_config

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    ctx = Context(load_config(TINY), run_dir, verbose=0)
    for stage in STAGES:
        run_stage(ctx, stage)
    return run_dir


@pytest.fixture(scope="session")
def tiny_attention_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml with Luong attention and 2 epochs (prepare, tokenize, train), trained
    once for the session: the export and serving tests share it."""
    from translator.pipelines.stages import Context, run_stage

    from translator.config import load_config

    config = load_config(TINY, overrides=["model.decoder.attention=luong", "train.epochs=2"])
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-attention"
    ctx = Context(config, run_dir, verbose=0)
    for stage in ("prepare", "tokenize", "train"):
        run_stage(ctx, stage)
    return run_dir


@pytest.fixture(scope="session")
def tiny_attention_export(tiny_attention_run, tmp_path_factory) -> Path:
    """`translator export` of the attention run with beam 4, 3-best, length penalty 0.6, word
    reward 0.5 and batches of 7 (so inputs span several padded batches inside the graph)."""
    from translator.export import export_run

    out = tmp_path_factory.mktemp("exports") / "tiny-attention-beam4"
    return export_run(
        tiny_attention_run,
        out,
        beam_size=4,
        n_best=3,
        length_penalty=0.6,
        batch_size=7,
        word_reward=0.5,
    )
