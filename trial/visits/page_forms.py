"""The visit form's wording and its inputs' names: what the visit pages show and post.

The form posts the API body's keys (``drinking.3.standard_drinks``, ``labs.1.value``); a
calendar day or a laboratory test left blank is not sent (``compact``), and the refusal's
errors, named by the body's indexes, are renamed back to the rows shown (``shown_errors``).
The OCDS and CIWA-Ar wording is here because the code holds only the items' names and
ranges (``trial.forms.models``).
"""

from __future__ import annotations

from datetime import date, timedelta

from werkzeug.datastructures import MultiDict

from trial.forms.models import (
    BLINDING_RESPONDENTS,
    CIWA_ITEMS,
    DONT_KNOW,
    LAB_UNITS,
    OCDS_ITEM_MAX,
    OCDS_ITEMS,
    VITALS_RANGES,
)
from trial.protocol import current_protocol

FORM_NAMES = {
    "drinking": "Drinking calendar (Timeline Followback)",
    "ocds": "Craving (OCDS)",
    "ciwa": "Withdrawal (CIWA-Ar)",
    "vitals": "Vital signs",
    "labs": "Laboratory tests",
    "blinding": "Blinding assessment",
}
# The OCDS items in brief (Anton et al., 1995); the paper form holds the full wording.
OCDS_WORDING = dict(
    zip(
        OCDS_ITEMS,
        (
            "Time taken up by thoughts, ideas, impulses or images about drinking, when not "
            "drinking",
            "How often these thoughts occur",
            "How much these thoughts interfere with social or work life",
            "How much distress these thoughts cause",
            "Effort made to resist these thoughts or turn attention away from them",
            "How successful in stopping or diverting these thoughts",
            "Drinks each day",
            "Days each week with drinking",
            "How much drinking interferes with work",
            "How much drinking interferes with social life",
            "How anxious or upset if kept from drinking when wanting a drink",
            "Effort made to resist drinking",
            "Strength of the drive to drink",
            "Control over drinking",
        ),
        strict=True,
    )
)
CIWA_WORDING = {
    "nausea_vomiting": "Nausea and vomiting",
    "tremor": "Tremor",
    "paroxysmal_sweats": "Paroxysmal sweats",
    "anxiety": "Anxiety",
    "agitation": "Agitation",
    "tactile_disturbances": "Tactile disturbances",
    "auditory_disturbances": "Auditory disturbances",
    "visual_disturbances": "Visual disturbances",
    "headache": "Headache, fullness in head",
    "orientation": "Orientation and clouding of sensorium",
}
VITALS_WORDING = {
    "systolic_bp": ("Systolic blood pressure", "mmHg"),
    "diastolic_bp": ("Diastolic blood pressure", "mmHg"),
    "heart_rate": ("Heart rate", "beats per minute"),
    "weight_kg": ("Weight", "kg"),
}
LAB_WORDING = {
    "GGT": "Gamma-glutamyl transferase (GGT)",
    "ALT": "Alanine aminotransferase (ALT)",
    "AST": "Aspartate aminotransferase (AST)",
    "bilirubin": "Total bilirubin",
    "CDT": "Carbohydrate-deficient transferrin (%CDT)",
}
LAB_INPUTS = (
    ("test", "test"),
    ("value", "result"),
    ("unit", "unit"),
    ("upper_limit_normal", "upper limit of normal"),
)
# The blinding assessment's questions (Bang, Ni and Davis 2004), asked of each respondent; the
# answer is one of five (``blinding_answers``), posted as ``blinding.<row>.answer``.
BLINDING_QUESTIONS = {
    "participant": "The participant's guess: which treatment do you think you are taking?",
    "investigator": "The investigator's guess: which treatment do you think the participant "
    "is taking?",
}
BLINDING_LABELS = {"participant": "Participant's guess", "investigator": "Investigator's guess"}
BLINDING_FIELDS = ("respondent", "guess", "confidence")
VISIT_LABELS = {
    "visit_code": "Visit",
    "visit_date": "Visit date",
    "status": "Visit status",
    "missed_reason": "Reason the visit was missed",
    "out_of_window_reason": "Reason the visit is outside its window",
    "reason": "Reason for the change",
    "password": "Password",
    "version": "Version",
}


def day_text(day: date) -> str:
    """A date as people read it: Mon 2 Nov 2026."""
    return f"{day:%a} {day.day} {day:%b %Y}"


def labels_of(rows: list[tuple[int, str]]) -> dict[str, str]:
    """Each input's label in page order, for the error summary (``rows``: the calendar's
    index and date as read)."""
    labels = {**VISIT_LABELS, "drinking": FORM_NAMES["drinking"]}
    for index, shown in rows:
        labels[f"drinking.{index}.date"] = f"Calendar day {shown}"
        labels[f"drinking.{index}.standard_drinks"] = f"Standard drinks on {shown}"
    labels["ocds"] = FORM_NAMES["ocds"]
    labels.update({f"ocds.{k}": f"OCDS item {k[5:]}: {v}" for k, v in OCDS_WORDING.items()})
    labels["ciwa"] = FORM_NAMES["ciwa"]
    labels.update({f"ciwa.{k}": f"CIWA-Ar: {v}" for k, v in CIWA_WORDING.items()})
    labels["vitals"] = FORM_NAMES["vitals"]
    labels.update({f"vitals.{k}": f"{v[0]} ({v[1]})" for k, v in VITALS_WORDING.items()})
    labels["labs"] = FORM_NAMES["labs"]
    for index, test in enumerate(LAB_UNITS):
        for key, text in LAB_INPUTS:
            labels[f"labs.{index}.{key}"] = f"{test} {text}"
    labels["blinding"] = FORM_NAMES["blinding"]
    for index, respondent in enumerate(BLINDING_RESPONDENTS):
        labels[f"blinding.{index}.answer"] = BLINDING_LABELS[respondent]
    return labels


