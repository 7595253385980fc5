"""Fuzz every parser of outside input: success or a clear refusal, never an unhandled exception.

The parsers: the randomization list importer (the function and ``flask randomization
import``), the MedDRA dictionary loader (the parser, the load into the database and ``flask
meddra load``), the protocol file, date fields, and every JSON schema of every route (the
marshmallow schema on its own, then the route over HTTP with arbitrary JSON, text and query
strings). Schemas and routes are found from the app, not listed, so a route added later is
fuzzed the day it ships.

A clear refusal is the parser's own typed error: a ``TrialError`` with a 4xx status and a
message, ``DictionaryFileInvalid`` naming lines, ``ConfigurationError`` naming the setting,
marshmallow's ``ValidationError`` naming fields, a 4xx answer in the error shape, or a
command that exits 1 with a message. What a parser accepts must also be storable (no NUL, no
value longer than its column), or the database refuses it later, on PostgreSQL only.

Depth: ``FUZZ_DEPTH`` multiplies every example count (default 1); ``FUZZ_RANDOM=1`` draws new
examples each run instead of the fixed, reproducible default ones. Each test prints the
number of cases it ran.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tomllib
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import marshmallow as ma
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import bearer, make_config
from trial import create_app
from trial.errors import ConfigurationError, TrialError
from trial.extensions import db

DEPTH = float(os.environ.get("FUZZ_DEPTH", "1"))
RANDOMIZE = os.environ.get("FUZZ_RANDOM") == "1"
SHAPE = {"code", "status", "message", "errors"}
CASES: Counter = Counter()


def examples(base: int) -> int:
    return max(1, round(base * DEPTH))


class UnhandledInput(AssertionError):
    """A parser raised something other than its clear refusal, or accepted the unstorable."""


def fuzz(name: str, strategy, call, *, max_examples: int, refused=(), refusal_problem=None):
    """Feed ``call`` generated values; fail (with the shrunk input) on anything unclear.

    ``call(value)`` returns None or a problem string. An exception of a ``refused`` type is
    a refusal, judged by ``refusal_problem(exc)``; any other exception is a bug.
    """

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=not RANDOMIZE,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    @given(value=strategy)
    def run(value):
        CASES[name] += 1
        try:
            problem = call(value)
        except refused as exc:
            problem = refusal_problem(exc) if refusal_problem else None
        except Exception as exc:
            raise UnhandledInput(
                f"{name}: unhandled {type(exc).__name__}: {str(exc)[:300]}\ninput: {value!r:.600}"
            ) from exc
        if problem:
            raise UnhandledInput(f"{name}: {problem}\ninput: {value!r:.600}")

    run()


def trial_error_problem(exc: TrialError) -> str | None:
    if not 400 <= exc.status < 500:
        return f"refused with status {exc.status}"
    if not exc.message.strip():
        return "refused without a message"
    if not all(
        isinstance(k, str) and isinstance(v, list) and v and all(isinstance(m, str) for m in v)
        for k, v in exc.errors.items()
    ):
        return f"errors not named per field: {exc.errors!r}"
    return None


@pytest.fixture(autouse=True)
def report_cases(request, capsys):
    before = Counter(CASES)
    yield
    ran = CASES - before
    if ran:
        with capsys.disabled():
            detail = (
                f"over {len(ran)} parsers or routes, {min(ran.values())}-{max(ran.values())} each"
                if len(ran) > 3
                else ", ".join(f"{name}: {count}" for name, count in sorted(ran.items()))
            )
            print(f"\n[fuzz cases] {request.node.name}: {sum(ran.values())} ({detail})")


# --- shared strategies ------------------------------------------------------------------

ODD_DIGITS = ["\u00b2", "\u0663", "\uff11", "\u2460", "\U0001d7dc"]  # ², ٣, １, ①, 𝟜
EXPANDING = ["\u00df", "\ufb03", "\u0130", "\u0149"]  # ß, ﬃ, İ, ŉ: longer when case-folded
date_like = st.one_of(
    st.dates().map(date.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.from_regex(r"\A[0-9+-]{0,6}-[0-9]{1,3}-[0-9]{1,3}\Z"),
    st.sampled_from(
        [
            "0001-01-01",
            "9999-12-31",
            "2026-02-29",
            "2024-02-29",
            "2026-13-01",
            "2026-00-10",
            "",
            "today",
            "2026-1-1",
            "20260115",
            "2026-01-15T00:00:00Z",
            "2026-W03-4",
            "+2026-01-15",
            "\uff12\uff10\uff12\uff16-01-15",
            "2026-01-15\x00",
        ]
    ),
    st.text(alphabet="0123456789-T:Z+. \u0663", max_size=25),
)
# Instants at the edges of the calendar with the widest offsets: converting
# 0001-01-01T00:00:00+14:00 or 9999-12-31T23:59:59-14:00 to UTC overflows; before 1980 a
# ZIP entry cannot carry the time.
OFFSETS = ["Z", "+00:00", "+14:00", "-14:00", "+23:59", "-23:59", "+05:30", "-00:30", ""]
extreme_instants = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.sampled_from([1, 2, 1969, 1970, 1979, 1980, 2025, 9998, 9999]) | st.integers(1, 9999),
        st.integers(1, 12),
        st.sampled_from([1, 28, 31]) | st.integers(1, 28),
        st.sampled_from([0, 23]) | st.integers(0, 23),
        st.integers(0, 59),
        st.sampled_from([0, 59]),
        st.sampled_from(OFFSETS),
    ).filter(lambda text: not text[8:10] == "31" or text[5:7] in ("01", "03", "05", "07", "12")),
    st.datetimes(
        timezones=st.timedeltas(
            min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
        ).map(timezone)
    ).map(datetime.isoformat),
)
date_like = date_like | extreme_instants
number_like = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(ODD_DIGITS + ["1_000", " 7", "+3", "1e3", "0x10", "", "-0", "9" * 5000]),
    st.text(alphabet=st.sampled_from(["1", "0", *ODD_DIGITS]), min_size=1, max_size=30),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.integers(-(2**80), 2**80),
    st.floats(),
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(EXPANDING + ["\x00", "a", " "]), max_size=12),
    date_like,
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def csv_text(rows: list[list[str]], terminator: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    return out.getvalue()


# --- randomization list importer --------------------------------------------------------

STRATA = [f"site={site}|sex={sex}" for site in ("S01", "S02", "S03") for sex in "FM"]
ARMS = ["baclofen", "placebo"]
LIST_COLUMNS = ["stratum", "sequence", "arm", "block", "kit"]


@st.composite
def list_files(draw):
    """A list CSV: arbitrary, shaped like one, or a valid list with a few cells changed."""
    kind = draw(st.sampled_from(["text", "shaped", "mutated"]))
    if kind == "text":
        return draw(st.text(max_size=400))
    if kind == "shaped":
        extra = draw(st.lists(st.text(max_size=8), max_size=1))
        header = draw(st.permutations(LIST_COLUMNS + extra))
        header = header[: draw(st.integers(2, len(header)))]
        cell = st.one_of(
            st.sampled_from(STRATA + ["all", "site=S01", "sex=F|site=S01", "site=S9|sex=F"]),
            st.sampled_from(ARMS + ["Placebo", "", "baclofen "]),
            number_like,
            st.text(max_size=10),
        )
        rows = draw(st.lists(st.lists(cell, max_size=len(header) + 2), max_size=8))
        return csv_text([header, *rows], draw(st.sampled_from(["\n", "\r\n", "\r"])))
    # A balanced, gap-free list for two strata, then mutations of single cells.
    rows, kit = [], 100000
    for stratum in draw(st.lists(st.sampled_from(STRATA), min_size=1, max_size=2, unique=True)):
        for block in (1, 2):
            for offset, arm in enumerate(draw(st.permutations(ARMS))):
                kit += 1
                sequence = (block - 1) * 2 + offset + 1
                rows.append([stratum, str(sequence), arm, str(block), str(kit)])
    odd_strata = ["sex=F|site=S01", "site=S01|sex=F|site=S01", "site=S01|sex=F ", "site=S01"]
    cells = [
        st.sampled_from(STRATA + odd_strata) | st.text(max_size=130),  # stratum
        number_like,  # sequence
        st.sampled_from(ARMS + ["Baclofen", "", "placebo\x00"]) | st.text(max_size=8),  # arm
        number_like,  # block
        number_like,  # kit
    ]
    for _ in range(draw(st.integers(0, 3))):
        row = draw(st.integers(0, len(rows) - 1))
        column = draw(st.integers(0, 4))
        rows[row][column] = draw(cells[column])
        if draw(st.booleans()):  # the same change to the block's partner keeps it balanced
            rows[row ^ 1][column] = rows[row][column]
    if draw(st.booleans()):
        rows[draw(st.integers(0, len(rows) - 1))].append(draw(st.text(max_size=5)))
    return csv_text([LIST_COLUMNS, *rows], "\n")


@pytest.fixture
def unblinded_statistician(make_site, make_user):
    for code in ("S01", "S02", "S03"):
        make_site(code)
    return make_user("unblinded_statistician", username="ustat")[0]


def test_list_importer_refuses_bad_files_clearly(app, unblinded_statistician):
    from randomization import lists

    def import_text(text):
        try:
            lists.import_list(unblinded_statistician, text, append=False)
            # What was accepted must fit the table: flushing it must not fail.
            db.session.flush()
        finally:
            db.session.rollback()

    fuzz(
        "list importer",
        list_files(),
        import_text,
        max_examples=examples(250),
        refused=TrialError,
        refusal_problem=trial_error_problem,
    )


def cli_problem(result) -> str | None:
    """A command run by the CLI runner: exit 0, or exit 1 with a message, no traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"unhandled {type(result.exception).__name__}: {result.exception}"
    if result.exit_code not in (0, 1):
        return f"exit code {result.exit_code}"
    if result.exit_code == 1 and "Error:" not in result.output:
        return f"refused without a message: {result.output!r}"
    return None


