"""Small, dependency-free figure writers (the HTML run report, a run's curves): line charts
as inline SVG and images as PNG bytes (zlib + struct), with neither matplotlib nor a network.

``line_chart`` draws one or more series on linear or logarithmic axes, with ticks at round
numbers, an optional horizontal guide line, and a legend below the plot. Non-finite values
(a diverged loss) and, on a log axis, values <= 0 are left out of the line (it breaks
there) and counted in a note under the title, never drawn at a made-up position.
``png`` encodes an 8-bit grayscale (H, W) or RGB (H, W, 3) array; ``diverging_rgb`` maps
signed values to blue (negative), white (zero) and red (positive).

All text passes through ``html.escape``: labels may hold a layer's repr.
"""

from __future__ import annotations

import base64
import html
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["PALETTE", "diverging_rgb", "line_chart", "log_ticks", "nice_ticks", "png", "png_data_uri"]

# matplotlib's tab10: distinguishable, and readable on white.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_CHAR_WIDTH = 6.6  # px per character of 11px sans-serif, for laying out legends and ticks


def png(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG of a grayscale (H, W) or RGB (H, W, 3) uint8 array.

    Args:
        pixels: uint8 values (other dtypes are clipped to [0, 255] and rounded).

    Returns:
        The PNG file's bytes (filter 0 on every row, zlib level 9).

    Example:
        >>> import numpy as np
        >>> from fnn.diagnostics.svg import png
        >>> data = png(np.zeros((2, 3), np.uint8))
        >>> data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", data[16:24]  # the signature; IHDR width 3, height 2
        (True, b'\\x00\\x00\\x00\\x03\\x00\\x00\\x00\\x02')
    """
    a = np.asarray(pixels)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"png: pixels must be a non-empty (H, W) or (H, W, 3) array, got shape {a.shape}")
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(a))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0 if a.ndim == 2 else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def png_data_uri(pixels: np.ndarray) -> str:
    """``png(pixels)`` as a ``data:image/png;base64,...`` URI for an ``<img src>``.

    Args:
        pixels: as for ``png``.

    Returns:
        The URI.
    """
    return "data:image/png;base64," + base64.b64encode(png(pixels)).decode("ascii")


def diverging_rgb(values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Signed values as RGB: -scale blue (#2166ac), 0 white, +scale red (#b2182b).

    Args:
        values: any real array.
        scale: the magnitude drawn at full colour (default: ``max |values|``; 0 or a
            non-finite scale draws everything white).

    Returns:
        uint8 array of shape ``values.shape + (3,)``.

    Example:
        >>> import numpy as np
        >>> from fnn.diagnostics.svg import diverging_rgb
        >>> diverging_rgb(np.array([-1.0, 0.0, 1.0])).tolist()
        [[33, 102, 172], [255, 255, 255], [178, 24, 43]]
    """
    v = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    s = float(np.max(np.abs(v))) if scale is None else float(scale)
    t = np.clip(v / s, -1.0, 1.0) if s > 0 and math.isfinite(s) else np.zeros_like(v)
    white = np.array([255.0, 255.0, 255.0])
    blue, red = np.array([33.0, 102.0, 172.0]), np.array([178.0, 24.0, 43.0])
    a = np.abs(t)[..., None]
    rgb = np.where(t[..., None] < 0, white + a * (blue - white), white + a * (red - white))
    return np.rint(rgb).astype(np.uint8)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick positions (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi].

    Args:
        lo, hi: the data range, finite, ``lo <= hi``.
        count: about how many ticks.

    Returns:
        Ticks from the largest round number <= lo to the smallest >= hi.

    Example:
        >>> from fnn.diagnostics.svg import nice_ticks
        >>> nice_ticks(0.03, 0.97)
        [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions for a log axis over [lo, hi] (both > 0), the first and last enclosing it.

    Within about two decades the ticks are 1, 2 and 5 times powers of ten (so a series that
    varies by 30% is not squeezed against one gridline); over more, whole decades, every
    ``k``-th one so that there are at most 7.

    Args:
        lo, hi: the data range, ``0 < lo <= hi``.

    Returns:
        Increasing tick values.

    Example:
        >>> from fnn.diagnostics.svg import log_ticks
        >>> log_ticks(0.45, 0.7), log_ticks(3e-5, 2e-1)
        ([0.2, 0.5, 1.0], [1e-05, 0.0001, 0.001, 0.01, 0.1, 1.0])
    """
    d_lo, d_hi = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    d_hi = max(d_hi, d_lo + 1)
    if d_hi - d_lo <= 2:
        grid = [m * 10.0**d for d in range(d_lo, d_hi + 1) for m in (1, 2, 5)]
        below = [t for t in grid if t <= lo * (1 + 1e-12)]
        above = [t for t in grid if t >= hi * (1 - 1e-12)]
        first, last = below[-1], above[0]
        if last <= first:
            last = grid[grid.index(first) + 1]
        return [float(f"{t:.12g}") for t in grid if first <= t <= last]
    stride = max(1, math.ceil((d_hi - d_lo) / 6))
    last = d_lo + stride * math.ceil((d_hi - d_lo) / stride)
    return [float(f"1e{d}") for d in range(d_lo, last + 1, stride)]


def _fmt(v: float, percent: bool = False) -> str:
    if percent:
        return f"{v * 100:.4g}%"
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        mantissa, exponent = f"{v:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{v:.4g}"


def _text(x: float, y: float, s: str, anchor: str = "middle", size: int = 11, extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>'
        f"{html.escape(s)}</text>"
    )


# --- line charts ---------------------------------------------------------------------


@dataclass(frozen=True)
class _XAxis:
    label: str
    log: bool = False
    integer: bool = False  # ticks at whole numbers only (epochs)
    vlines: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class _YAxis:
    label: str
    log: bool = False
    percent: bool = False
    range: tuple[float, float] | None = None
    guide: tuple[float, str] | None = None


class _Line(NamedTuple):
    label: str
    x: np.ndarray
    y: np.ndarray  # NaN where a point is left out
    color: str
    dash: str  # the SVG attribute, or ""


@dataclass(frozen=True)
class _Scale:
    """Where a value falls along an axis, 0 at ``lo - pad`` and 1 at ``hi + pad`` (log10 units
    on a log axis); ``ticks`` in data units."""

    lo: float
    hi: float
    log: bool
    ticks: tuple[float, ...]
    pad: float = 0.0

    def at(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return (t - self.lo + self.pad) / (self.hi - self.lo + 2 * self.pad)

    def covers(self, v: float) -> bool:
        """Whether ``v`` lies within the data range (the pad excluded)."""
        return (not self.log or v > 0) and self.lo <= (math.log10(v) if self.log else v) <= self.hi


@dataclass(frozen=True)
class _Frame:
    """The plot box inside the chart: ``top`` leaves a line for a note when points were left out."""

    width: int
    height: int
    top: int
    left: int = 66
    right: int = 14
    bottom: int = 42

    @property
    def pw(self) -> int:
        return self.width - self.left - self.right

    @property
    def ph(self) -> int:
        return self.height - self.top - self.bottom

    def x(self, scale: _Scale, v: float) -> float:
        return self.left + scale.at(v) * self.pw

    def y(self, scale: _Scale, v: float) -> float:
        return self.top + self.ph - scale.at(v) * self.ph


_DASH = ' stroke-dasharray="5 3"'


def _lines(series: Sequence[tuple], xaxis: _XAxis, yaxis: _YAxis) -> tuple[list[_Line], int, list[float]]:
    """The series as drawable lines, how many points are left out, and the finite x of
    non-finite y values (marked on the plot's top edge)."""
    lines, dropped, nonfinite_x = [], 0, []
    for i, (label, xs, ys, *rest) in enumerate(series):
        style = rest[0] if rest else {}
        x = np.asarray(xs, np.float64).reshape(-1)
        y = np.asarray(ys, np.float64).reshape(-1)
        n = min(len(x), len(y))
        x, y = x[:n], y[:n]
        ok = (
            np.isfinite(x)
            & np.isfinite(y)
            & ((y > 0) if yaxis.log else True)
            & ((x > 0) if xaxis.log else True)
        )
        dropped += int(np.sum(~ok))
        nonfinite_x.extend(x[np.isfinite(x) & ~np.isfinite(y) & ((x > 0) if xaxis.log else True)].tolist())
        color = PALETTE[style.get("color", i) % len(PALETTE)]
        lines.append(_Line(label, x, np.where(ok, y, np.nan), color, _DASH if style.get("dash") else ""))
    return lines, dropped, nonfinite_x


def _legend(entries: list[tuple[str, str, str]], frame: _Frame) -> tuple[list[str], int]:
    """Legend rows below the x label, left to right and wrapped, and the chart's full height.
    One entry or none needs no legend."""
    legend, lx, ly = [], frame.left, frame.height + 4
    for label, color, dash in entries:
        w = 22 + _CHAR_WIDTH * len(label) + 14
        if lx + w > frame.width and lx > frame.left:
            lx, ly = frame.left, ly + 16
        legend.append(
            f'<line x1="{lx}" y1="{ly + 6}" x2="{lx + 16}" y2="{ly + 6}" '
            f'stroke="{color}" stroke-width="2.5"{dash}/>' + _text(lx + 20, ly + 10, label, "start")
        )
        lx += w
    if len(entries) <= 1:
        return [], frame.height
    return legend, ly + 20


def _y_scale(values: np.ndarray, yaxis: _YAxis) -> _Scale:
    """Ticks enclosing the data, the fixed range and the guide; the scale spans the ticks."""
    lo, hi = float(values.min()), float(values.max())
    if yaxis.range is not None:
        lo, hi = min(lo, yaxis.range[0]), max(hi, yaxis.range[1])
    if yaxis.guide is not None:
        lo, hi = min(lo, yaxis.guide[0]), max(hi, yaxis.guide[0])
    if yaxis.log:
        ticks = log_ticks(lo, hi)
        return _Scale(math.log10(ticks[0]), math.log10(ticks[-1]), True, tuple(ticks))
    ticks = nice_ticks(lo, hi)
    return _Scale(ticks[0], ticks[-1], False, tuple(ticks))


def _x_scale(values: np.ndarray, xaxis: _XAxis) -> _Scale:
    """The data range padded by 3% on each side (±0.5 around a single x), ticks inside it."""
    data = np.log10(values) if xaxis.log else values
    lo, hi = float(data.min()), float(data.max())
    if hi == lo:  # one point (a one-epoch run): centre it
        lo, hi = lo - 0.5, hi + 0.5
    if xaxis.integer:  # whole numbers only (epochs), at most about 8 of them
        first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
        ticks = list(range(first, last + 1, max(1, math.ceil((last - first + 1) / 8))))
    elif xaxis.log:
        ticks = [t for t in log_ticks(10**lo, 10**hi) if lo - 1e-9 <= math.log10(t) <= hi + 1e-9]
    else:
        ticks = [t for t in nice_ticks(lo, hi, 6) if lo - 1e-9 <= t <= hi + 1e-9]
    return _Scale(lo, hi, xaxis.log, tuple(ticks), pad=0.03 * (hi - lo))


def _axes(
    frame: _Frame, xs: _Scale, ys: _Scale, yaxis: _YAxis, vlines: Sequence[tuple[float, str]]
) -> list[str]:
    """Grid lines and tick labels, the labelled vertical lines and the guide line."""
    out = []
    left, top, pw, ph = frame.left, frame.top, frame.pw, frame.ph
    for t in ys.ticks:
        y = frame.y(ys, t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(_text(left - 5, y + 4, _fmt(t, yaxis.percent), "end", 10))
    for t in xs.ticks:
        x = frame.x(xs, t)
        out.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#999"/>')
        out.append(_text(x, top + ph + 15, _fmt(t), size=10))
    for x_at, label in vlines:
        if xs.covers(x_at):
            vx = frame.x(xs, x_at)
            out.append(
                f'<line x1="{vx:.1f}" y1="{top}" x2="{vx:.1f}" y2="{top + ph}" '
                'stroke="#bbb" stroke-dasharray="2 3"/>'
            )
            out.append(_text(vx + 3, top + 11, label, "start", 9, ' fill="#888"'))
    if yaxis.guide is not None:
        gy = frame.y(ys, yaxis.guide[0])
        out.append(
            f'<line x1="{left}" y1="{gy:.1f}" x2="{left + pw}" y2="{gy:.1f}" stroke="#444" '
            'stroke-dasharray="6 4" stroke-width="1.2"/>'
        )
    return out


def _draw(line: _Line, frame: _Frame, xs: _Scale, ys: _Scale, dots: bool) -> list[str]:
    """One line: a polyline per run of drawable points, and dots (always for a lone point)."""
    segments: list[list[str]] = [[]]
    for xv, yv in zip(line.x, line.y, strict=True):
        if np.isfinite(yv):
            segments[-1].append(f"{frame.x(xs, xv):.1f},{frame.y(ys, yv):.1f}")
        elif segments[-1]:
            segments.append([])
    out = []
    for seg in (s for s in segments if s):
        if len(seg) > 1:
            out.append(
                f'<polyline points="{" ".join(seg)}" fill="none" '
                f'stroke="{line.color}" stroke-width="1.8"{line.dash}/>'
            )
        if dots or len(seg) == 1:
            out.extend(
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{line.color}"/>'
                for p in seg
            )
    return out


def _header(frame: _Frame, total_h: int, title: str, xaxis: _XAxis, yaxis: _YAxis, dropped: int) -> list[str]:
    """The svg element, title, plot box, axis labels and the note on left-out points."""
    left, top, pw, ph = frame.left, frame.top, frame.pw, frame.ph
    out = [
        f'<svg class="chart" width="{frame.width}" height="{total_h}" '
        f'viewBox="0 0 {frame.width} {total_h}" role="img" aria-label="{html.escape(title)}" '
        'font-family="sans-serif">',
        _text(frame.width / 2, 16, title, size=13, extra=' font-weight="bold"'),
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
        _text(left + pw / 2, frame.height - 6, xaxis.label),
        _text(14, top + ph / 2, yaxis.label, extra=f' transform="rotate(-90 14 {top + ph / 2:.1f})"'),
    ]
    if dropped:
        what = "non-finite or <= 0" if yaxis.log or xaxis.log else "non-finite"
        out.append(
            _text(left + pw, top - 6, f"{dropped} {what} point(s) not drawn", "end", 10, ' fill="#b00"')
        )
    return out


def line_chart(
    series: Sequence[tuple],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
    percent: bool = False,
    y_range: tuple[float, float] | None = None,
    guide: tuple[float, str] | None = None,
    integer_x: bool = False,
    markers: bool | None = None,
    vlines: Sequence[tuple[float, str]] = (),
    width: int = 460,
    height: int = 280,
    log_x: bool = False,
) -> str:
    """One SVG line chart.

    Args:
        series: ``(label, xs, ys)`` per line, drawn in ``PALETTE`` order, or
            ``(label, xs, ys, style)`` with ``style = {"color": palette index, "dash": bool}``
            (e.g. a layer's min and max in one colour, the min dashed).
        title: the chart's title (top).
        xlabel, ylabel: axis labels; put the unit in them.
        log_y: a base-10 log y axis (values <= 0 are left out and counted in a note;
            non-finite values also get a red × on the plot's top edge at their x).
        percent: y values are fractions, labelled as percentages.
        y_range: a fixed y range (e.g. (0, 1) for fractions); it grows to hold the data.
        guide: ``(y, label)``: a dashed horizontal line, always inside the y range, named in
            the legend.
        integer_x: x ticks at whole numbers only (epochs).
        markers: draw a dot at each point (default: when the longest series has <= 40 points).
        vlines: ``(x, label)`` pairs: faint vertical lines labelled at the top (epoch starts).
        width, height: the plot's size in px (the legend adds rows below).
        log_x: a base-10 log x axis (points with x <= 0 are left out and counted in the note).

    Returns:
        ``<svg ...>...</svg>`` text; a chart with no drawable value says so inside the frame.

    Example:
        >>> from fnn.diagnostics.svg import line_chart
        >>> lines = [("train", [1, 2], [0.5, 0.25]), ("test", [1, 2], [0.4, 0.3])]
        >>> svg = line_chart(lines, title="loss", xlabel="epoch", ylabel="loss")
        >>> svg.startswith("<svg") and svg.count("<polyline") == 2 and ">test</text>" in svg
        True
    """
    xaxis = _XAxis(xlabel, log_x, integer_x, tuple(vlines))
    yaxis = _YAxis(ylabel, log_y, percent, y_range, guide)
    lines, dropped, nonfinite_x = _lines(series, xaxis, yaxis)
    frame = _Frame(width, height, top=42 if dropped else 30)
    # The guide is a legend entry: a label drawn on the plot would sit on the data it is compared with.
    entries = [(line.label, line.color, line.dash) for line in lines]
    entries += [(guide[1], "#444", _DASH)] if guide is not None else []
    legend, total_h = _legend(entries, frame)
    out = _header(frame, total_h, title, xaxis, yaxis, dropped)
    ys_all = np.concatenate([line.y[np.isfinite(line.y)] for line in lines]) if lines else np.zeros(0)
    if len(ys_all) == 0:
        out.append(
            _text(
                frame.left + frame.pw / 2, frame.top + frame.ph / 2, "no values to draw", extra=' fill="#666"'
            )
        )
        return "".join(out) + "</svg>"
    # The x range holds the points left out too, so a run that blew up shows where it did.
    xs_all = np.concatenate(
        [line.x[np.isfinite(line.x) & ((line.x > 0) if log_x else True)] for line in lines]
    )
    xs, ys = _x_scale(xs_all, xaxis), _y_scale(ys_all, yaxis)
    out += _axes(frame, xs, ys, yaxis, xaxis.vlines)
    # a red mark on the top edge where a value was inf/nan
    out += [
        _text(frame.x(xs, xv), frame.top + 4, "×", size=10, extra=' fill="#b00"')
        for xv in sorted(set(nonfinite_x))
    ]
    dots = max(len(line.x) for line in lines) <= 40 if markers is None else markers
    for line in lines:
        out += _draw(line, frame, xs, ys, dots)
    return "".join(out + legend) + "</svg>"
