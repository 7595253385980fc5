"""The downloads as HTTP responses, shared by the JSON API and the pages.

A page and the API hand the same request to the same service and answer with the same
bytes, name and digest header: each response is built here, once, so the two cannot drift.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Response, send_file

from exports.bundle import ExportRequest, write_bundle
from exports.key import build_key_csv
from trial.extensions import db


def bundle_response(actor, request: ExportRequest) -> Response:
    """Write and audit the blinded bundle, commit, and answer it as a ZIP attachment.

    The file name holds the cut-off, the format and, for dummy arms, a warning: nothing
    that depends on an arm (the bundle holds none).
    """
    handle, name = tempfile.mkstemp(suffix=".zip")
    os.close(handle)
    path = Path(name)
    try:
        result = write_bundle(actor, request, path)
        db.session.commit()
        stream = path.open("rb")
    finally:
        path.unlink(missing_ok=True)  # the open handle keeps the bytes until sent
    stamp = result.manifest["cutoff"].replace(":", "").replace("-", "")
    suffix = "-DUMMY-ARMS" if request.dummy_seed is not None else ""
    response = send_file(
        stream,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"blinded-{stamp}-{request.format}{suffix}.zip",
    )
    response.headers["X-Content-SHA256"] = result.sha256
    return response


def key_response(actor) -> Response:
    """Release the randomization key (unblinded statistician; audited), commit, answer CSV."""
    data, digest = build_key_csv(actor)
    db.session.commit()
    return Response(
        data,
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="randomization-key.csv"',
            "X-Content-SHA256": digest,
        },
    )
