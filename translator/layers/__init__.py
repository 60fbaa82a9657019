"""Recurrent layers, attention and the bridge (Keras layers; none of them knows the config).

- `elman.py`: the vanilla cell `ElmanCell` and its sequence layer `ElmanRNN`;
- `bidirectional.py`: `BidirectionalRNN` for right-padded batches and the merge of its directions;
- `rnn.py`: `make_rnn_layer`, the one factory for `rnn`, `gru` and `lstm` layers;
- `attention.py`: Bahdanau and Luong attention;
- `bridge.py`: encoder final states -> decoder initial states.

This file names what a config may choose and the sizes that follow from it. It imports no Keras,
so a config is validated without loading TensorFlow.
"""

from __future__ import annotations

STATES_PER_CELL = {"rnn": 1, "gru": 1, "lstm": 2}
CELLS = tuple(STATES_PER_CELL)
DECODER_CELLS = ("gru", "lstm")
ELMAN_ACTIVATIONS = ("tanh", "relu")
MERGE_MODES = ("concat", "sum", "ave")
ATTENTIONS = ("none", "bahdanau", "luong")
LUONG_SCORES = ("general", "dot")
BRIDGES = ("dense", "last", "zero")


def output_size(units: int, bidirectional: bool = False, merge: str = "concat") -> int:
    """Size of a recurrent layer's outputs and (merged) states: `2 * units` for a bidirectional
    layer merged by `concat`, else `units`."""
    return units * (2 if bidirectional and merge == "concat" else 1)
