"""The vanilla (Elman) recurrent cell and its sequence layer.

`h_t = act(W_hx x_t + W_hh h_{t-1} + b)` with `act` in {tanh, relu}; :class:`ElmanRNN` moves the input
projection out of the time loop.
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
from keras import ops

from translator.compat import DropoutRNNCell, backend_rnn
from translator.layers import ELMAN_ACTIVATIONS


def _check_activation(activation: Any) -> str:
    if activation not in ELMAN_ACTIVATIONS:
        raise ValueError(
            f"invalid activation {activation!r}; valid choices: {', '.join(ELMAN_ACTIVATIONS)}"
        )
    return activation


def is_identity(initializer: Any) -> bool:
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
        self.identity_recurrent = is_identity(recurrent_initializer)
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

        return backend_rnn(
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
