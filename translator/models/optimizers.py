"""The optimizer: Adam whose gradient clipping also holds under `tf.distribute`.

Keras clips gradients by `global_clipnorm` *before* its TensorFlow backend sums them across
replicas, so with two replicas each half-batch gradient is clipped on its own and the update can be
up to twice the clip norm, unlike a step on the whole batch. Here, with more than one replica, the
gradients are summed first and the sum is clipped; with one replica nothing changes.

This overrides two methods of Keras' optimizer (`_clip_gradients`, `_backend_update_step`),
checked against Keras 3.15.1 (see :mod:`translator.compat`).

Adam's update itself runs as TensorFlow's fused kernel (`ResourceApplyAdam`, as `tf.keras` 2 did):
Keras 3 writes it as about a dozen operations per variable, each a pass over the variable's size,
which on a CPU cost about 4% of a flagship training step.
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
    """`keras.optimizers.Adam` with :class:`SyncClipping`, its update as one fused kernel."""

    def update_step(self, gradient, variable, learning_rate):
        """Keras' Adam update (the same formula, bias-corrected step size, and state variables)
        in TensorFlow's `ResourceApplyAdam` kernel: three passes over the variable instead of
        Keras' twelve. It computes `1 - beta` in the variable's precision where Keras rounds it
        from a Python float, so results differ from Keras' in the last bits. `amsgrad` keeps
        Keras' update."""
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        if isinstance(variable, keras.Variable):
            variable = variable.value
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)

        def scalar(x):
            return tf.cast(x, dtype)

        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(scalar(self.beta_1), step),
            beta2_power=tf.pow(scalar(self.beta_2), step),
            lr=scalar(learning_rate),
            beta1=scalar(self.beta_1),
            beta2=scalar(self.beta_2),
            epsilon=scalar(self.epsilon),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype),
        )
