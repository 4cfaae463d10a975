"""fnn.train: TrainState, compiled steps and epochs, evaluation, fit and its callbacks."""

from fnn.train.callbacks import Callback, EarlyStopping, LambdaCallback, PlateauCallback, Run
from fnn.train.checkpointing import fingerprint
from fnn.train.evaluate import evaluate, predict
from fnn.train.fit import fit
from fnn.train.metrics import METRICS, accuracy, mae, mse
from fnn.train.state import FitResult, TrainingDiverged, TrainState, init_train_state
from fnn.train.step import EpochProbe, ProbeStep, make_train_epoch, make_train_step

__all__ = [
    "METRICS",
    "Callback",
    "EarlyStopping",
    "EpochProbe",
    "FitResult",
    "LambdaCallback",
    "PlateauCallback",
    "ProbeStep",
    "Run",
    "TrainState",
    "TrainingDiverged",
    "accuracy",
    "evaluate",
    "fingerprint",
    "fit",
    "init_train_state",
    "mae",
    "make_train_epoch",
    "make_train_step",
    "mse",
    "predict",
]
