"""A reverse-mode automatic-differentiation engine on Python floats (SCAL-1).

`Scalar` is for reading and teaching, in the style of micrograd: every operation builds a
new node that remembers its `inputs`, the `op` that made it and a `_backward` closure that
pushes the node's gradient to its inputs by the chain rule. `backward()` visits the graph
in reverse topological order, found without recursion, so a chain of 100,000 nodes works.

Contract
- `data` is a Python float, `grad` a Python float (0.0 until a backward pass reaches it).
- Operations: `+ - * /`, `**` with a numeric exponent (and a positive number raised to a
  Scalar), unary `-`, `exp`, `log`, `log1p`, `tanh`, `sigmoid`, `relu`, `softplus`,
  `abs`. Python numbers work on either side (`2 * x`, `1 - x`).
- Gradients **accumulate** (`+=`): a node used twice receives the sum of both paths.
  Each `backward()` first clears the interior nodes of its graph, then adds into the
  leaves, so calling it twice doubles the leaves' gradients, as in PyTorch; `zero_grad()`
  clears every node of a graph.
- Kinks follow PyTorch: relu'(0) = 0 (ACT-1), |x|'(0) = 0 (ACT-7).
- `softplus` is the exact log(1 + e^x), computed stably, with no PyTorch threshold (a
  scalar engine has no reason to trade accuracy for speed).
- Floating overflow gives ±inf as IEEE arithmetic (and jax) would; domain errors raise:
  log of x <= 0, log1p of x <= -1, division by zero, a negative base to a fractional
  power, and a non-numeric operand raise ValueError/TypeError naming the operation and
  the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from fnn._checks import is_real

__all__ = ["Scalar"]

Number = int | float


def _as_float(value: object, op: str) -> float:
    # bool is an int to Python, but `x + True` is almost always a bug in a teaching graph.
    if not is_real(value):
        raise TypeError(
            f"Scalar {op}: operand must be a real number or a Scalar, "
            f"got {value!r} of type {type(value).__name__}"
        )
    return float(value)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:  # math.exp raises where IEEE (and jnp.exp) give inf
        return math.inf


def _pow(x: float, n: float, op: str) -> float:
    try:
        out = x**n
    except ZeroDivisionError:
        raise ValueError(f"Scalar {op}: 0 raised to the negative power {n!r} is a division by zero") from None
    except OverflowError:
        odd = float(n).is_integer() and int(n) % 2 == 1
        return -math.inf if (x < 0 and odd) else math.inf
    if isinstance(out, complex):
        raise ValueError(
            f"Scalar {op}: negative base {x!r} to the fractional power {n!r} is not a real number"
        )
    return out


def _sigmoid(x: float) -> float:
    # Two branches so that exp never overflows: e^{-|x|} <= 1.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class Scalar:
    """A float that records how it was computed, so that `backward()` can differentiate it.

    Args:
        data: the value, a real Python number (bool is refused).
        inputs: the Scalars this one was computed from (set by the operations).
        op: the name of the operation that made it (set by the operations).
        label: an optional name shown by `to_dot`.

    Attributes:
        data: the value, a Python float.
        grad: d(root)/d(self) after `root.backward()`, a Python float (0.0 before).

    Example:
        >>> from fnn.autograd import Scalar
        >>> x, y = Scalar(2.0), Scalar(-3.0)
        >>> z = x * y + x.tanh()
        >>> z.backward()
        >>> z.data, x.grad, y.grad  # dz/dx = y + 1 - tanh(x)^2, dz/dy = x
        (-5.036, -2.9293, 2.0)
    """

    __slots__ = ("__weakref__", "_backward", "data", "grad", "inputs", "label", "op")
    __array_ufunc__ = None  # numpy scalars on the left defer to our reflected operators

    def __init__(self, data: Number, inputs: tuple[Scalar, ...] = (), op: str = "", label: str = "") -> None:
        self.data = _as_float(data, "constructor")
        self.grad = 0.0
        self.inputs = tuple(inputs)
        self.op = op
        self._backward: Callable[[], None] = _no_backward
        self.label = label

    @property
    def _prev(self) -> tuple[Scalar, ...]:
        """micrograd's name for `inputs`."""
        return self.inputs

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        return f"Scalar(data={self.data!r}, grad={self.grad!r}{name})"

    @staticmethod
    def _lift(value: Scalar | Number, op: str) -> Scalar:
        return value if isinstance(value, Scalar) else Scalar(_as_float(value, op))

    # ----- binary operations -------------------------------------------------------------

    def __add__(self, other: Scalar | Number) -> Scalar:
        other = self._lift(other, "+")
        out = Scalar(self.data + other.data, (self, other), "+")

        def _backward() -> None:  # d(a+b)/da = d(a+b)/db = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Scalar | Number) -> Scalar:
        other = self._lift(other, "*")
        out = Scalar(self.data * other.data, (self, other), "*")

        def _backward() -> None:  # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __sub__(self, other: Scalar | Number) -> Scalar:
        other = self._lift(other, "-")
        out = Scalar(self.data - other.data, (self, other), "-")

        def _backward() -> None:
            self.grad += out.grad
            other.grad -= out.grad

        out._backward = _backward
        return out

    def __truediv__(self, other: Scalar | Number) -> Scalar:
        other = self._lift(other, "/")
        if other.data == 0.0:
            raise ValueError(f"Scalar /: division by zero ({self.data!r} / {other.data!r})")
        out = Scalar(self.data / other.data, (self, other), "/")

        def _backward() -> None:  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
            self.grad += out.grad / other.data
            other.grad -= out.grad * self.data / (other.data * other.data)

        out._backward = _backward
        return out

    def __pow__(self, exponent: Number) -> Scalar:
        if isinstance(exponent, Scalar):
            raise TypeError(
                "Scalar **: the exponent must be a Python number, got a Scalar "
                f"({exponent!r}); write (x.log() * y).exp() for x ** y"
            )
        n = _as_float(exponent, "**")
        out = Scalar(_pow(self.data, n, "**"), (self,), f"**{exponent!r}")

        def _backward() -> None:  # d(x^n)/dx = n x^(n-1), taken as 0 when n = 0
            if n == 0.0:
                return
            if self.data == 0.0 and n < 1.0:
                local = math.inf  # the tangent is vertical, as jax reports
            else:
                local = n * _pow(self.data, n - 1.0, "**")
            self.grad += local * out.grad

        out._backward = _backward
        return out

    def __rpow__(self, base: Number) -> Scalar:
        b = _as_float(base, "**")
        if b <= 0.0:
            raise ValueError(f"Scalar **: a number raised to a Scalar needs a positive base, got {base!r}")
        out = Scalar(_pow(b, self.data, "**"), (self,), f"{base!r}**")

        def _backward() -> None:  # d(b^x)/dx = b^x log b
            self.grad += out.data * math.log(b) * out.grad

        out._backward = _backward
        return out

    def __radd__(self, other: Number) -> Scalar:
        return self._lift(other, "+") + self

    def __rsub__(self, other: Number) -> Scalar:
        return self._lift(other, "-") - self

    def __rmul__(self, other: Number) -> Scalar:
        return self._lift(other, "*") * self

    def __rtruediv__(self, other: Number) -> Scalar:
        return self._lift(other, "/") / self

    # ----- unary operations --------------------------------------------------------------

    def _unary(self, value: float, op: str, local: float) -> Scalar:
        """A node with one input whose local derivative d(out)/d(self) is `local`."""
        out = Scalar(value, (self,), op)

        def _backward() -> None:
            self.grad += local * out.grad

        out._backward = _backward
        return out

    def __neg__(self) -> Scalar:
        return self._unary(-self.data, "neg", -1.0)

    def exp(self) -> Scalar:
        """e^self, as a new node of the graph.

        Local derivative: (e^x)' = e^x.

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(0.0).exp().data
            1.0
        """
        e = _exp(self.data)
        return self._unary(e, "exp", e)  # (e^x)' = e^x

    def log(self) -> Scalar:
        """The natural log of self (self > 0, else ValueError), as a new node of the graph.

        Local derivative: (log x)' = 1/x.

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(1.0).log().data
            0.0
        """
        if not self.data > 0.0:
            raise ValueError(f"Scalar log: needs a positive value, got {self.data!r}")
        return self._unary(math.log(self.data), "log", 1.0 / self.data)

    def log1p(self) -> Scalar:
        """log(1 + self), accurate near 0 (self > -1, else ValueError), as a new node of the graph.

        Local derivative: d/dx log(1 + x) = 1/(1 + x).

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(0.0).log1p().data
            0.0
        """
        if not self.data > -1.0:
            raise ValueError(f"Scalar log1p: needs a value > -1, got {self.data!r}")
        return self._unary(math.log1p(self.data), "log1p", 1.0 / (1.0 + self.data))

    def tanh(self) -> Scalar:
        """tanh(self), as a new node of the graph.

        Local derivative: tanh' = 1 - tanh^2.

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(0.0).tanh().data
            0.0
        """
        t = math.tanh(self.data)
        return self._unary(t, "tanh", 1.0 - t * t)  # tanh' = 1 - tanh^2

    def sigmoid(self) -> Scalar:
        """1 / (1 + e^-self), without overflow for large |self|, as a new node of the graph.

        Local derivative: s' = s (1 - s).

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(0.0).sigmoid().data
            0.5
        """
        s = _sigmoid(self.data)
        return self._unary(s, "sigmoid", s * (1.0 - s))  # s' = s(1 - s)

    def relu(self) -> Scalar:
        """max(0, self), as a new node of the graph.

        Local derivative: relu'(x) = [x > 0], so 0 at 0 as in PyTorch (ACT-1).

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(-2.0).relu().data
            0.0
        """
        positive = self.data > 0.0  # relu'(0) = 0, as in PyTorch (ACT-1)
        return self._unary(self.data if positive else 0.0, "relu", 1.0 if positive else 0.0)

    def softplus(self) -> Scalar:
        # log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}); its derivative is sigmoid(x).
        """log(1 + e^self), exact and stable (no threshold), as a new node of the graph.

        Local derivative: softplus' = sigmoid.

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(0.0).softplus().data
            0.6931
        """
        x = self.data
        value = max(x, 0.0) + math.log1p(math.exp(-abs(x)))
        return self._unary(value, "softplus", _sigmoid(x))

    def abs(self) -> Scalar:
        """|self|, as a new node of the graph.

        Local derivative: |x|' = sign(x), 0 at 0 as in PyTorch (ACT-7).

        Returns:
            A new Scalar whose input is self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> Scalar(-2.0).abs().data
            2.0
        """
        x = self.data
        sign = 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)  # |x|'(0) = 0 (ACT-7)
        return self._unary(abs(x), "abs", sign)

    __abs__ = abs

    # ----- graph traversal ---------------------------------------------------------------

    def topological_order(self) -> list[Scalar]:
        """Every node reachable from self, each after all of its inputs (iterative DFS).

        Returns:
            A list of Scalars ending with self; each node appears once.

        Example:
            >>> from fnn.autograd import Scalar
            >>> x = Scalar(2.0, label="x")
            >>> [n.label or n.op for n in (x * x).exp().topological_order()]
            ['x', '*', 'exp']
        """
        order: list[Scalar] = []
        seen: set[int] = {id(self)}
        stack: list[tuple[Scalar, Iterator[Scalar]]] = [(self, iter(self.inputs))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(child.inputs)))
                    break
            else:  # all inputs done: the node can follow them
                stack.pop()
                order.append(node)
        return order

    def backward(self) -> None:
        """Add d(self)/d(node) into `node.grad` for every leaf reachable from self.

        Interior nodes are cleared first so that each pass starts from a clean slate;
        leaves accumulate across passes (call `zero_grad()` between independent passes).

        Returns:
            None; the gradients are in each node's `grad`.

        Example:
            >>> from fnn.autograd import Scalar
            >>> x = Scalar(3.0)
            >>> y = x * x + x  # x used three times: the paths add up
            >>> y.backward()
            >>> x.grad
            7.0
            >>> y.backward()  # leaves accumulate, as in PyTorch
            >>> x.grad
            14.0
        """
        order = self.topological_order()
        for node in order:
            if node.inputs:
                node.grad = 0.0
        self.grad += 1.0  # seed d(self)/d(self) = 1
        for node in reversed(order):
            node._backward()

    def zero_grad(self) -> None:
        """Set `grad` to 0 on every node of the graph that ends at self.

        Example:
            >>> from fnn.autograd import Scalar
            >>> x = Scalar(3.0)
            >>> y = 2 * x
            >>> y.backward()
            >>> y.zero_grad()
            >>> x.grad
            0.0
        """
        for node in self.topological_order():
            node.grad = 0.0

    # ----- graph export (fnn.autograd.graph) ---------------------------------------------

    def to_dot(self, **kwargs) -> str:
        """The graph as Graphviz DOT text; see `fnn.autograd.graph.to_dot`.

        Args:
            **kwargs: `rankdir` and `precision`, passed to `fnn.autograd.graph.to_dot`.

        Returns:
            The DOT text.
        """
        from fnn.autograd.graph import to_dot

        return to_dot(self, **kwargs)

    def draw(self, path, **kwargs):
        """Render the graph to SVG/PNG with Graphviz `dot`; see `fnn.autograd.graph.draw`.

        Args:
            path: the output file, ending in .svg or .png.
            **kwargs: `rankdir` and `precision`, passed to `fnn.autograd.graph.to_dot`.

        Returns:
            The path written, a pathlib.Path.
        """
        from fnn.autograd.graph import draw

        return draw(self, path, **kwargs)


def _no_backward() -> None:
    """Leaves have no inputs to pass a gradient to."""