file_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"stratum,sequence,arm\n\xe9,1,placebo\n"]),
)


def test_randomization_import_command_refuses_bad_files_clearly(
    app, runner, unblinded_statistician, tmp_path
):
    path = tmp_path / "list.csv"

    def run(data: bytes):
        path.write_bytes(data)
        try:
            return cli_problem(
                runner.invoke(args=["randomization", "import", str(path), "--as", "ustat"])
            )
        finally:
            db.session.rollback()

    fuzz("flask randomization import", file_bytes, run, max_examples=examples(40))


# --- MedDRA dictionary ------------------------------------------------------------------


@st.composite
def dictionary_files(draw):
    from trial.safety.meddra import SYSTEM_ORGAN_CLASSES

    kind = draw(st.sampled_from(["text", "shaped"]))
    if kind == "text":
        return draw(st.text(max_size=400))
    header = list(draw(st.permutations(["llt", "pt", "soc", "code"])))
    if draw(st.booleans()):
        header[header.index("llt")] = draw(st.sampled_from(["term", "TERM", " Llt ", "x"]))
    term = st.one_of(
        st.text(max_size=20),
        st.text(alphabet=st.sampled_from(EXPANDING + ["a", " ", "\x00"]), max_size=210),
        st.sampled_from(["Somnolence", "somnolence", "Drowsiness", "\x00", "a" * 201]),
    )
    soc = st.one_of(
        st.sampled_from(SYSTEM_ORGAN_CLASSES),
        st.sampled_from(SYSTEM_ORGAN_CLASSES).map(str.upper),
        st.text(max_size=10),
    )
    cell = {"llt": term, "term": term, "TERM": term, " Llt ": term, "x": term, "pt": term}
    cell |= {"soc": soc, "code": number_like}
    rows = draw(
        st.lists(
            st.tuples(*(cell[name] for name in header)).map(list)
            | st.lists(term, max_size=len(header) + 1),
            max_size=6,
        )
    )
    return csv_text([header, *rows], draw(st.sampled_from(["\n", "\r\n"])))


