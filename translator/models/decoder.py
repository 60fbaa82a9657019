"""The decoder: a stack of GRU/LSTM layers started from the context vector, optionally attending.

With `model.decoder.attention` (`bahdanau` or `luong`, see :mod:`translator.layers.attention`), one
step is, with `x` the embedded previous token, `h` the top decoder layer's output, `e` the encoder
outputs and `a` the attentional vector::

    bahdanau: c_t = attend(h_{t-1}, e);  h_t = RNN([x_t; c_t; a_{t-1}]);  a_t = tanh(W_c [h_t; c_t])
    luong:    h_t = RNN([x_t; a_{t-1}]);  c_t = attend(h_t, e);  a_t = tanh(W_c [c_t; h_t])

(`a_{t-1}` only with `input_feeding`, starting from zeros). The Bahdanau step queries attention
with the previous state, as Bahdanau et al. (2015) do; JoeyNMT's RecurrentDecoder queries with the
new state for both kinds, so only the Luong step matches JoeyNMT. Without attention the top layer's
output goes straight to the vocabulary projection.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from translator.compat import backend_rnn
from translator.config import DecoderConfig
from translator.layers import STATES_PER_CELL
from translator.layers.attention import make_attention
from translator.layers.lstm import LSTM, lstm_cell_projected
from translator.layers.rnn import make_rnn_layer
from translator.models.encoder import EncoderOutput


def make_decoder_layers(
    config: DecoderConfig,
    seed: int | None = None,
    kernel_initializer: str = "glorot_uniform",
    forget_bias: float = 1.0,
) -> list[keras.layers.Layer]:
    """The recurrent layers `decoder_0 ... decoder_{n-1}` of `config` (`kernel_initializer` and
    `forget_bias` as in :func:`~translator.models.encoder.make_encoder_layers`)."""
    return [
        make_rnn_layer(
            config.cell,
            config.units,
            recurrent_initializer=config.recurrent_initializer,
            kernel_initializer=kernel_initializer,
            forget_bias=forget_bias,
            recurrent_dropout=config.recurrent_dropout,
            seed=seed,
            name=f"decoder_{i}",
        )
        for i in range(config.num_layers)
    ]


def make_attention_layers(config: DecoderConfig) -> tuple[Any, Any]:
    """`(attention, attention_vector)`: the attention layer and the Dense layer computing `a_t`;
    `(None, None)` without attention (such a model has exactly the weights of one built before
    attention existed)."""
    attention = make_attention(config.attention, config.units, config.attention_score)
    if attention is None:
        return None, None
    return attention, keras.layers.Dense(config.units, activation="tanh", name="attention_vector")


def _is_tensor(x) -> bool:
    return not isinstance(x, tuple | list) and x is not None


class Decoder:
    """One decoder step, and teacher forcing over whole target sequences.

    Like :class:`~translator.models.encoder.Encoder`, it holds no weights of its own: the layers are
    the model's attributes.

    Args:
        config: the `model.decoder` section.
        layers: the layers from :func:`make_decoder_layers`.
        dropout: the dropout layer applied between recurrent layers.
        attention, attention_vector: from :func:`make_attention_layers`.
    """

    def __init__(self, config: DecoderConfig, layers: list, dropout, attention, attention_vector):
        self.config = config
        self.layers = layers
        self.dropout = dropout
        self.attention = attention
        self.attention_vector = attention_vector
        self.n_states = STATES_PER_CELL[config.cell]
        self.input_feeding = attention is not None and config.input_feeding

    @property
    def parallel_attention(self) -> bool:
        """True when teacher forcing can attend for all target positions at once.

        Luong attention without input feeding reads the decoder's output `h_t`, which does not
        depend on any attention, so the decoder layers run over the whole sequence and the
        attention is one batched product; Bahdanau attention and input feeding feed the context
        back into the recurrence, so they run step by step.
        """
        return self.config.attention == "luong" and not self.input_feeding

    def build(self, embedding_dim: int, encoder_size: int) -> None:
        """Creates the attention and recurrent weights: with attention the layers run cell by cell
        and the keys are projected by the encoder side, so nothing calls them on full inputs."""
        units = self.config.units
        self.attention.build((None, units), (None, None, encoder_size))
        in_dim = embedding_dim + self.input_feeding * units
        if self.config.attention == "bahdanau":
            in_dim += encoder_size
        for i, layer in enumerate(self.layers):
            layer.build((None, None, in_dim if i == 0 else units))

    def start(self, outputs, mask, states: list) -> EncoderOutput:
        """The `EncoderOutput` of a batch: encoder `outputs` [B, S, E] and `mask` [B, S], the
        bridge's decoder `states`, the zero attentional vector with input feeding, and the keys."""
        if self.attention is None:
            return EncoderOutput(outputs, mask, states)
        if self.input_feeding:
            states = [*states, ops.zeros_like(states[0])]
        return EncoderOutput(outputs, mask, states, self.attention.project_keys(outputs))

    def _attend(self, query, encoder: EncoderOutput):
        keys = encoder.keys if _is_tensor(encoder.keys) else None
        return self.attention(query, values=encoder.outputs, keys=keys, mask=encoder.mask)

    def input_kernel(self):
        """The first layer's input kernel `W` [emb, 4U] when that layer reads the embedded token
        alone (no attention context, no input feeding) and its step can take `x_t W` given (an
        LSTM with Keras' fused gates, `implementation=2`); else None."""
        layer = self.layers[0]
        fed = self.attention is not None and (
            self.config.attention != "luong" or self.input_feeding
        )
        if fed or not isinstance(layer, LSTM) or layer.cell.implementation != 2:
            return None
        return layer.cell.kernel

    def step(self, y, states: list, encoder: EncoderOutput, training: bool = False, projected=None):
        """The decoder core for one position.

        Args:
            y: [B, emb], the embedded previous target token (None with `projected`).
            states: flat list of decoder states (see `EncoderOutput.states`).
            encoder: the `EncoderOutput` of the batch.
            projected: None, or (inference) the first layer's input product `y W` [B, 4U] (see
                :meth:`input_kernel`), e.g. rows of a table gathered by token.

        Returns:
            `(output [B, units], new_states, attention_weights [B, S] or None)`: the output that
            the vocabulary projection reads (the attentional vector with attention, else the top
            layer's output).
        """
        n, n_layers = self.n_states, len(self.layers)
        recurrent = list(states[: n * n_layers])
        weights = context = None
        kind = self.config.attention
        if self.attention is not None:
            inputs = [y]
            if kind == "bahdanau":
                context, weights = self._attend(recurrent[(n_layers - 1) * n], encoder)  # h_{t-1}
                inputs.append(context)
            if self.input_feeding:
                inputs.append(states[n * n_layers])
            y = ops.concatenate(inputs, axis=-1) if len(inputs) > 1 else y
        new_states = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                y = self.dropout(y, training=training)
            if i == 0 and projected is not None:
                y, st = lstm_cell_projected(layer.cell, projected, recurrent[:n])
            else:
                y, st = layer.cell(y, recurrent[i * n : (i + 1) * n], training=training)
            new_states.extend(st if isinstance(st, list | tuple) else [st])
        if self.attention is None:
            return y, new_states, None
        if kind == "luong":
            context, weights = self._attend(y, encoder)  # h_t
            y = self.attention_vector(ops.concatenate([context, y], axis=-1))
        else:
            y = self.attention_vector(ops.concatenate([y, context], axis=-1))
        if self.input_feeding:
            new_states.append(y)
        return y, new_states, weights

    def step_loop(self, y, mask, encoder: EncoderOutput, training: bool, weights: bool):
        """Runs :meth:`step` over `y` [B, T, emb] in a compiled loop; padded steps (`mask` [B, T]
        False) carry the states. Returns outputs [B, T, units], and with `weights` also the
        attention weights [B, T, S]."""

        def step(y_t, states):
            out, new_states, w = self.step(y_t, list(states), encoder, training=training)
            return ((out, w) if weights else out), new_states

        # The cells draw their recurrent dropout masks here, once per sequence, outside the loop
        # (as `keras.layers.RNN.call` does before its own loop), and forget them afterwards.
        n = self.n_states
        cells = [layer.cell for layer in self.layers if layer.cell.recurrent_dropout]
        if training:
            for i, layer in enumerate(self.layers):
                if layer.cell.recurrent_dropout:
                    layer.cell.get_recurrent_dropout_mask(encoder.states[i * n])
        try:
            _, outputs, _ = backend_rnn(
                step, y, list(encoder.states), mask=mask, zero_output_for_mask=True
            )
        finally:
            for cell in cells:
                cell.reset_recurrent_dropout_mask()
        return outputs

    def sequence(self, y, mask, encoder: EncoderOutput, training: bool = False):
        """Teacher forcing: outputs [B, T, units] for embedded targets `y` [B, T, emb] (`mask`
        [B, T]). Without attention (and for Luong without input feeding) the layers run over the
        whole sequence with Keras' fused kernels; otherwise step by step."""
        if self.attention is not None and not self.parallel_attention:
            return self.step_loop(y, mask, encoder, training, weights=False)
        n = self.n_states
        for i, layer in enumerate(self.layers):
            if i > 0:
                y = self.dropout(y, training=training)
            out = layer(
                y, initial_state=encoder.states[i * n : (i + 1) * n], mask=mask, training=training
            )
            y = out[0]
        if self.attention is not None:  # Luong without input feeding, as in `step`
            context, _ = self._attend(y, encoder)
            y = self.attention_vector(ops.concatenate([context, y], axis=-1))
        return y
