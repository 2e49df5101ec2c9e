"""
The configurations of one of our hyperparameter searches trained by Keras one after another, each for the number
of epochs our search trained it (successive halving gives trials different budgets; a promoted trial's rungs add
up), no early stopping. Prints one JSON line with the total wall time and each trial's seconds.
"""
import argparse
import json

from common import emit, import_keras, load, now

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--data", required=True)
ap.add_argument("--trials", required=True, help="JSON file: [{trialId, params, seed, epochs}]")
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()

keras = import_keras(args.threads)
import tensorflow as tf  # noqa: E402  (configured by import_keras; here for its version)

from keras_mlp import train  # noqa: E402

with open(args.trials) as f:
    trials = json.load(f)
x, y = load(args.data, "train")
xv, yv = load(args.data, "val")
t0 = now()
done = []
for t in trials:
    s = now()
    _, state = train(keras, x, y, xv, yv, t["params"], t["seed"] % 2**31, t["epochs"], None)
    keras.backend.clear_session()
    h = state["history"]
    done.append({"trialId": t["trialId"], "epochs": len(h), "seconds": round(now() - s, 3), "valAuc": h[-1]["valAuc"] if h else None})
wall = now() - t0
emit({
    "system": "keras",
    "keras": keras.__version__,
    "tensorflow": tf.__version__,
    "threads": args.threads,
    "trials": len(done),
    "epochs": sum(d["epochs"] for d in done),
    "wallSeconds": wall,
    "perTrial": done,
})
