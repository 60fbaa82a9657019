"""The optimizer: Adam whose gradient clipping also holds under `tf.distribute`.

Keras clips gradients by `global_clipnorm` *before* its TensorFlow backend sums them across
replicas, so with two replicas each half-batch gradient is clipped on its own and the update can be
up to twice the clip norm, unlike a step on the whole batch. Here, with more than one replica, the
gradients are summed first and the sum is clipped; with one replica nothing changes.

This overrides two methods of Keras' optimizer (`_clip_gradients`, `_backend_update_step`),
checked against Keras 3.15.1 (see :mod:`translator.compat`).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


class SyncClipping:
    """Mixin for a Keras optimizer: `global_clipnorm` applies to the gradient of the whole
    (global) batch, also when `tf.distribute` splits it across replicas."""

    def _clip_gradients(self, grads):
        if _replicas() > 1 and self.global_clipnorm:
            return grads  # clipped in `_backend_update_step`, once summed
        return super()._clip_gradients(grads)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if _replicas() == 1 or not self.global_clipnorm:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        summed = self._all_reduce_sum_gradients(list(zip(grads, variables, strict=True)))
        clipped = super()._clip_gradients([g for g, _ in summed])
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step,
            self._distribution_strategy,
            list(zip(clipped, [v for _, v in summed], strict=True)),
            learning_rate,
        )


@keras.saving.register_keras_serializable(package="translator")
class SyncClippedAdam(SyncClipping, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with :class:`SyncClipping`."""
