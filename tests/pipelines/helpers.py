"""Shared helpers of the pipeline tests: the CLI run as a subprocess."""

import os
import subprocess
import sys


def cli(*args, input=None, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "translator.pipelines.cli", *map(str, args)],
        capture_output=True,
        text=True,
        input=input,
        env=env,
        cwd=cwd,
        timeout=600,
    )
