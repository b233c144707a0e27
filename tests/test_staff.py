"""Staff accounts: passwords, lockout, sessions, who manages whom, and their audit rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from points import audit, auth, ledger, staff
from points.errors import (
    AccountLockedError,
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    WrongPasswordError,
)
from points.extensions import db
from points.models import AuditEvent, Staff

PASSWORD = "lantern-harbour-42"


@pytest.fixture
def clerk(tree):
    """An office clerk of Longtan street."""
    return staff.create_staff("wangfang", "王芳", "office", "longtan", PASSWORD)


def events(action: str | None = None) -> list[AuditEvent]:
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        statement = statement.where(AuditEvent.action == action)
    return list(db.session.scalars(statement))


def test_passwords_must_be_long_uncommon_and_not_the_username():
    assert staff.password_problem("short") == "At least 10 characters."
    assert "Too common" in staff.password_problem("1234567890")
    assert "Too common" in staff.password_problem("aaaaaaaaaaaa")
    assert "username" in staff.password_problem("wangfang2026!", "wangfang")
    assert staff.password_problem(PASSWORD, "wangfang") is None


def test_create_checks_every_field_and_stores_a_memory_hard_hash(tree, app):
    with pytest.raises(InvalidInputError) as refused:
        staff.create_staff("A", "", "king", "longtan", "password1")
    assert set(refused.value.errors) == {"username", "name", "role", "password"}
    app.config["PASSWORD_HASH_METHOD"] = "scrypt"
    account = staff.create_staff("WangFang", "王芳", "office", "longtan", PASSWORD)
    assert account.username == "wangfang"
    stored = db.session.scalar(select(Staff.password_hash))
    assert stored.startswith("scrypt:") and PASSWORD not in stored
    with pytest.raises(ConflictError):
        staff.create_staff("wangfang", "王芳", "office", "longtan", PASSWORD)
    created = events("staff.create")
    assert len(created) == 1 and created[0].after["username"] == "wangfang"
    assert PASSWORD not in str(created[0].after) and created[0].actor == "system"


def test_sign_in_opens_a_session_token_of_the_staff_role(clerk, app):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.0.0.7"}):
        signed = staff.sign_in(" WangFang ", PASSWORD)
    principal = auth.authenticate_token(signed.token)
    assert (principal.role, principal.staff_id, principal.name) == ("office", clerk.id, "wangfang")
    assert principal.actor == f"staff:{clerk.id}"
    (row,) = events("staff.sign_in")
    assert (row.actor, row.actor_name, row.ip) == (f"staff:{clerk.id}", "wangfang", "10.0.0.7")


def test_five_wrong_passwords_lock_the_account_and_each_is_audited(clerk):
    for _ in range(4):
        with pytest.raises(WrongPasswordError):
            staff.sign_in("wangfang", "not-the-password")
    with pytest.raises(AccountLockedError) as locked:
        staff.sign_in("wangfang", "not-the-password")
    assert 14 * 60 < locked.value.retry_after <= 15 * 60
    # Locked: even the right password is refused until the lock lapses.
    with pytest.raises(AccountLockedError):
        staff.sign_in("wangfang", PASSWORD)
    reasons = [row.after["reason"] for row in events("staff.sign_in_failed")]
    assert reasons == ["wrong_password"] * 5 + ["locked"]
    with pytest.raises(WrongPasswordError):
        staff.sign_in("nobody", PASSWORD)
    assert events("staff.sign_in_failed")[-1].after == {
        "username": "nobody",
        "reason": "unknown_username",
    }
    assert not any(PASSWORD in str(row.after) for row in events())


def test_a_right_password_clears_the_count(clerk):
    for _ in range(4):
        with pytest.raises(WrongPasswordError):
            staff.sign_in("wangfang", "not-the-password")
    staff.sign_in("wangfang", PASSWORD)
    for _ in range(4):
        with pytest.raises(WrongPasswordError):
            staff.sign_in("wangfang", "not-the-password")


def test_disabling_ends_every_session_and_refuses_sign_in(clerk):
    signed = staff.sign_in("wangfang", PASSWORD)
    staff.set_status(clerk.id, "disabled")
    with pytest.raises(AuthenticationError):
        auth.authenticate_token(signed.token)
    with pytest.raises(WrongPasswordError) as refused:
        staff.sign_in("wangfang", PASSWORD)
    assert "username" in refused.value.errors
    staff.set_status(clerk.id, "active")
    staff.sign_in("wangfang", PASSWORD)
    assert [row.after for row in events() if row.action in ("staff.disable", "staff.enable")] == [
        {"status": "disabled"},
        {"status": "active"},
    ]


def test_a_reset_password_is_shown_once_and_must_be_changed(clerk):
    signed = staff.sign_in("wangfang", PASSWORD)
    temporary = staff.reset_password(clerk.id)
    with pytest.raises(AuthenticationError):
        auth.authenticate_token(signed.token)
    fresh = staff.sign_in("wangfang", temporary)
    assert fresh.staff.must_change_password
    principal = auth.authenticate_token(fresh.token)
    with pytest.raises(InvalidInputError) as same:
        staff.change_password(principal, temporary, temporary)
    assert "new_password" in same.value.errors
    with pytest.raises(WrongPasswordError) as wrong:
        staff.change_password(principal, "not-it-at-all", "a-new-long-phrase")
    assert "old_password" in wrong.value.errors
    other = staff.sign_in("wangfang", temporary)
    staff.change_password(principal, temporary, "a-new-long-phrase")
    assert not staff.staff_info(clerk.id).must_change_password
    auth.authenticate_token(fresh.token)  # this session goes on
    with pytest.raises(AuthenticationError):
        auth.authenticate_token(other.token)  # the others end
    assert [row.action for row in events() if "password" in row.action] == [
        "staff.reset_password",
        "staff.change_password",
    ]


def test_an_office_manages_staff_of_the_nodes_below_it_only(clerk):
    office = auth.authenticate_token(staff.sign_in("wangfang", PASSWORD).token)
    made = staff.create_staff("liming", "李明", "auditor", "xizhaosi", PASSWORD + "x", by=office)
    assert made.district_code == "xizhaosi"
    for role, district in (("office", "longtan"), ("admin", "xizhaosi"), ("office", "beijing")):
        with pytest.raises(ForbiddenError):
            staff.create_staff("someone", "某人", role, district, PASSWORD, by=office)
    with pytest.raises(ForbiddenError):
        staff.set_status(clerk.id, "disabled", by=office)
    staff.set_status(made.id, "disabled", by=office)
    auditor = staff.create_staff("shenji", "审计", "auditor", "longtan", PASSWORD)
    auditing = auth.authenticate_token(staff.sign_in("shenji", PASSWORD).token)
    with pytest.raises(ForbiddenError):
        staff.reset_password(made.id, by=auditing)
    assert [account.username for account in staff.list_staff(office)] == [
        "shenji",
        "wangfang",
        "liming",
    ]
    assert auditor.role == "auditor"


def test_the_audit_log_is_append_only(clerk):
    (row,) = events("staff.create")
    for statement in (
        f"UPDATE audit_events SET action = 'x' WHERE id = {row.id}",
        f"DELETE FROM audit_events WHERE id = {row.id}",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            ledger.atomic(lambda statement=statement: db.session.execute(text(statement)))


def test_audit_record_refuses_to_run_outside_a_unit_of_work(tree):
    with pytest.raises(RuntimeError):
        audit.record("district.create", district_id=tree["xizhaosi"])


def test_staff_commands(runner, tree):
    made = runner.invoke(
        args=[
            "staff",
            "create",
            "zhaolei",
            "--name",
            "赵磊",
            "--role",
            "office",
            "--district",
            "longtan",
        ]
    )
    assert made.exit_code == 0, made.output
    temporary = made.stdout.strip()
    assert staff.sign_in("zhaolei", temporary).staff.must_change_password
    assert events("staff.create")[-1].actor.startswith("cli:")
    reset = runner.invoke(args=["staff", "reset-password", "zhaolei"])
    assert reset.exit_code == 0 and reset.stdout.strip() != temporary
    assert runner.invoke(args=["staff", "disable", "zhaolei"]).exit_code == 0
    with pytest.raises(WrongPasswordError):
        staff.sign_in("zhaolei", reset.stdout.strip())
    missing = runner.invoke(args=["staff", "disable", "nobody"])
    assert missing.exit_code == 1 and "no staff account 'nobody'" in missing.output
    weak = runner.invoke(
        args=[
            "staff",
            "create",
            "weak",
            "--name",
            "W",
            "--role",
            "office",
            "--district",
            "longtan",
            "--password",
            "password123",
        ]
    )
    assert weak.exit_code == 1 and "password: Too common" in weak.output
