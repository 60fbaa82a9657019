"""argparse helpers: `type=` converters for numeric options (a bad value is one clear line, exit
2), and options shared by several commands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(
    kind: type = int, *, minimum: float = 1, maximum: float = math.inf, what: str = ""
) -> Callable[[str], int | float]:
    """A converter to `kind` (int or float) that accepts finite values in [minimum, maximum].

    Example: `p.add_argument("--port", type=number(int, minimum=0, maximum=65535))`.
    """
    noun = what or ("a whole number" if kind is int else "a number")

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            show = (lambda v: f"{int(v):,}") if kind is int else (lambda v: f"{v:g}")
            bounds = (
                f"at least {show(minimum)}"
                if maximum == math.inf
                else f"{show(minimum)} to {show(maximum)}"
            )
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return convert


positive_int = number(int)
non_negative_float = number(float, minimum=0)
positive_seconds = number(float, minimum=1e-9, what="a positive number of seconds")
port = number(int, minimum=0, maximum=65535, what="a port number (0: a free one)")


def add_xla_argument(p: argparse.ArgumentParser) -> None:
    """`--xla`: decode.xla for this command (see the config's decode section)."""
    p.add_argument(
        "--xla",
        action="store_const",
        const=True,
        default=None,
        help="greedy/beam search as XLA-compiled loops: faster on large inputs, but each new "
        "batch shape compiles first (default: decode.xla of the config)",
    )
