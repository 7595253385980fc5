"""Page layout of the safety reports: the document template, header, footer and styles.

Every page carries OPEN or CLOSED and the data cut-off in its header and "Page x of y" in its
footer. The total page count is only known at the end, so the canvas keeps each page's state
and draws the footers when the document is saved (the usual two-phase canvas recipe).
Documents are built in reportlab's invariant mode, so the same content gives the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate

MARGIN = 14 * mm
PAGE_WIDTH, PAGE_HEIGHT = A4
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
CLOSED_RED = colors.HexColor("#9b1c1c")

_base = getSampleStyleSheet()
STYLES = {
    "title": ParagraphStyle("title", parent=_base["Title"], fontSize=22, leading=27),
    "session": ParagraphStyle(
        "session", parent=_base["Title"], fontSize=44, leading=52, spaceBefore=18
    ),
    "subtitle": ParagraphStyle(
        "subtitle", parent=_base["Normal"], fontSize=12, leading=16, alignment=1
    ),
    # Kept with its table or figure by ``reports.tables.KeepSection``, not by keepWithNext
    # (which would push a long table to the next page, leaving the rest of this one blank).
    "h1": ParagraphStyle(
        "h1", parent=_base["Heading2"], fontSize=13, leading=16, spaceBefore=8, keepWithNext=0
    ),
    "body": ParagraphStyle("body", parent=_base["Normal"], fontSize=9, leading=11.5),
    "note": ParagraphStyle(
        "note",
        parent=_base["Normal"],
        fontSize=7,
        leading=8.6,
        textColor=colors.HexColor("#333333"),
    ),
    # A cell wraps at spaces only: a word too long for its column overflows rather than being
    # cut (columns are sized so none is; see ``reports.tables.content_widths``).
    "cell": ParagraphStyle(
        "cell", parent=_base["Normal"], fontSize=7.5, leading=9, splitLongWords=0
    ),
}


@dataclass(frozen=True)
class PageMarks:
    """What goes on every page: the session word and the cut-off."""

    session: str  # "OPEN" or "CLOSED"
    cutoff_text: str
    trial_code: str


def canvas_maker(marks: PageMarks):
    """A canvas class that stamps the header and "Page x of y" on every page at save."""

    class ReportCanvas(Canvas):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self):  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self._stamp(number, total)
                Canvas.showPage(self)
            Canvas.save(self)

        def _stamp(self, number: int, total: int) -> None:
            self.saveState()
            closed = marks.session == "CLOSED"
            self.setFillColor(CLOSED_RED if closed else colors.black)
            self.setFont("Helvetica-Bold", 11)
            top = PAGE_HEIGHT - MARGIN + 4 * mm
            label = "CLOSED - DSMB only" if closed else "OPEN"
            self.drawString(MARGIN, top, label)
            self.setFillColor(colors.black)
            self.setFont("Helvetica", 8)
            self.drawRightString(
                PAGE_WIDTH - MARGIN, top, f"{marks.trial_code} | Data cut-off {marks.cutoff_text}"
            )
            self.setLineWidth(0.5)
            self.line(MARGIN, top - 2 * mm, PAGE_WIDTH - MARGIN, top - 2 * mm)
            self.drawCentredString(PAGE_WIDTH / 2, MARGIN - 7 * mm, f"Page {number} of {total}")
            self.restoreState()

    return ReportCanvas


def render(story: list, marks: PageMarks, metadata: dict[str, str]) -> bytes:
    """Lay out ``story`` on A4 in invariant mode and return the PDF bytes."""
    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN + 4 * mm,
        bottomMargin=MARGIN,
        invariant=1,
        pageCompression=1,
        title=metadata["title"],
        author=metadata["author"],
        subject=metadata["subject"],
        creator=metadata["creator"],
        producer=metadata["creator"],
        keywords=metadata.get("keywords", ""),
    )
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="body")
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame])])
    doc.build(story, canvasmaker=canvas_maker(marks))
    return buffer.getvalue()
