"""Our MLP in Keras: the same layers, initializers, L2, dropout, class weights, Adam and early-stopping rule."""
import numpy as np

from common import auc_pair, class_weights, now, weighted_log_loss

PREDICT_BATCH = 8192


def build(keras, cols: int, params: dict, seed: int):
    """Dense ReLU layers (He normal), dropout after each, sigmoid output (Glorot uniform), L2 on every kernel."""
    l2 = keras.regularizers.L2(params["l2"]) if params["l2"] > 0 else None
    layers = [keras.Input(shape=(cols,))]
    for i, units in enumerate(params["hiddenUnits"]):
        layers.append(keras.layers.Dense(units, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed=seed + 1 + i), kernel_regularizer=l2))
        if params["dropout"] > 0:
            layers.append(keras.layers.Dropout(params["dropout"], seed=seed + 100 + i))
    layers.append(keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2), kernel_regularizer=l2))
    model = keras.Sequential(layers)
    # tfjs' Adam: beta1 0.9, beta2 0.999, epsilon 1e-7 (Keras' defaults too)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=params["learningRate"]), loss="binary_crossentropy")
    return model


def train(keras, x, y, xv, yv, params: dict, seed: int, epochs: int, patience):
    """
    Fits for `epochs`, evaluating the validation split after every epoch as our trainMlp does (predict, weighted log
    loss, ROC-AUC, PR-AUC); with `patience`, stops after that many epochs without a lower validation loss and
    restores the best epoch's weights. Per-epoch seconds cover the epoch's training and that evaluation.
    """
    keras.utils.set_random_seed(seed)
    model = build(keras, x.shape[1], params, seed)
    w0, w1 = class_weights(y, params["classWeight"])
    state = {"best": None, "best_loss": None, "best_epoch": 0, "wait": 0, "history": []}

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            state["t0"] = now()

        def on_epoch_end(self, epoch, logs=None):
            pv = self.model.predict(xv, batch_size=PREDICT_BATCH, verbose=0).reshape(-1)
            val_loss = weighted_log_loss(yv, pv, w0, w1)
            val_auc, val_pr_auc = auc_pair(yv, pv)
            state["history"].append({"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)), "valLoss": val_loss, "valAuc": val_auc, "valPrAuc": val_pr_auc, "seconds": now() - state["t0"]})
            if state["best_loss"] is None or val_loss < state["best_loss"]:
                state.update(best=self.model.get_weights(), best_loss=val_loss, best_epoch=epoch + 1, wait=0)
            else:
                state["wait"] += 1
                if patience is not None and state["wait"] >= patience:
                    self.model.stop_training = True

    class_weight = {0: w0, 1: w1} if params["classWeight"] == "balanced" else None
    model.fit(x, y.astype(np.float32), batch_size=params["batchSize"], epochs=epochs, shuffle=True, class_weight=class_weight, callbacks=[Epochs()], verbose=0)
    if patience is not None and state["best"] is not None:
        model.set_weights(state["best"])
    return model, state


def predict(model, x):
    return model.predict(x, batch_size=PREDICT_BATCH, verbose=0).reshape(-1)
