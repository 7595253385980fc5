"""The OpenAPI contract: the spec is public and valid, and the service keeps to it.

The schemathesis test fuzzes every operation the spec lists (the coverage phase, then positive
and negative data) in-process against a seeded database, with a token of a role the route's
declared policy admits. Nothing here lists operations by hand: a route added by a later
feature is picked up from the spec, mapped to its Flask endpoint through ``app.url_map`` and
given a token through ``policy_for``, so it is covered the day it ships.

It drives schemathesis through its public Python API (``get_all_operations``,
``iter_coverage_cases``, ``as_strategy`` with Hypothesis, ``call_and_validate``) rather than
``schemathesis.pytest.from_fixture``, whose lazy loader sets ``node._nodeid``, an attribute
pytest 9.2 no longer has. ``SCHEMATHESIS_MAX_EXAMPLES`` deepens the run.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import timedelta

import pytest
import schemathesis
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from tests.conftest import bearer, make_config
from trial import create_app
from trial.auth import services as auth_services
from trial.auth.policy import policy_for
from trial.auth.roles import Role
from trial.auth.tokens import authenticate_token, issue_token
from trial.cli_support import system_actor
from trial.errors import TrialError
from trial.extensions import db

API_PREFIX = "/api/v1"
SPEC_PATH = f"{API_PREFIX}/openapi.json"
BEARER = [{"bearerAuth": []}]
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Examples per operation and generation mode in the fuzzing phase; raise it for a deeper run.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
# When a route admits several roles, fuzz it as the first of these it admits: admin for
# accounts, sites and the audit trail, site staff (at S01) for participant work, then the rest.
ROLE_PREFERENCE = (
    Role.ADMIN,
    Role.COORDINATOR,
    Role.INVESTIGATOR,
    Role.DATA_MANAGER,
    Role.MONITOR,
    Role.UNBLINDED_STATISTICIAN,
    Role.STATISTICIAN,
    Role.DSMB,
)
SEED_SITES = ("S01", "S02", "S03")
DEMO_PARTICIPANTS = 9
# Every built-in check runs but this one: the spec cannot express the business rules (consent
# not in the future, age 18-70 at consent, one site per coordinator), so a schema-valid body
# may rightly get 422. Accepted invalid data, 5xx and off-spec responses all still fail.
EXCLUDED_CHECKS = [positive_data_acceptance]
SITES_OF_ROLE = {
    Role.COORDINATOR: ["S01"],
    Role.INVESTIGATOR: ["S01"],
    Role.MONITOR: list(SEED_SITES),
}


def openapi_path(rule: str) -> str:
    """Turn a werkzeug rule (``/p/<int:id>``) into its OpenAPI path (``/p/{id}``)."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def api_routes(app) -> dict[tuple[str, str], str]:
    """Map (method, OpenAPI path) to the Flask endpoint for every route under the API."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes[(method.lower(), openapi_path(rule.rule))] = rule.endpoint
    return routes


def spec_operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def role_for(policy) -> Role | None:
    """The role to call a route as: None for public routes."""
    if policy.public:
        return None
    for role in ROLE_PREFERENCE:
        if policy.permits(role.value):
            return role
    raise AssertionError(f"policy {policy} admits no known role")


# --- the spec itself ------------------------------------------------------------------------


@pytest.fixture
def spec(client):
    response = client.get(SPEC_PATH)
    assert response.status_code == 200
    return response.json


def test_spec_is_public_and_valid_openapi(client, spec):
    assert client.get(SPEC_PATH).status_code == 200  # no token
    assert spec["openapi"].startswith("3.")
    # Validated against the OpenAPI meta-schema; a broken spec is caught (control).
    schemathesis.openapi.from_dict(spec).validate()
    broken = {**spec, "paths": {"/x": {"get": {"responses": "none"}}}}
    with pytest.raises(Exception, match="none"):
        schemathesis.openapi.from_dict(broken).validate()
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_api_route_is_in_the_spec_with_its_security(app, spec):
    """A token-protected operation declares bearer security; a public one declares none."""
    documented = {(method, path): op for method, path, op in spec_operations(spec)}
    routes = api_routes(app)
    assert routes, "no API routes found"
    problems = []
    for (method, path), endpoint in sorted(routes.items()):
        if path == SPEC_PATH:
            continue
        operation = documented.get((method, path))
        if operation is None:
            problems.append(f"{method.upper()} {path} ({endpoint}) is not in the spec")
            continue
        policy = policy_for(app, endpoint)
        security = operation.get("security", spec.get("security"))  # an operation's own wins
        if policy is None:
            problems.append(f"{method.upper()} {path} declares no access policy")
        elif policy.public and security:
            problems.append(f"public {method.upper()} {path} declares security")
        elif not policy.public and security != BEARER:
            problems.append(
                f"{method.upper()} {path} needs a token but does not declare "
                f"bearer security: {security}"
            )
    for method, path in documented:
        if (method, path) not in routes:
            problems.append(f"spec lists {method.upper()} {path}, which no route serves")
    assert not problems, "\n".join(problems)


def test_error_responses_use_the_error_schema(spec):
    """Every operation documents its error answers with the one error shape."""
    for method, path, operation in spec_operations(spec):
        default = operation["responses"].get("default")
        assert default == {"$ref": "#/components/responses/DEFAULT_ERROR"}, (method, path)
    body = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Error"}
    assert set(spec["components"]["schemas"]["Error"]["required"]) == {
        "code",
        "status",
        "message",
        "errors",
    }


# --- schemathesis ---------------------------------------------------------------------------


class RoleTokens:
    """Hand out a live token per role, replacing any the fuzzing revoked or demoted.

    The fuzzer may log a token out (DELETE /auth/token) or change a user's role through the
    admin API, so before each case the token is checked and, if needed, a new user or token
    is made.
    """

    def __init__(self, app):
        self.app = app
        self.tokens: dict[Role, str] = {}
        self.counter = 0

    def _issue(self, role: Role) -> str:
        self.counter += 1
        actor = system_actor()
        user = auth_services.create_user(
            actor,
            username=f"fuzz.{role.value}.{self.counter}",
            role=role.value,
            site_codes=SITES_OF_ROLE.get(role, []),
        )
        token, _ = issue_token(actor, user, label="fuzz", ttl=timedelta(hours=2))
        db.session.commit()
        return token

    def token(self, role: Role) -> str:
        with self.app.app_context():
            token = self.tokens.get(role)
            if token is not None:
                try:
                    user, _ = authenticate_token(token)
                    if user.role != role.value or user.site_codes != SITES_OF_ROLE.get(role, []):
                        token = None
                except TrialError:
                    token = None
            if token is None:
                token = self.tokens[role] = self._issue(role)
            db.session.remove()
            return token


def seed_trial(app) -> None:
    """Load the demo trial (which every feature extends), plus a few unrandomized participants.

    The demo gives sites S01-S03, one user of every role and randomized participants with
    whatever later features add to it, so reads find real records as the product grows.
    """
    from trial.demo import build_demo
    from trial.participants.services import register_participant, site_today

    with app.app_context():
        build_demo(participant_count=DEMO_PARTICIPANTS, seed=20261121)
        coordinator = auth_services.create_user(
            system_actor(), username="seed.coordinator.s01", role="coordinator", site_codes=["S01"]
        )
        for index in range(3):
            register_participant(
                coordinator,
                site="S01",
                sex="FM"[index % 2],
                year_of_birth=1970 + index,
                consent_date=site_today(coordinator.home_site) - timedelta(days=30),
            )
        db.session.commit()
        db.session.remove()


@pytest.fixture
def fuzz_app(database_url, tmp_path):
    """An app with no context pushed, so each request gets its own session, as in production."""
    application = create_app(make_config(database_url, tmp_path / "instance"))
    seed_trial(application)
    yield application
    with application.app_context():
        db.engine.dispose()


def schemathesis_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": int(os.environ.get("SCHEMATHESIS_SEED", "20261121")),
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                "mode": "all",
                # We send a real token per operation; generated ones would only be 401s.
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )


def endpoint_for(routes: dict, method: str, path: str) -> str:
    """The endpoint serving a case; for a method the spec does not list (the coverage phase
    probes those and expects 405), any endpoint on the same path."""
    endpoint = routes.get((method.lower(), path))
    if endpoint is None:
        endpoint = next((e for (_, p), e in sorted(routes.items()) if p == path), None)
    assert endpoint is not None, f"no route serves {path}"
    return endpoint


class Fuzzer:
    """Run schemathesis over every operation of the spec and keep the tally.

    Per operation: the coverage phase (boundary values, missing and wrong-typed fields,
    unlisted methods), then Hypothesis fuzzing in positive and negative mode; last, for
    operations with path parameters or a body, positive fuzzing with values that exist
    (harvested from earlier responses: ``participant_id``, ``username``, ``site``, ...), so
    they reach past the 404 and the business rules.
    Failures are collected, not raised, so one run reports every broken operation.
    """

    def __init__(self, app, max_examples: int):
        self.app = app
        self.max_examples = max_examples
        self.tokens = RoleTokens(app)
        self.routes = api_routes(app)
        self.cases: Counter = Counter()
        self.statuses: dict[str, Counter] = {}
        self.known: dict[str, set] = {}
        self.failures: list[str] = []

    # one case --------------------------------------------------------------------------

    def run_case(self, case) -> None:
        endpoint = endpoint_for(self.routes, case.method, case.path)
        policy = policy_for(self.app, endpoint)
        assert policy is not None, f"{endpoint} declares no access policy"
        role = role_for(policy)
        headers = {} if role is None else bearer(self.tokens.token(role))
        label = case.operation.label
        self.cases[label] += 1
        response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
        self.statuses.setdefault(label, Counter())[response.status_code] += 1
        if 200 <= response.status_code < 300 and response.content:
            try:
                self._harvest(response.json())
            except ValueError:
                pass

    def _harvest(self, value) -> None:
        """Remember scalar values by key, to use as path parameters of the same name."""
        if isinstance(value, list):
            for item in value:
                self._harvest(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                if (
                    isinstance(item, str | int)
                    and not isinstance(item, bool)
                    and 0 < len(str(item)) <= 100
                ):
                    self.known.setdefault(key, set()).add(item)
                else:
                    self._harvest(item)

    # phases ----------------------------------------------------------------------------

    def _given(self, strategy, name: str, label: str, negative: bool = False) -> None:
        from hypothesis import HealthCheck, given, settings
        from hypothesis.errors import Unsatisfiable

        @settings(
            max_examples=self.max_examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case):
            self.run_case(case)

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing to negate (no parameters, no body): no negative case exists.
            if not negative:
                self.failures.append(f"{label} [{name}]: no case could be generated")
        except (Exception, FailureGroup) as exc:
            self.failures.append(f"{label} [{name}]: {exc}")

    def run_operation(self, schema, operation) -> None:
        generation = schema.config.generation_for(operation=operation, phase="coverage")
        try:
            for case in schema.iter_coverage_cases(
                operation,
                generation_modes=list(schemathesis.GenerationMode),
                generation_config=generation,
            ):
                self.run_case(case)
        except (Exception, FailureGroup) as exc:
            self.failures.append(f"{operation.label} [coverage]: {exc}")
        for mode in schemathesis.GenerationMode:
            self._given(
                operation.as_strategy(generation_mode=mode),
                mode.value,
                operation.label,
                negative=mode is schemathesis.GenerationMode.NEGATIVE,
            )

    def run_with_known_values(self, operation) -> None:
        """Fuzz positively with values that exist: ids in the path, fields in the body.

        Random path ids are almost always 404 and random bodies almost always fail the
        business rules, so this pass takes each path parameter, and each body field the
        case carries, from values earlier responses held under the same name.
        """
        from hypothesis import strategies as st

        names = re.findall(r"\{([^{}]+)\}", operation.path)
        if not all(self.known.get(name) for name in names):
            return
        ids = st.fixed_dictionaries(
            {name: st.sampled_from(sorted(self.known[name], key=repr)) for name in names}
        )
        known = {key: sorted(values, key=repr) for key, values in self.known.items()}

        def with_known_body(case, draw_known):
            if isinstance(case.body, dict):
                body = dict(case.body)
                for key in body:
                    if key in known:
                        body[key] = draw_known(st.sampled_from(known[key]))
                case.body = body
            return case

        @st.composite
        def cases(draw):
            path_parameters = draw(ids) if names else None
            case = draw(
                operation.as_strategy(
                    generation_mode=schemathesis.GenerationMode.POSITIVE,
                    path_parameters=path_parameters,
                )
            )
            return with_known_body(case, draw)

        if names or operation.body:
            self._given(cases(), "positive, existing values", operation.label)

    def run(self, schema, only=None) -> list:
        """Fuzz every operation (or those ``only(operation)`` accepts); return them."""
        operations = []
        for result in schema.get_all_operations():
            try:
                operation = result.ok()
            except Exception as exc:  # noqa: BLE001 - an operation the spec describes badly
                self.failures.append(f"invalid operation in the spec: {exc}")
                continue
            if only is None or only(operation):
                operations.append(operation)
        for operation in operations:
            self.run_operation(schema, operation)
        for operation in operations:
            self.run_with_known_values(operation)
        return operations

    def summary(self, backend: str) -> str:
        lines = [
            f"schemathesis on {backend}: {sum(self.cases.values())} cases over "
            f"{len(self.cases)} operations, {len(self.failures)} failures"
        ]
        for label in sorted(self.cases):
            statuses = ", ".join(
                f"{status}: {count}"
                for status, count in sorted(self.statuses.get(label, Counter()).items())
            )
            lines.append(f"  {self.cases[label]:5d}  {label:<45} {statuses}")
        return "\n".join(lines)


@pytest.fixture
def fuzzer(fuzz_app, backend, capsys):
    """The fuzzer, whose tally is printed even when capture is on (the lead quotes it)."""
    runner = Fuzzer(fuzz_app, MAX_EXAMPLES)
    yield runner
    with capsys.disabled():
        print("\n" + runner.summary(backend))


def test_api_keeps_to_its_spec(fuzz_app, fuzzer):
    from trial.audit.services import verify_chain

    schema = schemathesis.openapi.from_wsgi(SPEC_PATH, fuzz_app, config=schemathesis_config())
    operations = fuzzer.run(schema)
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures)
    # Every operation of the spec was exercised.
    assert {operation.label for operation in operations} <= set(fuzzer.cases)
    assert len(operations) == len(list(spec_operations(schema.raw_schema)))
    # Whatever the fuzzing did, it went through the audited services: the chain still holds.
    with fuzz_app.app_context():
        report = verify_chain()
        db.session.remove()
    assert report.ok, report.problem


# --- the fuzzer's own control -------------------------------------------------------------


def broken_blueprint():
    """Two routes a later feature might ship by mistake, under roles no other test uses."""
    import marshmallow as ma
    from flask import jsonify
    from flask_smorest import Blueprint

    from trial.auth.policy import allow

    blp = Blueprint("broken", __name__, url_prefix="/api/v1", description="Broken on purpose")

    class CountSchema(ma.Schema):
        count = ma.fields.Integer(required=True)

    @blp.route("/_test/crash/<int:n>", methods=["GET"])
    @allow(Role.DATA_MANAGER)
    @blp.response(200, CountSchema)
    def crash(n):
        if n > 3:
            raise RuntimeError("an unhandled case")
        return {"count": n}

    @blp.route("/_test/off-spec", methods=["GET"])
    @allow(Role.DSMB)
    @blp.response(200, CountSchema)
    def off_spec():
        return jsonify({"count": "three"})  # a Response bypasses the schema: off the spec

    return blp


def test_the_fuzzer_covers_new_routes_and_catches_what_is_wrong(database_url, tmp_path, backend):
    """Routes added after this file was written are fuzzed with a token their policy admits,
    and a 500 and an answer off the spec are both reported."""
    application = create_app(make_config(database_url, tmp_path / "instance"))
    api = application.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    api.register_blueprint(broken_blueprint())
    runner = Fuzzer(application, max_examples=20)
    try:
        schema = schemathesis.openapi.from_wsgi(
            SPEC_PATH, application, config=schemathesis_config()
        )
        operations = runner.run(schema, only=lambda operation: "/_test/" in operation.path)
    finally:
        with application.app_context():
            db.engine.dispose()
    assert {operation.label for operation in operations} == {
        "GET /api/v1/_test/crash/{n}",
        "GET /api/v1/_test/off-spec",
    }
    failures = "\n".join(runner.failures)
    assert "crash/{n}" in failures and "Server error" in failures, failures
    assert "off-spec" in failures and "Response violates schema" in failures, failures
    # Each was called with a working token of the role its policy names (not a 401 or 403).
    for label, statuses in runner.statuses.items():
        assert not {401, 403} & set(statuses), (label, statuses)
