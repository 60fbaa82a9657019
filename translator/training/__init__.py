"""Training: the trainer, its callbacks and the state that survives restarts.

- `trainer.py`: `train()` builds or resumes the model and fits it; `TrainResult`;
- `callbacks.py`: throughput, validation BLEU, time budget, best model and patience, checkpoint;
- `state.py`: `TrainState` (`checkpoints/state.json`) and the `metrics.csv` columns.
"""

from translator.training.state import METRIC_COLUMNS, TrainState
from translator.training.trainer import TrainResult, train

__all__ = ["METRIC_COLUMNS", "TrainResult", "TrainState", "train"]