def storable_dictionary_problem(entries) -> str | None:
    from trial.safety.models import SOC_MAX, TERM_MAX

    for entry in entries.values():
        for label, value, limit in (
            ("term key", entry.key, TERM_MAX),
            ("preferred term", entry.preferred_term, TERM_MAX),
            ("soc", entry.soc, SOC_MAX),
        ):
            if len(value) > limit or "\x00" in value:
                return f"accepted a {label} the table cannot store: {value!r:.80}"
    return None


def dictionary_problems(exc) -> str | None:
    if not exc.problems or not all(isinstance(p, str) and p.strip() for p in exc.problems):
        return f"refused without naming problems: {exc.problems!r}"
    return None


def test_dictionary_parser_refuses_bad_files_clearly():
    from trial.safety.meddra import DictionaryFileInvalid, parse_dictionary

    fuzz(
        "meddra parser",
        dictionary_files(),
        lambda text: storable_dictionary_problem(parse_dictionary(text)),
        max_examples=examples(400),
        refused=DictionaryFileInvalid,
        refusal_problem=dictionary_problems,
    )


def test_dictionary_load_into_the_database(app, tmp_path):
    """The whole load (decode, parse, replace the table, audit, re-code), on this database."""
    from trial.cli_support import system_actor
    from trial.safety.coding import load_sponsor_dictionary
    from trial.safety.meddra import DictionaryFileInvalid

    path = tmp_path / "meddra.csv"

    def load(data: bytes):
        path.write_bytes(data)
        try:
            load_sponsor_dictionary(system_actor(), path)
            db.session.flush()
        finally:
            db.session.rollback()

    fuzz(
        "meddra load",
        st.one_of(file_bytes, dictionary_files().map(lambda t: t.encode("utf-8"))),
        load,
        max_examples=examples(80),
        refused=DictionaryFileInvalid,
        refusal_problem=dictionary_problems,
    )


def test_meddra_load_command_refuses_bad_files_clearly(app, runner, tmp_path):
    path = tmp_path / "meddra.csv"

    def run(data: bytes):
        path.write_bytes(data)
        try:
            return cli_problem(runner.invoke(args=["meddra", "load", str(path)]))
        finally:
            db.session.rollback()

    fuzz("flask meddra load", file_bytes, run, max_examples=examples(40))


# --- the protocol file ------------------------------------------------------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(data: dict) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in data.items())


def real_protocol() -> dict:
    from config import Config

    with open(Config.PROTOCOL_FILE, "rb") as handle:
        return tomllib.load(handle)


