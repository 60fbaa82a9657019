"""The decoding contract: all that greedy and beam search know of a model.

A model is searched through two operations, both traced inside `tf.function`:

- `start(src_ids [B, S])` -> `(memory, state)`: `memory` is what every hypothesis of a sentence
  reads but never changes (the encoder outputs, their mask and attention keys); `state` is what a
  hypothesis carries from step to step (the decoder states). Both are nests of tensors whose first
  axis is the batch: beam search repeats both `K` times once, and reorders only `state` as beams
  are chosen. A `memory` tensor of rank 2 or more has the source positions on axis 1, and padding
  it there with zeros (a False mask) changes no step: greedy search encodes a window of sentences
  in batches and pads their memories to one width.
- `step(tokens [N], state, memory)` -> `(log_probs [N, V] float32, new_state)`: one target
  position for `N` rows (`N = B` greedy, `B * K` beam), from the previous tokens.

A model may also offer `stepper()` -> a function with `step`'s signature and results, for one
decoding loop: the search calls it once, outside its loop, so that work which does not change from
step to step is done once per loop instead of at every step (:func:`stepper_of`).

BOS and EOS ids are arguments of the search, not properties of the model. A Keras
:class:`~translator.models.seq2seq.Seq2Seq` satisfies the contract through :class:`Seq2SeqStepModel`;
an ensemble (the average of several models' log-probabilities), an exported graph or a test double
satisfy it by implementing the two methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import tensorflow as tf

Nest = Any  # a tf.nest structure of tensors, batch first
# step(tokens [N], state, memory) -> (log_probs [N, V] float32, new_state)
StepFunction = Callable[[tf.Tensor, Nest, Nest], tuple[tf.Tensor, Nest]]


@runtime_checkable
class StepModel(Protocol):
    """What search needs of a model (see the module docstring)."""

    def start(self, src_ids: tf.Tensor) -> tuple[Nest, Nest]:
        """`src_ids` [B, S] right-padded int32 -> `(memory, state)`, each a nest of [B, ...]."""
        ...

    def step(self, tokens: tf.Tensor, state: Nest, memory: Nest) -> tuple[tf.Tensor, Nest]:
        """`tokens` [N] int32 -> `(log_probs [N, V] float32, new_state)`."""
        ...


class Seq2SeqStepModel:
    """A :class:`~translator.models.seq2seq.Seq2Seq` seen through the decoding contract.

    `memory` is the model's `EncoderOutput` without its `states` (they are the `state`), and a step is
    `log_softmax(decode_step(...))` in float32.

    With `fixed_weights` (the model's weights do not change while it is searched: a model loaded
    for translation), the model's `input_tables()` are computed once, on first use, and the
    encoder and each step gather rows of them instead of multiplying embeddings by the first
    layers' input kernels: the same results, less work (see `Seq2Seq.input_tables`). `tables`:
    such tables made beforehand (e.g. an export's variables), which implies `fixed_weights`.
    """

    def __init__(self, model: Any, fixed_weights: bool = False, tables: Any = None):
        self.model = model
        self.fixed_weights = fixed_weights or tables is not None
        self._tables: Any = tables
        self._lock = threading.Lock()  # functions are traced in several threads at once

    @tf.autograph.experimental.do_not_convert  # plain Python, also while a search is traced
    def input_tables(self) -> Any:
        """The model's input tables (computed eagerly once, also when first asked while a
        function is traced), or None without `fixed_weights` or where the model has none."""
        make = getattr(self.model, "input_tables", None)
        if not self.fixed_weights or not callable(make):
            return None
        with self._lock:
            if self._tables is None:
                with tf.init_scope():  # eager tensors, captured by every traced function
                    self._tables = make()
        return self._tables

    def start(self, src_ids: tf.Tensor) -> tuple[Nest, Nest]:
        tables = self.input_tables()
        extra = {} if tables is None else {"tables": tables}
        encoder = self.model.encode(src_ids, training=False, **extra)
        return encoder._replace(states=[]), list(encoder.states)

    def step(self, tokens: tf.Tensor, state: Nest, memory: Nest) -> tuple[tf.Tensor, Nest]:
        return self.stepper()(tokens, state, memory)

    def stepper(self) -> StepFunction:
        """`step` for one loop: with a tied output projection its kernel, the target embeddings
        transposed ([D, V]), is computed here once instead of at every step (a transpose of the
        whole matrix per step cost about a sixth of a greedy step of 64 rows)."""
        model = self.model
        output_kernel = getattr(model, "output_kernel", None)  # Seq2Seq's; a duck-typed model's?
        kernel = output_kernel() if callable(output_kernel) else None
        extra = {} if kernel is None else {"output_kernel": kernel}
        tables = self.input_tables()
        if tables is not None and tables.decoder is not None:
            extra["input_table"] = tables.decoder

        def step(tokens: tf.Tensor, state: Nest, memory: Nest) -> tuple[tf.Tensor, Nest]:
            logits, new_state = model.decode_step(tokens, state, memory, training=False, **extra)
            return tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1), list(new_state)

        return step


def stepper_of(model: StepModel) -> StepFunction:
    """The step function of one decoding loop: `model.stepper()` where the model offers it, else
    `model.step`. Call it in the loop's graph, outside the loop body."""
    stepper = getattr(model, "stepper", None)
    return stepper() if callable(stepper) else model.step


def as_step_model(model: Any, fixed_weights: bool = False) -> StepModel:
    """`model` itself if it implements the contract, else a `Seq2Seq` adapted to it (see
    :class:`Seq2SeqStepModel` for `fixed_weights`)."""
    if isinstance(model, StepModel):
        return model
    if hasattr(model, "encode") and hasattr(model, "decode_step"):
        return Seq2SeqStepModel(model, fixed_weights)
    raise TypeError(
        f"{type(model).__name__} cannot be searched: it needs start(src_ids) and "
        "step(tokens, state, memory) (see translator.decoding.contract)"
    )
