"""Platypus tables of the safety report, each with its counting and rounding rules below it.

Every table takes the report's columns: one per arm and the total in the closed report, the
total alone in the open one. Header rows repeat when a table splits across pages.
"""

from __future__ import annotations

from collections.abc import Sequence

from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import KeepTogether, Paragraph, Spacer, Table, TableStyle
from reportlab.platypus.doctemplate import FrameBreak

from reports import counting as c
from reports.layout import CONTENT_WIDTH, STYLES

FONT, BOLD, SIZE = "Helvetica", "Helvetica-Bold", 7.5
GRID = colors.HexColor("#999999")
SHADE = colors.HexColor("#e8e8e8")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def heading(text: str) -> Paragraph:
    """A section heading; ``KeepSection`` keeps it with its table or figure."""
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


PADDING = 6  # reportlab's default left and right cell padding
LISTING_PADDING = 3  # listings: many columns of text, closer together


def content_widths(
    rows: Sequence[Sequence[str]],
    total: float = CONTENT_WIDTH,
    header_rows: int = 1,
    padding: float = LISTING_PADDING,
) -> list[float]:
    """Column widths sized to their content, for listings.

    A column is never narrower than its longest word (in its header or any value: words are
    split at spaces only, so a date or a code is one word), so a cell wraps only at a space,
    never inside a word. The space left is then given whole to the columns that need least
    to print every value on one line (short phrases such as "drug interrupted"), so that only
    the columns of long text (the terms) wrap; those share what remains in proportion to
    their need.
    """
    count = len(rows[0])
    least, most = [0.0] * count, [0.0] * count
    for n, row in enumerate(rows):
        font = BOLD if n < header_rows else FONT
        for i, value in enumerate(row):
            words = str(value).split() or [""]
            least[i] = max(least[i], *(stringWidth(w, font, SIZE) for w in words))
            most[i] = max(most[i], stringWidth(" ".join(words), font, SIZE))
    widths = [w + 2 * padding + 1 for w in least]
    need = [m - w for m, w in zip(most, least, strict=True)]
    spare = total - sum(widths)
    if spare <= 0:  # cannot happen with the report's listings; keep words whole regardless
        return widths
    waiting = sorted(range(count), key=lambda i: (need[i], i))
    while waiting and need[waiting[0]] <= spare:
        i = waiting.pop(0)
        widths[i] += need[i]
        spare -= need[i]
    if waiting:  # the long ones share the rest, in proportion to their need
        share = sum(need[i] for i in waiting)
        for i in waiting:
            widths[i] += spare * need[i] / share
    else:  # everything fits on one line: the rest in proportion to the widths
        widths = [w + spare * w / sum(widths) for w in widths]
    return widths


class TableSpec:
    """A report table before layout: ``section`` adds its footnote as the last row, so the
    note stays on the page where the table ends."""

    def __init__(self, header, body, widths, spans=(), bold_rows=(), indent_rows=(), align=None):
        self.header, self.body, self.widths = header, body, list(widths)
        self.spans, self.bold_rows, self.indent_rows = spans, bold_rows, indent_rows
        # Listings: every column left-aligned, cells padded by LISTING_PADDING (the widths
        # from ``content_widths``); else counts centred, reportlab's padding.
        self.align = align

    def build(self, note: Paragraph | None = None) -> Table:
        widths, header = self.widths, self.header
        rows = [[fit(v, widths[i], True) for i, v in enumerate(r)] for r in header]
        rows += [
            [fit(v, widths[i], n in self.bold_rows) for i, v in enumerate(r)]
            for n, r in enumerate(self.body, start=len(header))
        ]
        last = len(rows) - 1  # the last row of the table proper
        style = [
            ("FONT", (0, 0), (-1, -1), FONT, SIZE),
            ("FONT", (0, 0), (-1, len(header) - 1), BOLD, SIZE),
            ("BACKGROUND", (0, 0), (-1, len(header) - 1), SHADE),
            ("ALIGN", (1, 0), (-1, -1), self.align or "CENTER"),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black),
            ("LINEBELOW", (0, len(header) - 1), (-1, len(header) - 1), 0.6, colors.black),
            ("LINEBELOW", (0, last), (-1, last), 0.8, colors.black),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            *[("SPAN", *span) for span in self.spans],
            *[("FONT", (0, n), (-1, n), BOLD, SIZE) for n in self.bold_rows],
            *[("LEFTPADDING", (0, n), (0, n), 14) for n in self.indent_rows],
        ]
        if self.align == "LEFT":
            style += [
                ("LEFTPADDING", (0, 0), (-1, -1), LISTING_PADDING),
                ("RIGHTPADDING", (0, 0), (-1, -1), LISTING_PADDING),
            ]
        if note is not None:
            # The footnote is the table's last row, spanning it, never split from the last
            # two rows above it: wherever the table breaks, its note is on its last page.
            rows.append([note] + [""] * (len(widths) - 1))
            keep_from = max(len(header), last - 1)
            style += [
                ("SPAN", (0, last + 1), (-1, last + 1)),
                ("NOSPLIT", (0, keep_from), (-1, last + 1)),
                ("LEFTPADDING", (0, last + 1), (-1, last + 1), 0),
                ("RIGHTPADDING", (0, last + 1), (-1, last + 1), 0),
                ("TOPPADDING", (0, last + 1), (-1, last + 1), 3),
                ("BOTTOMPADDING", (0, last + 1), (-1, last + 1), 0),
            ]
        return Table(rows, colWidths=list(widths), repeatRows=len(header), style=TableStyle(style))


def table(
    header: list[list],
    body: list[list],
    widths: Sequence[float],
    *,
    spans: Sequence[tuple] = (),
    bold_rows: Sequence[int] = (),
    indent_rows: Sequence[int] = (),
    align: str | None = None,
) -> TableSpec:
    """A report table: header rows shaded and repeated on every page the table spans."""
    return TableSpec(header, body, widths, spans, bold_rows, indent_rows, align)


class KeepSection(KeepTogether):
    """A section (heading, table or figure, footnote) on one page when it fits on one page:
    otherwise it moves to the next. A section longer than a page starts where it is when at
    least ``MIN_START`` points are left (its heading, the header rows and a few rows), so a
    long table does not leave half a page blank, and splits with its header rows repeated."""

    MIN_START = 120

    def split(self, aW, aH):  # noqa: N803 - reportlab's names
        if getattr(self, "_wrapInfo", None) != (aW, aH):
            self.wrap(aW, aH)
        content = list(self._content)
        frame = getattr(self, "_frame", None)
        at_top = bool(frame is not None and getattr(frame, "_atTop", False))
        page = frame._height - frame._topPadding - frame._bottomPadding if frame else aH
        if self._H <= aH or at_top:
            return content
        if self._H > page and aH >= self.MIN_START:
            return content
        return [FrameBreak(), *content]


def section(title: str, flowable, *notes: str) -> list:
    """Heading, table or figure, and footnote, kept on one page (``KeepSection``); a table's
    footnote is its own last row, so it is on the page where the table ends."""
    note = footnote(*notes)
    if isinstance(flowable, TableSpec):
        parts = [heading(title), flowable.build(note)]
    else:
        parts = [heading(title), flowable, Spacer(1, 2), note]
    return [KeepSection(parts), Spacer(1, 6)]


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
