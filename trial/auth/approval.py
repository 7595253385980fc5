"""Code-break approvals: a second person stands between an account and an arm.

An admin can create an investigator with a password of their choosing, and move an account
between sites; with no more than that, they could break codes through an account they control.
So an investigator's code-break right takes effect only once an unblinded statistician (a
role no admin can create or grant over HTTP) has approved that account, after confirming out
of band that it is held by the investigator it names. The approval is bound to the account's
role, sites and credential version at that moment: a new role or sites, or a password set by
anyone but the owner, voids it. It can be given only when the owner set the current password
themselves (``POST /auth/password``), never while an admin-chosen password stands.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from trial.audit.services import record_event
from trial.auth.models import CodeBreakApproval, User
from trial.auth.passwords import verify_password
from trial.auth.roles import Role
from trial.database import utcnow
from trial.errors import Conflict, Forbidden, ForbiddenRecorded
from trial.extensions import db
from trial.reasons import require_reason

NO_VALID_APPROVAL = "no valid code-break approval; ask the unblinded statistician"


@dataclass(frozen=True)
class ApprovalState:
    """The account's latest approval (if any) and why it does not stand (None: it does)."""

    user: User
    approval: CodeBreakApproval | None
    problem: str | None

    @property
    def valid(self) -> bool:
        return self.problem is None


def _sites_label(user: User) -> str:
    return ",".join(user.site_codes)


def latest_approval(user: User) -> CodeBreakApproval | None:
    return db.session.scalar(
        select(CodeBreakApproval)
        .where(CodeBreakApproval.user_id == user.id)
        .order_by(CodeBreakApproval.id.desc())
        .limit(1)
    )


def approval_state(user: User) -> ApprovalState:
    """Compare the latest approval with the account as it is now; name the first mismatch."""
    approval = latest_approval(user)
    if approval is None:
        problem = "the account has not been approved"
    elif approval.revoked_at is not None:
        problem = f"the approval was revoked on {approval.revoked_at:%Y-%m-%d %H:%M} UTC"
    elif user.role != approval.role:
        problem = f"the account's role changed since the approval ({approval.role} -> {user.role})"
    elif _sites_label(user) != approval.sites:
        problem = (
            f"the account's sites changed since the approval "
            f"({approval.sites or 'none'} -> {_sites_label(user) or 'none'})"
        )
    elif user.credential_version != approval.credential_version:
        problem = (
            "the account's credentials changed since the approval (a password set by "
            "someone other than its owner, or a change of role or sites)"
        )
    elif not user.is_active:
        problem = "the account is disabled"
    else:
        problem = None
    return ApprovalState(user, approval, problem)


def code_break_refusal(user: User) -> str | None:
    """Why ``user`` may not break a code now (None: a valid approval stands)."""
    return approval_state(user).problem


def _require_approver(actor) -> None:
    if getattr(actor, "role", None) != Role.UNBLINDED_STATISTICIAN or actor.id is None:
        raise Forbidden("Only an unblinded statistician approves or revokes code-break rights.")


def _require_reason(reason: str | None) -> str:
    return require_reason(reason, what="a code-break approval or its revocation")


def _check_approvable(actor, user: User, reason: str | None) -> str:
    _require_approver(actor)
    reason = _require_reason(reason)
    if user.role != Role.INVESTIGATOR:
        raise Conflict(
            f"{user.username} is a {user.role}: only investigators can be approved to break codes.",
            {"username": ["Not an investigator."]},
        )
    if not user.is_active:
        raise Conflict(f"{user.username} is disabled.", {"username": ["Disabled account."]})
    if not user.password_set_by_owner:
        raise Conflict(
            f"The password of {user.username} was last set by someone other than its owner "
            f"(at creation or a reset): the owner must first set a password of their own "
            f"(POST /api/v1/auth/password), then ask again.",
            {"username": ["Password not set by its owner."]},
        )
    if approval_state(user).valid:
        raise Conflict(f"{user.username} already holds a valid code-break approval.")
    return reason


def approve_code_break(actor, user: User, *, reason: str) -> CodeBreakApproval:
    """Approve an investigator account to break codes, bound to its credentials as they are.

    As such, for the command line (``--as``, like every unblinded command there); over HTTP
    ``approve_code_break_with_password`` checks the approver's password first.
    """
    reason = _check_approvable(actor, user, reason)
    approval = CodeBreakApproval(
        user_id=user.id,
        approved_by_id=actor.id,
        approved_at=utcnow(),
        reason=reason,
        role=user.role,
        sites=_sites_label(user),
        credential_version=user.credential_version,
    )
    db.session.add(approval)
    db.session.flush()
    record_event(
        actor,
        "code_break_approved",
        entity_type="user",
        entity_id=user.username,
        reason=reason,
        detail={
            "approval_id": approval.id,
            "role": approval.role,
            "sites": user.site_codes,
            "credential_version": approval.credential_version,
            "password_set_at": user.password_set_at.isoformat() if user.password_set_at else None,
        },
    )
    return approval


def approve_code_break_with_password(
    actor, user: User, *, reason: str, password: str
) -> CodeBreakApproval:
    """Approve after the approver re-types their password (the step-up, throttled per account).

    A wrong password is refused (403) with the attempt kept on record (``ForbiddenRecorded``).
    Whether the account may be approved at all is checked first, so a refusal for that reason
    costs no password check.
    """
    reason = _check_approvable(actor, user, reason)
    if not verify_password(actor, password):
        record_event(
            actor,
            "code_break_approval_refused",
            entity_type="user",
            entity_id=user.username,
            reason=reason,
            detail={"cause": "password incorrect"},
        )
        raise ForbiddenRecorded(
            "Password incorrect: the account was not approved. The attempt was recorded.",
            {"password": ["Incorrect password."]},
        )
    return approve_code_break(actor, user, reason=reason)


def revoke_code_break_approval(actor, user: User, *, reason: str) -> CodeBreakApproval:
    """Withdraw an account's latest approval (even one already void), with a reason."""
    _require_approver(actor)
    reason = _require_reason(reason)
    approval = latest_approval(user)
    if approval is None or approval.revoked_at is not None:
        raise Conflict(f"{user.username} holds no approval to revoke.")
    approval.revoked_at, approval.revoked_by_id = utcnow(), actor.id
    approval.revoke_reason = reason
    db.session.flush()
    record_event(
        actor,
        "code_break_approval_revoked",
        entity_type="user",
        entity_id=user.username,
        reason=reason,
        detail={"approval_id": approval.id},
    )
    return approval
