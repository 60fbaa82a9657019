"""One training step of a tiny attention model, run as its own process by test_distribute.py.

    python distributed_step.py single OUT.npz          # the whole batch, no strategy
    python distributed_step.py mirrored OUT.npz        # 2 logical CPUs, one half each
    TF_CONFIG=... python distributed_step.py multi_worker OUT.npz   # 2 processes, one half each

The batch's parts have different numbers of rows (3 and 5), lengths and numbers of target tokens,
and the clip norm is small enough to clip: each would show if the loss, its logged value (Keras
weighs the replicas' values by their rows) or the clipping were per replica. Writes the loss and
the updated weights (the chief, for multi_worker).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MODE, OUT = sys.argv[1], sys.argv[2]
# SGD shows any error in the gradient's scale (Adam's first step hides it); a clip norm small
# enough to clip shows clipping per replica instead of on the summed gradient.
OPTIMIZER = sys.argv[3] if len(sys.argv) > 3 else "sgd"
CLIP_NORM = 0.05


def batch():
    """8 pairs; rows 0-3 are short, rows 4-7 long (so the halves differ in tokens)."""
    rng = np.random.default_rng(0)
    src, tgt = np.zeros((8, 9), np.int32), np.zeros((8, 11), np.int32)
    for i, (ns, nt) in enumerate(
        [(3, 2), (4, 3), (2, 4), (5, 2), (9, 10), (7, 11), (8, 9), (6, 8)]
    ):
        src[i, :ns] = rng.integers(4, 40, ns)
        tgt[i, :nt] = rng.integers(4, 40, nt)
    tgt_in = np.concatenate([np.full((8, 1), 2, np.int32), tgt[:, :-1]], 1)
    tgt_in[tgt_in == 0] = 0
    return src, tgt_in, tgt


def halves(src, tgt_in, tgt_out, i):
    """Part `i` (rows 0-2 or 3-7), trimmed to its own widths (a replica pads only to its own
    batch)."""
    rows = slice(0, 3) if i == 0 else slice(3, 8)
    s, ti, to = src[rows], tgt_in[rows], tgt_out[rows]
    ws = int((s != 0).sum(1).max())
    wt = int(max((ti != 0).sum(1).max(), (to != 0).sum(1).max()))
    return (s[:, :ws], ti[:, :wt]), to[:, :wt]


def main():
    import tensorflow as tf

    if MODE == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0])
        )
    elif MODE == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()

    import keras

    from translator.compat import build_for_distribution
    from translator.config import DecoderConfig, EncoderConfig, ModelConfig
    from translator.models import build_model, compile_model

    config = ModelConfig(
        embedding_dim=16,
        encoder=EncoderConfig(cell="lstm", units=16),
        decoder=DecoderConfig(cell="lstm", units=16, attention="luong"),
    )
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = build_model(config, 40, 40, seed=1)
        compile_model(model, 0.01, CLIP_NORM, 0.1)
        if OPTIMIZER == "sgd":
            from translator.models.optimizers import SyncClipping

            class SyncClippedSGD(SyncClipping, keras.optimizers.SGD):
                pass

            model.compile(
                optimizer=SyncClippedSGD(learning_rate=0.5, global_clipnorm=CLIP_NORM),
                loss=model.loss,
                metrics=[m for m in model.metrics if m.name not in ("loss", "compile_metrics")],
            )
    src, tgt_in, tgt_out = batch()
    if MODE == "single":
        logs = model.train_on_batch((src, tgt_in), tgt_out, return_dict=True)
        loss = logs["loss"]
    else:
        build_for_distribution(model, strategy, halves(src, tgt_in, tgt_out, 0))

        def per_worker(ctx):
            if ctx.num_input_pipelines > 1:  # multi_worker: this worker's half
                parts = [halves(src, tgt_in, tgt_out, ctx.input_pipeline_id)]
            else:  # mirrored: replica 0 takes the first element, replica 1 the second
                parts = [halves(src, tgt_in, tgt_out, 0), halves(src, tgt_in, tgt_out, 1)]
            ds = tf.data.Dataset.from_tensors(parts[0])
            for p in parts[1:]:
                ds = ds.concatenate(tf.data.Dataset.from_tensors(p))
            return ds

        data = strategy.distribute_datasets_from_function(per_worker)
        history = model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
        loss = history.history["loss"][0]
    is_chief = MODE != "multi_worker" or '"index": 0' in os.environ.get("TF_CONFIG", "")
    if is_chief:
        weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
        np.savez(OUT, loss=np.float64(loss), **weights)


if __name__ == "__main__":
    main()
