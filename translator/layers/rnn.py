"""The cell registry: one factory for every recurrent layer the encoder and decoder use.

:func:`make_rnn_layer` returns one of

- :class:`~translator.layers.elman.ElmanRNN` (`kind="rnn"`): `h_t = act(W_hx x_t + W_hh h_{t-1} + b)`,
- `keras.layers.GRU` with `reset_after=False` (`kind="gru"`),
- :class:`~translator.layers.lstm.LSTM` (`kind="lstm"`): `keras.layers.LSTM` with the input
  projection outside the time loop and a hand-written backward loop,

optionally wrapped in :class:`~translator.layers.bidirectional.BidirectionalRNN`. Every layer it returns
is called as `layer(x, mask=mask)` on a right-padded batch `x` of shape `[batch, time, features]` and
returns the list `[sequence, *states]` (`[sequence, *forward_states, *backward_states]` when
bidirectional).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from translator.layers import STATES_PER_CELL
from translator.layers.bidirectional import BidirectionalRNN, check_merge_mode
from translator.layers.elman import ElmanRNN, is_identity
from translator.layers.lstm import LSTM

KERNEL_INITIALIZERS = ("glorot_uniform", "glorot_uniform_per_gate")


@keras.saving.register_keras_serializable(package="translator")
class GlorotUniformPerGate(keras.initializers.Initializer):
    """Glorot (Xavier) uniform for a kernel `[fan_in, gates * units]` that holds `gates` matrices
    side by side: `U(-a, a)` with `a = sqrt(6 / (fan_in + units))`, the limit of one gate's
    `[fan_in, units]` block (JoeyNMT's `xavier_uniform_n_`). Keras' `glorot_uniform` uses the
    whole kernel's fan-out, `a = sqrt(6 / (fan_in + gates * units))`.

    Args:
        gates: matrices in the kernel (LSTM 4, GRU 3, Elman 1).
        seed: optional seed.
    """

    def __init__(self, gates: int = 4, seed: int | None = None) -> None:
        self.gates = int(gates)
        self.seed = seed

    def __call__(self, shape: tuple, dtype: Any = None) -> Any:
        fan_in, fan_out = shape[0], shape[-1] // self.gates
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        uniform = keras.initializers.RandomUniform(-limit, limit, seed=self.seed)
        return uniform(shape, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {"gates": self.gates, "seed": self.seed}


@keras.saving.register_keras_serializable(package="translator")
class ForgetGateBias(keras.initializers.Initializer):
    """An LSTM bias `[4 * units]` (gates i, f, c, o, Keras' order): `value` for the forget gate,
    0 elsewhere. `ForgetGateBias(1.0)` equals Keras' `unit_forget_bias=True`.

    Args:
        value: the forget-gate bias.
    """

    def __init__(self, value: float = 1.0) -> None:
        self.value = float(value)

    def __call__(self, shape: tuple, dtype: Any = None) -> Any:
        units = shape[0] // 4
        return ops.concatenate(
            [
                ops.zeros((units,), dtype=dtype),
                ops.full((units,), self.value, dtype=dtype),
                ops.zeros((2 * units,), dtype=dtype),
            ]
        )

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


def _kernel_initializer(name: str, gates: int) -> Any:
    if name not in KERNEL_INITIALIZERS:
        raise ValueError(
            f"unknown kernel_initializer {name!r}; valid choices: {', '.join(KERNEL_INITIALIZERS)}"
        )
    return name if name == "glorot_uniform" else GlorotUniformPerGate(gates)


def make_rnn_layer(
    kind: str,
    units: int,
    *,
    activation: str = "tanh",
    recurrent_initializer: str = "orthogonal",
    kernel_initializer: str = "glorot_uniform",
    forget_bias: float = 1.0,
    recurrent_dropout: float = 0.0,
    bidirectional: bool = False,
    merge: str = "concat",
    seed: int | None = None,
    name: str | None = None,
) -> keras.layers.Layer:
    """A recurrent layer that returns `[sequence, *states]` (bidirectional: `[seq, *fw, *bw]`).

    Args:
        kind: `"rnn"` (:class:`ElmanRNN`), `"gru"` (`keras.layers.GRU`, `reset_after=False`:
            `h~ = tanh(W [r * h_{t-1}, x_t])`) or `"lstm"` (:class:`LSTM`, a
            `keras.layers.LSTM` with the same weights and outputs).
        units: state size of one direction.
        activation: `"tanh"` or `"relu"` for the Elman cell. GRU and LSTM always use tanh
            (and sigmoid gates); any other value raises `ValueError` for them.
        recurrent_initializer: initializer of the recurrent kernel, for every kind. `"identity"`
            (`W_hh = I`, zero bias, the IRNN initialization) is only valid for `"rnn"`;
            `"glorot_uniform_per_gate"` is :class:`GlorotUniformPerGate` (JoeyNMT's default).
        kernel_initializer: initializer of the input kernel `[features, gates * units]`:
            `"glorot_uniform"` (Keras' default, fans of the whole kernel) or
            `"glorot_uniform_per_gate"` (:class:`GlorotUniformPerGate`, fans of one gate's block,
            as JoeyNMT's `xavier_uniform_n_`).
        forget_bias: initial LSTM forget-gate bias (`1.0` is Keras' `unit_forget_bias=True`;
            JoeyNMT's two PyTorch biases of 1 add up to 2). Ignored by the other kinds.
        recurrent_dropout: rate of Keras' recurrent dropout (one mask per gate on `h_{t-1}`,
            drawn once per sequence, during training only). With it Keras runs GRU with three
            separate gate products per step (`implementation=1`); :class:`LSTM` runs it in its
            own loops. Neither uses cuDNN with it.
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
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
    if recurrent_initializer == "glorot_uniform_per_gate":
        recurrent_initializer = GlorotUniformPerGate(gates)
    if kind == "rnn":
        layer: keras.layers.Layer = ElmanRNN(
            units,
            activation=activation,
            recurrent_initializer=recurrent_initializer,
            kernel_initializer=_kernel_initializer(kernel_initializer, gates),
            recurrent_dropout=recurrent_dropout,
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
        layer_cls = LSTM if kind == "lstm" else keras.layers.GRU
        extra: dict = {"reset_after": False}
        if kind == "lstm":
            extra = {}
            if forget_bias != 1.0:
                extra = {"unit_forget_bias": False, "bias_initializer": ForgetGateBias(forget_bias)}
        if recurrent_dropout:
            extra["recurrent_dropout"] = recurrent_dropout
        layer = layer_cls(
            units,
            recurrent_initializer=recurrent_initializer,
            kernel_initializer=_kernel_initializer(kernel_initializer, gates),
            return_sequences=True,
            return_state=True,
            seed=seed,
            name=inner_name,
            **extra,
        )
    if bidirectional:
        return BidirectionalRNN(layer, merge_mode=merge, name=name)
    return layer
