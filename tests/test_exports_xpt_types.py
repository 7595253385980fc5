"""Analysis-ready datasets: XPT dates are SAS dates, date-times SAS datetimes; labels cut at a
word boundary; short names by one documented rule; a README.txt saying what one row of each
file is, its key and how the files join. Each check is run against a negative control (the
old behaviour) to show it catches it.

Bundle tests run on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pyreadstat
import pytest

from exports import formats
from exports.readme import NAME as README
from exports.tables import tables
from exports.variables import (
    LABEL_MAX,
    SHORT_NAME_RULE,
    Variable,
    short_names,
    xpt_label,
)
from tests.test_exports_bundle import add_demo_guesses, export, members, now_cutoff, table
from trial.extensions import db
from trial.protocol import current_protocol

SAS_DAY0 = date(1960, 1, 1)
SAS_INSTANT0 = datetime(1960, 1, 1, tzinfo=UTC)

# Today's short names, as the outside recomputation reads them: the rule keeps each one (a
# column added later takes its own without changing these).
PINNED = {
    "participants": (
        "PAR",
        "participant_id=PARID site=SITE sex=SEX year_of_birth=YEAOFBIR consent_date=CONDAT "
        "stratum=STRATUM randomization_number=RANNUM kit_number=KITNUM "
        "randomization_date=RANDAT first_dose_date=FIRDOSDA disposition=DIS "
        "disposition_date=DISDAT disposition_reason=DISREA treatment_stop_date=TRESTODA "
        "treatment_stop_reason=TRESTORE safety_population=SAFPOP "
        "unblinded_by_code_break=UNBBYCOD",
    ),
    "visits": (
        "VISITS",
        "participant_id=PARID visit_code=VISCOD visit_date=VISDAT study_day=STUDAY "
        "status=STATUS missed_reason=MISREA",
    ),
    "drinking_calendar": (
        "DRICAL",
        "participant_id=PARID visit_code=VISCOD day=DAY study_day=STUDAY "
        "standard_drinks=STADRI grams_alcohol=GRAALC",
    ),
    "ocds": (
        "OCDS",
        "participant_id=PARID visit_code=VISCOD visit_date=VISDAT item_1=ITEM_1 item_2=ITEM_2 "
        "item_3=ITEM_3 item_4=ITEM_4 item_5=ITEM_5 item_6=ITEM_6 item_7=ITEM_7 item_8=ITEM_8 "
        "item_9=ITEM_9 item_10=ITEM_10 item_11=ITEM_11 item_12=ITEM_12 item_13=ITEM_13 "
        "item_14=ITEM_14 total=TOTAL obsessive_subscale=OBSSUB compulsive_subscale=COMSUB",
    ),
    "ciwa": (
        "CIWA",
        "participant_id=PARID visit_code=VISCOD visit_date=VISDAT nausea_vomiting=NAUVOM "
        "tremor=TREMOR paroxysmal_sweats=PARSWE anxiety=ANXIETY agitation=AGI "
        "tactile_disturbances=TACDIS auditory_disturbances=AUDDIS visual_disturbances=VISDIS "
        "headache=HEADACHE orientation=ORI total=TOTAL",
    ),
    "vitals": (
        "VITALS",
        "participant_id=PARID visit_code=VISCOD visit_date=VISDAT systolic_bp=SYSBP "
        "diastolic_bp=DIABP heart_rate=HEARAT weight_kg=WEIKG",
    ),
    "labs": (
        "LABS",
        "participant_id=PARID visit_code=VISCOD visit_date=VISDAT test=TEST value=VALUE "
        "unit=UNIT upper_limit_normal=UPPLIMNO times_uln=TIMULN",
    ),
    "blinding_assessments": (
        "BLIASS",
        "participant_id=PARID site=SITE visit_code=VISCOD visit_date=VISDAT respondent=RES "
        "guess=GUESS confidence=CON",
    ),
    "study_drug": (
        "STUDRU",
        "participant_id=PARID date=DATE study_day=STUDAY tablets_per_day=TABPERDA "
        "change_reason=CHAREA tablets_returned=TABRET",
    ),
    "adverse_events": (
        "ADVEVE",
        "participant_id=PARID term=TERM preferred_term=PRETER system_organ_class=SYSORGCL "
        "coding_source=CODSOU onset_date=ONSDAT onset_study_day=ONSSTUDA end_date=END_DATE "
        "grade=GRADE serious=SERIOUS criterion_death=CRIDEA "
        "criterion_life_threatening=CRILIFTH criterion_hospitalisation=CRIHOS "
        "criterion_disability=CRIDIS criterion_congenital_anomaly=CRICONAN "
        "criterion_other_important=CRIOTHIM relatedness=REL action_taken=ACTTAK "
        "outcome=OUTCOME treatment_emergent=TREEME",
    ),
    "protocol_deviations": (
        "PRODEV",
        "participant_id=PARID category=CATEGORY description=DES date=DATE automatic=AUT "
        "visit_code=VISCOD",
    ),
    "drinking_outcomes": (
        "DRIOUT",
        "participant_id=PARID period=PERIOD period_start=PERSTA period_end=PEREND "
        "days_in_period=DAYINPER days_assessed=DAYASS days_missing=DAYMIS "
        "pct_heavy_drinking_days=PCTHEADR pct_days_abstinent=PCTDAYAB "
        "drinks_per_drinking_day=DRIPERDR grams_per_day=GRAPERDA who_risk_level=WHORISLE "
        "days_not_collectable=DAYNOTCO empty_reason=EMPREA",
    ),
}

# --- reading XPT back ------------------------------------------------------------------------


def read_xpt(content: bytes, raw: bool = False):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "file.xpt"
        path.write_bytes(content)
        return pyreadstat.read_xport(str(path), disable_datetime_conversion=raw)


def check_xpt_types(content: bytes, variables: tuple[Variable, ...], expected: list[dict]):
    """Every date column of the XPT a SAS date (days since 1960) with DATE9., equal to the
    source dates (``expected``: the rows by variable name, as date / datetime / None);
    every date-time a SAS datetime (seconds since 1960, UTC) with DATETIME20."""
    shorts = short_names([v.name for v in variables])
    frame, meta = read_xpt(content, raw=True)
    converted, _ = read_xpt(content)
    assert len(frame) == len(expected)
    checked = 0
    for v in variables:
        if v.type not in ("date", "datetime"):
            continue
        column = shorts[v.name]
        sas_format = meta.original_variable_types[column]
        assert meta.readstat_variable_types[column] == "double", (v.name, column)
        want = "DATE9." if v.type == "date" else "DATETIME20."
        assert sas_format == want, (v.name, sas_format)
        for index, row in enumerate(expected):
            source, value = row[v.name], frame[column].iloc[index]
            if source is None:
                assert value != value, (v.name, index, value)  # NaN: missing
                continue
            if v.type == "date":
                assert value == (source - SAS_DAY0).days, (v.name, index, source, value)
                back = converted[column].iloc[index]
                assert type(back) is date and back == source, (v.name, back)
            else:
                instant = source if source.tzinfo else source.replace(tzinfo=UTC)
                assert value == (instant - SAS_INSTANT0).total_seconds(), (v.name, source)
            checked += 1
    return checked


def typed(variables, text_rows: list[dict]) -> list[dict]:
    """CSV rows with their date and date-time cells as Python values."""
    parse = {
        "date": date.fromisoformat,
        "datetime": lambda text: datetime.fromisoformat(text.replace("Z", "+00:00")),
    }
    out = []
    for row in text_rows:
        out.append(
            {
                v.name: (parse[v.type](row[v.name]) if row[v.name] else None)
                for v in variables
                if v.type in parse
            }
        )
    return out


# --- labels and names ------------------------------------------------------------------------


def cut_at_word_boundary(cut: str, full: str) -> bool:
    """``cut`` is ``full``, or a prefix of it within 40 bytes ending where a word ends."""
    if len(cut.encode("utf-8")) > LABEL_MAX:
        return False
    if cut == full:
        return True
    return bool(cut) and full.startswith(cut) and full[len(cut)].isspace() and cut[-1] != " "


def documented_rule(names: list[str]) -> list[str]:
    """The short-name rule as README.md and README.txt state it, written again from the text:
    <= 8 characters kept upper case; else the first 3 characters of each underscore part,
    joined, upper case, cut to 8; a taken name gets a counter 1, 2, ... replacing its last
    characters only as far as needed to stay within 8."""
    seen, out = set(), []
    for name in names:
        if len(name) <= 8:
            base = name.upper()
        else:
            base = "".join(p[:3] for p in name.split("_") if p).upper()[:8]
        candidate, n = base, 0
        while candidate in seen:
            n += 1
            candidate = base[: 8 - len(str(n))] + str(n)
        seen.add(candidate)
        out.append(candidate)
    return out


def test_labels_are_cut_at_a_word_boundary_and_the_old_cut_is_caught(app):
    full = "Study drug (tablets; identical in both arms)"
    assert xpt_label(full) == "Study drug (tablets; identical in both"
    assert cut_at_word_boundary(xpt_label(full), full)
    assert not cut_at_word_boundary(full[:40], full)  # the control: today's cut
    assert xpt_label("Short label") == "Short label"
    assert xpt_label("x" * 50) == "x" * 40  # one word longer than the limit
    accented = "Durée " + "é" * 10 + " de la période de traitement"
    cut = xpt_label(accented)
    assert len(cut.encode("utf-8")) <= 40 and cut_at_word_boundary(cut, accented), cut
    for declared in tables(current_protocol()):
        assert cut_at_word_boundary(xpt_label(declared.label), declared.label), declared.name
        for v in declared.variables:
            assert cut_at_word_boundary(xpt_label(v.label), v.label), v.name


def test_short_names_follow_the_one_documented_rule_and_today_s_names_are_kept(app):
    protocol = current_protocol()
    for declared in tables(protocol):
        names = [v.name for v in declared.variables]
        shorts = short_names(names)
        assert [shorts[n] for n in names] == documented_rule(names), declared.name
        file_short = short_names([declared.name])[declared.name]
        assert file_short == documented_rule([declared.name])[0]
        pinned_file, pinned = PINNED[declared.name]
        assert file_short == pinned_file, declared.name
        for pair in pinned.split():
            name, short = pair.split("=")
            assert shorts[name] == short, (declared.name, name, shorts[name], short)
    clash = ["disposition", "dis", "dispositions", "pct_heavy_drinking_days", "pct_hea_dri_dab"]
    assert list(short_names(clash).values()) == ["DIS", "DIS1", "DIS2", "PCTHEADR", "PCTHEAD1"]
    assert documented_rule(clash) == list(short_names(clash).values())
    many = [f"pct_heavy_drinking_day{i}" for i in range(12)]
    assert list(short_names(many).values())[10:] == ["PCTHEA10", "PCTHEA11"]
    assert "PARID" in SHORT_NAME_RULE and "DIS1" in SHORT_NAME_RULE


def test_variable_names_are_sas_friendly():
    for bad in ("Participant", "1st_dose", "dose-mg", ""):
        with pytest.raises(ValueError):
            Variable(bad, "A label", "string")
    assert Variable("x", "A label much longer than forty characters, kept whole", "string")


# --- types in every format (no database) -----------------------------------------------------


def test_dates_and_date_times_in_xpt_parquet_and_csv():
    variables = (
        Variable("id", "Row", "integer"),
        Variable("onset_date", "Onset date", "date"),
        Variable("recorded_at", "Recorded at", "datetime"),
    )
    paris = timezone(timedelta(hours=1))
    rows = [
        (1, date(2026, 1, 13), datetime(2026, 1, 13, 8, 30, 5, tzinfo=UTC)),
        (2, date(1959, 12, 31), datetime(2026, 1, 13, 9, 30, 5, tzinfo=paris)),  # 08:30:05Z
        (3, None, None),
        (4, date(1960, 1, 1), datetime(1960, 1, 1, 0, 0, 1)),  # naive: UTC
    ]
    sink = io.BytesIO()
    stamp = datetime(2026, 2, 1, tzinfo=UTC)
    formats.write_xpt(sink, variables, rows, table_name="events", label="Events", stamp=stamp)
    expected = [{"onset_date": r[1], "recorded_at": r[2]} for r in rows]
    assert check_xpt_types(sink.getvalue(), variables, expected) == 6
    frame, meta = read_xpt(sink.getvalue(), raw=True)
    assert list(frame["ONSDAT"][:2]) == [24119.0, -1.0] and frame["RECAT"][3] == 1.0
    assert meta.table_name == "EVENTS"

    out = io.BytesIO()
    formats.write_parquet(out, variables, rows)
    parquet = pq.read_table(io.BytesIO(out.getvalue()))
    assert str(parquet.schema.field("onset_date").type) == "date32[day]"
    assert str(parquet.schema.field("recorded_at").type) == "timestamp[us, tz=UTC]"
    values = parquet.to_pylist()
    assert values[0]["onset_date"] == date(2026, 1, 13)
    assert values[1]["recorded_at"] == datetime(2026, 1, 13, 8, 30, 5, tzinfo=UTC)

    text = io.BytesIO()
    formats.write_csv(text, variables, rows)
    lines = text.getvalue().decode().splitlines()
    assert lines[1:] == [
        "1,2026-01-13,2026-01-13T08:30:05Z",
        "2,1959-12-31,2026-01-13T08:30:05Z",
        "3,,",
        "4,1960-01-01,1960-01-01T00:00:01Z",
    ]

    with pytest.raises(TypeError):  # a date-time is not silently stored as a date
        formats.write_xpt(
            io.BytesIO(),
            variables[:2],
            [(1, datetime(2026, 1, 13, 8, 0, tzinfo=UTC))],
            table_name="events",
            label="Events",
            stamp=stamp,
        )


def test_a_date_column_stored_as_a_sas_datetime_is_caught(monkeypatch):
    """The control: the old writer (dates as DATETIME, seconds since 1960) fails the check."""
    variables = (Variable("day", "Day", "date"),)
    rows = [(date(2026, 1, 13),), (None,)]
    expected = [{"day": date(2026, 1, 13)}, {"day": None}]
    stamp = datetime(2026, 2, 1, tzinfo=UTC)
    monkeypatch.setitem(formats.XPT_FORMATS, "date", "DATETIME")
    seconds = formats._XPT_VALUE["datetime"]
    monkeypatch.setitem(
        formats._XPT_VALUE,
        "date",
        lambda v: None if v is None else seconds(datetime(v.year, v.month, v.day, tzinfo=UTC)),
    )
    sink = io.BytesIO()
    formats.write_xpt(sink, variables, rows, table_name="cal", label="Calendar", stamp=stamp)
    with pytest.raises(AssertionError):
        check_xpt_types(sink.getvalue(), variables, expected)


def test_text_is_cut_at_200_bytes_not_200_characters():
    assert formats.xpt_text("é" * 150) == "é" * 100
    assert formats.xpt_text("a" * 250) == "a" * 200
    assert formats.xpt_text("a" * 199 + "é") == "a" * 199  # no half character


# --- the bundle ------------------------------------------------------------------------------


@pytest.fixture
def bundles(app, runner, tmp_path):
    result = runner.invoke(args=["trial", "demo", "--participants", "16", "--seed", "5"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    add_demo_guesses()  # the blinding file has rows (none when the demo records no guess)
    db.session.remove()
    cutoff = now_cutoff()
    return {
        fmt: members(
            export(runner, tmp_path, "--cutoff", cutoff, "--format", fmt, name=f"{fmt}.zip")
        )
        for fmt in ("csv", "xpt", "parquet")
    } | {
        "dummy": members(
            export(runner, tmp_path, "--cutoff", cutoff, "--dummy-arms", "11", name="d.zip")
        )
    }


def test_every_date_in_every_xpt_file_is_a_sas_date_and_every_label_fits(bundles):
    protocol = current_protocol()
    as_csv, as_xpt, as_parquet = bundles["csv"], bundles["xpt"], bundles["parquet"]
    dictionary = table(as_xpt, "dictionary.csv")
    full_labels = {(r["file"], r["variable"]): r["label"] for r in dictionary}
    short_in_dictionary = {(r["file"], r["variable"]): r["short_name"] for r in dictionary}
    date_columns = files_with_dates = 0
    for declared in tables(protocol):
        source = table(as_csv, f"{declared.name}.csv")
        content = as_xpt[f"{declared.name}.xpt"]
        checked = check_xpt_types(content, declared.variables, typed(declared.variables, source))
        dates = [v for v in declared.variables if v.type == "date"]
        date_columns += len(dates)
        files_with_dates += bool(dates)
        assert checked > 0 or not dates or not source, declared.name  # not vacuous

        _frame, meta = read_xpt(content)
        assert meta.file_label == xpt_label(declared.label)
        assert cut_at_word_boundary(meta.file_label, declared.label), meta.file_label
        shorts = short_names([v.name for v in declared.variables])
        assert meta.column_names == [shorts[v.name] for v in declared.variables]
        for v in declared.variables:
            label = meta.column_names_to_labels[shorts[v.name]]
            full = full_labels[(f"{declared.name}.xpt", v.name)]
            assert full == v.label  # the dictionary keeps the full label
            assert cut_at_word_boundary(label, full), (declared.name, v.name, label)
            assert short_in_dictionary[(f"{declared.name}.xpt", v.name)] == shorts[v.name]

        parquet = pq.read_table(io.BytesIO(as_parquet[f"{declared.name}.parquet"]))
        for v in dates:
            assert str(parquet.schema.field(v.name).type) == "date32[day]", v.name
    assert date_columns >= 17 and files_with_dates == 12
    study_drug = read_xpt(as_xpt["study_drug.xpt"])[1]
    assert study_drug.file_label == "Study drug (tablets; identical in both"


def test_readme_lists_every_file_with_its_row_key_and_joins(bundles):
    protocol = current_protocol()
    declared = {t.name: t for t in tables(protocol)}
    for fmt, files in bundles.items():
        extension = "csv" if fmt == "dummy" else fmt
        text = files[README].decode("utf-8")
        assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
        manifest = json.loads(files["manifest.json"])
        entry = next(f for f in manifest["files"] if f["name"] == README)
        assert entry["sha256"] == hashlib.sha256(files[README]).hexdigest()
        flat = " ".join(text.split())
        blocks = [" ".join(block.split()) for block in text.split("\r\n\r\n")]
        for name, t in declared.items():
            file = f"{name}.{extension}"
            (section,) = [b for b in blocks if b.split(" ", 1)[0].rstrip(":") == file]
            assert f"One row: {t.row}" in section, (fmt, name)
            if t.key:
                assert (
                    "Key: "
                    + ", ".join(
                        f"{k} ({short_names([v.name for v in t.variables])[k]})"
                        if fmt == "xpt"
                        else k
                        for k in t.key
                    )
                    in section
                ), (fmt, name)
            else:
                assert f"Key: {t.no_key}" in section, (fmt, name)
            for parent in t.joins:
                assert f"{name} -> {parent} on {', '.join(declared[parent].key)}" in flat
            assert "Joins:" in section
        for arm in protocol.arms:  # blinded: no arm named
            assert arm.lower() not in text.lower(), (fmt, arm)
        assert " ".join(SHORT_NAME_RULE.split()) in flat  # dictionary.csv's short_name
        assert ("DATE9." in flat) == (fmt == "xpt")
        if fmt == "dummy":
            assert "DUMMY ARMS" in text and "seed 11" in flat
        else:
            assert "DUMMY" not in text
    assert bundles["dummy"][README] != bundles["csv"][README]


def test_the_readme_tells_the_truth_about_keys_and_joins(bundles):
    """Each declared key is unique in the demo's files, and each join finds its parent."""
    files = bundles["csv"]
    declared = {t.name: t for t in tables(current_protocol())}
    rows = {name: table(files, f"{name}.csv") for name in declared}
    for name, t in declared.items():
        assert rows[name], name  # not vacuous
        if t.key:
            keys = [tuple(r[k] for k in t.key) for r in rows[name]]
            assert len(keys) == len(set(keys)), name
        for parent in t.joins:
            pkey = declared[parent].key
            known = {tuple(r[k] for k in pkey) for r in rows[parent]}
            for r in rows[name]:
                value = tuple(r[k] for k in pkey)
                assert "" in value or value in known, (name, parent, value)
