"""``flask trial demo``: fill an empty database with a complete synthetic trial.

Sites S01-S03, one user of every role (tokens printed and kept in ``instance/demo-tokens.txt``,
which git ignores), and N registered participants drawn from ``--seed``. Later features add
their own steps (randomization list, visits, adverse events) through ``demo_steps``, so this
core module never imports them.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select, text

from trial.auth import services as auth_services
from trial.auth.approval import approve_code_break
from trial.auth.passwords import set_password
from trial.auth.tokens import issue_token
from trial.cli_support import system_actor
from trial.extensions import db
from trial.participants.services import register_participants, site_today
from trial.protocol import current_protocol
from trial.sites.models import Site
from trial.sites.services import create_site

trial_cli = AppGroup("trial", help="Trial-level commands.")

DEMO_SITES = (
    ("S01", "Hôpital Universitaire Nord (Lille)", "Europe/Paris"),
    ("S02", "Centre d'Addictologie Sud (Marseille)", "Europe/Paris"),
    ("S03", "Klinikum West (Köln)", "Europe/Berlin"),
)

DEMO_USERS = (
    ("admin", "admin", ()),
    ("coordinator.s01", "coordinator", ("S01",)),
    ("coordinator.s02", "coordinator", ("S02",)),
    ("coordinator.s03", "coordinator", ("S03",)),
    ("investigator.s01", "investigator", ("S01",)),
    ("investigator.s02", "investigator", ("S02",)),
    ("investigator.s03", "investigator", ("S03",)),
    ("monitor", "monitor", ("S01", "S02", "S03")),
    ("data_manager", "data_manager", ()),
    ("statistician", "statistician", ()),
    ("unblinded_statistician", "unblinded_statistician", ()),
    ("dsmb", "dsmb", ()),
)

# Demo accounts' addresses: the reserved .example domain (RFC 2606), so nothing reaches anyone.
DEMO_EMAIL_DOMAIN = "trial.example"


def demo_email(username: str) -> str:
    """A demo account's address: ``dsmb@trial.example``, ``coordinator.s01@trial.example``."""
    return f"{username}@{DEMO_EMAIL_DOMAIN}"


DemoStep = Callable[[random.Random, dict], None]
CONSENT_SPAN_DAYS = 540


def register_demo_step(app: Flask, step: DemoStep) -> None:
    """Let a feature package add to the demo (called from its own init)."""
    app.extensions.setdefault("trial_demo_steps", []).append(step)


def tokens_file() -> Path:
    return Path(current_app.instance_path) / "demo-tokens.txt"


def database_is_empty() -> bool:
    return (db.session.scalar(select(func.count()).select_from(Site)) or 0) == 0


def _register_demo_participants(rng: random.Random, count: int, users: dict) -> list:
    """Register ``count`` participants round-robin over the sites, in one batch per site."""
    codes = [code for code, _, _ in DEMO_SITES]
    today = {
        code: site_today(db.session.scalar(select(Site).where(Site.code == code))) for code in codes
    }
    entries: dict[str, list] = {code: [] for code in codes}
    for index in range(count):
        code = codes[index % len(codes)]
        # Consents spread over the last ~18 months, in registration order: the first
        # participants have finished the 30 weeks of the schedule, the last are in screening.
        consent = today[code] - timedelta(
            days=CONSENT_SPAN_DAYS - (index * CONSENT_SPAN_DAYS) // count
        )
        age = rng.randint(21, 68)
        sex = rng.choice(("F", "M", "M"))
        entries[code].append((sex, consent.year - age, min(consent, today[code])))
    registered = {
        code: iter(register_participants(users[f"coordinator.{code.lower()}"], code, batch))
        for code, batch in entries.items()
        if batch
    }
    return [next(registered[codes[index % len(codes)]]) for index in range(count)]


def _approve_demo_investigators(users: dict) -> None:
    """The demo's unblinded statistician approves each demo investigator to break codes,
    so the README's code-break examples work on a fresh demo (audited like any approval).
    """
    approver = users["unblinded_statistician"]
    for username, role, _ in DEMO_USERS:
        if role == "investigator":
            approve_code_break(
                approver,
                users[username],
                reason="Demo trial: investigator identity confirmed at the site initiation visit.",
            )


