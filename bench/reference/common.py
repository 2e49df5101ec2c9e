"""Shared pieces of the reference scripts: thread pinning, the matrices the TS side wrote, our metrics, output."""
import json
import os
import sys
import time

import numpy as np


def pin_threads(threads: int) -> None:
    """Caps every native thread pool at `threads`; call before importing tensorflow or lightgbm."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_keras(threads: int):
    """Keras on tensorflow-cpu with every thread pool (native, intra- and inter-op) capped at `threads`."""
    pin_threads(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    return keras


def load(data_dir: str, part: str):
    """x (float32 rows x cols) and y (uint8) exactly as our model sees them: written by bench/reference/python.ts."""
    x = np.load(os.path.join(data_dir, f"x_{part}.npy"))
    y = np.load(os.path.join(data_dir, f"y_{part}.npy"))
    assert x.dtype == np.float32 and x.ndim == 2 and y.shape == (x.shape[0],), f"{data_dir}: bad {part} matrices"
    return x, y


def has(data_dir: str, part: str) -> bool:
    return os.path.exists(os.path.join(data_dir, f"x_{part}.npy"))


def class_weights(y, kind: str):
    """sklearn's 'balanced' (n / (2 n_class)) as our trainMlp computes it, or none."""
    if kind != "balanced":
        return 1.0, 1.0
    n, pos = len(y), float(np.sum(y))
    return n / (2 * (n - pos)), n / (2 * pos)


def weighted_log_loss(y, p, w0: float, w1: float) -> float:
    """Our early-stopping objective: class-weighted mean BCE, probabilities clipped at Keras' 1e-7, no L2."""
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(np.where(y == 1, -w1 * np.log(q), -w0 * np.log(1 - q))))


def auc_pair(y, p):
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(y, p)), float(average_precision_score(y, p))


def save_predictions(path: str, p) -> None:
    np.save(path, np.asarray(p, dtype=np.float64).reshape(-1))


def emit(result: dict) -> None:
    """The result as one JSON line on stdout, and into $PROPENSITY_BENCH_RESULT when set (what the TS side reads)."""
    line = json.dumps(result)
    target = os.environ.get("PROPENSITY_BENCH_RESULT")
    if target:
        with open(target, "w") as f:
            f.write(line + "\n")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


now = time.perf_counter
