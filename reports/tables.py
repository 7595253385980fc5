"""Platypus tables of the safety report, each with its counting and rounding rules below it.

Every table takes the report's columns: one per arm and the total in the closed report, the
total alone in the open one. Header rows repeat when a table splits across pages.
"""

from __future__ import annotations

from collections.abc import Sequence

from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

from reports import counting as c
from reports.layout import CONTENT_WIDTH, STYLES

FONT, BOLD, SIZE = "Helvetica", "Helvetica-Bold", 7.5
GRID = colors.HexColor("#999999")
SHADE = colors.HexColor("#e8e8e8")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def heading(text: str) -> Paragraph:
    return Paragraph(escape(text), STYLES["h1"])


def footnote(*lines: str) -> Paragraph:
    return Paragraph("<br/>".join(escape(line) for line in lines), STYLES["note"])


def fit(text, width: float, bold: bool = False):
    """A plain string when it fits on one line (exact text for extraction), else a Paragraph."""
    if not isinstance(text, str) or "\n" in text:
        return text
    if stringWidth(text, BOLD if bold else FONT, SIZE) <= width - 8:
        return text
    markup = escape(text)
    return Paragraph(f"<b>{markup}</b>" if bold else markup, STYLES["cell"])


def table(
    header: list[list],
    body: list[list],
    widths: Sequence[float],
    *,
    spans: Sequence[tuple] = (),
    bold_rows: Sequence[int] = (),
    indent_rows: Sequence[int] = (),
) -> Table:
    """A report table: header rows shaded and repeated on every page the table spans."""
    rows = [[fit(v, widths[i], True) for i, v in enumerate(r)] for r in header]
    rows += [
        [fit(v, widths[i], n in bold_rows) for i, v in enumerate(r)]
        for n, r in enumerate(body, start=len(header))
    ]
    style = [
        ("FONT", (0, 0), (-1, -1), FONT, SIZE),
        ("FONT", (0, 0), (-1, len(header) - 1), BOLD, SIZE),
        ("BACKGROUND", (0, 0), (-1, len(header) - 1), SHADE),
        ("ALIGN", (1, 0), (-1, -1), "CENTER"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black),
        ("LINEBELOW", (0, len(header) - 1), (-1, len(header) - 1), 0.6, colors.black),
        ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.black),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        *[("SPAN", *span) for span in spans],
        *[("FONT", (0, n), (-1, n), BOLD, SIZE) for n in bold_rows],
        *[("LEFTPADDING", (0, n), (0, n), 14) for n in indent_rows],
    ]
    return Table(rows, colWidths=list(widths), repeatRows=len(header), style=TableStyle(style))


def section(title: str, flowable, *notes: str) -> list:
    return [heading(title), flowable, Spacer(1, 2), footnote(*notes), Spacer(1, 6)]


def simple_table(title, columns, rows, notes, first_width=190):
    """Label + one cell per column (rows: (label, [cell per column]))."""
    width = (CONTENT_WIDTH - first_width) / len(columns)
    header = [[""] + [col.header for col in columns]]
    body = [[label, *cells] for label, cells in rows]
    return section(title, table(header, body, [first_width] + [width] * len(columns)), *notes)


def paired_header(columns, left: str, right: str, first: str = ""):
    """Two header rows: each column's label spanning its two sub-columns."""
    top = [first]
    for col in columns:
        top += [col.header, ""]
    sub = [""] + [left, right] * len(columns)
    spans = [((1 + 2 * i, 0), (2 + 2 * i, 0)) for i in range(len(columns))]
    spans.append(((0, 0), (0, 1)))
    return [top, sub], spans


def paired_widths(columns, first_width):
    width = (CONTENT_WIDTH - first_width) / (2 * len(columns))
    return [first_width] + [width] * (2 * len(columns))


# --- AE tables -----------------------------------------------------------------------------


def overview_table(title, overview, columns):
    header, spans = paired_header(columns, "n (%)", "Events")
    body = [
        [row.label] + [v for col in columns for v in (
            c.n_pct(row.n(col), col.denominator), str(row.event_count(col)))]
        for row in overview
    ]  # fmt: skip
    t = table(header, body, paired_widths(columns, 200), spans=spans)
    return section(
        title,
        t,
        c.DENOMINATOR_RULE,
        c.PERCENT_RULE,
        "Participants are counted once per row however many events they had; Events counts "
        "every event. Any adverse event includes events before the first dose. Related: "
        "possible, probable or definite. Discontinuation: study drug withdrawn. Deaths: a "
        "fatal adverse event or a final disposition of death (Events: fatal adverse events).",
    )


def incidence_cells(row, columns):
    return [v for col in columns for v in (
        c.n_pct(row.n(col), col.denominator), c.n_pct(row.n(col, 3), col.denominator))]  # fmt: skip


def incidence_table(title, any_row, rows, columns):
    header, spans = paired_header(
        columns, "Any grade", "Grade 3-5", "System organ class\n  Preferred term"
    )
    body = [[any_row.label, *incidence_cells(any_row, columns)]]
    bold, indent = [len(header)], []
    for n, row in enumerate(rows, start=len(header) + 1):
        body.append([row.label, *incidence_cells(row, columns)])
        (bold if row.level == "soc" else indent).append(n)
    t = table(header, body, paired_widths(columns, 216), spans=spans, bold_rows=bold,
              indent_rows=indent)  # fmt: skip
    return section(
        title,
        t,
        c.DENOMINATOR_RULE,
        c.PERCENT_RULE,
        c.INCIDENCE_RULE,
        "Grade 3-5: participants whose worst grade in the row is 3 or higher (CTCAE).",
    )


def grade_table(title, rows, columns):
    body = [(row.label, [c.n_pct(row.n(col), col.denominator) for col in columns]) for row in rows]
    return simple_table(
        title,
        columns,
        body,
        [
            c.DENOMINATOR_RULE,
            c.PERCENT_RULE,
            "Each participant is counted once, at the worst grade of their treatment-emergent "
            "adverse events; the rows add up to N.",
        ],
    )


def special_interest_table(title, rows, columns):
    header, spans = paired_header(columns, "Any grade", "Grade 3-5", "Category")
    body = [
        [any_grade.label] + [v for col in columns for v in (
            c.n_pct(any_grade.n(col), col.denominator), c.n_pct(severe.n(col), col.denominator))]
        for any_grade, severe in rows
    ]  # fmt: skip
    terms = "; ".join(f"{k}: {', '.join(v)}" for k, v in c.SPECIAL_INTEREST.items())
    return section(
        title,
        table(header, body, paired_widths(columns, 150), spans=spans),
        c.DENOMINATOR_RULE,
        c.PERCENT_RULE,
        "Treatment-emergent events; a participant is counted once per category, at the worst "
        f"grade. Preferred terms per category - {terms}.",
    )


def liver_table(title, rows, columns):
    body = [(row.label, [c.n_pct(row.n(col), col.denominator) for col in columns]) for row in rows]
    return simple_table(
        title,
        columns,
        body,
        [
            c.DENOMINATOR_RULE,
            c.PERCENT_RULE,
            "Laboratory values at visits on or after the first dose, as multiples of the "
            "reporting laboratory's upper limit of normal (ULN); a participant counts once "
            "per row, at their highest value. Potential Hy's law: ALT or AST > 3 x ULN with "
            "total bilirubin > 2 x ULN at the same visit (a screen, not an adjudication).",
        ],
    )
