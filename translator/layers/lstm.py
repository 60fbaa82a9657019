"""`LSTM`: Keras' LSTM whose time loops do only the recurrent product.

(It keeps the name `LSTM`: Keras saves the layers of a list under their class names in snake case,
so the weights of every saved model stay at `.../lstm/...` and load either way.)

On a CPU Keras runs `keras.layers.LSTM` as a loop (`backend.rnn`) whose every step multiplies that
step's inputs by the input kernel (`x_t W`) as well as the previous state by the recurrent kernel
(`h_{t-1} R`), and TensorFlow differentiates that loop step by step: four small products per step
in the backward loop (`dx_t`, `dh_{t-1}`, and the two kernels' gradients accumulated step by step).

`LSTM` does what cuDNN does, in TensorFlow ops:

- forward: `x W` for all steps at once (one `[B*T, F] x [F, 4U]` product), then a loop that only
  does `h_{t-1} R` and the gates, and keeps the gates for the backward pass;
- backward (a custom gradient): a loop that only does `dz_t R^T`, then the kernels' gradients as
  two products over all steps at once (`X^T dZ`, `H_{t-1}^T dZ`).

Same weights and equations as `keras.layers.LSTM`, with the same operations in the same order in
the forward pass, so a saved model gives the same outputs; the gradients are the same up to the
order of floating-point sums. With recurrent dropout (Keras' one mask `m_k` per gate) the loops
do `(h_{t-1} * m_k) R_k` for the four gates as one batched product (`[4, B, U] x [4, U, U]`), and
the recurrent kernel's gradient is one batched product over all steps. The TensorFlow backend is
the point here (`tf.while_loop`, `tf.custom_gradient`).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops


def _recurrent_product(h, kernel):
    """`h @ kernel` in the kernel's dtype (bfloat16 under mixed precision), returned in `h`'s."""
    if h.dtype == kernel.dtype:
        return tf.matmul(h, kernel)
    return tf.cast(tf.matmul(tf.cast(h, kernel.dtype), kernel), h.dtype)


def _per_gate(kernel):
    """[U, 4U] -> [4, U, U]: the recurrent kernel's four gate blocks, for a batched product."""
    units = tf.shape(kernel)[0]
    return tf.transpose(tf.reshape(kernel, [units, 4, units]), [1, 0, 2])


def _gates_product(h, kernel, masks, per_gate):
    """The recurrent product `[B, 4U]` of `h` [B, U]: `h @ kernel`, or with recurrent dropout
    masks [4, B, U] each gate's block of the product from its own masked state, `(h * m_k) @ R_k`
    (Keras' `implementation=1`), as one batched product over the gates (`per_gate` [4, U, U])."""
    if masks is None:
        return _recurrent_product(h, kernel)
    z4 = _recurrent_product(h[None] * masks, per_gate)  # [4, B, U]
    return tf.reshape(tf.transpose(z4, [1, 0, 2]), [tf.shape(h)[0], -1])


def _loop_forward(xw, h0, c0, mask, recurrent_kernel, bias, keep: bool, masks=None):
    """The forward recurrence over time-major projected inputs (states and gates in `xw`'s dtype,
    the recurrent product in the kernel's).

    Args:
        xw: [T, B, 4U], the inputs times the input kernel (`x_t W`, no bias).
        h0, c0: [B, U], the initial states.
        mask: [T, B, 1] bool, False at padding (the states carry over there).
        recurrent_kernel: [U, 4U]; bias: [4U] or None.
        keep: also return the activated gates [T, B, 4U] (for the backward pass).
        masks: recurrent dropout masks [4, B, U] (one per gate, the same at every step; in
            `xw`'s dtype) or None.

    Returns:
        `(h [T, B, U], c [T, B, U], gates [T, B, 4U] or None)`; `h[t]` is also the output at `t`.
    """
    steps = tf.shape(xw)[0]
    hs = tf.TensorArray(xw.dtype, size=steps)
    cs = tf.TensorArray(xw.dtype, size=steps)
    gs = tf.TensorArray(xw.dtype, size=steps if keep else 0, dynamic_size=not keep)
    per_gate = None if masks is None else _per_gate(recurrent_kernel)

    def body(t, h, c, hs, cs, gs):
        z = tf.add(xw[t], _gates_product(h, recurrent_kernel, masks, per_gate))
        if bias is not None:
            z = tf.add(z, bias)
        z0, z1, z2, z3 = tf.split(z, 4, axis=1)
        i = tf.sigmoid(z0)
        f = tf.sigmoid(z1)
        g = tf.tanh(z2)
        c_new = f * c + i * g
        o = tf.sigmoid(z3)
        h_new = o * tf.tanh(c_new)
        m = mask[t]
        h_new = tf.where(m, h_new, h)
        c_new = tf.where(m, c_new, c)
        if keep:
            gs = gs.write(t, tf.concat([i, f, g, o], axis=1))
        return t + 1, h_new, c_new, hs.write(t, h_new), cs.write(t, c_new), gs

    _, _, _, hs, cs, gs = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), h0, c0, hs, cs, gs)
    )
    return hs.stack(), cs.stack(), (gs.stack() if keep else None)