def leaf_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*prefix, index))


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=20),
    st.dates(),
    st.sampled_from([0, 1, -1, 2, 100, 0.5, 1.0, "site", "sex", "blocks", "minimization"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["code", "day", "F", "M", "x"]), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def protocol_files(draw):
    """Arbitrary text, or the real protocol with a few settings replaced, removed or added."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.text(max_size=300))
    data = real_protocol()
    paths = [p for p in leaf_paths(data) if p]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(toml_values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(toml_values)
            else:
                parent.append(draw(toml_values))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    return toml_document(data)


def test_protocol_document_writer_round_trips():
    """The mutations above are only as good as the TOML writer; check it on the real file."""
    assert tomllib.loads(toml_document(real_protocol())) == real_protocol()


def test_protocol_loader_refuses_bad_files_clearly(tmp_path):
    from trial.protocol.loader import load_protocol

    path = tmp_path / "protocol.toml"

    def load(document):
        if isinstance(document, bytes):
            path.write_bytes(document)
        else:
            path.write_text(document, encoding="utf-8")
        load_protocol(path)

    def named(exc: ConfigurationError) -> str | None:
        return None if str(path) in str(exc) else f"refusal does not name the file: {exc}"

    fuzz(
        "protocol file",
        st.one_of(protocol_files(), file_bytes),
        load,
        max_examples=examples(300),
        refused=ConfigurationError,
        refusal_problem=named,
    )


# --- dates and every JSON schema, on their own ------------------------------------------


def load_fields(schema: ma.Schema) -> dict[str, ma.fields.Field]:
    return {field.data_key or name: field for name, field in schema.load_fields.items()}


def values_for(field, depth: int = 0):
    """Values for one field: shaped like it (to get past the type check) or anything."""
    f = ma.fields
    if isinstance(field, f.Nested) and depth < 3:
        shaped = shaped_bodies(field.schema, depth + 1)
        return (st.lists(shaped, max_size=3) if field.many else shaped) | json_values
    if isinstance(field, f.List) and depth < 3:
        return st.lists(values_for(field.inner, depth + 1), max_size=4) | json_values
    if isinstance(field, f.Date | f.DateTime):
        return date_like | json_values
    if isinstance(field, f.Integer | f.Float | f.Decimal):
        return st.integers(-(2**70), 2**70) | st.floats() | st.integers(-3, 100) | json_values
    if isinstance(field, f.Boolean):
        return st.booleans() | json_values
    return st.text(max_size=40) | st.text(min_size=200, max_size=1200) | json_values


def shaped_bodies(schema: ma.Schema, depth: int = 0):
    fields = load_fields(schema)
    return st.fixed_dictionaries(
        {}, optional={name: values_for(field, depth) for name, field in fields.items()}
    ) | st.dictionaries(st.sampled_from([*fields, "x"]) if fields else st.just("x"), json_values)


def route_schemas(app):
    """(method, rule, endpoint, location, schema instance) for every argument of every route."""
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        for parameter in getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", []):
            schema = parameter["schema"]
            schema = schema() if isinstance(schema, type) else schema
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((method, rule, rule.endpoint, parameter.get("in"), schema))
    return found


def validation_problem(exc: ma.ValidationError) -> str | None:
    if not isinstance(exc.messages, dict) or not exc.messages:
        return f"refusal names no field: {exc.messages!r}"
    return None


@pytest.fixture
def schema_app(sqlite_template, tmp_path):
    """Schemas parse the same whatever the database: one app on SQLite, even in a PostgreSQL run."""
    import shutil

    path = tmp_path / "schemas.db"
    shutil.copyfile(sqlite_template, path)
    application = create_app(make_config(f"sqlite:///{path}", tmp_path / "instance"))
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


def test_every_date_field_refuses_bad_dates_clearly(schema_app):
    app = schema_app
    fields = set()
    for _, _, _, _, schema in route_schemas(app):
        stack = [schema]
        while stack:
            for name, field in load_fields(stack.pop()).items():
                inner = field.inner if isinstance(field, ma.fields.List) else field
                if isinstance(inner, ma.fields.Nested):
                    stack.append(inner.schema)
                elif isinstance(inner, ma.fields.Date | ma.fields.DateTime):
                    fields.add((type(schema).__name__, name, inner))
    assert len(fields) >= 5, fields  # consent, dosing, disposition, deviation, AE dates...
    for schema_name, name, field in sorted(fields, key=lambda x: x[:2]):

        def parse(value, field=field):
            result = field.deserialize(value)
            if result is not None and not isinstance(result, date):
                return f"parsed to {result!r}"
            return None

        fuzz(
            f"date {schema_name}.{name}",
            date_like | json_scalars,
            parse,
            max_examples=examples(40),
            refused=ma.ValidationError,
        )


def test_every_route_schema_refuses_bad_input_clearly(schema_app):
    """Each schema on its own, so a validator that trips over odd input shows up as such."""
    app = schema_app
    seen, problems = set(), []
    for _, _, _, location, schema in route_schemas(app):
        if type(schema) in seen:
            continue
        seen.add(type(schema))
        if location == "query":
            strategy = st.dictionaries(
                st.sampled_from([*load_fields(schema), "x"]),
                st.text(max_size=30) | date_like | number_like,
            )
        else:
            strategy = shaped_bodies(schema) | json_values
        try:
            fuzz(
                f"schema {type(schema).__name__}",
                strategy,
                lambda value, schema=schema: schema.load(value) and None,
                max_examples=examples(60),
                refused=ma.ValidationError,
                refusal_problem=validation_problem,
            )
        except UnhandledInput as exc:
            problems.append(str(exc))
    assert len(seen) >= 20, seen
    assert not problems, "\n\n".join(problems)


# --- every route over HTTP --------------------------------------------------------------

ROLE_PREFERENCE = (
    "admin",
    "coordinator",
    "investigator",
    "data_manager",
    "monitor",
    "unblinded_statistician",
    "statistician",
    "dsmb",
)


@pytest.fixture
def fuzz_app(database_url, tmp_path):
    """A seeded app with no context pushed, so each request has its own session (as served)."""
    from trial.auth import services as auth_services
    from trial.auth.tokens import issue_token
    from trial.cli_support import system_actor
    from trial.demo import build_demo
    from trial.participants.models import Participant

    application = create_app(make_config(database_url, tmp_path / "instance"))
    with application.app_context():
        build_demo(participant_count=6, seed=20261121)
        actor, tokens = system_actor(), {}
        for role in ROLE_PREFERENCE:
            sites = ["S01"] if role in ("coordinator", "investigator", "monitor") else []
            user = auth_services.create_user(
                actor, username=f"fuzz.{role}", role=role, site_codes=sites
            )
            tokens[role] = issue_token(actor, user, label="fuzz", ttl=timedelta(hours=2))[0]
        auth_services.create_user(actor, username="fuzz.target", role="statistician")
        db.session.commit()
        participants = sorted(db.session.scalars(db.select(Participant.participant_id)))
        db.session.remove()
    application.config["FUZZ_TOKENS"] = tokens
    application.config["FUZZ_PARTICIPANTS"] = participants
    yield application
    with application.app_context():
        db.engine.dispose()


def path_values(app, rule):
    """Path parameters: existing ids (at S01 and elsewhere), and odd ones."""
    values = {}
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__
        if converter == "IntegerConverter":
            values[name] = st.integers(1, 40) | st.integers(0, 2**70)
        elif name == "username":
            values[name] = st.sampled_from(["fuzz.target", "nobody"])
        elif name == "participant_id":
            values[name] = st.sampled_from(app.config["FUZZ_PARTICIPANTS"]) | st.text(
                alphabet="S0123-", max_size=10
            )
        else:
            values[name] = st.integers(1, 20).map(str) | st.text(max_size=8)
    return st.fixed_dictionaries(values)


def open_route(client, method: str, rule, headers: dict, case):
    """Send ``case`` (path values, request keyword arguments) to ``rule``."""
    from urllib.parse import quote

    ids, kwargs = case
    path = rule.rule
    for name, value in ids.items():
        path = path.replace(
            f"<{name}>" if f"<{name}>" in path else f"<int:{name}>", quote(str(value), safe="")
        )
    return client.open(path, method=method, headers=headers, **kwargs)


def route_headers(app, endpoint: str) -> dict:
    """A token of the first role the route's policy admits (none for a public route)."""
    from trial.auth.policy import policy_for

    policy = policy_for(app, endpoint)
    role = next((r for r in ROLE_PREFERENCE if policy.permits(r)), None)
    return {} if policy.public else bearer(app.config["FUZZ_TOKENS"][role])


def response_problem(response) -> str | None:
    if response.status_code >= 500:
        return f"answered {response.status_code}: {response.get_data(as_text=True)[:300]}"
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        if not isinstance(body, dict) or set(body) != SHAPE:
            return f"{response.status_code} off the error shape: {response.get_data()[:200]!r}"
    return None


def test_every_route_answers_bad_input_with_a_clear_4xx(fuzz_app):
    """Arbitrary JSON (NaN and huge numbers included), text and query strings, sent with a
    token the route's policy admits, to existing and odd ids: never a 5xx."""
    from trial.auth.policy import policy_for

    client = fuzz_app.test_client()
    tokens = fuzz_app.config["FUZZ_TOKENS"]
    problems, routes, statuses = [], 0, Counter()
    for method, rule, endpoint, location, schema in route_schemas(fuzz_app):
        routes += 1
        policy = policy_for(fuzz_app, endpoint)
        role = next((r for r in ROLE_PREFERENCE if policy.permits(r)), None)
        headers = {} if policy.public else bearer(tokens[role])
        if location == "query":
            payload = st.dictionaries(
                st.sampled_from([*load_fields(schema), "x"]),
                st.text(max_size=30) | date_like | number_like,
            ).map(lambda q: {"query_string": q})
        else:
            payload = (shaped_bodies(schema) | json_values).map(
                lambda body: {"data": json.dumps(body), "content_type": "application/json"}
            ) | st.text(max_size=200).map(
                lambda text: {"data": text, "content_type": "application/json"}
            )

        def call(case, method=method, rule=rule, headers=headers):
            response = open_route(client, method, rule, headers, case)
            statuses[response.status_code] += 1
            return response_problem(response)

        try:
            fuzz(
                f"{method} {rule.rule}",
                st.tuples(path_values(fuzz_app, rule), payload),
                call,
                max_examples=examples(20),
            )
        except UnhandledInput as exc:
            problems.append(str(exc))
    print(f"\n[fuzz statuses] {dict(sorted(statuses.items()))}")
    assert routes >= 40
    assert not problems, "\n\n".join(problems)
    # The inputs got past authentication and routing to the parsers and services.
    assert statuses[422] + statuses[400] > sum(statuses.values()) / 3, statuses
    assert sum(n for status, n in statuses.items() if status < 300) >= 20, statuses


# --- hostile JSON and extreme cut-offs (issue 22) ---------------------------------------
# Hypothesis' text never holds a lone surrogate and json.dumps never writes a duplicate key,
# a number of thousands of digits or a body nested thousands deep: these strategies write
# the JSON text themselves, so each class of input that once reached a 500 is generated.

SURROGATE_ESCAPES = st.integers(0xD800, 0xDFFF).map(lambda n: f"\\u{n:04x}")


@st.composite
def hostile_literals(draw) -> str:
    """A JSON value no field may take: a lone surrogate in a string, nesting deeper than any
    body, an integer literal of more digits than any field, or NaN/Infinity."""
    kind = draw(st.sampled_from(["surrogate", "deep", "digits", "constant"]))
    if kind == "surrogate":
        before, after = draw(st.text(alphabet="ab ", max_size=4)), draw(st.text("cd", max_size=3))
        return f'"{before}{draw(SURROGATE_ESCAPES)}{after}"'
    if kind == "deep":
        depth = draw(st.sampled_from([33, 100, 999, 5_000, 200_000]))
        if draw(st.booleans()):
            return "[" * depth + "1" + "]" * depth
        return '{"k": ' * min(depth, 100_000) + "1" + "}" * min(depth, 100_000)
    if kind == "digits":
        digits = draw(st.sampled_from([101, 4_300, 4_301, 5_000, 50_000]))
        return draw(st.sampled_from(["", "-"])) + draw(st.sampled_from("123456789")) * digits
    return draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))