def build_demo(participant_count: int, seed: int) -> dict:
    """Create the demo trial in one transaction and return the users' tokens."""
    actor = system_actor()
    rng = random.Random(seed)
    if db.engine.dialect.name == "sqlite":
        # One long write transaction over large indexes: a page cache that holds them (256 MB
        # at most, this connection only) keeps the load off the disk until the commit.
        db.session.execute(text("PRAGMA cache_size = -262144"))
    # Each site plans for its share of the demo (at least the protocol's figure), so the
    # list has a slot for every participant however large the demo.
    planned = max(
        current_protocol().planned_enrollment_per_site, -(-participant_count // len(DEMO_SITES))
    )
    for code, name, zone in DEMO_SITES:
        create_site(actor, code=code, name=name, timezone=zone, planned_enrollment=planned)
    password = secrets.token_urlsafe(12)
    users, tokens = {}, {}
    for username, role, sites in DEMO_USERS:
        investigator = role == "investigator"
        user = auth_services.create_user(
            actor,
            username=username,
            role=role,
            site_codes=list(sites),
            password=None if investigator else password,
            email=demo_email(username),
        )
        if investigator:
            # The demo plays each investigator setting their own password, as a real one
            # must before the unblinded statistician may approve the account (below).
            set_password(user, user, password)
        token, _ = issue_token(actor, user, label="demo", ttl=timedelta(days=365))
        users[username], tokens[username] = user, token
    _approve_demo_investigators(users)
    context = {"users": users, "participants": [], "password": password}
    context["participants"] = _register_demo_participants(rng, participant_count, users)
    for step in current_app.extensions.get("trial_demo_steps", []):
        step(rng, context)
    return {"tokens": tokens, "password": password}


def ensure_secrets() -> list[str]:
    """Create the secrets the demo needs under instance/secrets (never committed)."""
    from cryptography.fernet import Fernet

    created = []
    directory = Path(current_app.instance_path) / "secrets"
    for name in ("SECRET_KEY", "ARM_KEY"):
        if current_app.config.get(name):
            continue
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        path = directory / name.lower()
        if not path.exists():
            path.write_text(Fernet.generate_key().decode() + "\n")
            os.chmod(path, 0o600)
            created.append(str(path))
        current_app.config[name] = path.read_text().strip()
    return created


def _write_tokens(result: dict) -> Path:
    path = tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# demo users; password for every demo user: {result['password']}"]
    lines += [f"{name:<24} {token}" for name, token in result["tokens"].items()]
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


@trial_cli.command("demo")
@click.option(
    "--participants",
    "participant_count",
    default=60,
    show_default=True,
    type=click.IntRange(min=0),
    help="Participants to register (0 allowed).",
)
@click.option(
    "--seed",
    default=20261121,
    show_default=True,
    type=int,
    help="Seed of the synthetic data (not of the randomization list).",
)
@click.option(
    "--if-empty",
    is_flag=True,
    help="Do nothing (and succeed) when the database already holds a trial.",
)
def demo_command(participant_count, seed, if_empty):
    """Fill an empty database with a synthetic trial and print every demo user's token."""
    if not database_is_empty():
        if if_empty:
            click.echo("database already holds a trial; demo not loaded")
            return
        raise click.ClickException("the database is not empty; the demo needs an empty one")
    for path in ensure_secrets():
        click.echo(f"generated secret {path}")
    result = build_demo(participant_count, seed)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # A bulk load: PostgreSQL plans queries from table statistics, which autovacuum
        # gathers only later (or never, where it is off): without them, finding the audit
        # events after an export's cut-off scanned the whole trail (2,000 participants:
        # 120 ms instead of 0.1). So gather them now, as its manual advises after a load.
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    path = _write_tokens(result)
    click.echo(
        f"demo trial created: {len(DEMO_SITES)} sites, {len(DEMO_USERS)} users, "
        f"{participant_count} participants (tokens also in {path})"
    )
    click.echo(f"password for every demo user: {result['password']}")
    for name, token in result["tokens"].items():
        click.echo(f"{name:<24} {token}")
