"""A real SMTP server on loopback (aiosmtpd) that records what it receives, and helpers to
read the outbox: shared by the notification tests."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from dataclasses import dataclass, field
from email import policy

from aiosmtpd.controller import Controller
from sqlalchemy import select

from trial.extensions import db
from trial.notifications.models import OutboxMessage


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self):
        return email.message_from_bytes(self.raw, policy=policy.default)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def body(self) -> str:
        return self.message.get_body().get_content()


@dataclass
class Recorder:
    """The server's handler. ``refuse``: answer DATA with this reply instead of 250.
    ``hold``: after recording a message, wait until ``release`` is set before answering (a
    sender can be killed while its message is on the server but not yet acknowledged)."""

    received: list[Received] = field(default_factory=list)
    refuse: str | None = None
    refuse_rcpt: set[str] = field(default_factory=set)
    hold: bool = False
    first_arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        self.first_arrived.set()
        while self.hold and not self.release.is_set():
            await asyncio.sleep(0.02)
        if self.refuse:
            return self.refuse
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    def __init__(self):
        self.recorder = Recorder()
        self.port = free_port()
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True
        )

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.recorder.release.set()
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.recorder.received


def outbox(kind: str | None = None) -> list[OutboxMessage]:
    db.session.expire_all()
    statement = select(OutboxMessage).order_by(OutboxMessage.id)
    if kind is not None:
        statement = statement.where(OutboxMessage.kind == kind)
    return list(db.session.scalars(statement))


def the_one(kind: str) -> OutboxMessage:
    rows = outbox(kind)
    assert len(rows) == 1, [(row.kind, row.subject) for row in outbox()]
    return rows[0]
