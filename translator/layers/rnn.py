"""The cell registry: one factory for every recurrent layer the encoder and decoder use.

:func:`make_rnn_layer` returns one of

- :class:`~translator.layers.elman.ElmanRNN` (`kind="rnn"`): `h_t = act(W_hx x_t + W_hh h_{t-1} + b)`,
- `keras.layers.GRU` with `reset_after=False` (`kind="gru"`),
- `keras.layers.LSTM` (`kind="lstm"`),

optionally wrapped in :class:`~translator.layers.bidirectional.BidirectionalRNN`. Every layer it returns
is called as `layer(x, mask=mask)` on a right-padded batch `x` of shape `[batch, time, features]` and
returns the list `[sequence, *states]` (`[sequence, *forward_states, *backward_states]` when
bidirectional).
"""

from __future__ import annotations

import keras

from translator.layers import STATES_PER_CELL
from translator.layers.bidirectional import BidirectionalRNN, check_merge_mode
from translator.layers.elman import ElmanRNN, is_identity


def make_rnn_layer(
    kind: str,
    units: int,
    *,
    activation: str = "tanh",
    recurrent_initializer: str = "orthogonal",
    bidirectional: bool = False,
    merge: str = "concat",
    seed: int | None = None,
    name: str | None = None,
) -> keras.layers.Layer:
    """A recurrent layer that returns `[sequence, *states]` (bidirectional: `[seq, *fw, *bw]`).

    Args:
        kind: `"rnn"` (:class:`ElmanRNN`), `"gru"` (`keras.layers.GRU`, `reset_after=False`:
            `h~ = tanh(W [r * h_{t-1}, x_t])`) or `"lstm"` (`keras.layers.LSTM`).
        units: state size of one direction.
        activation: `"tanh"` or `"relu"` for the Elman cell. GRU and LSTM always use tanh
            (and sigmoid gates); any other value raises `ValueError` for them.
        recurrent_initializer: initializer of the recurrent kernel, for every kind. `"identity"`
            (`W_hh = I`, zero bias, the IRNN initialization) is only valid for `"rnn"`.
        bidirectional: wrap the layer in :class:`BidirectionalRNN`.
        merge: `"concat"`, `"sum"` or `"ave"`: how the two directions are merged.
        seed: dropout seed passed to the layer.
        name: layer name (bidirectional: the wrapper's name; the directions are named
            `forward_<name>` and `backward_<name>`).

    Returns:
        A layer called as `layer(x, mask=mask)` with `x` `[batch, time, features]`, returning
        `[sequence [batch, time, units or 2 * units], *states]`; `STATES_PER_CELL[kind]` states
        per direction, each `[batch, units]`.

    Example:

    ```python
    enc = make_rnn_layer("lstm", 8, bidirectional=True, merge="sum")
    seq, h_f, c_f, h_b, c_b = enc(x, mask=mask)  # seq: (batch, time, 8)
    ```
    """
    if kind not in STATES_PER_CELL:
        raise ValueError(f"unknown cell {kind!r}; valid choices: {', '.join(STATES_PER_CELL)}")
    if bidirectional:
        check_merge_mode(merge)
    inner_name = f"forward_{name}" if (bidirectional and name) else name
    if kind == "rnn":
        layer: keras.layers.Layer = ElmanRNN(
            units,
            activation=activation,
            recurrent_initializer=recurrent_initializer,
            return_sequences=True,
            return_state=True,
            seed=seed,
            name=inner_name,
        )
    else:
        if is_identity(recurrent_initializer):
            raise ValueError(
                f"recurrent_initializer='identity' is only valid for the Elman cell "
                f"(kind='rnn'), not {kind!r}"
            )
        if activation != "tanh":
            raise ValueError(
                f"activation {activation!r} is only configurable for the Elman cell "
                f"(kind='rnn'); {kind} uses tanh"
            )
        layer_cls = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
        extra = {} if kind == "lstm" else {"reset_after": False}
        layer = layer_cls(
            units,
            recurrent_initializer=recurrent_initializer,
            return_sequences=True,
            return_state=True,
            seed=seed,
            name=inner_name,
            **extra,
        )
    if bidirectional:
        return BidirectionalRNN(layer, merge_mode=merge, name=name)
    return layer
