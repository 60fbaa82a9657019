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