def _loop_backward(dh_seq, dh_last, dc_last, c, c_prev, gates, mask, recurrent_kernel, masks=None):
    """The backward recurrence: `dz_t` for every step and the initial states' gradients.

    Args:
        dh_seq: [T, B, U], the gradient of the outputs; `dh_last`, `dc_last`: [B, U], of the
            final states.
        c: [T, B, U] and `gates` [T, B, 4U] from the forward loop; `c_prev` [T, B, U]: `c`
            shifted by one step, starting from the initial state.
        mask: [T, B, 1] bool; recurrent_kernel: [U, 4U].
        masks: the forward loop's recurrent dropout masks [4, B, U], or None.

    Returns:
        `(dz [T, B, 4U], dh0 [B, U], dc0 [B, U])`.
    """
    steps = tf.shape(dh_seq)[0]
    dzs = tf.TensorArray(dh_seq.dtype, size=steps)
    rt = tf.transpose(recurrent_kernel)  # [4U, U]
    per_gate_t = None if masks is None else tf.transpose(_per_gate(recurrent_kernel), [0, 2, 1])

    def back_product(dz):
        """`dz` [B, 4U] -> the gradient of `h_{t-1}` [B, U] through the recurrent product."""
        if masks is None:
            return _recurrent_product(dz, rt)
        dz4 = tf.transpose(tf.reshape(dz, [tf.shape(dz)[0], 4, -1]), [1, 0, 2])  # [4, B, U]
        return tf.reduce_sum(_recurrent_product(dz4, per_gate_t) * masks, axis=0)

    def body(t, dh, dc, dzs):
        m = mask[t]
        dh_t = dh + dh_seq[t]
        i, f, g, o = tf.split(gates[t], 4, axis=1)
        tc = tf.tanh(c[t])
        dc_t = dc + dh_t * o * (1 - tc * tc)
        dz = tf.concat(
            [
                dc_t * g * i * (1 - i),
                dc_t * c_prev[t] * f * (1 - f),
                dc_t * i * (1 - g * g),
                dh_t * tc * o * (1 - o),
            ],
            axis=1,
        )
        dz = tf.where(m, dz, tf.zeros_like(dz))
        dh_prev = tf.where(m, back_product(dz), dh_t)
        dc_prev = tf.where(m, dc_t * f, dc)
        return t - 1, dh_prev, dc_prev, dzs.write(t, dz)

    _, dh0, dc0, dzs = tf.while_loop(lambda t, *_: t >= 0, body, (steps - 1, dh_last, dc_last, dzs))
    return dzs.stack(), dh0, dc0