@st.composite
def hostile_bodies(draw, schema: ma.Schema) -> str:
    """A body shaped like ``schema``'s with one to three hostile changes: a value replaced by
    a hostile literal, a key given twice, a key holding a lone surrogate, or the whole body
    nested deep."""
    names = list(load_fields(schema)) or ["x"]
    body = draw(st.fixed_dictionaries({}, optional={n: json_values for n in names}))
    members = [[json.dumps(key), json.dumps(value)] for key, value in body.items()]
    for _ in range(draw(st.integers(1, 3))):
        change = draw(st.sampled_from(["value", "value", "twice", "key", "nest"]))
        if change == "value" or (change == "twice" and not members):
            key = json.dumps(draw(st.sampled_from(names)))
            members.append([key, draw(hostile_literals())])
        elif change == "twice":
            key = draw(st.sampled_from(members))[0]
            members.append([key, json.dumps(draw(json_scalars))])
        elif change == "key":
            members.append([f'"{draw(SURROGATE_ESCAPES)}"', "1"])
        else:
            depth = draw(st.sampled_from([33, 2_000, 200_000]))
            inner = "{" + ", ".join(f"{k}: {v}" for k, v in members) + "}"
            return "[" * depth + inner + "]" * depth
    order = draw(st.permutations(range(len(members))))
    return "{" + ", ".join(f"{members[i][0]}: {members[i][1]}" for i in order) + "}"


