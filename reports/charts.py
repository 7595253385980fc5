"""Figures drawn with reportlab's own graphics: enrollment over time, and the AE dot plot.

The enrollment figure is pooled (by site, never by arm) and appears in both reports; the dot
plot compares arms and is built for the closed report only.
"""

from __future__ import annotations

import math
from datetime import date

from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Circle, Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth

from reports.counting import UNCODED_SOC, Column, IncidenceRow, risk_difference
from reports.layout import CONTENT_WIDTH

SITE_COLOURS = [
    colors.HexColor(c)
    for c in ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
]
ARM_COLOURS = (colors.HexColor("#1f4e9b"), colors.HexColor("#c2410c"))
FONT = "Helvetica"
ITALIC = "Helvetica-Oblique"
UNCODED_MARK = "[uncoded]"


def term_label(row: IncidenceRow, width: float, size: float = 7) -> tuple[str, str]:
    """(text, font) of a dot plot row: a preferred term in roman; a verbatim term awaiting
    coding in italics after ``[uncoded]`` (it is no preferred term). Shortened at a word
    boundary, with an ellipsis, to fit ``width``."""
    uncoded = row.system_organ_class == UNCODED_SOC
    font = ITALIC if uncoded else FONT
    words = ([UNCODED_MARK] if uncoded else []) + row.label.split()
    text = " ".join(words)
    while len(words) > 1 and stringWidth(text, font, size) > width:
        words.pop()
        text = " ".join(words) + " ..."
    return text, font


def _month_plot(x, width, months, series, colours, top, dashed=()):
    """A line plot of monthly values on a y scale from 0 to ``top``."""
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = x, 46, width, 150
    plot.data = [[(i, v) for i, v in enumerate(values)] for values in series]
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax = 0, _nice_top(top)
    plot.yValueAxis.labels.fontName = FONT
    plot.yValueAxis.labels.fontSize = 7
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, max(len(months) - 1, 1)
    step = max(1, math.ceil(len(months) / 6))
    plot.xValueAxis.valueSteps = list(range(0, len(months), step))
    plot.xValueAxis.labelTextFormat = lambda i: months[int(i)].strftime("%Y-%m")
    plot.xValueAxis.labels.fontName = FONT
    plot.xValueAxis.labels.fontSize = 6.5
    plot.xValueAxis.labels.angle = 30
    plot.xValueAxis.labels.dy = -8
    for i, colour in enumerate(colours):
        plot.lines[i].strokeColor = colour
        plot.lines[i].strokeWidth = 1.4
        if i in dashed:
            plot.lines[i].strokeDashArray = (4, 3)
    return plot


def _nice_top(value: float) -> float:
    """The y axis's top: the data's maximum, plus 5%, rounded up to a round number."""
    value = max(value, 1.0) * 1.05
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power  # pragma: no cover - the loop always returns


def enrollment_figure(months: list[date], per_site: dict[str, list[int]], planned: list[float]):
    """Cumulative randomized participants: all sites against the planned curve (left) and
    each site (right), each panel on its own scale.

    A DSMB statistician asks two questions of this figure: is accrual on plan, and which site
    lags. On one shared axis the planned total sets the scale and each site, a fraction of the
    total, lies flattened along the bottom, answering neither. So the total and the plan share
    the left panel (the plan is not clipped: how far accrual is behind or ahead of it is the
    point), and the sites get the right panel, scaled to the largest site, both from zero.
    """
    drawing = Drawing(CONTENT_WIDTH, 240)
    if not months:
        drawing.add(String(10, 110, "No participants registered by the cut-off.", fontName=FONT))
        return drawing
    total = [sum(values) for values in zip(*per_site.values(), strict=True)] or [0] * len(months)
    gap, left_x = 44, 34
    width = (CONTENT_WIDTH - left_x - gap - 8) / 2
    right_x = left_x + width + gap
    total_colours = [colors.black, colors.HexColor("#777777")]
    drawing.add(
        _month_plot(left_x, width, months, [total, planned], total_colours,
                    max(max(total), max(planned)), dashed=(1,))
    )  # fmt: skip
    site_colours = [SITE_COLOURS[i % len(SITE_COLOURS)] for i in range(len(per_site))]
    site_top = max((max(v) for v in per_site.values() if v), default=0)
    if per_site:
        drawing.add(
            _month_plot(right_x, width, months, list(per_site.values()), site_colours, site_top)
        )
    for x, title in ((left_x, "All sites: randomized and planned (cumulative)"),
                     (right_x, "By site: randomized (cumulative), own scale")):  # fmt: skip
        drawing.add(String(x - 26, 226, title, fontName="Helvetica-Bold", fontSize=7.5))
    for x, pairs in (
        (left_x, list(zip(total_colours, ["All sites", "Planned (all sites)"], strict=True))),
        (right_x, list(zip(site_colours, list(per_site), strict=True))),
    ):
        legend = Legend()
        legend.x, legend.y = x, 214
        legend.alignment = "right"
        legend.columnMaximum = 1
        legend.deltax, legend.dx, legend.dy = 8, 14, 3
        legend.autoXPadding = 8
        legend.fontName, legend.fontSize = FONT, 7
        legend.colorNamePairs = pairs
        drawing.add(legend)
    return drawing


