"""fnn.functional: pure array ops with torch.nn.functional names (import as F).

Every differentiable op `f` has a hand-derived `f_backward(grad_output, <f's arguments>)`
beside it. It takes the same arguments as the forward, with the same names and defaults,
after `grad_output`, and returns the gradient of the one differentiable input, or a tuple
in argument order when there are several (None for an optional input that was None).
"""

from fnn.functional.activations import (
    abs,
    abs_backward,
    elu,
    elu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    logsumexp,
    logsumexp_backward,
    maxout,
    maxout_backward,
    prelu,
    prelu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from fnn.functional.backward import backward_of
from fnn.functional.dropout import dropout, dropout_backward, dropout_mask
from fnn.functional.encoding import one_hot
from fnn.functional.linear import flatten, flatten_backward, linear, linear_backward
from fnn.functional.losses import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    cross_entropy,
    cross_entropy_backward,
    huber_loss,
    huber_loss_backward,
    l1_loss,
    l1_loss_backward,
    mse_loss,
    mse_loss_backward,
    nll_loss,
    nll_loss_backward,
    smooth_l1_loss,
    smooth_l1_loss_backward,
)
from fnn.functional.normalization import batch_norm, batch_norm_backward, layer_norm, layer_norm_backward
