"""The encoder–decoder model (Keras): encoder, decoder, `Seq2Seq`, losses and metrics.

- `encoder.py`: embedded source -> stacked recurrent layers -> outputs and the context vector;
- `decoder.py`: one decoder step (with attention) and teacher forcing;
- `seq2seq.py`: `Seq2Seq`, which owns every layer, `build_model` and `compile_model`;
- `losses.py`: the masked cross-entropy, token accuracy and perplexity.

Importing this package registers every custom Keras class, so saved `.keras` models load.
"""

from translator.models.encoder import EncoderOutput
from translator.models.losses import MaskedAccuracy, MaskedCrossEntropy, Perplexity
from translator.models.optimizers import SyncClippedAdam
from translator.models.seq2seq import Seq2Seq, build_model, compile_model

__all__ = [
    "EncoderOutput",
    "MaskedAccuracy",
    "MaskedCrossEntropy",
    "Perplexity",
    "SyncClippedAdam",
    "Seq2Seq",
    "build_model",
    "compile_model",
]
