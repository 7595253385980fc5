"""The blinded bundle does not leak the arm (issue 5).

On a demo trial of 400 participants, with the arms known from the randomization key, no
administrative column of ``participants.csv`` (participant id, randomization number, kit
number, randomization date, site, stratum, row position) predicts the arm better than an AUC
of 0.60. The AUC is the Mann-Whitney statistic with ties (written here, no library), reported
as max(AUC, 1 - AUC) so a column that predicts the arm "backwards" counts as well. Categorical
columns are scored by their in-sample arm share per category (optimistic on purpose), numbers
and ids by their numeric part, dates by their day number, the row position by its index.
Outcome columns do differ by arm (the drug works in the demo): they are not checked.

No file of the bundle may name an arm of the protocol, carry a dose in mg (mg/dL and mg/L are
lab concentrations, not doses) or a lot column. Negative controls show that each check can
fail: a planted column that follows the arm with noise exceeds the AUC limit, and planted
arm names, an mg dose and a lot column are all found.

The list seed is fixed (as in test_demo_realism) so the allocation and the kit numbers (both
drawn from that seed), and with them every AUC, are the same on every run and backend.
``pytest -s`` prints the AUCs.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import zipfile
from collections import defaultdict
from datetime import date

import pytest

from randomization.outputs import allocation_key
from tests.demo_helpers import fixed_list_seed
from tests.page_helpers import sign_in
from trial.auth.services import get_user_by_username
from trial.extensions import db
from trial.protocol import current_protocol

PARTICIPANTS = 400
AUC_LIMIT = 0.60
LIST_SEED = bytes(range(32, 64))
# "mg" as a unit of dose: 20 mg, 20mg, mg/kg, mg/day. Not the concentrations mg/dL and mg/L.
MG_DOSE = re.compile(r"(?<![a-z])mg(?![a-z]|/d?l(?![a-z]))", re.IGNORECASE)


# --- the measure ---------------------------------------------------------------------------


def auc(scores: list[float], positive: list[bool]) -> float:
    """Mann-Whitney AUC with ties (mid-ranks): the chance a random positive scores above a
    random negative, ties counting one half. Returned as max(AUC, 1 - AUC)."""
    assert len(scores) == len(positive)
    n_pos = sum(positive)
    n_neg = len(positive) - n_pos
    assert n_pos and n_neg, "both classes are needed"
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        mid_rank = (start + end) / 2 + 1  # ranks are 1-based
        for k in range(start, end + 1):
            ranks[order[k]] = mid_rank
        start = end + 1
    rank_sum = sum(r for r, p in zip(ranks, positive, strict=True) if p)
    u = rank_sum - n_pos * (n_pos + 1) / 2
    value = u / (n_pos * n_neg)
    return max(value, 1 - value)


def category_scores(values: list[str], positive: list[bool]) -> list[float]:
    """Each row scored by the share of positives in its category (in sample)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for value, is_positive in zip(values, positive, strict=True):
        counts[value][0] += is_positive
        counts[value][1] += 1
    return [counts[v][0] / counts[v][1] for v in values]


def numeric_part(text: str) -> int:
    """The last run of digits: S01-0042 -> 42, R00017 -> 17, 766715 -> 766715."""
    return int(re.findall(r"\d+", text)[-1])


def day_number(text: str) -> int:
    return date.fromisoformat(text).toordinal()


ADMINISTRATIVE = {
    # column: how a value becomes a score (None: categorical, scored by arm share)
    "participant_id": numeric_part,
    "randomization_number": numeric_part,
    "kit_number": numeric_part,
    "randomization_date": day_number,
    "site": None,
    "stratum": None,
}


def administrative_aucs(rows: list[dict], arms: dict[str, str], arm: str) -> dict[str, float]:
    """AUC of every administrative column (and the row position) for "arm" vs the rest,
    over the randomized participants, in file order."""
    randomized = [(index, row) for index, row in enumerate(rows) if row["participant_id"] in arms]
    positive = [arms[row["participant_id"]] == arm for _, row in randomized]
    result = {}
    for column, to_score in ADMINISTRATIVE.items():
        values = [row[column] for _, row in randomized]
        if to_score is None:
            scores = category_scores(values, positive)
        else:
            scores = [float(to_score(v)) for v in values]
        result[column] = auc(scores, positive)
    result["row_position"] = auc([float(index) for index, _ in randomized], positive)
    return result


# --- the forbidden content -----------------------------------------------------------------


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# The one place an arm's name may be written: a guess of the arm (the blinding assessment),
# which is what someone believed, not the allocation. Anywhere else it is a leak.
GUESS_FILE, GUESS_COLUMN = "blinding_assessments.csv", "guess"


