"""fnn.train: one training step, the compiled epoch, evaluation, fit and its callbacks."""

from fnn.train.callbacks import Callback, EarlyStopping, LambdaCallback
from fnn.train.epoch import epoch_batches, make_train_epoch
from fnn.train.evaluation import evaluate, predict
from fnn.train.loop import fit
from fnn.train.metrics import METRICS, accuracy, mae, mse
from fnn.train.probe import EpochProbe, ProbeStep
from fnn.train.state import FitResult, TrainingDiverged, TrainState, init_train_state
from fnn.train.step import make_train_step, train_step

__all__ = [
    "METRICS",
    "Callback",
    "EarlyStopping",
    "EpochProbe",
    "FitResult",
    "LambdaCallback",
    "ProbeStep",
    "TrainState",
    "TrainingDiverged",
    "accuracy",
    "epoch_batches",
    "evaluate",
    "fit",
    "init_train_state",
    "mae",
    "make_train_epoch",
    "make_train_step",
    "mse",
    "predict",
    "train_step",
]