def blinding_answers() -> list[tuple[str, str]]:
    """The five answers in the questionnaire's order (Bang 2004): strongly and somewhat the
    first arm, don't know, somewhat and strongly the second; a value is ``arm|confidence``
    or ``dont_know``. Arms from the protocol, the same list for every participant."""
    first, second = current_protocol().arms[:2]
    return [
        (f"{first}|strongly", f"Strongly believe {first}"),
        (f"{first}|somewhat", f"Somewhat believe {first}"),
        (DONT_KNOW, "Don't know"),
        (f"{second}|somewhat", f"Somewhat believe {second}"),
        (f"{second}|strongly", f"Strongly believe {second}"),
    ]


def split_answers(form: MultiDict) -> MultiDict:
    """Each ``blinding.<row>.answer`` as the API body's ``guess`` and ``confidence``."""
    out = MultiDict()
    for key, values in form.lists():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "blinding" and parts[2] == "answer":
            answer = values[-1].strip() if values else ""
            if answer:
                guess, _, confidence = answer.partition("|")
                out.add(f"blinding.{parts[1]}.guess", guess)
                if confidence:
                    out.add(f"blinding.{parts[1]}.confidence", confidence)
            continue
        for value in values:
            out.add(key, value)
    return out


def calendar_rows(first: date | None, last: date | None) -> list[tuple[int, str, str]]:
    """(index, ISO date, date as read) for each day from first to last."""
    if first is None or last is None:
        return []
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(i, d.isoformat(), day_text(d)) for i, d in enumerate(days)]


def posted_rows(form: MultiDict) -> list[tuple[int, str, str]]:
    """The calendar rows a form posted, as they were shown (their dates in hidden inputs)."""
    rows = []
    for key in form:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "drinking" and parts[2] == "date":
            if parts[1].isdigit():
                text = form.get(key, "")
                try:
                    shown = day_text(date.fromisoformat(text))
                except ValueError:
                    shown = text
                rows.append((int(parts[1]), text, shown))
    return sorted(rows)


def compact(form: MultiDict) -> tuple[MultiDict, dict[str, dict[int, int]]]:
    """The form as the API body's lists: a calendar day with no drinks typed, and a test with
    neither result nor limit typed, are not sent; rows are renumbered in order, and the map
    turns each sent index back into the row shown (so an error lands on its input). A
    respondent not answered is not sent (the form then lists the assessment as missing)."""
    keep = {
        "drinking": ("standard_drinks",),
        "labs": ("value", "upper_limit_normal"),
        "blinding": ("guess",),
    }
    rows: dict[str, dict[int, dict[str, list[str]]]] = {name: {} for name in keep}
    out = MultiDict()
    for key, values in split_answers(form).lists():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] in keep and parts[1].isdigit():
            rows[parts[0]].setdefault(int(parts[1]), {})[parts[2]] = values
        else:
            for value in values:
                out.add(key, value)
    back: dict[str, dict[int, int]] = {}
    for name, found in rows.items():
        back[name] = {}
        for shown in sorted(found):
            fields = found[shown]
            if not any(v.strip() for k in keep[name] for v in fields.get(k, [])):
                continue
            sent = len(back[name])
            back[name][sent] = shown
            for field, values in fields.items():
                for value in values:
                    out.add(f"{name}.{sent}.{field}", value)
    return out, back


def shown_errors(errors: dict, back: dict[str, dict[int, int]]) -> dict:
    """Errors named by the sent body's indexes, renamed to the inputs shown."""
    shown = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[0] in back and parts[1].isdigit():
            parts[1] = str(back[parts[0]].get(int(parts[1]), parts[1]))
        if len(parts) == 3 and parts[0] == "blinding" and parts[2] in BLINDING_FIELDS:
            parts[2] = "answer"  # the one input that posts a guess with its confidence
        shown.setdefault(".".join(parts), []).extend(messages)
    return shown


def lab_defaults() -> dict:
    defaults = {}
    for index, (test, units) in enumerate(LAB_UNITS.items()):
        defaults[f"labs.{index}.test"] = test
        if len(units) == 1:
            defaults[f"labs.{index}.unit"] = units[0]
    return defaults


def in_page_order(errors: dict, labels: dict) -> dict:
    """The errors in the order of their inputs on the page (a refusal's message first)."""
    order = {name: n for n, name in enumerate(["_schema", *labels])}
    return dict(sorted(errors.items(), key=lambda kv: order.get(kv[0], len(order))))


def wording() -> dict:
    return {
        "form_names": FORM_NAMES,
        "ocds_wording": OCDS_WORDING,
        "ocds_max": OCDS_ITEM_MAX,
        "ciwa_wording": CIWA_WORDING,
        "ciwa_max": CIWA_ITEMS,
        "vitals_wording": VITALS_WORDING,
        "vitals_ranges": VITALS_RANGES,
        "lab_wording": LAB_WORDING,
        "lab_units": LAB_UNITS,
        "lab_unit_options": {t: [(u, u) for u in units] for t, units in LAB_UNITS.items()},
        "blinding_questions": BLINDING_QUESTIONS,
        "blinding_labels": BLINDING_LABELS,
        "blinding_answers": blinding_answers(),
    }
