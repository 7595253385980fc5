"""The safety report as an HTTP response, shared by the JSON API and the pages, so both
answer the same bytes, file name and digest header for the same request."""

from __future__ import annotations

from flask import Response


def report_response(report) -> Response:
    """A generated ``SafetyReport`` as a PDF attachment.

    The name holds the session and the cut-off only. ``X-Content-SHA256`` goes only to the
    reader of the file itself, who has the bytes anyway.
    """
    return Response(
        report.pdf,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{report.filename}"',
            "X-Content-SHA256": report.sha256,
        },
    )
