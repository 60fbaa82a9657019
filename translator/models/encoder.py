"""The encoder: an embedded source batch -> a stack of recurrent layers -> outputs and final states.

The final states of the stack are the **context vector**; the bridge turns them into the decoder's
initial states (see :mod:`translator.models.seq2seq`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import tensorflow as tf
from keras import ops

from translator.config import EncoderConfig
from translator.layers import STATES_PER_CELL, output_size
from translator.layers.bidirectional import merge
from translator.layers.rnn import make_rnn_layer


class EncoderOutput(NamedTuple):
    """What the encoder hands to the decoder (and what search tiles once per beam).

    outputs: [B, S, E] top encoder layer outputs (0 at padding).
    mask: [B, S] bool, True at real source tokens.
    states: flat list of decoder initial states, each [B, units] (with input feeding the last one
        is the attentional vector, zeros).
    keys: [B, S, A] the attention's key projections of `outputs`, computed once per batch; `()`
        without attention (an empty structure, so `tf.nest` maps over it without a leaf).
    """

    outputs: Any
    mask: Any
    states: list
    keys: Any = ()


def make_encoder_layers(
    config: EncoderConfig,
    seed: int | None = None,
    kernel_initializer: str = "glorot_uniform",
    forget_bias: float = 1.0,
) -> list[keras.layers.Layer]:
    """The recurrent layers `encoder_0 ... encoder_{n-1}` of `config` (see `make_rnn_layer`;
    `kernel_initializer` and `forget_bias` are the model-wide `model.rnn_kernel_initializer` and
    `model.forget_bias`)."""
    return [
        make_rnn_layer(
            config.cell,
            config.units,
            activation=config.activation,
            recurrent_initializer=config.recurrent_initializer,
            kernel_initializer=kernel_initializer,
            forget_bias=forget_bias,
            recurrent_dropout=config.recurrent_dropout,
            bidirectional=config.bidirectional,
            merge=config.merge,
            seed=seed,
            name=f"encoder_{i}",
        )
        for i in range(config.num_layers)
    ]


class Encoder:
    """Runs the encoder stack over an embedded, right-padded source batch.

    The encoder holds no weights of its own: `layers` and `dropout` are attributes of the model that
    owns them (their attribute names there are the weight paths of saved `.keras` files).

    Args:
        config: the `model.encoder` section.
        layers: the layers from :func:`make_encoder_layers`.
        dropout: the dropout layer applied between recurrent layers.

    Call arguments:
        x: [B, S, D] embedded source tokens.
        mask: [B, S] bool, True at real tokens.
        training: Python bool (dropout).

    Returns:
        `(outputs [B, S, E], final_states)`: outputs are 0 at padding; `final_states` has one list
        per layer of `STATES_PER_CELL[cell]` tensors [B, E] (a bidirectional layer's two directions
        merged like its outputs).
    """

    def __init__(self, config: EncoderConfig, layers: list, dropout: keras.layers.Layer):
        self.config = config
        self.layers = layers
        self.dropout = dropout

    @property
    def output_size(self) -> int:
        """E, the size of the top layer's outputs and of every final state."""
        c = self.config
        return output_size(c.units, c.bidirectional, c.merge)

    def input_kernels(self) -> list | None:
        """The first layer's input kernels `W` [D, G] (one per direction) when it can run from
        its inputs' products `x W` (see :meth:`projected_inputs`; LSTM layers), else None."""
        layer = self.layers[0]
        if not getattr(layer, "runs_projected", lambda: False)():
            return None
        if self.config.bidirectional:
            return [layer.forward_layer.cell.kernel, layer.backward_layer.cell.kernel]
        return [layer.cell.kernel]

    def projected_inputs(self, tables: list, src_ids, mask) -> list:
        """The first layer's input products from `tables` (`E W` [V, G] per direction, see
        :meth:`input_kernels`): rows gathered by token, [B, S, G] each; the backward direction's
        by the ids with each row's real tokens reversed, as that direction reads them."""
        xw = [tf.gather(tables[0], src_ids)]
        if len(tables) == 2:
            lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
            reversed_ids = tf.reverse_sequence(src_ids, lengths, seq_axis=1, batch_axis=0)
            xw.append(tf.gather(tables[1], reversed_ids))
        return xw

    def __call__(
        self, x, mask, training: bool = False, projected: list | None = None
    ) -> tuple[Any, list[list]]:
        """See the class docstring; `projected`: instead of `x` (None), the first layer's
        :meth:`projected_inputs` (inference only)."""
        c = self.config
        n_states = STATES_PER_CELL[c.cell]
        final_states = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x, training=training)
            if i == 0 and projected is not None:
                out = layer.run_projected(*projected, mask=mask)
            else:
                out = layer(x, mask=mask, training=training)
            x, states = out[0], list(out[1:])
            if c.bidirectional:
                fw, bw = states[:n_states], states[n_states:]
                states = [merge(f, b, c.merge) for f, b in zip(fw, bw, strict=True)]
            final_states.append(states)
        return x * ops.expand_dims(ops.cast(mask, x.dtype), -1), final_states