def outcome(parse, text):
    try:
        return ("value", parse(text))
    except TrialError as exc:
        return (exc.status, exc.errors)


def fast_path_problem(text: str) -> str | None:
    """The request parser's fast path (the C parser and cheap checks of the text) must agree
    with its strict path (hooks on every value and a walk of the result) on every text."""
    from trial.json_input import _strict_parse, parse_json_body

    fast, strict = outcome(parse_json_body, text), outcome(_strict_parse, text)
    if fast != strict:
        return f"fast path {fast!r:.200} but strict {strict!r:.200}"
    return None


JSON_TEXTS = st.one_of(
    hostile_bodies(ma.Schema.from_dict({n: ma.fields.Raw() for n in ("a", "b", "c")})()),
    hostile_literals(),
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
)
# ... and broken after the hostile part: the fast path stops at the first hostile value,
# so what follows is read by the strict path only.
HOSTILE_TEXTS = JSON_TEXTS | st.tuples(
    JSON_TEXTS, st.sampled_from([" x", ",", "}", "]", ' "'])
).map("".join)


def test_the_fast_path_of_the_request_parser_agrees_with_the_strict_one():
    fuzz(
        "request JSON fast path",
        HOSTILE_TEXTS,
        fast_path_problem,
        max_examples=examples(400),
    )


def test_control_a_fast_path_that_misses_an_escape_is_caught(monkeypatch):
    import re

    from trial import json_input

    monkeypatch.setattr(json_input, "_SUSPECT_ESCAPE", re.compile("(?!)"))  # never matches
    with pytest.raises(UnhandledInput, match="fast path"):
        fuzz("broken fast path", HOSTILE_TEXTS, fast_path_problem, max_examples=400)