def guesses_and_the_rest(data: bytes) -> tuple[list[str], str]:
    """The blinding file's guesses, and its text with the guess column emptied (every other
    cell, the header included, kept for the scan)."""
    table = read_csv(data)
    if not table:
        return [], ""
    at = table[0].index(GUESS_COLUMN)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table[0])
    for row in table[1:]:
        writer.writerow([*row[:at], "", *row[at + 1 :]])
    return [row[at] for row in table[1:]], buffer.getvalue()


def forbidden_content(files: dict[str, bytes], arm_names: list[str]) -> list[str]:
    """Every arm name (but a guess of the arm), mg dose and lot column found in the bundle's
    files; and any guess that is not an arm's name or dont_know."""
    problems = []
    arm_pattern = re.compile(
        r"(?<![a-z])(" + "|".join(re.escape(a) for a in arm_names) + r")(?![a-z])", re.IGNORECASE
    )
    for name, data in sorted(files.items()):
        text = scanned = data.decode("utf-8")
        if name == GUESS_FILE:
            guesses, scanned = guesses_and_the_rest(data)
            for guess in sorted(set(guesses) - {*arm_names, "dont_know"}):
                problems.append(f"{name}: guess {guess!r} is not an arm or dont_know")
        for match in arm_pattern.finditer(scanned):
            problems.append(f"{name}: arm name {match.group(0)!r}")
        for match in MG_DOSE.finditer(text):
            context = text[max(0, match.start() - 20) : match.end() + 20]
            problems.append(f"{name}: mg dose in {context!r}")
        if name.endswith(".csv"):
            table = read_csv(data)
            columns = list(table[0]) if table else []
            if name == "dictionary.csv":  # the variables every data file declares
                at = columns.index("variable")
                columns += [row[at] for row in table[1:]]
            for column in columns:
                if "lot" in re.split(r"[^a-z0-9]+", column.lower()):
                    problems.append(f"{name}: lot column {column!r}")
    return problems


