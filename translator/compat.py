"""The one place that imports from `keras.src` (Keras' private modules).

Keras exposes neither its backend-independent time loop nor the dropout-mask mixin of its RNN cells
publicly; both are used as Keras' own `SimpleRNN`, `GRU` and `LSTM` use them. Checked against Keras
3.15.1 (TensorFlow backend; pyproject requires >= 3.14); if a Keras release moves them, only this
module changes.
"""

from __future__ import annotations

from keras.src.backend import rnn as backend_rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

CHECKED_KERAS_VERSIONS = ("3.15.1",)

__all__ = ["CHECKED_KERAS_VERSIONS", "DropoutRNNCell", "backend_rnn", "build_for_distribution"]


def build_for_distribution(model, strategy, batch) -> None:
    """Build `model`'s metrics and optimizer state under `strategy` from one plain `batch`
    `(x, y)`, and skip Keras' own first-batch build in `fit`.

    Keras 3.15.1 (`TensorFlowTrainer._maybe_symbolic_build`) builds a model under a strategy from
    the MEAN of the first per-replica batches, which fails when replicas get batches of different
    shapes, as length-bucketed batches are. Built here once, the model trains as usual.
    """
    with strategy.scope():
        model._symbolic_build(data_batch=(*batch, None))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    if strategy.extended._in_multi_worker_mode():
        # Keras 3.15.1 reduces the logs of a multi-worker step with `strategy.reduce("MEAN", v,
        # axis=0)`, which fails on scalars: each replica's log values go out with shape [1], so
        # that reduction is their mean over the replicas.
        import tensorflow as tf

        def as_vectors(step):
            def wrapped(data):
                return {k: tf.reshape(v, [1]) for k, v in step(data).items()}

            return wrapped

        model.train_step = as_vectors(model.train_step)
        model.test_step = as_vectors(model.test_step)
