"""Recurrent cells and layers: an Elman cell, a padding-aware bidirectional wrapper, the factory.

The encoder and decoder build their recurrent layers through :func:`make_rnn_layer`, which
returns one of

- :class:`ElmanRNN` (`kind="rnn"`): `h_t = act(W_hx x_t + W_hh h_{t-1} + b)`,
- `keras.layers.GRU` with `reset_after=False` (`kind="gru"`),
- `keras.layers.LSTM` (`kind="lstm"`),

optionally wrapped in :class:`BidirectionalRNN`. Every layer it returns is called as
`layer(x, mask=mask)` on a right-padded batch `x` of shape `[batch, time, features]` and returns
the list `[sequence, *states]` (`[sequence, *forward_states, *backward_states]` when
bidirectional).
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
from keras import ops
from keras.src import backend as keras_backend
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

STATES_PER_CELL = {"rnn": 1, "gru": 1, "lstm": 2}

ELMAN_ACTIVATIONS = ("tanh", "relu")
MERGE_MODES = ("concat", "sum", "ave")


def _check_activation(activation: Any) -> str:
    if activation not in ELMAN_ACTIVATIONS:
        raise ValueError(
            f"invalid activation {activation!r}; valid choices: {', '.join(ELMAN_ACTIVATIONS)}"
        )
    return activation


def _check_merge_mode(merge_mode: Any) -> str:
    if merge_mode not in MERGE_MODES:
        raise ValueError(
            f"invalid merge_mode {merge_mode!r}; valid choices: {', '.join(MERGE_MODES)}"
        )
    return merge_mode


def _is_identity(initializer: Any) -> bool:
    return initializer == "identity" or isinstance(initializer, keras.initializers.Identity)


@keras.saving.register_keras_serializable(package="translator")
class ElmanCell(keras.layers.Layer, DropoutRNNCell):
    """Cell of the vanilla (Elman) RNN: `h_t = act(W_hx x_t + W_hh h_{t-1} + b)`.

    Processes one time step; wrap it in `keras.layers.RNN`, or use :class:`ElmanRNN`, which
    computes `x_t W_hx + b` for all time steps in one matrix product. Weights are stored
    row-major as in Keras: `kernel` (`W_hx`) has shape `[input_dim, units]`,
    `recurrent_kernel` (`W_hh`) `[units, units]` and `bias` `[units]`.

    Args:
        units: positive int, size of the hidden state `h`.
        activation: `"tanh"` (default) or `"relu"`.
        use_bias: whether to add the bias vector `b`.
        kernel_initializer: initializer of `W_hx`. Default `"glorot_uniform"`.
        recurrent_initializer: initializer of `W_hh`. Default `"orthogonal"`. The string
            `"identity"` sets `W_hh = I` and forces the bias to start at zero, whatever
            `bias_initializer` says (the IRNN initialization of Le et al., 2015, meant for
            `activation="relu"`).
        bias_initializer: initializer of `b`. Default `"zeros"`.
        dropout: float in [0, 1], fraction of the input units to drop (one mask per sequence,
            shared by all time steps, as in `keras.layers.SimpleRNNCell`).
        recurrent_dropout: float in [0, 1], fraction of the state units to drop in the
            recurrent product (one mask per sequence).
        seed: random seed for the dropout masks.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: tensor `[batch, input_dim]`, the input `x_t` at one time step.
        states: list holding one tensor `[batch, units]`, the previous state `h_{t-1}`.
        training: Python bool; dropout is only applied when `True`.

    Returns:
        `(h, [h])` with `h` of shape `[batch, units]`.

    Example:

    ```python
    x = np.random.random((2, 5, 3)).astype("float32")
    rnn = keras.layers.RNN(ElmanCell(4), return_sequences=True, return_state=True)
    seq, h = rnn(x)  # seq: (2, 5, 4), h: (2, 4)
    ```
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        units = int(units)
        super().__init__(**kwargs)
        self.units = units
        self.activation_name = _check_activation(activation)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.identity_recurrent = _is_identity(recurrent_initializer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if self.identity_recurrent:
            self.recurrent_initializer = keras.initializers.Identity()
            self.bias_initializer = keras.initializers.Zeros()
        else:
            self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
            self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Creates `kernel [input_dim, units]`, `recurrent_kernel [units, units]`, `bias`."""
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            name="kernel",
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,), name="bias", initializer=self.bias_initializer
            )
        else:
            self.bias = None

    def project_inputs(self, x: Any) -> Any:
        """Returns `x W_hx + b`; `x` is `[..., input_dim]` (e.g. `[B, T, D]`), result `[..., units]`.

        No dropout is applied here: the caller multiplies `x` by the dropout mask first.
        """
        projected = ops.matmul(x, self.kernel)
        if self.bias is not None:
            projected = ops.add(projected, self.bias)
        return projected

    def recurrent_step(
        self, projected_t: Any, states: Any, training: bool = False
    ) -> tuple[Any, Any]:
        """Finishes one step from the projected input.

        Args:
            projected_t: `[batch, units]`, `x_t W_hx + b` from :meth:`project_inputs`.
            states: `[h_{t-1}]` (or the bare tensor), each `[batch, units]`.
            training: apply the recurrent dropout mask when `True`.

        Returns:
            `(h_t, [h_t])` (or `(h_t, h_t)` if `states` was a bare tensor).
        """
        is_list = isinstance(states, (list, tuple))
        h_prev = states[0] if is_list else states
        rec_dp_mask = self.get_recurrent_dropout_mask(h_prev)
        if training and rec_dp_mask is not None:
            h_prev = h_prev * rec_dp_mask
        h = self.activation(projected_t + ops.matmul(h_prev, self.recurrent_kernel))
        return h, ([h] if is_list else h)

    def call(self, inputs: Any, states: Any, training: bool = False) -> tuple[Any, Any]:
        dp_mask = self.get_dropout_mask(inputs)
        if training and dp_mask is not None:
            inputs = inputs * dp_mask
        return self.recurrent_step(self.project_inputs(inputs), states, training=training)

    def get_initial_state(self, batch_size: Any = None) -> list[Any]:
        """Returns `[zeros([batch_size, units])]`."""
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": self.activation_name,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": (
                "identity"
                if self.identity_recurrent
                else keras.initializers.serialize(self.recurrent_initializer)
            ),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="translator")
class ElmanRNN(keras.layers.RNN):
    """Elman RNN layer: `h_t = act(W_hx x_t + W_hh h_{t-1} + b)` over a sequence.

    Same results as `keras.layers.RNN(ElmanCell(...))`, but the input projection
    `x W_hx + b` is computed for all time steps in one `[B*T, D] x [D, units]` matrix product
    before the time loop, which then only does `act(p_t + h_{t-1} W_hh)`. Input dropout uses one
    mask per sequence, shared by all time steps (as `keras.layers.SimpleRNN`).

    Args:
        units: positive int, size of the hidden state.
        activation, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
            dropout, recurrent_dropout, seed: as for :class:`ElmanCell`.
        return_sequences: return the whole output sequence `[B, T, units]` instead of the
            last output `[B, units]`.
        return_state: also return the final state `[B, units]`.
        go_backwards: process the sequence in reverse and return the reversed sequence (as
            Keras; note that with right padding the reversed pass starts on padding, which is
            why :class:`BidirectionalRNN` does not use it).
        stateful, unroll: as for `keras.layers.RNN`.
        **kwargs: base layer arguments (`name`, `dtype`, `zero_output_for_mask`, ...).

    Call arguments:
        sequences: tensor `[batch, time, features]`.
        initial_state: optional list `[h_0]` with `h_0` of shape `[batch, units]`.
        mask: optional boolean `[batch, time]`; a masked step leaves the state unchanged, so
            with right padding the final state is the state at each row's last real token.
        training: Python bool, enables dropout.

    Example:

    ```python
    x = np.random.random((2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    seq, h = ElmanRNN(4, return_sequences=True, return_state=True)(x, mask=mask)
    # seq: (2, 5, 4); h: (2, 4), h[0] == seq[0, 2]
    ```
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        **kwargs: Any,
    ) -> None:
        cell = ElmanCell(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="elman_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.input_spec = [keras.layers.InputSpec(ndim=3)]

    def inner_loop(
        self, sequences: Any, initial_state: Any, mask: Any, training: bool = False
    ) -> tuple[Any, Any, Any]:
        """Projects all time steps at once, then runs the recurrence with `backend.rnn`."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        cell = self.cell
        if training and 0.0 < cell.dropout:
            # Same mask for every time step (cached on the cell by RNN.call).
            dp_mask = cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * ops.expand_dims(dp_mask, axis=1)
        projected = cell.project_inputs(sequences)  # [B, T, units]

        def step(projected_t: Any, states: Any) -> tuple[Any, Any]:
            return cell.recurrent_step(projected_t, list(states), training=training)

        return keras_backend.rnn(
            step,
            projected,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=projected.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )

    def call(
        self, sequences: Any, initial_state: Any = None, mask: Any = None, training: bool = False
    ) -> Any:
        return super().call(sequences, mask=mask, training=training, initial_state=initial_state)

    @property
    def units(self) -> int:
        return self.cell.units

    @property
    def activation(self) -> str:
        return self.cell.activation_name

    @property
    def dropout(self) -> float:
        return self.cell.dropout

    @property
    def recurrent_dropout(self) -> float:
        return self.cell.recurrent_dropout

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        cell_config = self.cell.get_config()
        del config["cell"]
        for key in (
            "units",
            "activation",
            "use_bias",
            "kernel_initializer",
            "recurrent_initializer",
            "bias_initializer",
            "dropout",
            "recurrent_dropout",
            "seed",
        ):
            config[key] = cell_config[key]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElmanRNN:
        return cls(**config)


def _reverse_index(lengths: Any, time_steps: Any) -> Any:
    """Index `[B, T]` that reverses each row's first `lengths[b]` steps and keeps the rest.

    `idx[b, t] = lengths[b] - 1 - t` for `t < lengths[b]`, else `t`; it is its own inverse.
    """
    t = ops.expand_dims(ops.arange(time_steps, dtype="int32"), 0)  # [1, T]
    lengths = ops.expand_dims(lengths, 1)  # [B, 1]
    return ops.where(t < lengths, lengths - 1 - t, t)


def _reverse_padded(x: Any, index: Any) -> Any:
    """Reorders `x [B, T, F]` along time with `index [B, T]` (see :func:`_reverse_index`)."""
    return ops.take_along_axis(x, ops.expand_dims(index, -1), axis=1)


@keras.saving.register_keras_serializable(package="translator")
class BidirectionalRNN(keras.layers.Layer):
    """Bidirectional wrapper for right-padded batches.

    One copy of the layer reads each sentence left to right, a second copy (same config, own
    weights) reads it right to left, starting at the sentence's LAST REAL token: the real tokens
    of every row are reversed in place (padding stays on the right), the backward copy runs
    forwards over that with the same mask, and its output sequence is reversed back. (Keras'
    `Bidirectional` uses `go_backwards=True`, which starts on padding when rows differ in
    length.) The masks must be right-padded (a prefix of `True` per row); without a mask every
    row is full length.

    Args:
        layer: recurrent layer built with `return_sequences=True, return_state=True` and
            `go_backwards=False` (`ElmanRNN`, `keras.layers.GRU`, `keras.layers.LSTM`). It is used
            as the forward layer as is.
        merge_mode: how the two output sequences `y_f`, `y_b` are combined: `"concat"` (last
            axis, default), `"sum"` (`y_f + y_b`) or `"ave"` (`(y_f + y_b) / 2`).
        backward_layer: optional layer for the backward direction (same requirements). Default:
            a copy of `layer` made from `layer.get_config()`, named `backward_<name>`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `[batch, time, features]`, right-padded.
        mask: optional boolean `[batch, time]`.
        training: Python bool, passed to both directions (dropout).
        initial_state: optional list `[*forward_states, *backward_states]`.

    Returns:
        The list `[merged_sequence, *forward_final_states, *backward_final_states]`:
        `merged_sequence` is `[batch, time, 2 * units]` for concat, else `[batch, time, units]`,
        exactly 0 at padded positions; each state is `[batch, units]`, the forward ones taken at
        each row's last real token, the backward ones at its first token.

    Example:

    ```python
    x = np.random.random((2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    bi = BidirectionalRNN(keras.layers.GRU(4, return_sequences=True, return_state=True))
    seq, h_fw, h_bw = bi(x, mask=mask)  # seq: (2, 5, 8), h_fw, h_bw: (2, 4)
    ```
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        merge_mode: str = "concat",
        backward_layer: keras.layers.Layer | None = None,
        **kwargs: Any,
    ) -> None:
        _check_merge_mode(merge_mode)
        super().__init__(**kwargs)
        self._check_wrapped(layer, "layer")
        if backward_layer is None:
            config = layer.get_config()
            base = (
                layer.name[len("forward_") :] if layer.name.startswith("forward_") else layer.name
            )
            config["name"] = f"backward_{base}"
            backward_layer = type(layer).from_config(config)
        else:
            self._check_wrapped(backward_layer, "backward_layer")
        self.forward_layer = layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.num_states = len(layer.state_size)
        if len(backward_layer.state_size) != self.num_states:
            raise ValueError("layer and backward_layer must have the same number of states")
        self.supports_masking = True

    @staticmethod
    def _check_wrapped(layer: Any, what: str) -> None:
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"{what} must be a keras.layers.Layer, got {layer!r}")
        for attr in ("return_sequences", "return_state"):
            if not getattr(layer, attr, False):
                raise ValueError(f"{what} must be built with {attr}=True")
        if getattr(layer, "go_backwards", False):
            raise ValueError(
                f"{what} must have go_backwards=False: BidirectionalRNN reverses each row itself"
            )
        if getattr(layer, "stateful", False):
            raise ValueError(f"{what}: stateful layers are not supported")
        if not hasattr(layer, "state_size"):
            raise ValueError(f"{what} must be a recurrent layer with a `state_size`")

    def build(self, inputs_shape: Any, initial_state_shape: Any = None) -> None:
        if not self.forward_layer.built:
            self.forward_layer.build(inputs_shape)
        if not self.backward_layer.built:
            self.backward_layer.build(inputs_shape)

    def call(
        self, inputs: Any, mask: Any = None, training: bool = False, initial_state: Any = None
    ) -> list[Any]:
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        batch, time_steps = ops.shape(inputs)[0], ops.shape(inputs)[1]
        if mask is None:
            lengths = ops.full((batch,), time_steps, dtype="int32")
        else:
            mask = ops.cast(mask, "bool")
            lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        index = _reverse_index(lengths, time_steps)

        forward_state = backward_state = None
        if initial_state is not None:
            forward_state = list(initial_state[: self.num_states])
            backward_state = list(initial_state[self.num_states :])

        forward = self.forward_layer(
            inputs, mask=mask, training=training, initial_state=forward_state
        )
        backward = self.backward_layer(
            _reverse_padded(inputs, index),
            mask=mask,
            training=training,
            initial_state=backward_state,
        )
        y_f = ops.cast(forward[0], self.compute_dtype)
        y_b = ops.cast(_reverse_padded(backward[0], index), self.compute_dtype)
        if self.merge_mode == "concat":
            merged = ops.concatenate([y_f, y_b], axis=-1)
        elif self.merge_mode == "sum":
            merged = y_f + y_b
        else:
            merged = (y_f + y_b) / 2
        if mask is not None:
            merged = merged * ops.expand_dims(ops.cast(mask, merged.dtype), -1)
        return [merged, *forward[1:], *backward[1:]]

    def compute_output_shape(self, inputs_shape: Any, initial_state_shape: Any = None) -> list:
        sequence_shape, *state_shapes = self.forward_layer.compute_output_shape(inputs_shape)
        sequence_shape = list(sequence_shape)
        if self.merge_mode == "concat" and sequence_shape[-1] is not None:
            sequence_shape[-1] *= 2
        return [tuple(sequence_shape), *state_shapes, *state_shapes]

    def compute_mask(self, inputs: Any, mask: Any = None) -> list:
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        return [mask] + [None] * (2 * self.num_states)

    def get_config(self) -> dict[str, Any]:
        config = {
            "layer": keras.saving.serialize_keras_object(self.forward_layer),
            "merge_mode": self.merge_mode,
            "backward_layer": keras.saving.serialize_keras_object(self.backward_layer),
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> BidirectionalRNN:
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(
            config["layer"], custom_objects=custom_objects
        )
        if config.get("backward_layer") is not None:
            config["backward_layer"] = keras.saving.deserialize_keras_object(
                config["backward_layer"], custom_objects=custom_objects
            )
        return cls(**config)


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
        _check_merge_mode(merge)
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
        if _is_identity(recurrent_initializer):
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
