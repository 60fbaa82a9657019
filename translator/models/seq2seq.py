"""The encoder–decoder model: embeddings, encoder, bridge, decoder, output projection.

`Seq2Seq` owns every layer (its attribute names are the weight paths of saved `.keras` files, so
they stay as they are) and composes the computation of :class:`~translator.models.encoder.Encoder`,
:class:`~translator.layers.bridge.Bridge` and :class:`~translator.models.decoder.Decoder`:

- `encode(src_ids)` -> `EncoderOutput(outputs, mask, states, keys)`;
- `decode_step(tokens, states, encoder)` -> `(logits, new_states)` for one target position;
- `call((src_ids, tgt_in_ids))` -> logits, teacher forcing over whole sequences.

Search reaches a model only through :class:`translator.decoding.contract.Seq2SeqStepModel`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import keras
import tensorflow as tf
from keras import ops

from translator.config import ConfigError, ModelConfig, model_config_from_dict
from translator.data.tokenizers import PAD_ID
from translator.layers.bridge import Bridge
from translator.layers.embedding import TiedOutputProjection, embedding_initializer, word_dropout
from translator.models.decoder import Decoder, make_attention_layers, make_decoder_layers
from translator.models.encoder import Encoder, EncoderOutput, make_encoder_layers
from translator.models.losses import MaskedAccuracy, MaskedCrossEntropy, Perplexity

# Tables larger than this (all together) are not made: the products stay per token.
MAX_INPUT_TABLE_BYTES = 256 * 2**20


class InputTables(NamedTuple):
    """Embeddings times the first recurrent layers' input kernels, for inference with weights
    that do not change (see :meth:`Seq2Seq.input_tables`).

    encoder: None, or `[E_src W]` (`[E_src W_f, E_src W_b]` bidirectional), each [V_src, G].
    decoder: None, or `E_tgt W` [V_tgt, 4U].
    """

    encoder: list | None = None
    decoder: Any = None


@keras.saving.register_keras_serializable(package="translator")
class Seq2Seq(keras.Model):
    """Recurrent encoder–decoder trained with teacher forcing.

    Args:
        src_vocab_size: source vocabulary size (id 0 is padding).
        tgt_vocab_size: target vocabulary size (id 0 is padding).
        model_config: the `model` section of the config, a `ModelConfig` or its dict.
        seed: seed for dropout.

    Call arguments:
        inputs: `(src_ids [B, S], tgt_in_ids [B, T])`, int, right-padded with 0.

    Returns:
        logits [B, T, tgt_vocab_size].

    Example:
        >>> model = build_model(ModelConfig(), 8000, 8000)
        >>> logits = model((src, tgt_in))
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        model_config: ModelConfig | dict,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model_config, dict):
            model_config = model_config_from_dict(model_config)
        self.src_vocab_size = int(src_vocab_size)
        self.tgt_vocab_size = int(tgt_vocab_size)
        self.config = cfg = model_config
        self.seed = seed
        emb = cfg.embedding_dim
        if cfg.tied_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                f"model.tied_embeddings: source and target share one embedding matrix, so they "
                f"need one vocabulary; got src_vocab_size {self.src_vocab_size} and "
                f"tgt_vocab_size {self.tgt_vocab_size} (set tokenizer.joint_vocab: true, or "
                f"model.tied_embeddings: false)"
            )
        init = embedding_initializer(cfg.embedding_initializer, cfg.embedding_init_scale)
        rnn_init = {
            "kernel_initializer": cfg.rnn_kernel_initializer,
            "forget_bias": cfg.forget_bias,
        }
        # The layers, in the order and under the names of every saved model. With tied
        # embeddings `tgt_embedding` is `src_embedding` (saved once, under `src_embedding`).
        self.src_embedding = keras.layers.Embedding(
            self.src_vocab_size, emb, embeddings_initializer=init, name="src_embedding"
        )
        self.tgt_embedding = (
            self.src_embedding
            if cfg.tied_embeddings
            else keras.layers.Embedding(
                self.tgt_vocab_size, emb, embeddings_initializer=init, name="tgt_embedding"
            )
        )
        self.embedding_dropout = keras.layers.Dropout(cfg.embedding_dropout, seed=seed)
        self.src_word_dropout = word_dropout(cfg.src_word_dropout, seed=seed)
        self.tgt_word_dropout = word_dropout(cfg.tgt_word_dropout, seed=seed)
        self.encoder_layers = make_encoder_layers(cfg.encoder, seed, **rnn_init)
        self.encoder_dropout = keras.layers.Dropout(cfg.encoder.dropout, seed=seed)
        dec = cfg.decoder
        self.bridge = Bridge(
            cfg.init_hidden, cfg.encoder.cell, dec.cell, dec.num_layers, dec.units, name="bridge"
        )
        self.decoder_layers = make_decoder_layers(dec, seed, **rnn_init)
        self.decoder_dropout = keras.layers.Dropout(dec.dropout, seed=seed)
        self.output_dropout = keras.layers.Dropout(cfg.output_dropout, seed=seed)
        if cfg.tied_softmax:
            self.output_projection = TiedOutputProjection(
                self.tgt_vocab_size, name="output_projection"
            )
        else:
            self.output_projection = keras.layers.Dense(
                self.tgt_vocab_size, name="output_projection"
            )
        self.attention, self.attention_vector = make_attention_layers(dec)
        # The computation over those layers.
        self.encoder = Encoder(cfg.encoder, self.encoder_layers, self.encoder_dropout)
        self.decoder = Decoder(
            dec, self.decoder_layers, self.decoder_dropout, self.attention, self.attention_vector
        )

    @property
    def encoder_output_size(self) -> int:
        """E, the size of the top encoder layer's outputs."""
        return self.encoder.output_size

    @property
    def parallel_attention(self) -> bool:
        """See :attr:`Decoder.parallel_attention`."""
        return self.decoder.parallel_attention

    @tf.autograph.experimental.do_not_convert
    def input_tables(self, max_bytes: int = MAX_INPUT_TABLE_BYTES) -> InputTables:
        """Tables of every token's product with the first encoder and decoder layers' input
        kernels, `E W` [V, G], for decoding with weights that do not change: a step then gathers
        its tokens' rows instead of multiplying their embeddings (`x_t W`), which is 0.5 of the
        flagship's 2.4 MFLOP per source token in each encoder direction and 0.5 of the decoder's
        1.4 per output token. The rows are the same to the bit as those products (TensorFlow's CPU
        product sums each row alike whatever the number of rows: tested), so outputs do not
        change.

        Only for LSTM layers that can take the product given (see `Encoder.input_kernels` and
        `Decoder.input_kernel`), a float32 compute dtype, and tables of at most `max_bytes`
        together (the encoder's first); a side without a table is None. Computed from the
        current weights: stale once the weights change."""
        if self.compute_dtype != "float32":
            return InputTables()
        budget = max_bytes

        def tables(embeddings, kernels):
            nonlocal budget
            size = sum(int(embeddings.shape[0]) * int(k.shape[1]) * 4 for k in kernels)
            if size > budget:
                return None
            budget -= size
            return [ops.matmul(embeddings, k) for k in kernels]

        enc_kernels, dec_kernel = self.encoder.input_kernels(), self.decoder.input_kernel()
        encoder = tables(self.src_embedding.embeddings, enc_kernels) if enc_kernels else None
        decoder = (
            tables(self.tgt_embedding.embeddings, [dec_kernel]) if dec_kernel is not None else None
        )
        return InputTables(encoder, decoder[0] if decoder else None)

    def encode(
        self, src_ids, training: bool = False, tables: InputTables | None = None
    ) -> EncoderOutput:
        """Encode right-padded source ids [B, S] into outputs, mask and decoder initial states
        (`tables`: :meth:`input_tables`, inference only)."""
        mask = ops.not_equal(src_ids, PAD_ID)
        if tables is not None and tables.encoder is not None and not training:
            projected = self.encoder.projected_inputs(tables.encoder, src_ids, mask)
            outputs, final_states = self.encoder(None, mask, projected=projected)
        else:
            x = self.src_word_dropout(self.src_embedding(src_ids), training=training)
            x = self.embedding_dropout(x, training=training)
            outputs, final_states = self.encoder(x, mask, training=training)
        return self.decoder.start(outputs, mask, self.bridge(final_states))

    def output_kernel(self):
        """With `tied_softmax` and a float32 compute dtype, the output projection's kernel
        [D, V] (the target embeddings transposed) for a decoding loop to compute once and pass to
        :meth:`decode_step`; None otherwise (a `Dense` kernel is already [D, V]).

        Under a mixed policy (training's validation decoding) the products with the transposed
        kernel round differently from those of `y E^T` in bfloat16 (78 of 1,000 greedy outputs
        changed), so there the projection stays as it was and validation scores, and the model
        they select, are those of before."""
        if not self.config.tied_softmax or self.compute_dtype != "float32":
            return None
        return TiedOutputProjection.kernel_of(self.tgt_embedding.embeddings, self.compute_dtype)

    def _logits(self, y, training: bool, output_kernel=None):
        """Logits [..., V] of decoder outputs y [..., units] (`output_kernel`: see
        :meth:`output_kernel`)."""
        y = self.output_dropout(y, training=training)
        if self.config.tied_softmax:
            return self.output_projection(y, self.tgt_embedding.embeddings, kernel=output_kernel)
        return self.output_projection(y)

    def decode_step(
        self,
        tokens,
        states: list,
        encoder: EncoderOutput,
        training: bool = False,
        output_kernel=None,
        input_table=None,
    ):
        """One decoder step.

        Args:
            tokens: [B] int, the previous target token.
            states: flat list of decoder states, each [B, units].
            encoder: the `EncoderOutput` of the batch.
            output_kernel: None, or :meth:`output_kernel` computed once outside the loop.
            input_table: None, or (inference) the decoder table of :meth:`input_tables`.

        Returns:
            `(logits [B, V], new_states)`.
        """
        if input_table is not None and not training:
            projected = tf.gather(input_table, tokens)
            y, new_states, _ = self.decoder.step(None, states, encoder, projected=projected)
        else:
            y, new_states, _ = self.decoder.step(
                self.tgt_embedding(tokens), states, encoder, training
            )
        return self._logits(y, training, output_kernel), new_states

    def decode_step_with_attention(
        self, tokens, states: list, encoder: EncoderOutput, training: bool = False
    ):
        """`decode_step` that also returns the attention weights [B, S] (attention models)."""
        y, new_states, weights = self.decoder.step(
            self.tgt_embedding(tokens), states, encoder, training
        )
        return self._logits(y, training), new_states, weights

    def decode_sequence(self, tgt_in_ids, encoder: EncoderOutput, training: bool = False):
        """Teacher-forced decoding of `tgt_in_ids` [B, T]; returns logits [B, T, V]."""
        mask = ops.not_equal(tgt_in_ids, PAD_ID)
        y = self.tgt_word_dropout(self.tgt_embedding(tgt_in_ids), training=training)
        y = self.embedding_dropout(y, training=training)
        return self._logits(self.decoder.sequence(y, mask, encoder, training), training)

    def attention_weights(self, src_ids, tgt_in_ids):
        """Teacher-forced attention weights (inference mode), e.g. for alignment plots.

        Args:
            src_ids: [B, S] int, right-padded source ids.
            tgt_in_ids: [B, T] int, BOS + target ids, right-padded.

        Returns:
            [B, T, S]: row `t` is the attention of the step that predicts target token `t`;
            exactly 0 on source padding (rows at target padding are 0).
        """
        if self.attention is None:
            raise ValueError(
                "this model has no attention (model.decoder.attention is none); "
                "train one with model.decoder.attention: bahdanau or luong"
            )
        encoder = self.encode(src_ids, training=False)
        mask = ops.not_equal(tgt_in_ids, PAD_ID)
        y = self.tgt_embedding(tgt_in_ids)
        _, weights = self.decoder.step_loop(y, mask, encoder, training=False, weights=True)
        return weights

    def call(self, inputs, training: bool = False):
        src_ids, tgt_in_ids = inputs
        return self.decode_sequence(
            tgt_in_ids, self.encode(src_ids, training=training), training=training
        )

    def build(self, input_shape=None):
        if self.built:
            return
        if self.attention is not None:
            self.decoder.build(self.config.embedding_dim, self.encoder_output_size)
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
            "model_config": dataclasses.asdict(self.config),
            "seed": self.seed,
        }


