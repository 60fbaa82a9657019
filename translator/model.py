"""The encoder–decoder: embeddings, recurrent encoder, bridge, recurrent decoder, output projection.

The model exposes the two operations search needs (see :mod:`translator.search`):

- `encode(src_ids)` -> `EncoderOutput(outputs, mask, states, keys)`, the decoder's initial states;
- `decode_step(tokens, states, encoder)` -> `(logits, new_states)` for one target position.

`call((src_ids, tgt_in_ids))` runs teacher forcing over whole sequences and returns logits.

With `model.decoder.attention` (`bahdanau` or `luong`, see :mod:`translator.attention`) one decoder
step follows JoeyNMT's RecurrentDecoder, with `x` the embedded previous token, `h` the top decoder
layer's output, `e` the encoder outputs and `a` the attentional vector::

    bahdanau: c_t = attend(h_{t-1}, e);  h_t = RNN([x_t; c_t; a_{t-1}]);  a_t = tanh(W_c [h_t; c_t])
    luong:    h_t = RNN([x_t; a_{t-1}]);  c_t = attend(h_t, e);  a_t = tanh(W_c [c_t; h_t])

(`a_{t-1}` only with `input_feeding`, starting from zeros) and `logits_t = W_o a_t + b_o`. Without
attention the decoder is a plain stack whose top output goes straight to the projection, and
teacher forcing runs Keras' fused GRU/LSTM layers.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import keras
from keras import ops
from keras.src import backend as keras_backend

from translator.attention import make_attention
from translator.cells import STATES_PER_CELL, make_rnn_layer
from translator.tokenizers import PAD_ID


class EncoderOutput(NamedTuple):
    """What the encoder hands to the decoder.

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


def _is_tensor(x) -> bool:
    return not isinstance(x, tuple | list) and x is not None


def _merge(a, b, mode: str):
    if mode == "concat":
        return ops.concatenate([a, b], axis=-1)
    if mode == "sum":
        return a + b
    return (a + b) / 2.0


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
        if mode not in ("dense", "last", "zero"):
            raise ValueError(f"init_hidden must be one of dense, last, zero; got {mode!r}")
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


