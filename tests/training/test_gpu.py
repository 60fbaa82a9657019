"""On a machine with a GPU: training runs there, and the LSTM/GRU layers that can use the fused
cuDNN kernels do (Keras 3 tries `keras.src.backend.lstm`/`gru`, which succeed only with cuDNN,
and falls back to the generic loop otherwise). Skipped without a GPU."""

import pytest


def _gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


@pytest.mark.gpu
def test_training_on_a_gpu_uses_cudnn_for_lstm_and_gru(monkeypatch):
    if not _gpus():
        pytest.skip("no GPU on this machine (the cuDNN check needs one)")
    import numpy as np
    from keras.src import backend

    from translator.config import DecoderConfig, EncoderConfig, ModelConfig
    from translator.models import build_model, compile_model

    fused = []
    for name in ("lstm", "gru"):
        original = getattr(backend, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            out = _original(*args, **kwargs)  # raises NotImplementedError without cuDNN
            fused.append(_name)
            return out

        monkeypatch.setattr(backend, name, spy)
    config = ModelConfig(
        embedding_dim=32,
        encoder=EncoderConfig(cell="lstm", units=32, bidirectional=True),
        decoder=DecoderConfig(cell="gru", units=32, attention="luong", input_feeding=False),
    )
    model = build_model(config, 50, 50, seed=1)
    compile_model(model, 0.01, 1.0, 0.0)
    rng = np.random.default_rng(0)
    src = rng.integers(4, 50, (8, 7)).astype("int32")
    tgt = rng.integers(4, 50, (8, 6)).astype("int32")
    model.fit((src, tgt), tgt, epochs=1, verbose=0)
    assert {"lstm", "gru"} <= set(fused), fused