def build_model(
    model_config: ModelConfig | dict,
    src_vocab_size: int,
    tgt_vocab_size: int,
    seed: int | None = None,
) -> Seq2Seq:
    """Build (and create the weights of) a :class:`Seq2Seq` from the `model` config section."""
    model = Seq2Seq(src_vocab_size, tgt_vocab_size, model_config, seed=seed, name="seq2seq")
    model.build()
    return model


def compile_model(
    model: Seq2Seq,
    learning_rate: float,
    clip_norm: float,
    label_smoothing: float,
    accumulate_steps: int = 1,
) -> None:
    """Adam with gradient clipping by global norm (of the whole batch, also across replicas),
    optionally averaging the gradients of `accumulate_steps` batches per update; masked loss and
    metrics. Under a `mixed_float16` policy Keras wraps the optimizer in loss scaling."""
    from translator.models.optimizers import SyncClippedAdam

    model.compile(
        optimizer=SyncClippedAdam(
            learning_rate=learning_rate,
            global_clipnorm=clip_norm or None,
            gradient_accumulation_steps=accumulate_steps if accumulate_steps > 1 else None,
        ),
        loss=MaskedCrossEntropy(label_smoothing=label_smoothing),
        metrics=[MaskedAccuracy(), Perplexity()],
    )