def hostile_problem(response) -> str | None:
    if response.status_code < 400:
        return f"accepted hostile JSON with {response.status_code}"
    return response_problem(response)


def body_routes(app):
    return [
        (method, rule, endpoint, schema)
        for method, rule, endpoint, location, schema in route_schemas(app)
        if location == "json"
    ]


def fuzz_hostile_json(app, routes, max_examples: int) -> Counter:
    client, statuses, problems = app.test_client(), Counter(), []
    for method, rule, endpoint, schema in routes:
        headers = route_headers(app, endpoint)
        payload = hostile_bodies(schema).map(
            lambda text: {"data": text, "content_type": "application/json"}
        )

        def call(case, method=method, rule=rule, headers=headers):
            response = open_route(client, method, rule, headers, case)
            statuses[response.status_code] += 1
            return hostile_problem(response)

        try:
            fuzz(
                f"hostile JSON {method} {rule.rule}",
                st.tuples(path_values(app, rule), payload),
                call,
                max_examples=max_examples,
            )
        except UnhandledInput as exc:
            problems.append(str(exc))
    assert not problems, "\n\n".join(problems)
    return statuses


def test_every_body_route_refuses_hostile_json_clearly(fuzz_app):
    """Lone surrogates (in values and keys), deep nesting, huge integers, NaN and keys given
    twice, on every route that takes a JSON body, /auth/token included: a 4xx in the error
    shape every time, never a 5xx and never an acceptance."""
    routes = body_routes(fuzz_app)
    assert len(routes) >= 25 and any(r.rule == "/api/v1/auth/token" for _, r, _, _ in routes)
    statuses = fuzz_hostile_json(fuzz_app, routes, examples(12))
    print(f"\n[fuzz statuses] {dict(sorted(statuses.items()))}")
    assert statuses[400] and statuses[422], statuses  # both kinds of refusal were reached


def cutoff_routes(app):
    return [
        (method, rule, endpoint, schema)
        for method, rule, endpoint, location, schema in route_schemas(app)
        if location == "query" and "cutoff" in load_fields(schema)
    ]


def fuzz_cutoffs(app, routes, max_examples: int) -> Counter:
    client, statuses, problems = app.test_client(), Counter(), []
    for method, rule, endpoint, schema in routes:
        headers = route_headers(app, endpoint)
        extra = {"session": "open"} if "session" in load_fields(schema) else {}
        payload = extreme_instants.map(
            lambda c, extra=extra: {"query_string": {**extra, "cutoff": c}}
        )

        def call(case, method=method, rule=rule, headers=headers):
            response = open_route(client, method, rule, headers, case)
            statuses[response.status_code] += 1
            return response_problem(response)

        try:
            fuzz(
                f"cut-off {method} {rule.rule}",
                st.tuples(st.just({}), payload),
                call,
                max_examples=max_examples,
            )
        except UnhandledInput as exc:
            problems.append(str(exc))
    assert not problems, "\n\n".join(problems)
    return statuses


def test_every_cutoff_refuses_extreme_instants_clearly(fuzz_app):
    """Instants from year 1 to 9999 with offsets up to +-23:59, on the bundle and the safety
    report: a clear 4xx or the artefact, never a 5xx."""
    routes = cutoff_routes(fuzz_app)
    assert {r.rule for _, r, _, _ in routes} >= {
        "/api/v1/exports/blinded",
        "/api/v1/reports/safety",
    }
    statuses = fuzz_cutoffs(fuzz_app, routes, examples(15))
    print(f"\n[fuzz statuses] {dict(sorted(statuses.items()))}")
    assert statuses[422], statuses


def test_the_cutoff_parser_refuses_extreme_instants_clearly():
    from exports.snapshot import EARLIEST_CUTOFF, parse_cutoff

    def parse(text):
        instant = parse_cutoff(text)
        if instant is not None and not (
            instant.utcoffset() == timedelta(0) and EARLIEST_CUTOFF <= instant
        ):
            return f"accepted {instant!r}"
        return None

    fuzz(
        "parse_cutoff",
        extreme_instants | date_like | json_scalars.filter(lambda v: isinstance(v, str)),
        parse,
        max_examples=examples(300),
        refused=TrialError,
        refusal_problem=lambda exc: (
            trial_error_problem(exc)
            or (None if set(exc.errors) == {"cutoff"} else f"names {exc.errors}")
        ),
    )


def test_control_the_fuzzers_find_the_old_parsers_failures(fuzz_app, monkeypatch):
    """Negative control: with the parsers before issue 22 put back (plain json.loads; the
    cut-off converted to UTC before any check, no lower bound), the two fuzzers above report
    unhandled input within a few examples: they would have found these bugs."""
    import exports.snapshot
    import reports.data
    from tests.test_input_hardening import _old_parse, _old_parse_cutoff
    from trial import json_input

    monkeypatch.setattr(json_input, "parse_json_body", _old_parse)
    participants = [r for r in body_routes(fuzz_app) if r[1].rule == "/api/v1/participants"]
    with pytest.raises(AssertionError, match="answered 500|accepted hostile"):
        fuzz_hostile_json(fuzz_app, participants, 30)
    monkeypatch.setattr(exports.snapshot, "parse_cutoff", _old_parse_cutoff)
    monkeypatch.setattr(reports.data, "parse_cutoff", _old_parse_cutoff)
    with pytest.raises(AssertionError, match="answered 500"):
        fuzz_cutoffs(fuzz_app, cutoff_routes(fuzz_app), 30)