def lstm_recurrence(xw, h0, c0, mask, recurrent_kernel, bias, recurrent_masks=None):
    """The LSTM recurrence with a hand-written gradient (see the module docstring).

    Args:
        xw: [B, T, 4U], the inputs times the input kernel (Keras' gate order i, f, c, o).
        h0, c0: [B, U], the initial states.
        mask: [B, T] bool or None (all steps real).
        recurrent_kernel: [U, 4U]; bias: [4U] or None.
        recurrent_masks: None, or recurrent dropout: four masks [B, U] (or one tensor
            [4, B, U]), one per gate in Keras' order, kept for the whole sequence; gate `k`'s
            recurrent product is `(h_{t-1} * m_k) R_k`, as in Keras' `implementation=1`. They get
            no gradient.

    Returns:
        `(outputs [B, T, U], h [B, U], c [B, U])`: the output at a padded step is the last real
        one (Keras' `zero_output_for_mask=False`) and the states carry over padding.
    """
    # Variables are read here, outside the custom gradient: it sees tensors only.
    recurrent_kernel = tf.convert_to_tensor(recurrent_kernel)
    bias = None if bias is None else tf.convert_to_tensor(bias)
    xw_t = tf.transpose(xw, [1, 0, 2])
    if mask is None:
        mask_t = tf.ones(tf.shape(xw_t)[:2], tf.bool)[..., None]
    else:
        mask_t = tf.transpose(tf.cast(mask, tf.bool), [1, 0])[..., None]
    has_bias = bias is not None
    if recurrent_masks is not None:
        recurrent_masks = tf.stop_gradient(tf.convert_to_tensor(recurrent_masks))

    @tf.custom_gradient
    def run(xw_t, h0, c0, recurrent_kernel, *bias_arg):
        # Under mixed precision the states and gates are float32 (bfloat16 elementwise ops are
        # slow on CPUs and lose precision); the products stay in the kernel's dtype.
        dtype = xw_t.dtype
        state = tf.float32 if dtype in (tf.bfloat16, tf.float16) else dtype
        b = tf.cast(bias_arg[0], state) if has_bias else None
        h_init, c_init = tf.cast(h0, state), tf.cast(c0, state)
        masks = None if recurrent_masks is None else tf.cast(recurrent_masks, state)
        h, c, gates = _loop_forward(
            tf.cast(xw_t, state), h_init, c_init, mask_t, recurrent_kernel, b, True, masks
        )

        def grad(dh_seq, dh_last, dc_last):
            c_prev = tf.concat([c_init[None], c[:-1]], axis=0)
            dz, dh0, dc0 = _loop_backward(
                tf.cast(dh_seq, state),
                tf.cast(dh_last, state),
                tf.cast(dc_last, state),
                c,
                c_prev,
                gates,
                mask_t,
                recurrent_kernel,
                masks,
            )
            units = tf.shape(h0)[-1]
            kernel_dtype = recurrent_kernel.dtype
            h_prev = tf.concat([h_init[None], h[:-1]], axis=0)
            dz_flat = tf.reshape(dz, [-1, 4 * units])
            if masks is None:
                d_kernel = tf.matmul(
                    tf.cast(tf.reshape(h_prev, [-1, units]), kernel_dtype),
                    tf.cast(dz_flat, kernel_dtype),
                    transpose_a=True,
                )
            else:  # gate k's block: sum over steps of (h_{t-1} * m_k)^T dz_k
                hm = tf.reshape(h_prev[None] * masks[:, None], [4, -1, units])  # [4, T*B, U]
                dz4 = tf.transpose(tf.reshape(dz_flat, [-1, 4, units]), [1, 0, 2])
                d4 = tf.matmul(
                    tf.cast(hm, kernel_dtype), tf.cast(dz4, kernel_dtype), transpose_a=True
                )
                d_kernel = tf.reshape(tf.transpose(d4, [1, 0, 2]), [units, 4 * units])
            grads = [tf.cast(dz, dtype), tf.cast(dh0, h0.dtype), tf.cast(dc0, c0.dtype), d_kernel]
            if has_bias:
                grads.append(tf.cast(tf.reduce_sum(dz_flat, axis=0), bias_arg[0].dtype))
            return grads

        outputs = tf.cast(h, dtype)
        return (outputs, outputs[-1], tf.cast(c[-1], c0.dtype)), grad

    args = (xw_t, h0, c0, recurrent_kernel) + ((bias,) if has_bias else ())
    h, h_last, c_last = run(*args)
    return tf.transpose(h, [1, 0, 2]), h_last, c_last


def _on_gpu() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def lstm_cell_projected(cell: Any, xw: Any, states: list) -> tuple[Any, list]:
    """One step of `keras.layers.LSTMCell` (`implementation=2`, inference) whose input product
    `x_t W` is given: `xw` [B, 4U], e.g. rows of a table `E W` gathered by token (see
    :meth:`translator.models.seq2seq.Seq2Seq.input_tables`). The cell's own operations in the
    cell's order, so the result is the same to the bit as `cell(x_t, states)` when `xw` is.

    Returns:
        `(h [B, U], [h, c])`, as the cell does.
    """
    h_tm1, c_tm1 = states[0], states[1]
    z = ops.add(xw, ops.matmul(h_tm1, cell.recurrent_kernel))
    if cell.use_bias:
        z = ops.add(z, cell.bias)
    z0, z1, z2, z3 = ops.split(z, 4, axis=1)
    i = cell.recurrent_activation(z0)
    f = cell.recurrent_activation(z1)
    c = f * c_tm1 + i * cell.activation(z2)
    o = cell.recurrent_activation(z3)
    h = o * cell.activation(c)
    return h, [h, c]