@keras.saving.register_keras_serializable(package="translator")
class Seq2Seq(keras.Model):
    """Recurrent encoder–decoder trained with teacher forcing.

    Args:
        src_vocab_size: source vocabulary size (id 0 is padding).
        tgt_vocab_size: target vocabulary size (id 0 is padding).
        model_config: the `model` section of the config, as a dict (see `translator.config.ModelConfig`).
        seed: seed for dropout.

    Call arguments:
        inputs: `(src_ids [B, S], tgt_in_ids [B, T])`, int, right-padded with 0.

    Returns:
        logits [B, T, tgt_vocab_size].

    Example:
        >>> model = Seq2Seq(8000, 8000, dataclasses.asdict(ModelConfig()))
        >>> logits = model((src, tgt_in))
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        model_config: dict,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.src_vocab_size = int(src_vocab_size)
        self.tgt_vocab_size = int(tgt_vocab_size)
        self.model_config = model_config
        self.seed = seed
        enc, dec = model_config["encoder"], model_config["decoder"]
        self.enc_cfg, self.dec_cfg = enc, dec
        emb = model_config["embedding_dim"]
        self.src_embedding = keras.layers.Embedding(self.src_vocab_size, emb, name="src_embedding")
        self.tgt_embedding = keras.layers.Embedding(self.tgt_vocab_size, emb, name="tgt_embedding")
        self.embedding_dropout = keras.layers.Dropout(
            model_config.get("embedding_dropout", 0.0), seed=seed
        )
        self.encoder_layers = [
            make_rnn_layer(
                enc["cell"],
                enc["units"],
                activation=enc.get("activation", "tanh"),
                recurrent_initializer=enc.get("recurrent_initializer", "orthogonal"),
                bidirectional=enc["bidirectional"],
                merge=enc["merge"],
                seed=seed,
                name=f"encoder_{i}",
            )
            for i in range(enc["num_layers"])
        ]
        self.encoder_dropout = keras.layers.Dropout(enc["dropout"], seed=seed)
        self.bridge = Bridge(
            model_config["init_hidden"],
            enc["cell"],
            dec["cell"],
            dec["num_layers"],
            dec["units"],
            name="bridge",
        )
        self.decoder_layers = [
            make_rnn_layer(dec["cell"], dec["units"], seed=seed, name=f"decoder_{i}")
            for i in range(dec["num_layers"])
        ]
        self.decoder_dropout = keras.layers.Dropout(dec["dropout"], seed=seed)
        self.output_dropout = keras.layers.Dropout(
            model_config.get("output_dropout", 0.0), seed=seed
        )
        self.output_projection = keras.layers.Dense(self.tgt_vocab_size, name="output_projection")
        self.n_dec_states = STATES_PER_CELL[dec["cell"]]
        # Attention (absent keys in older configs mean none): no layer is created without it, so
        # such a model has exactly the weights of a model built before attention existed.
        self.attention_kind = dec.get("attention", "none")
        self.input_feeding = self.attention_kind != "none" and dec.get("input_feeding", True)
        self.attention = make_attention(
            self.attention_kind, dec["units"], dec.get("attention_score", "general")
        )
        if self.attention is not None:
            self.attention_vector = keras.layers.Dense(
                dec["units"], activation="tanh", name="attention_vector"
            )

    @property
    def encoder_output_size(self) -> int:
        """E, the size of the top encoder layer's outputs."""
        enc = self.enc_cfg
        return enc["units"] * (2 if enc["bidirectional"] and enc["merge"] == "concat" else 1)

    # -- the two operations search uses -------------------------------------------------------
    def encode(self, src_ids, training: bool = False) -> EncoderOutput:
        """Encode right-padded source ids [B, S] into outputs, mask and decoder initial states."""
        mask = ops.not_equal(src_ids, PAD_ID)
        x = self.embedding_dropout(self.src_embedding(src_ids), training=training)
        n_enc = STATES_PER_CELL[self.enc_cfg["cell"]]
        final_states = []
        for i, layer in enumerate(self.encoder_layers):
            if i > 0:
                x = self.encoder_dropout(x, training=training)
            out = layer(x, mask=mask, training=training)
            x, states = out[0], list(out[1:])
            if self.enc_cfg["bidirectional"]:
                fw, bw = states[:n_enc], states[n_enc:]
                states = [_merge(f, b, self.enc_cfg["merge"]) for f, b in zip(fw, bw, strict=True)]
            final_states.append(states)
        x = x * ops.expand_dims(ops.cast(mask, x.dtype), -1)
        states = self.bridge(final_states)
        if self.attention is None:
            return EncoderOutput(x, mask, states)
        if self.input_feeding:
            states = [*states, ops.zeros_like(states[0])]
        return EncoderOutput(x, mask, states, self.attention.project_keys(x))

    def _step(self, y, states: list, encoder: EncoderOutput, training: bool = False):
        """The decoder core for one position, shared by `decode_step` and teacher forcing.

        Args:
            y: [B, emb], the embedded previous target token.
            states: flat list of decoder states (see `EncoderOutput.states`).
            encoder: the `EncoderOutput` of the batch.

        Returns:
            `(output [B, units], new_states, attention_weights [B, S] or None)`: the output that
            the vocabulary projection reads (the attentional vector with attention, else the top
            layer's output).
        """
        n, n_layers = self.n_dec_states, len(self.decoder_layers)
        recurrent = list(states[: n * n_layers])
        weights = context = None
        if self.attention is not None:
            keys = encoder.keys if _is_tensor(encoder.keys) else None
            attend = functools.partial(
                self.attention, values=encoder.outputs, keys=keys, mask=encoder.mask
            )
            inputs = [y]
            if self.attention_kind == "bahdanau":
                context, weights = attend(recurrent[(n_layers - 1) * n])  # h_{t-1}, top layer
                inputs.append(context)
            if self.input_feeding:
                inputs.append(states[n * n_layers])
            y = ops.concatenate(inputs, axis=-1) if len(inputs) > 1 else y
        new_states = []
        for i, layer in enumerate(self.decoder_layers):
            if i > 0:
                y = self.decoder_dropout(y, training=training)
            y, st = layer.cell(y, recurrent[i * n : (i + 1) * n], training=training)
            new_states.extend(st if isinstance(st, list | tuple) else [st])
        if self.attention is None:
            return y, new_states, None
        if self.attention_kind == "luong":
            context, weights = attend(y)  # h_t
            y = self.attention_vector(ops.concatenate([context, y], axis=-1))
        else:
            y = self.attention_vector(ops.concatenate([y, context], axis=-1))
        if self.input_feeding:
            new_states.append(y)
        return y, new_states, weights

    def decode_step(self, tokens, states: list, encoder: EncoderOutput, training: bool = False):
        """One decoder step.

        Args:
            tokens: [B] int, the previous target token.
            states: flat list of decoder states, each [B, units].
            encoder: the `EncoderOutput` of the batch.

        Returns:
            `(logits [B, V], new_states)`.
        """
        y, new_states, _ = self._step(self.tgt_embedding(tokens), states, encoder, training)
        logits = self.output_projection(self.output_dropout(y, training=training))
        return logits, new_states

    def decode_step_with_attention(
        self, tokens, states: list, encoder: EncoderOutput, training: bool = False
    ):
        """`decode_step` that also returns the attention weights.

        Returns:
            `(logits [B, V], new_states, attention_weights [B, S])`.
        """
        self._require_attention()
        y, new_states, weights = self._step(self.tgt_embedding(tokens), states, encoder, training)
        logits = self.output_projection(self.output_dropout(y, training=training))
        return logits, new_states, weights

    # -- teacher forcing ------------------------------------------------------------------------
    def _attention_loop(self, tgt_in_ids, encoder: EncoderOutput, training: bool, weights: bool):
        """Runs `_step` over `tgt_in_ids` [B, T] in a compiled loop (`keras.src.backend.rnn`).

        Padded target steps carry the states. Returns the outputs [B, T, units] and, when
        `weights` is true, also the attention weights [B, T, S].
        """
        mask = ops.not_equal(tgt_in_ids, PAD_ID)
        y = self.embedding_dropout(self.tgt_embedding(tgt_in_ids), training=training)

        def step(y_t, states):
            out, new_states, w = self._step(y_t, list(states), encoder, training=training)
            return ((out, w) if weights else out), new_states

        _, outputs, _ = keras_backend.rnn(
            step, y, list(encoder.states), mask=mask, zero_output_for_mask=True
        )
        return outputs

    @property
    def parallel_attention(self) -> bool:
        """True when teacher forcing can attend for all target positions at once.

        Luong attention without input feeding reads the decoder's output `h_t`, which does not
        depend on any attention, so the decoder layers run over the whole sequence and the
        attention is one batched product; Bahdanau attention and input feeding feed the context
        back into the recurrence, so they run step by step.
        """
        return self.attention_kind == "luong" and not self.input_feeding

    def decode_sequence(self, tgt_in_ids, encoder: EncoderOutput, training: bool = False):
        """Teacher-forced decoding of `tgt_in_ids` [B, T]; returns logits [B, T, V]."""
        if self.attention is not None and not self.parallel_attention:
            y = self._attention_loop(tgt_in_ids, encoder, training, weights=False)
            return self.output_projection(self.output_dropout(y, training=training))
        mask = ops.not_equal(tgt_in_ids, PAD_ID)
        y = self.embedding_dropout(self.tgt_embedding(tgt_in_ids), training=training)
        n = self.n_dec_states
        for i, layer in enumerate(self.decoder_layers):
            if i > 0:
                y = self.decoder_dropout(y, training=training)
            out = layer(
                y, initial_state=encoder.states[i * n : (i + 1) * n], mask=mask, training=training
            )
            y = out[0]
        if self.attention is not None:  # Luong without input feeding, as in `_step`
            keys = encoder.keys if _is_tensor(encoder.keys) else None
            context, _ = self.attention(y, values=encoder.outputs, keys=keys, mask=encoder.mask)
            y = self.attention_vector(ops.concatenate([context, y], axis=-1))
        return self.output_projection(self.output_dropout(y, training=training))

    def attention_weights(self, src_ids, tgt_in_ids):
        """Teacher-forced attention weights (inference mode), e.g. for alignment plots.

        Args:
            src_ids: [B, S] int, right-padded source ids.
            tgt_in_ids: [B, T] int, BOS + target ids, right-padded.

        Returns:
            [B, T, S]: row `t` is the attention of the step that predicts target token `t`;
            exactly 0 on source padding (rows at target padding are 0).
        """
        self._require_attention()
        encoder = self.encode(src_ids, training=False)
        _, weights = self._attention_loop(tgt_in_ids, encoder, training=False, weights=True)
        return weights

    def _require_attention(self) -> None:
        if self.attention is None:
            raise ValueError(
                "this model has no attention (model.decoder.attention is none); "
                "train one with model.decoder.attention: bahdanau or luong"
            )

    def call(self, inputs, training: bool = False):
        src_ids, tgt_in_ids = inputs
        return self.decode_sequence(
            tgt_in_ids, self.encode(src_ids, training=training), training=training
        )

    def build(self, input_shape=None):
        if self.built:
            return
        if self.attention is not None:
            # The keys are projected in `encode` and the decoder layers run cell by cell, so
            # their weights are created here, from the sizes the config fixes.
            units, emb = self.dec_cfg["units"], self.model_config["embedding_dim"]
            self.attention.build((None, units), (None, None, self.encoder_output_size))
            in_dim = emb + self.input_feeding * units
            if self.attention_kind == "bahdanau":
                in_dim += self.encoder_output_size
            for i, layer in enumerate(self.decoder_layers):
                layer.build((None, None, in_dim if i == 0 else units))
        dummy = ops.ones((1, 2), dtype="int32")
        self.call((dummy, dummy))
        enc = self.encode(dummy)
        self.decode_step(ops.ones((1,), dtype="int32"), enc.states, enc)
        self.built = True

    def get_build_config(self) -> dict:
        return {"built": True}

    def build_from_config(self, config: dict) -> None:
        self.build()

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "src_vocab_size": self.src_vocab_size,
            "tgt_vocab_size": self.tgt_vocab_size,
            "model_config": self.model_config,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="translator")
