"""The masked loss and metrics: padding (id 0) targets count for nothing."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from translator.data.tokenizers import PAD_ID


def _global_tokens(count):
    """The number of target tokens in the *global* batch (at least 1).

    Under `tf.distribute` each replica sees part of the batch and the replicas' gradients are
    summed (Keras does not rescale a loss that is already a scalar). Dividing each replica's sum by
    the global count (a sum across replicas, `all_reduce`) makes that sum the gradient of the mean
    over all target tokens, exactly as on one device with the whole batch. Outside a strategy
    this is the batch's own count.
    """
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce("sum", count)
    return ops.maximum(count, 1.0)


def _logged_as_global(share):
    """A replica's share of the loss whose value is the global loss divided by the replicas (its
    gradient is the share's own).

    Keras logs `replicas * loss` of each replica, averaged with the replicas' row counts as
    weights. With the share itself that is the global mean only when every replica has as many
    rows; length-bucketed batches differ (a replica of 64 short phrases beside one of 20 long
    sentences), and the logged `loss` and `val_loss` of 2-CPU mirrored training came out at about
    half their value. With every replica's value the same, any weighting gives the global mean.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return share
    replicas = context.num_replicas_in_sync
    total = context.all_reduce("sum", share)  # the loss of the whole global batch
    return share + ops.stop_gradient(total / replicas - share)


@keras.saving.register_keras_serializable(package="translator")
class MaskedCrossEntropy(keras.losses.Loss):
    """Sparse cross-entropy from logits, averaged over non-padding target positions only (of
    the whole batch, also when `tf.distribute` splits it across replicas).

    Args:
        label_smoothing: mass spread uniformly over the vocabulary (0 disables).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """:meth:`call`, without Keras' own reduction: the loss is already the mean over the
        global batch's real tokens. With a padding mask on `y_pred` (the decoder's outputs carry
        one in some models) Keras broadcast the scalar to the mask's shape, reduced it again and
        divided it by the replicas, so under `tf.distribute` the loss, its logged value and the
        gradients were divided by the number of replicas."""
        if sample_weight is not None:
            raise ValueError("MaskedCrossEntropy weighs tokens by the padding mask only")
        return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")  # softmax and loss in float32 (mixed precision)
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        # One fused softmax cross-entropy op (its gradient is softmax - target, no gather): with
        # smoothing, the target puts 1 - eps + eps / V on the label and eps / V elsewhere, so the
        # loss is (1 - eps) * nll + eps * mean over the vocabulary of -log p.
        if self.label_smoothing > 0:
            vocab = ops.shape(y_pred)[-1]
            uniform = self.label_smoothing / ops.cast(vocab, "float32")
            target = ops.one_hot(y_true, vocab) * (1.0 - self.label_smoothing) + uniform
            nll = ops.categorical_crossentropy(target, y_pred, from_logits=True)
        else:
            nll = ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        return _logged_as_global(ops.sum(nll * mask) / _global_tokens(ops.sum(mask)))

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
        # tf.argmax: keras.ops.argmax first rewrites every -0.0 of a float tensor, four more
        # passes over the [N, V] logits each step (2-5% of a flagship CPU training step).
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        hit = ops.cast(ops.equal(predicted, y_true), "float32")
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
