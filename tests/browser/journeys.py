"""Steps of the site staff's work as a person does them in the browser: by the labels and
the buttons they read. Shared by the end-to-end journeys and the page walks."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.helpers import main_heading

VITALS = {
    "Systolic blood pressure": "124",
    "Diastolic blood pressure": "78",
    "Heart rate": "72",
    "Weight": "81.5",
}
# (unit, result, upper limit of normal): ordinary values, well below every edit check.
LABS = {
    "GGT": ("U/L", "45", "60"),
    "ALT": ("U/L", "30", "40"),
    "AST": ("U/L", "28", "40"),
    "bilirubin": ("umol/L", "12", "21"),
    "CDT": ("%", "1.5", "1.7"),
}


def open_participant(page: Page, participant_id: str) -> None:
    """Find the participant on the Participants page by id and open their page."""
    page.get_by_role("link", name="Participants", exact=True).click()
    page.get_by_label("Participant id").fill(participant_id)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=participant_id, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(participant_id)


def start_visit(page: Page, label: str) -> None:
    """From the participant page, follow the schedule's Record link of the visit ``label``."""
    page.get_by_role("link", name=f"Record {label}", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Record {label}")


def show_calendar_for(page: Page, visit_date: str) -> None:
    """Date the visit and ask for the calendar days of that date, waiting for the page that
    shows them (filled before it arrives, the days would be lost with the old page)."""
    page.get_by_label("Visit date", exact=True).fill(visit_date)
    with page.expect_navigation():
        page.get_by_role("button", name="Show the calendar days for this date").click()
    expect(page.get_by_label("Visit date", exact=True)).to_have_value(visit_date)


def fill_visit_forms(page: Page, drinks: str | None = "4") -> dict[str, str]:
    """Fill every form the visit page shows, by its labels where a person reads one per
    input (vitals, labs), by its rows elsewhere (the calendar, the scored items; ``drinks``
    None leaves the calendar blank). Returns the calendar as filled: {ISO date: drinks}."""
    filled = {}
    calendar = page.locator("input[name^='drinking.'][name$='.standard_drinks']")
    for box in calendar.all() if drinks is not None else []:
        index = box.get_attribute("name").split(".")[1]
        day = page.locator(f"input[name='drinking.{index}.date']").get_attribute("value")
        box.fill(drinks)
        filled[day] = drinks
    for box in page.locator("input[name^='ocds.']").all():
        box.fill("1")
    for box in page.locator("input[name^='ciwa.']").all():
        box.fill("1")
    if page.locator("#vitals").count():
        for label, value in VITALS.items():
            page.get_by_label(re.compile(f"^{label} \\(")).fill(value)
    if page.locator("input[name^='labs.']").count():
        for test, (unit, value, limit) in LABS.items():
            page.get_by_label(f"{test} result", exact=True).fill(value)
            page.get_by_label(f"{test} unit", exact=True).select_option(unit)
            page.get_by_label(f"{test} upper limit of normal", exact=True).fill(limit)
    return filled


def save_visit(page: Page, label: str) -> int:
    """Save the visit form; returns the new visit's id (from the page it lands on)."""
    page.get_by_role("button", name="Save visit").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(label)
    expect(page.get_by_role("status").first).to_contain_text("saved")
    return int(re.search(r"/visits/(\d+)$", page.url).group(1))


def answer_eligibility(page: Page) -> None:
    """Answer every criterion as an eligible participant's: inclusions met, exclusions not."""
    page.get_by_role("link", name="Eligibility", exact=True).click()
    for group in page.locator("fieldset").all():
        legend = group.locator("legend").inner_text()
        answer = "Yes, met" if legend.startswith("I") else "No, not met"
        group.get_by_label(answer, exact=True).check()
    page.get_by_role("button", name="Save answers").click()
    expect(page.get_by_role("main")).to_contain_text("Eligible")


def randomize(page: Page) -> tuple[str, str]:
    """From the participant page: confirm the checklist and press Randomize; returns the
    randomization and kit numbers the page then shows."""
    page.get_by_label("I confirm this participant meets every eligibility criterion").check()
    page.get_by_role("button", name="Randomize").click()
    number = page.locator("dt", has_text=re.compile("^Randomization number$"))
    kit = page.locator("dt", has_text=re.compile("^Kit number$"))
    expect(number).to_be_visible()
    expect(kit).to_be_visible()
    return (
        number.locator("xpath=following-sibling::dd[1]").inner_text().strip(),
        kit.locator("xpath=following-sibling::dd[1]").inner_text().strip(),
    )


def definition(page: Page, term: str) -> str:
    """The text of a summary list's value for ``term``."""
    row = page.locator("dt", has_text=re.compile(f"^{re.escape(term)}$")).first
    return row.locator("xpath=following-sibling::dd[1]").inner_text().strip()


def heading(page: Page) -> str:
    return main_heading(page)


def answer_blinding(page: Page, answers: dict[str, str]) -> None:
    """Choose each respondent's answer by the question's legend (``answers``: the start of
    the legend, e.g. "The participant's guess", to the answer's label)."""
    for legend, answer in answers.items():
        question = page.locator("fieldset", has=page.locator("legend", has_text=legend))
        question.get_by_label(answer, exact=True).check()