def bundle_files(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# --- fast checks of the measures themselves ------------------------------------------------


def test_auc_counts_ties_as_half_and_is_symmetric():
    # Pairs (positive, negative): 2>1, 2=2 (1/2), 3>1, 3>2 -> 3.5 of 4.
    assert auc([1, 2, 2, 3], [False, True, False, True]) == pytest.approx(0.875)
    assert auc([3, 2, 2, 1], [False, True, False, True]) == pytest.approx(0.875)
    assert auc([5, 5, 5, 5], [True, False, True, False]) == 0.5
    assert auc([0, 1, 2, 3], [False, False, True, True]) == 1.0


def test_the_mg_pattern_finds_doses_not_concentrations():
    for text in ("20 mg", "20mg tablets", "dose (mg)", "10 mg/kg", "MG"):
        assert MG_DOSE.search(text), text
    for text in ("bilirubin mg/dL", "0.9 mg/L", "magnesium", "mgmt", "kg"):
        assert not MG_DOSE.search(text), text


def test_arm_names_are_allowed_only_as_guesses_of_the_arm():
    """A guess names an arm (what someone believed): allowed in the guess column of the
    blinding file, and only there. The same name in any other column of that file, or in
    any other file, is found; so is a guess that is no answer of the form."""
    arms = ["baclofen", "placebo"]
    honest = (
        b"participant_id,site,visit_code,visit_date,respondent,guess,confidence\r\n"
        b"S01-0001,S01,week_12,2026-03-01,participant,baclofen,strongly\r\n"
        b"S01-0001,S01,week_12,2026-03-01,investigator,dont_know,\r\n"
        b"S01-0002,S01,week_12,2026-03-04,participant,placebo,somewhat\r\n"
    )
    assert forbidden_content({GUESS_FILE: honest}, arms) == []
    planted = honest.replace(b"investigator,dont_know,", b"investigator,dont_know,placebo")
    assert forbidden_content({GUESS_FILE: planted}, arms) == [
        "blinding_assessments.csv: arm name 'placebo'"
    ]
    odd = honest.replace(b",placebo,", b",Placebo 20 mg,")
    found = forbidden_content({GUESS_FILE: odd}, arms)
    assert found[0] == "blinding_assessments.csv: guess 'Placebo 20 mg' is not an arm or dont_know"
    assert [p.split(" in ")[0] for p in found[1:]] == ["blinding_assessments.csv: mg dose"]
    elsewhere = {GUESS_FILE: honest, "visits.csv": b"participant_id,arm\r\nS01-0001,baclofen\r\n"}
    assert forbidden_content(elsewhere, arms) == ["visits.csv: arm name 'baclofen'"]


# --- the leak test -------------------------------------------------------------------------


def export_blinded(runner, out, *extra: str) -> dict[str, bytes]:
    result = runner.invoke(
        args=["exports", "blinded", "--as", "statistician", "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    db.session.remove()
    return bundle_files(out)


@pytest.mark.slow
def test_no_administrative_column_predicts_the_arm(app, runner, backend, tmp_path):
    protocol = current_protocol()
    with fixed_list_seed(LIST_SEED):
        result = runner.invoke(args=["trial", "demo", "--participants", str(PARTICIPANTS)])
    assert result.exit_code == 0, result.output
    db.session.remove()
    key = allocation_key(get_user_by_username("unblinded_statistician"))
    db.session.rollback()  # read for the test, not released
    arms = {pid: arm for pid, _number, arm in key}
    numbers = {pid: number for pid, number, _arm in key}
    assert set(arms.values()) == set(protocol.arms)

    files = export_blinded(runner, tmp_path / "blinded.zip")
    table = read_csv(files["participants.csv"])
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert len(rows) == PARTICIPANTS
    exported = {r["participant_id"]: r["randomization_number"] for r in rows if r["kit_number"]}
    assert exported == numbers  # every randomized participant, with their own number

    limit_failures = []
    print(f"\n[{backend}] {len(arms)} randomized of {len(rows)}; max(AUC, 1-AUC) per column:")
    reference = protocol.arms[0]
    aucs = administrative_aucs(rows, arms, reference)
    for column, value in aucs.items():
        print(f"  {column:<22} {value:.3f}")
        if value > AUC_LIMIT:
            limit_failures.append((column, value))

    # Negative control: a planted column that follows the arm with noise is caught.
    rng = random.Random(5)
    planted = [
        (1.0 if arms[r["participant_id"]] == reference else 0.0) + rng.gauss(0, 1.0)
        for r in rows
        if r["participant_id"] in arms
    ]
    positive = [arms[r["participant_id"]] == reference for r in rows if r["participant_id"] in arms]
    planted_auc = auc(planted, positive)
    # ... and so is a categorical one (a "batch" that matches the arm 70% of the time).
    batches = [
        ("B1" if p else "B2") if rng.random() < 0.7 else ("B2" if p else "B1") for p in positive
    ]
    batch_auc = auc(category_scores(batches, positive), positive)
    # A column of noise is not.
    noise_auc = auc([rng.random() for _ in positive], positive)
    print(f"  {'control: arm + noise':<22} {planted_auc:.3f} (must exceed {AUC_LIMIT})")
    print(f"  {'control: 70% batch':<22} {batch_auc:.3f} (must exceed {AUC_LIMIT})")
    print(f"  {'control: pure noise':<22} {noise_auc:.3f}")
    assert planted_auc > AUC_LIMIT and batch_auc > AUC_LIMIT
    assert noise_auc <= AUC_LIMIT

    assert not limit_failures, f"columns that predict the arm: {limit_failures}"

    # No arm name, mg dose or lot column in any file; the check itself finds planted ones.
    assert forbidden_content(files, list(protocol.arms)) == []
    tampered = dict(files)
    header, first = table[0], table[1]
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(
        [[*header, "arm", "lot_number"], [*first, arms.get(first[0], protocol.arms[-1]), "L1"]]
    )
    tampered["participants.csv"] = buffer.getvalue().encode()
    tampered["study_drug.csv"] = files["study_drug.csv"] + b"S01-0001,2026-01-01,,3,40 mg,\r\n"
    found = forbidden_content(tampered, list(protocol.arms))
    assert any("arm name" in p and p.startswith("participants.csv") for p in found), found
    assert any("lot column 'lot_number'" in p for p in found), found
    assert any("mg dose" in p and p.startswith("study_drug.csv") for p in found), found

    # The statistician's page serves this very bundle: the same cut-off gives the same files.
    cutoff = json.loads(files["manifest.json"])["cutoff"]
    password = re.search(r"password for every demo user: (\S+)", result.output).group(1)
    page = app.test_client()
    sign_in(page, "statistician", password)
    pulled = page.get("/bundle/download", query_string={"cutoff": cutoff, "format": "csv"})
    assert pulled.status_code == 200, pulled.text[:500]
    with zipfile.ZipFile(io.BytesIO(pulled.data)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files

    # Dummy arms are labelled as such and carry nothing of the real allocation.
    dummy_files = export_blinded(runner, tmp_path / "dummy.zip", "--dummy-arms", "7")
    assert forbidden_content(dummy_files, list(protocol.arms)) == []
    dummy_table = read_csv(dummy_files["participants.csv"])
    at = dummy_table[0].index("dummy_arm_not_real")
    dummy = {r[0]: r[at] for r in dummy_table[1:] if r[0] in arms}
    assert set(dummy.values()) <= {"DUMMY_A", "DUMMY_B"} and len(dummy) == len(arms)
    dummy_positive = [arms[pid] == reference for pid in dummy]
    dummy_auc = auc([1.0 if v == "DUMMY_A" else 0.0 for v in dummy.values()], dummy_positive)
    print(f"  {'dummy_arm_not_real':<22} {dummy_auc:.3f}")
    assert dummy_auc <= AUC_LIMIT