class MaskedCrossEntropy(keras.losses.Loss):
    """Sparse cross-entropy from logits, averaged over non-padding target positions only.

    Args:
        label_smoothing: mass spread uniformly over the vocabulary (0 disables).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), y_pred.dtype)
        logp = ops.log_softmax(y_pred, axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(logp, ops.expand_dims(y_true, -1), axis=-1), -1)
        if self.label_smoothing > 0:
            smooth = -ops.mean(logp, axis=-1)
            nll = (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth
        return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="translator")
class MaskedAccuracy(keras.metrics.Metric):
    """Token accuracy over non-padding target positions."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hit * mask))
        self.total.assign_add(ops.sum(mask))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


@keras.saving.register_keras_serializable(package="translator")
class Perplexity(keras.metrics.Metric):
    """exp(mean negative log-likelihood) over non-padding target positions (no label smoothing)."""

    def __init__(self, name: str = "perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.nll = self.add_variable(shape=(), initializer="zeros", name="nll")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        logp = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(logp, ops.expand_dims(y_true, -1), axis=-1), -1)
        self.nll.assign_add(ops.sum(nll * mask))
        self.total.assign_add(ops.sum(mask))

    def result(self):
        return ops.exp(self.nll / ops.maximum(self.total, 1.0))

    def reset_state(self):
        self.nll.assign(0.0)
        self.total.assign(0.0)


def build_model(
    config_model: dict, src_vocab_size: int, tgt_vocab_size: int, seed: int | None = None
) -> Seq2Seq:
    """Build (and create the weights of) a :class:`Seq2Seq` from the `model` config section."""
    model = Seq2Seq(src_vocab_size, tgt_vocab_size, config_model, seed=seed, name="seq2seq")
    model.build()
    return model


def compile_model(
    model: Seq2Seq, learning_rate: float, clip_norm: float, label_smoothing: float
) -> None:
    """Adam with gradient clipping by global norm, masked loss and metrics."""
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=learning_rate, global_clipnorm=clip_norm or None
        ),
        loss=MaskedCrossEntropy(label_smoothing=label_smoothing),
        metrics=[MaskedAccuracy(), Perplexity()],
    )
