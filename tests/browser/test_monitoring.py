"""A monitor and a data manager in Chromium: the monitor marks a visit verified and raises a
query on a value, by the pages' labels; axe-core on each of their new pages (issue 25)."""

from __future__ import annotations

import re
from datetime import date, timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import check_axe, main_heading, sign_in
from tests.browser.test_investigator import ready_participant


def test_a_monitor_verifies_a_visit_and_raises_a_query(page, trial_site, shot):
    from trial.extensions import db
    from trial.queries.models import DataQuery
    from trial.verification.models import SourceVerification

    _pid, visit_id = ready_participant(trial_site, "S02")
    sign_in(page, "monitor", trial_site.password, start=f"/visits/{visit_id}")
    expect(page.get_by_text("Not verified").first).to_be_visible()
    page.get_by_role("button", name="Mark verified").click()
    expect(
        page.get_by_text(re.compile(r"Verified by monitor on \d{4}-\d\d-\d\d")).first
    ).to_be_visible()
    expect(page.get_by_role("button", name="Mark verified")).to_have_count(0)
    shot(page, "verified")

    page.get_by_role("link", name=re.compile(r"Raise a query on Heart rate")).click()
    expect(page.get_by_label("Field")).to_have_value("heart_rate")
    page.get_by_label("Question").fill("The source notes say 67; please check.")
    page.get_by_role("button", name="Raise query").click()
    assert re.fullmatch(r"Query \d+", main_heading(page))
    expect(page.get_by_role("button", name="Close query")).to_be_visible()
    shot(page, "query")

    def written():
        mark = db.session.scalars(
            select(SourceVerification).where(SourceVerification.visit_id == visit_id)
        ).one()
        query = db.session.scalars(
            select(DataQuery).where(DataQuery.entity == "vitals", DataQuery.origin == "manual")
            .order_by(DataQuery.id.desc())
        ).first()  # fmt: skip
        return mark.voided_at, mark.verifier.username, query.field, query.text

    assert trial_site.query(written) == (
        None, "monitor", "heart_rate", "The source notes say 67; please check.")  # fmt: skip


def test_the_monitoring_pages_pass_axe(axe_page, trial_site, shot):
    pid, visit_id = ready_participant(trial_site, "S03")
    onset = (date.today() - timedelta(days=2)).isoformat()
    ae = trial_site.api(
        "POST",
        f"/participants/{pid}/adverse-events",
        user="coordinator.s03",
        json={"term": "heavy legs in the evening", "onset_date": onset, "grade": 1,
              "serious": False, "relatedness": "possible", "action_taken": "none",
              "outcome": "recovering"},
    )  # fmt: skip
    assert ae.status_code == 201, ae.text
    ae_id = ae.json()["id"]
    raised = trial_site.api(
        "POST", "/queries", user="monitor",
        json={"entity": "participant", "record_id": pid, "field": "sex", "text": "Check sex"},
    )  # fmt: skip
    query_id = raised.json()["query_id"]
    assert trial_site.api(
        "POST", f"/queries/{query_id}/answer", user="coordinator.s03", json={"text": "Checked."}
    ).status_code == 200  # fmt: skip

    pages = {
        "monitor": [
            "/verification",
            f"/visits/{visit_id}",
            f"/participants/{pid}",
            f"/queries/raise?entity=participant&record_id={pid}&field=year_of_birth",
            "/queries",
            f"/queries/{query_id}",
        ],
        "data_manager": [
            "/coding",
            f"/coding/{ae_id}?q=somn",
            f"/adverse-events/{ae_id}",
            "/queries?status=answered",
        ],
    }
    for username, urls in pages.items():
        sign_in(axe_page, username, trial_site.password, start=urls[0])
        for url in urls:
            response = axe_page.goto(url)
            assert response.status == 200, (username, url, response.status)
            check_axe(axe_page, f"{username} {url}")
            shot(axe_page, f"{username}-{re.sub(r'[^a-z0-9]+', '-', url)}")
        # An error summary passes too: a query raised with no question.
        if username == "monitor":
            axe_page.goto(urls[3])
            axe_page.get_by_role("button", name="Raise query").click()
            expect(axe_page.get_by_role("alert")).to_contain_text("Question")
            check_axe(axe_page, "monitor raise query errors")
        axe_page.get_by_role("link", name="Sign out").click()
