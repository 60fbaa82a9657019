"""Ensembles: several models decoded as one through the search contract.

At every step the ensemble's log-probabilities are the mean of its members' log-probabilities
(a log-linear combination, as Marian and OpenNMT-py ensemble by default); greedy and beam search
are unchanged. `memory` and `state` are tuples with one member's nest each.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from translator.decoding.contract import Nest, StepFunction, as_step_model, stepper_of


class EnsembleStepModel:
    """The mean of several models' per-step log-probabilities.

    Args:
        models: `Seq2Seq` models (or step models) over the same source and target vocabularies.
        fixed_weights: see :class:`~translator.decoding.contract.Seq2SeqStepModel`.
    """

    attention = None  # alignments come from one model, not from an ensemble

    def __init__(self, models: list[Any], fixed_weights: bool = False):
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        self.models = list(models)
        self.members = [as_step_model(m, fixed_weights) for m in models]

    def start(self, src_ids: tf.Tensor) -> tuple[Nest, Nest]:
        started = [m.start(src_ids) for m in self.members]
        return tuple(mem for mem, _ in started), tuple(state for _, state in started)

    def step(self, tokens: tf.Tensor, state: Nest, memory: Nest) -> tuple[tf.Tensor, Nest]:
        return self.stepper()(tokens, state, memory)

    def stepper(self) -> StepFunction:
        """`step` for one loop, from each member's own (see :func:`stepper_of`)."""
        steps = [stepper_of(m) for m in self.members]

        def step(tokens: tf.Tensor, state: Nest, memory: Nest) -> tuple[tf.Tensor, Nest]:
            stepped = [f(tokens, s, mem) for f, s, mem in zip(steps, state, memory, strict=True)]
            log_probs = tf.add_n([lp for lp, _ in stepped]) / float(len(stepped))
            return log_probs, tuple(s for _, s in stepped)

        return step
