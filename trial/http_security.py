"""Harden every HTTP answer: security headers on all of them, and one size limit for all bodies.

Every response is data (JSON, the OpenAPI spec, CSV and ZIP exports, PDF reports, errors), so
each one gets the same headers: it must not be sniffed into HTML or script, embedded in a
frame, leak its URL to a third party, or be kept by a browser or proxy cache on a shared
workstation.

``MAX_CONTENT_LENGTH`` limits request bodies. Werkzeug enforces it on a declared
``Content-Length`` only when the body is read, and on a chunked body (no ``Content-Length``)
it silently truncates at the limit instead of refusing: an oversized chunked request whose
first megabyte happened to parse (a short JSON object followed by padding) was accepted,
and any other became a misleading "invalid JSON" 400. So chunked bodies are buffered here,
up to the limit, before the app sees them, and every oversized body, declared or chunked, is
refused with 413 in the one error shape before any view or input screening runs (and after
authentication, so an anonymous caller still gets 401).
"""

from __future__ import annotations

import io

from flask import Flask, Response, current_app, request

from trial.auth.policy import is_page_endpoint
from trial.errors import TrialError, is_page_address

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # A JSON API loads nothing and is framed by nobody; the spec and the exports are data too.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    # Participant data must not stay in a browser or proxy cache.
    "Cache-Control": "no-store",
}

OVERSIZED = "trial.body_over_limit"
_CHUNK = 64 * 1024


class PayloadTooLarge(TrialError):
    status, code = 413, "payload_too_large"


# The pages (trial/web) load their own style sheet and script, and post forms to themselves;
# nothing from another origin, no inline script or style, never framed.
PAGE_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def add_security_headers(response: Response) -> Response:
    """Set the headers on every response, replacing any weaker value a view chose."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if (
        is_page_endpoint(current_app, request.endpoint)
        if request.endpoint is not None
        else is_page_address()  # an address no route matched, answered by a page
    ):
        response.headers["Content-Security-Policy"] = PAGE_CONTENT_SECURITY_POLICY
    return response


def _is_chunked(environ) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


class StreamedBodyLimit:
    """WSGI middleware: read a chunked body up to the limit, so the app sees a sized body.

    Only a body the server has de-chunked and terminated (``wsgi.input_terminated``, as
    gunicorn and werkzeug's server set) is read; its length then becomes ``Content-Length``.
    A body over the limit is not read further and is flagged for ``refuse_oversized_body``.
    """

    def __init__(self, wsgi_app, app: Flask):
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ, start_response):
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if (
            limit is not None
            and environ.get("wsgi.input_terminated")
            and _is_chunked(environ)  # a Content-Length beside it is ignored, as by werkzeug
        ):
            stream, body, size = environ["wsgi.input"], [], 0
            while size <= limit:
                chunk = stream.read(min(_CHUNK, limit + 1 - size))
                if not chunk:
                    break
                body.append(chunk)
                size += len(chunk)
            data = b"".join(body)
            if size > limit:
                environ[OVERSIZED] = True
                data = b""
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


def refuse_oversized_body():
    """Answer 413 for a body over the limit, whatever its content type or route."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (
        request.environ.get(OVERSIZED) or (request.content_length or 0) > limit
    ):
        raise PayloadTooLarge(
            f"The request body is too large: the limit is {limit} bytes. Nothing was saved."
        )
    return None


def init_http_security(app: Flask) -> None:
    """Register the body limit (after authentication, before input screening) and headers."""
    app.wsgi_app = StreamedBodyLimit(app.wsgi_app, app)
    app.before_request(refuse_oversized_body)
    app.after_request(add_security_headers)
