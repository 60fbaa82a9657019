"""translator: recurrent sequence-to-sequence machine translation with Keras 3 (TensorFlow backend).

Example:
    >>> from translator import Translator
    >>> Translator.load("runs/ding-de-en-lstm").translate("Das Auto steht in der Garage.")
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Translator": "translator.translate",
    "ElmanCell": "translator.layers.elman",
    "ElmanRNN": "translator.layers.elman",
    "BidirectionalRNN": "translator.layers.bidirectional",
    "Seq2Seq": "translator.models.seq2seq",
    "load_config": "translator.config",
    "RunDir": "translator.rundir",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # Importing TensorFlow takes seconds; load the heavy modules only when they are used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'translator' has no attribute {name!r}")