def dot_plot_rows(rows: list[IncidenceRow], columns: list[Column], limit: int = 30):
    """Preferred terms for the dot plot: the most frequent in total, ordered by risk difference."""
    first, second, total = columns[0], columns[1], columns[-1]
    terms = [r for r in rows if r.level == "pt" and r.n(total) > 0]
    terms.sort(key=lambda r: (-r.n(total), r.label))
    chosen = []
    for row in terms[:limit]:
        rd = risk_difference(row.n(first), first.denominator, row.n(second), second.denominator)
        if rd is not None:
            chosen.append((row, rd))
    chosen.sort(key=lambda item: (-item[1][0], item[0].label))
    return chosen


def dot_plot(rows: list[IncidenceRow], columns: list[Column]):
    """Incidence per arm (left) and the risk difference with its 95% interval (right)."""
    first, second = columns[0], columns[1]
    chosen = dot_plot_rows(rows, columns)
    line, top_pad, bottom_pad, label_w = 12, 30, 34, 150
    height = top_pad + bottom_pad + line * max(len(chosen), 1)
    drawing = Drawing(CONTENT_WIDTH, height)
    if not chosen:
        drawing.add(String(10, height / 2, "No treatment-emergent events to plot.", fontName=FONT))
        return drawing
    left_x, left_w = label_w, (CONTENT_WIDTH - label_w) * 0.45
    right_x, right_w = left_x + left_w + 20, (CONTENT_WIDTH - label_w) * 0.55 - 24
    pct = [100 * row.n(c) / c.denominator for row, _ in chosen for c in (first, second)]
    pct_max = max(5.0, math.ceil(max(pct) / 5) * 5)
    bound = max(0.05, max(max(abs(lo), abs(hi)) for _, (_, lo, hi) in chosen))
    bound = math.ceil(bound * 20) / 20

    def px(value):
        return left_x + left_w * value / pct_max

    def rx(value):
        return right_x + right_w * (value + bound) / (2 * bound)

    base = bottom_pad
    for i, (row, (d, lo, hi)) in enumerate(chosen):
        y = height - top_pad - line * i - line / 2
        text, font = term_label(row, label_w - 8)
        drawing.add(String(label_w - 4, y - 2.5, text, fontName=font, fontSize=7,
                           textAnchor="end"))  # fmt: skip
        drawing.add(Line(left_x, y, left_x + left_w, y, strokeColor=colors.HexColor("#eeeeee")))
        for column, colour in zip((first, second), ARM_COLOURS, strict=True):
            value = 100 * row.n(column) / column.denominator
            drawing.add(Circle(px(value), y, 2.6, fillColor=colour, strokeColor=colour))
        drawing.add(Line(rx(lo), y, rx(hi), y, strokeColor=colors.black, strokeWidth=0.8))
        drawing.add(Rect(rx(d) - 2, y - 2, 4, 4, fillColor=colors.black, strokeColor=None))
    for x0, width in ((left_x, left_w), (right_x, right_w)):
        drawing.add(Line(x0, base, x0 + width, base, strokeColor=colors.black))
    drawing.add(Line(rx(0), base, rx(0), height - top_pad + 4, strokeDashArray=(2, 2)))
    for tick in range(0, int(pct_max) + 1, max(5, int(pct_max) // 5)):
        drawing.add(String(px(tick), base - 10, str(tick), fontName=FONT, fontSize=7,
                           textAnchor="middle"))  # fmt: skip
    for tick in (-bound, -bound / 2, 0.0, bound / 2, bound):
        drawing.add(String(rx(tick), base - 10, f"{100 * tick:+.0f}" if tick else "0",
                           fontName=FONT, fontSize=7, textAnchor="middle"))  # fmt: skip
    drawing.add(String(px(pct_max / 2), base - 22, "Incidence (%)", fontName=FONT, fontSize=7.5,
                       textAnchor="middle"))  # fmt: skip
    drawing.add(String(rx(0), base - 22, f"Risk difference {first.label} - {second.label} "
                       "(percentage points), 95% CI", fontName=FONT, fontSize=7.5,
                       textAnchor="middle"))  # fmt: skip
    for i, (column, colour) in enumerate(zip((first, second), ARM_COLOURS, strict=True)):
        x = left_x + 70 * i
        drawing.add(Circle(x + 4, height - 12, 2.6, fillColor=colour, strokeColor=colour))
        drawing.add(String(x + 10, height - 14.5, f"{column.label} (N={column.denominator})",
                           fontName=FONT, fontSize=7))  # fmt: skip
    return drawing
