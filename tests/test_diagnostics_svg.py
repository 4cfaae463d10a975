"""The report's figure writers (fnn.diagnostics.svg): PNGs decoded by an independent reader,
tick positions against hand-worked ranges, chart geometry against the axis arithmetic."""

import math
import re
import struct
import zlib

import numpy as np
import pytest

from fnn.diagnostics.svg import diverging_rgb, line_chart, log_ticks, nice_ticks, png


def read_png(data: bytes) -> np.ndarray:
    """A minimal PNG reader (8-bit gray/RGB, filter-0 rows) that also checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(tag + body)
        chunks.append((tag, body))
        pos += 12 + n
    assert [t for t, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    c = {0: 1, 2: 3}[color]
    rows = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(h, 1 + w * c)
    assert depth == 8 and not rows[:, 0].any()
    return rows[:, 1:].reshape((h, w) if c == 1 else (h, w, c))


@pytest.mark.parametrize("shape", [(28, 28), (3, 5, 3), (1, 1)])
def test_png_round_trips_through_an_independent_reader(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(read_png(png(pixels)), pixels)


def test_png_clips_and_rounds_other_dtypes():
    np.testing.assert_array_equal(read_png(png(np.array([[-5.0, 12.6, 300.0]]))), [[0, 13, 255]])


@pytest.mark.parametrize("shape", [(4,), (2, 2, 4), (0, 3)])
def test_png_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=r"png: pixels must be a non-empty \(H, W\) or \(H, W, 3\) array"):
        png(np.zeros(shape, np.uint8))


def test_diverging_rgb_is_white_at_zero_and_linear_to_the_ends():
    rgb = diverging_rgb(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan]), scale=2.0).astype(int)
    assert rgb[2].tolist() == [255, 255, 255] and rgb[5].tolist() == [255, 255, 255]
    assert rgb[0].tolist() == [33, 102, 172] and rgb[4].tolist() == [178, 24, 43]
    # halfway: the mean of white and the end colour, rounded
    assert rgb[1].tolist() == [round((255 + 33) / 2), round((255 + 102) / 2), round((255 + 172) / 2)]
    assert rgb[3].tolist() == [round((255 + 178) / 2), round((255 + 24) / 2), round((255 + 43) / 2)]


@pytest.mark.parametrize(
    "lo, hi, expected",
    [
        (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (12.0, 702.0, [0.0, 200.0, 400.0, 600.0, 800.0]),
        (-3.0, 7.0, [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]),
        (5.0, 5.0, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]),  # a constant series: ±10% around it
    ],
)
def test_nice_ticks_cover_the_range_with_round_steps(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected)


@pytest.mark.parametrize(
    "lo, hi, expected",
    [
        (0.45, 0.7, [0.2, 0.5, 1.0]),
        (3e-4, 4e-3, [2e-4, 5e-4, 1e-3, 2e-3, 5e-3]),
        (3e-9, 2.0, [1e-9, 1e-7, 1e-5, 1e-3, 1e-1, 1e1]),  # 10 decades: every 2nd
    ],
)
def test_log_ticks_enclose_the_range(lo, hi, expected):
    ticks = log_ticks(lo, hi)
    assert ticks == pytest.approx(expected, rel=1e-9)
    assert ticks[0] <= lo and ticks[-1] >= hi


def _points(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in m.split()]
        for m in re.findall(r'<polyline points="([^"]*)"', svg)
    ]


def test_line_chart_maps_values_linearly_between_its_ticks():
    svg = line_chart([("a", [0, 5, 10], [0.0, 0.5, 1.0])], title="t", xlabel="x", ylabel="y", markers=False)
    (line,) = _points(svg)
    # default geometry: plot box from x=66 to 460-14, y=30 to 280-42; ticks 0..1 span it vertically
    (x0, y0), (x1, y1), (x2, y2) = line
    assert y0 == pytest.approx(238.0) and y2 == pytest.approx(30.0) and y1 == pytest.approx(134.0)
    assert x1 - x0 == pytest.approx(x2 - x1) and 66 < x0 < x2 < 446


def test_line_chart_on_a_log_axis_puts_decades_equally_apart():
    svg = line_chart([("a", [1, 2, 3], [1e-4, 1e-3, 1e-2])], title="t", xlabel="x", ylabel="y", log_y=True)
    (line,) = _points(svg)
    ys = [y for _, y in line]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2])


def test_line_chart_breaks_at_non_finite_values_and_says_how_many():
    ys = [1.0, math.nan, 2.0, 3.0, math.inf, 4.0]
    svg = line_chart([("a", range(6), ys)], title="t", xlabel="x", ylabel="y", markers=False)
    assert [len(seg) for seg in _points(svg)] == [2]  # [2, 3]; 1.0 and 4.0 stand alone as dots
    assert svg.count("<circle") == 2 and "2 non-finite point(s) not drawn" in svg


def test_line_chart_escapes_labels():
    svg = line_chart([("<b>&", [1], [1.0]), ("x", [1], [2.0])], title="a<b", xlabel="x", ylabel="y")
    assert "<b>" not in svg and ">&lt;b&gt;&amp;</text>" in svg and 'aria-label="a&lt;b"' in svg


def test_line_chart_says_when_nothing_is_drawable():
    svg = line_chart([("a", [1, 2], [math.nan, -1.0])], title="t", xlabel="x", ylabel="y", log_y=True)
    assert "no values to draw" in svg and "2 non-finite or &lt;= 0 point(s) not drawn" in svg
    assert "<polyline" not in svg and "<circle" not in svg


def test_line_chart_guide_stays_in_range_and_joins_the_legend():
    svg = line_chart(
        [("r", [1, 2], [1e-6, 2e-6])], title="t", xlabel="x", ylabel="y", log_y=True, guide=(1e-3, "1e-3")
    )
    assert "stroke-dasharray" in svg and ">1e-3</text>" in svg and ">r</text>" in svg
    labels = re.findall(r'font-size="10"[^>]*>([^<]*)</text>', svg)
    assert "0.001" in labels and "1e-6" in labels  # the y axis reaches from the data to the guide


def test_line_chart_on_a_log_x_axis_puts_decades_equally_apart_and_drops_x_at_most_0():
    # The LR range test's shape: loss against lr over decades; lr 0 cannot be placed.
    lrs, losses = [1e-5, 1e-4, 1e-3, 1e-2, 0.0], [2.3, 2.2, 1.0, 9.0, 2.3]
    svg = line_chart(
        [("loss", lrs, losses)], title="t", xlabel="lr", ylabel="y", log_x=True, vlines=[(1e-3, "pick")]
    )
    (line,) = _points(svg)
    xs = [x for x, _ in line]
    assert len(xs) == 4 and xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.15)
    assert xs[2] - xs[1] == pytest.approx(xs[3] - xs[2], abs=0.15)  # coordinates have 1 decimal
    assert "1 non-finite or &lt;= 0 point(s) not drawn" in svg and ">pick</text>" in svg
    (vline_x,) = re.findall(r'<line x1="([\d.]+)"[^>]*stroke="#bbb"', svg)
    assert float(vline_x) == pytest.approx(xs[2], abs=0.1)  # at lr 1e-3, the third point
    labels = re.findall(r'font-size="10"[^>]*>([^<]*)</text>', svg)
    assert {"1e-5", "1e-4", "0.001", "0.01"} <= set(labels)  # one tick per decade
