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

__all__ = ["CHECKED_KERAS_VERSIONS", "DropoutRNNCell", "backend_rnn"]
