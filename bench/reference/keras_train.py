"""
One MLP configuration trained by Keras on the matrices our model trains on.
  --patience N: early stopping as ours (the accuracy suite); without it every epoch runs (the speed run).
Prints one JSON line: per-epoch seconds, rows/s after warm-up, validation and test ROC-AUC / PR-AUC.
"""
import argparse
import json

from common import auc_pair, emit, has, import_keras, load, now, save_predictions

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--data", required=True, help="directory with x_/y_{train,val[,test]}.npy")
ap.add_argument("--params", required=True, help="JSON file: our MlpParams (hiddenUnits, dropout, l2, learningRate, batchSize, classWeight)")
ap.add_argument("--seed", type=int, default=1234)
ap.add_argument("--epochs", type=int, required=True)
ap.add_argument("--patience", type=int, default=None)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--warmup", type=int, default=1, help="epochs left out of rows/s (graph tracing, allocation)")
ap.add_argument("--out-pred", help="write test predictions here (.npy)")
args = ap.parse_args()

keras = import_keras(args.threads)
import tensorflow as tf  # noqa: E402  (configured by import_keras; here for its version)

from keras_mlp import predict, train  # noqa: E402

with open(args.params) as f:
    params = json.load(f)
x, y = load(args.data, "train")
xv, yv = load(args.data, "val")
t0 = now()
model, state = train(keras, x, y, xv, yv, params, args.seed, args.epochs, args.patience)
wall = now() - t0
history = state["history"]
timed = [h["seconds"] for h in history[args.warmup:]]
result = {
    "system": "keras",
    "keras": keras.__version__,
    "tensorflow": tf.__version__,
    "threads": args.threads,
    "trainRows": int(x.shape[0]),
    "cols": int(x.shape[1]),
    "epochs": len(history),
    "epochSeconds": [round(h["seconds"], 4) for h in history],
    "rowsPerSec": (x.shape[0] * len(timed) / sum(timed)) if timed else None,
    "bestEpoch": state["best_epoch"],
    "stopReason": "earlyStopping" if len(history) < args.epochs else "maxEpochs",
    "wallSeconds": wall,
    "embeddingIgnored": bool(params.get("embeddingDim")),
}
pv = predict(model, xv)
result["valAuc"], result["valPrAuc"] = auc_pair(yv, pv)
if has(args.data, "test"):
    xt, yt = load(args.data, "test")
    pt = predict(model, xt)
    result["testAuc"], result["testPrAuc"] = auc_pair(yt, pt)
    if args.out_pred:
        save_predictions(args.out_pred, pt)
emit(result)
