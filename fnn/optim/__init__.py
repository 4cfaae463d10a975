"""fnn.optim: torch.optim's optimizers and schedulers as optax-shaped pure transforms.

    opt = fnn.optim.sgd(lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt_state = opt.init(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = fnn.optim.apply_updates(params, updates)

Defaults equal torch.optim's, except that weight decay skips leaves with ndim < 2 unless
`weight_decay_mask` says otherwise (WD-1). `lr` is a number or a schedule step -> lr, with
step = number of updates already done, from 0 (sgd's `momentum` too). See base.py for the
state contract. `max_norm` is a weight constraint (torch.renorm per output unit) chained
after an optimizer: `chain(sgd(...), max_norm(2.0))`.

The learning rate lives in the state: `with_lr_scale(opt_state, s)` multiplies later
updates by s (e.g. from a ReduceLROnPlateau) without rebuilding or retracing, and
`last_lr(opt_state)` is the rate the latest update used. Optimizers and schedules built
with equal arguments are equal and hash equal.
"""

from fnn.optim.accumulators import adagrad, scale_by_adagrad
from fnn.optim.base import (
    GradientTransformation,
    LearningRateState,
    add_decayed_weights,
    apply_updates,
    chain,
    default_weight_decay_mask,
    last_lr,
    learning_rate_state,
    scale,
    scale_by_learning_rate,
    with_lr_scale,
)
from fnn.optim.clip import clip_by_global_norm, clip_grad_norm, global_norm
from fnn.optim.constraints import max_norm, renorm
from fnn.optim.moments import adam, adamw, scale_by_adam
from fnn.optim.momentum import scale_by_sgd_momentum, sgd
from fnn.optim.plateau import PlateauState, ReduceLROnPlateau
from fnn.optim.rms import rmsprop, scale_by_rms, trace
from fnn.optim.schedules import (
    LRSchedule,
    cosine_annealing_lr,
    exponential_lr,
    linear_lr,
    multistep_lr,
    step_lr,
    warmup_cosine,
)

__all__ = [
    "GradientTransformation",
    "LRSchedule",
    "LearningRateState",
    "PlateauState",
    "ReduceLROnPlateau",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip_by_global_norm",
    "clip_grad_norm",
    "cosine_annealing_lr",
    "default_weight_decay_mask",
    "exponential_lr",
    "global_norm",
    "last_lr",
    "learning_rate_state",
    "linear_lr",
    "max_norm",
    "multistep_lr",
    "renorm",
    "rmsprop",
    "scale",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_sgd_momentum",
    "sgd",
    "step_lr",
    "trace",
    "warmup_cosine",
    "with_lr_scale",
]