@keras.saving.register_keras_serializable(package="translator")
class LSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` (same constructor, weights, weight paths and outputs) running
    :func:`lstm_recurrence`: the input projection of all steps at once before the loop, and a
    backward loop with one product per step.

    Recurrent dropout runs here too, with Keras' masks (`implementation=1`: one mask per gate on
    `h_{t-1}`, and on the inputs with `dropout`, drawn once per sequence), the four gates'
    recurrent products as one batched product. Keras' own implementation runs instead on a GPU
    (cuDNN, or its loop with recurrent dropout), and with `go_backwards`, `unroll`, `stateful`,
    `return_sequences=False` or `zero_output_for_mask`.

    Call arguments and outputs are Keras' LSTM's: `x` `[batch, time, features]` and `mask`
    `[batch, time]`; returns `[sequence [batch, time, units], h [batch, units], c [batch, units]]`
    with `return_sequences=True, return_state=True`.
    """

    def inner_loop(
        self, sequences: Any, initial_state: Any, mask: Any, training: bool = False
    ) -> tuple[Any, Any, Any]:
        cell = self.cell
        if not self.runs_projected():
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        h0, c0 = initial_state
        # Keras' dropout masks, one per sequence, cached on the cell by `RNN.call`: one input
        # mask, or with `implementation=1` (which recurrent dropout implies) one per gate.
        dp_mask = None
        if training and 0.0 < cell.dropout < 1.0:
            dp_mask = cell.get_dropout_mask(sequences[:, 0, :])
        if dp_mask is None:
            xw = ops.matmul(sequences, cell.kernel)
        elif isinstance(dp_mask, (list, tuple)):
            kernels = ops.split(cell.kernel, 4, axis=1)
            xw = ops.concatenate(
                [
                    ops.matmul(sequences * ops.expand_dims(m, axis=1), k)
                    for m, k in zip(dp_mask, kernels, strict=True)
                ],
                axis=-1,
            )
        else:
            xw = ops.matmul(sequences * ops.expand_dims(dp_mask, axis=1), cell.kernel)
        rec_masks = None
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            rec_masks = cell.get_recurrent_dropout_mask(h0)
            if not isinstance(rec_masks, (list, tuple)):  # one mask for all four gates
                rec_masks = [rec_masks] * 4
            rec_masks = ops.stack(rec_masks, axis=0)
        outputs, h, c = lstm_recurrence(
            xw,
            h0,
            c0,
            mask,
            cell.recurrent_kernel,
            cell.bias if cell.use_bias else None,
            recurrent_masks=rec_masks,
        )
        return h, outputs, [h, c]

    def runs_projected(self) -> bool:
        """Whether this layer runs the loop of :meth:`inner_loop` (not Keras' own, which runs the
        fused cuDNN kernel on a GPU, and Keras' other options), so that :meth:`run_projected`
        gives its results from the product `x W`."""
        return not (
            _on_gpu()
            or self.go_backwards
            or self.unroll
            or self.stateful
            or not self.return_sequences
            or self.zero_output_for_mask
        )

    def run_projected(self, xw: Any, mask: Any = None) -> list:
        """The layer at inference from its inputs' product with the input kernel, `xw`
        [B, T, 4U] (`x W`, e.g. rows of a table `E W` gathered by token): the same to the bit as
        calling the layer on `x` (when :meth:`runs_projected`), without the product.

        Returns:
            `[sequence [B, T, U], h [B, U], c [B, U]]`, from zero initial states.
        """
        zeros = ops.zeros((ops.shape(xw)[0], self.units), dtype=xw.dtype)
        cell = self.cell
        outputs, h, c = lstm_recurrence(
            xw, zeros, zeros, mask, cell.recurrent_kernel, cell.bias if cell.use_bias else None
        )
        return [outputs, h, c]
