"""Drive the pages with Flask's test client as a browser would: sign in, read the CSRF token
of the page shown, post its form. (Browser tests with Chromium live in tests/browser.)"""

from __future__ import annotations

import re

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, url: str) -> str:
    """The CSRF token of the form at ``url`` (GET), as a browser would find it."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code, page.text[:500])
    found = CSRF.search(page.text)
    assert found, f"no CSRF token in the page at {url}"
    return found.group(1)


def sign_in(client, username: str, password: str):
    """Sign ``client`` in through the sign-in page; returns the response (a redirect)."""
    token = csrf_token(client, "/sign-in")
    response = client.post(
        "/sign-in", data={"username": username, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, (response.status_code, response.text[:800])
    return response


def post_form(client, url: str, data: dict, *, form_url: str | None = None):
    """Post ``data`` to ``url`` with the CSRF token of the page at ``form_url`` (or ``url``)."""
    body = dict(data)
    body["csrf_token"] = csrf_token(client, form_url or url)
    return client.post(url, data=body)


def error_summary(html: str) -> list[str]:
    """The texts of the error summary's links (each names a field and its message)."""
    match = re.search(r'<div class="error-summary" role="alert".*?</div>', html, re.S)
    if not match:
        return []
    return [
        re.sub(r"\s+", " ", text).strip()
        for text in re.findall(r"<li>(.*?)</li>", match.group(0), re.S)
        for text in [re.sub(r"<[^>]+>", "", text)]
    ]
