"""The bridge: the encoder's final states (the context vector) -> the decoder's initial states."""

from __future__ import annotations

import keras
from keras import ops

from translator.layers import BRIDGES, STATES_PER_CELL


@keras.saving.register_keras_serializable(package="translator")
class Bridge(keras.layers.Layer):
    """Maps the encoder's final states (the context vector) to the decoder's initial states.

    Args:
        mode: `dense` (a tanh Dense layer per decoder layer and state), `last` (pass unchanged;
            sizes must match), or `zero` (zero initial states).
        encoder_cell: `rnn`, `gru` or `lstm`.
        decoder_cell: `gru` or `lstm`.
        decoder_layers: number of decoder layers.
        decoder_units: decoder state size.

    Call arguments:
        encoder_states: list over encoder layers of lists of state tensors, each [B, E].

    Returns:
        A flat list of `decoder_layers * states_per_cell` tensors, each [B, decoder_units].
    """

    def __init__(
        self,
        mode: str,
        encoder_cell: str,
        decoder_cell: str,
        decoder_layers: int,
        decoder_units: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in BRIDGES:
            raise ValueError(f"init_hidden must be one of {', '.join(BRIDGES)}; got {mode!r}")
        self.mode = mode
        self.encoder_cell = encoder_cell
        self.decoder_cell = decoder_cell
        self.decoder_layers = decoder_layers
        self.decoder_units = decoder_units
        self.n_states = STATES_PER_CELL[decoder_cell]
        self.projections = []
        if mode == "dense":
            self.projections = [
                [
                    keras.layers.Dense(decoder_units, activation="tanh", name=f"bridge_{layer}_{k}")
                    for k in range(self.n_states)
                ]
                for layer in range(decoder_layers)
            ]

    def _source(self, states: list, k: int):
        # k == 1 is an LSTM cell state: take the encoder's c when it has one, else its h.
        return states[k] if k < len(states) else states[0]

    def call(self, encoder_states: list) -> list:
        top = encoder_states[-1]
        out = []
        for layer in range(self.decoder_layers):
            if self.mode == "zero":
                zero = ops.zeros((ops.shape(top[0])[0], self.decoder_units), dtype=top[0].dtype)
                out.extend([zero] * self.n_states)
            elif self.mode == "last":
                src = encoder_states[layer] if len(encoder_states) == self.decoder_layers else top
                out.extend(src[: self.n_states])
            else:
                out.extend(
                    self.projections[layer][k](self._source(top, k)) for k in range(self.n_states)
                )
        return out

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "mode": self.mode,
            "encoder_cell": self.encoder_cell,
            "decoder_cell": self.decoder_cell,
            "decoder_layers": self.decoder_layers,
            "decoder_units": self.decoder_units,
        }
