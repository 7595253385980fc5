"""The outputs' pages in Chromium: a DSMB member finds **Open report** and **Closed report**
and downloads a report; a statistician clicks **Download bundle** and gets the bundle; each
file is the one the audit trail recorded (its SHA-256), and axe-core finds no serious or
critical violation on these pages (the unblinded statistician's included)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.helpers import check_axe, sign_in, sign_out


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_dsmb_member_downloads_a_report_from_the_links(page, trial_site, shot):
    sign_in(page, "dsmb", trial_site.password)
    expect(page).to_have_url(re.compile(r"/reports$"))
    expect(page.get_by_role("link", name="Open report", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Closed report", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Randomization notices")).to_be_visible()
    shot(page, "reports")
    with page.expect_download(timeout=60_000) as download_info:
        page.get_by_role("link", name="Open report", exact=True).click()
    download = download_info.value
    assert re.fullmatch(r"dsmb-safety-open-\d{8}T\d{6}Z\.pdf", download.suggested_filename)
    path = download.path()
    assert Path(path).read_bytes().startswith(b"%PDF-")
    recorded = [e for e in trial_site.audit(action="report_safety") if e["username"] == "dsmb"]
    assert recorded and recorded[-1]["detail"]["sha256"] == _sha256(path)
    page.reload()
    expect(page.get_by_text(_sha256(path))).to_be_visible()


def test_a_statistician_clicks_download_bundle_and_gets_the_file(page, trial_site, shot):
    sign_in(page, "statistician", trial_site.password)
    expect(page).to_have_url(re.compile(r"/bundle$"))
    expect(page.get_by_role("link", name="Closed report")).to_have_count(0)
    with page.expect_download(timeout=60_000) as download_info:
        page.get_by_role("button", name="Download bundle").click()
    download = download_info.value
    assert re.fullmatch(r"blinded-\d{8}T\d{6}\.\d+Z-csv\.zip", download.suggested_filename)
    path = download.path()
    with zipfile.ZipFile(io.BytesIO(Path(path).read_bytes())) as archive:
        assert "manifest.json" in archive.namelist()
    digest = _sha256(path)
    recorded = [
        e for e in trial_site.audit(action="export_blinded") if e["username"] == "statistician"
    ]
    assert recorded and recorded[-1]["detail"]["sha256"] == digest
    page.goto("/bundle")
    expect(page.get_by_text(digest)).to_be_visible()
    shot(page, "bundle-history")


def test_the_outputs_pages_pass_axe(axe_page, trial_site, shot):
    page = axe_page
    sign_in(page, "statistician", trial_site.password)
    page.goto("/bundle")
    check_axe(page, "statistician /bundle")
    page.get_by_label("Data cut-off").fill("yesterday")
    page.get_by_label("Dummy-arm seed").fill("-1")
    page.get_by_role("button", name="Download bundle").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Data cut-off")
    expect(alert).to_contain_text("Dummy-arm seed")
    shot(page, "bundle-errors")
    check_axe(page, "statistician /bundle/download with errors")
    page.goto("/reports")
    check_axe(page, "statistician /reports")
    sign_out(page)

    sign_in(page, "dsmb", trial_site.password)
    check_axe(page, "dsmb /reports")
    page.goto("/reports?cutoff=tomorrow")
    expect(page.get_by_role("alert")).to_contain_text("Data cut-off")
    check_axe(page, "dsmb /reports with an error")
    sign_out(page)

    sign_in(page, "unblinded_statistician", trial_site.password)
    expect(page).to_have_url(re.compile(r"/randomization$"))
    shot(page, "randomization")
    check_axe(page, "unblinded_statistician /randomization")
    page.get_by_role("button", name="Show the arm code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Closed report arm code")
    shot(page, "arm-code")
    check_axe(page, "unblinded_statistician arm code")
    page.goto("/randomization")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the key").click()
    assert download_info.value.suggested_filename == "randomization-key.csv"
