"""Embedding recipes: initialisers, word dropout and an output projection tied to an embedding."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

EMBEDDING_INITIALIZERS = ("uniform", "normal", "glorot_uniform")


def embedding_initializer(kind: str = "uniform", scale: float = 0.05) -> Any:
    """The initializer of an embedding matrix `[vocab, dim]`.

    Args:
        kind: `"uniform"` (`U(-scale, scale)`; Keras' default `Embedding` initializer with
            `scale=0.05`), `"normal"` (`N(0, scale^2)`) or `"glorot_uniform"` (`scale` unused).
        scale: the range or standard deviation.

    Returns:
        `"uniform"` for Keras' default (so such models are configured exactly as before), else a
        Keras initializer.
    """
    if kind == "uniform":
        return "uniform" if scale == 0.05 else keras.initializers.RandomUniform(-scale, scale)
    if kind == "normal":
        return keras.initializers.RandomNormal(stddev=scale)
    if kind == "glorot_uniform":
        return "glorot_uniform"
    raise ValueError(
        f"unknown embedding initializer {kind!r}; valid choices: {', '.join(EMBEDDING_INITIALIZERS)}"
    )


def word_dropout(rate: float, seed: int | None = None, name: str | None = None) -> Any:
    """Word dropout (Sennrich & Zhang, 2019): zeroes whole token embeddings.

    A `keras.layers.Dropout` whose noise is shared along the feature axis: on embeddings
    `[B, T, D]` each token `(b, t)` keeps all of its `D` values (scaled by `1 / (1 - rate)`)
    or none, during training only (Nematus' `dropout_source`/`dropout_target`).

    Example:

    ```python
    drop = word_dropout(0.1, seed=1)
    y = drop(embedded, training=True)  # embedded: (B, T, D); about 10% of the rows are 0
    ```
    """
    return keras.layers.Dropout(rate, noise_shape=(None, None, 1), seed=seed, name=name)


# With at least this many rows, TensorFlow's CPU product `x E^T` gives the same bits as `x K` for
# `K = E^T` computed beforehand (measured for 16 to 320 rows; fewer rows take another kernel).
PRETRANSPOSED_MIN_ROWS = 16


@keras.saving.register_keras_serializable(package="translator")
class TiedOutputProjection(keras.layers.Layer):
    """Output projection whose kernel is an embedding matrix transposed (Press & Wolf, 2017).

    `logits = x E^T + b`: the layer owns only its bias `b [V]`; `E [V, D]` is passed at call time
    (the target `Embedding`'s variable), so the model holds one matrix for both uses and the
    gradients of both add up in it.

    Args:
        vocab_size: V.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[..., D]`.
        embeddings: `[V, D]`, the embedding matrix.

    Returns:
        logits `[..., V]`.

    Example:

    ```python
    proj = TiedOutputProjection(8000)
    logits = proj(y, tgt_embedding.embeddings)  # y: (B, T, 256) -> (B, T, 8000)
    ```
    """

    def __init__(self, vocab_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        # A padding mask on the inputs (the decoder's outputs under a mixed policy carry one) is
        # accepted and not passed on: the logits carry no mask, as before, but Keras no longer
        # warns that the layer "will destroy the mask information".
        self.supports_masking = True

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        """None: the logits carry no mask (the loss and metrics weigh padding themselves)."""
        return None

    def build(self, inputs_shape: tuple, embeddings_shape: tuple | None = None) -> None:
        """Creates `bias [V]` (zeros, as `Dense`)."""
        self.bias = self.add_weight(shape=(self.vocab_size,), name="bias", initializer="zeros")
        self.built = True

    @staticmethod
    def kernel_of(embeddings: Any, dtype: Any) -> Any:
        """The projection's kernel `E^T` [D, V] in `dtype`, from the embeddings `E` [V, D]."""
        return ops.transpose(ops.cast(embeddings, dtype))

    def call(self, inputs: Any, embeddings: Any, kernel: Any = None) -> Any:
        """`kernel` [D, V]: `kernel_of(embeddings)` computed beforehand, which a decoding loop does
        once instead of at every step (inputs [N, D] only).

        Without it the product is `inputs E^T`, which TensorFlow runs as a product with a
        transposed operand: on a CPU, for 16 rows or more, it transposes `E` at every call
        (0.34 ms of a 1.0 ms product at 64 rows, 4,000 x 256). With it, inputs of at least
        `PRETRANSPOSED_MIN_ROWS` rows are multiplied by the kernel as it is; fewer rows keep the
        product with `E` (as fast there, and another kernel: its sums are rounded differently),
        so the logits are the same to the bit either way.
        """
        bias = ops.cast(self.bias, inputs.dtype)
        if kernel is None:
            return ops.matmul(inputs, self.kernel_of(embeddings, inputs.dtype)) + bias
        embeddings = ops.cast(embeddings, inputs.dtype)
        kernel = ops.cast(kernel, inputs.dtype)
        # TensorFlow's product flags, not `ops.matmul`: inside a branch Grappler does not fold
        # a transpose into the product, which would then transpose `E` at every step.
        logits = tf.cond(
            tf.shape(inputs)[0] >= PRETRANSPOSED_MIN_ROWS,
            lambda: tf.matmul(inputs, kernel),
            lambda: tf.matmul(inputs, embeddings, transpose_b=True),
        )
        return logits + bias

    def compute_output_shape(self, inputs_shape: tuple, embeddings_shape: Any = None) -> tuple:
        return (*inputs_shape[:-1], self.vocab_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size}