# --- inputs the fuzzing broke, pinned ---------------------------------------------------

HEADER = "stratum,sequence,arm,block,kit\n"
BROKEN_LISTS = {
    # csv.DictReader put the extra field under None as a list: AttributeError on .strip()
    "more fields than the header": HEADER + "site=S01|sex=F,1,baclofen,1,100001,x\n",
    # a bare CR line end made csv raise "new-line character seen in unquoted field"
    "old Mac line ends": "stratum,sequence\rsite=S01|sex=F\r",
    # "²".isdigit() is true but int("²") raises ValueError
    "superscript block": HEADER
    + "site=S01|sex=F,1,baclofen,\u00b2,\nsite=S01|sex=F,2,placebo,\u00b2,\n",
    # a block beyond the INTEGER column: DataError on PostgreSQL, OverflowError on SQLite
    "block out of range": HEADER
    + "site=S01|sex=F,1,baclofen,99999999999999999999,\n"
    + "site=S01|sex=F,2,placebo,99999999999999999999,\n",
    # a kit wider than its VARCHAR(20): DataError on PostgreSQL, silently stored on SQLite
    "kit too wide": HEADER + "site=S01|sex=F,1,baclofen,,123456789012345678901234\n",
    # accepted, but no participant's stratum is ever "sex=F|site=S01": unreachable slots
    "reordered stratum": HEADER + "sex=F|site=S01,1,baclofen,,\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN_LISTS))
def test_list_files_that_broke_the_importer_are_refused_naming_the_problem(
    app, unblinded_statistician, name
):
    from randomization import lists

    with pytest.raises(TrialError) as refused:
        lists.import_list(unblinded_statistician, BROKEN_LISTS[name])
    db.session.rollback()
    assert trial_error_problem(refused.value) is None
    assert refused.value.status == 422 and refused.value.errors


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # NUL reached the database: PostgreSQL refuses it (an unhandled error at load)
        ("llt,pt,soc\n0,\x00,Investigations\n", "NUL"),
        # 150 "ß" fit 200 characters but case-fold to 300 ("ss"): too long for the key column
        ("llt,pt,soc\n" + "\u00df" * 150 + ",Somnolence,Nervous system disorders\n", "longer"),
    ],
)
def test_dictionary_files_that_broke_the_loader_are_refused(text, problem):
    from trial.safety.meddra import DictionaryFileInvalid, parse_dictionary

    with pytest.raises(DictionaryFileInvalid) as refused:
        parse_dictionary(text)
    assert any(problem in p and p.startswith("line 2") for p in refused.value.problems)


def test_files_that_are_not_utf8_are_refused_by_the_commands_and_the_protocol_loader(
    app, runner, unblinded_statistician, tmp_path
):
    from trial.protocol.loader import load_protocol

    path = tmp_path / "latin1.csv"
    path.write_bytes("stratum,sequence,arm\nsite=S01|sex=F,1,\u00e9\n".encode("latin-1"))
    result = runner.invoke(args=["randomization", "import", str(path), "--as", "ustat"])
    assert cli_problem(result) is None and result.exit_code == 1
    assert "line 2 is not UTF-8" in result.output
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_protocol(path)


# --- the harness's own control ----------------------------------------------------------


def test_control_the_harness_reports_an_unhandled_exception_with_its_input():
    """A parser that trips over its input (an unguarded int()) is reported, with a shrunk
    input; the same parser with the refusal typed is not."""

    def broken(text: str):
        stratum, sequence = text.split(",", 1)  # ValueError without a comma
        return int(sequence)

    with pytest.raises(UnhandledInput, match=r"unhandled ValueError.*\ninput: '"):
        fuzz("broken parser", st.text(max_size=20), broken, max_examples=50)

    def careful(text: str):
        try:
            return broken(text)
        except ValueError as exc:
            raise TrialError("line 1: not a stratum,sequence pair", {"line 1": [str(exc)]}) from exc

    fuzz(
        "careful parser",
        st.text(max_size=20),
        careful,
        max_examples=50,
        refused=TrialError,
        refusal_problem=trial_error_problem,
    )


def test_control_the_harness_reports_a_5xx_and_an_unstorable_acceptance():
    class Response:
        status_code = 500

        def get_data(self, as_text=False):
            return "An internal error occurred"

    assert response_problem(Response()) is not None
    from trial.safety.meddra import DictionaryEntry

    entries = {"k": DictionaryEntry("s" * 201, "pt", "Investigations", 2)}
    assert "cannot store" in storable_dictionary_problem(entries)
