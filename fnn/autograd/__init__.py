"""fnn.autograd: a scalar reverse-mode autodiff engine for reading and teaching (SCAL-1).

`Scalar` builds the computation graph as you compute; `backward()` fills in gradients;
`to_dot` / `draw` export the graph for Graphviz.
"""

from fnn.autograd.graph import draw, to_dot
from fnn.autograd.scalar import Scalar

__all__ = ["Scalar", "draw", "to_dot"]
