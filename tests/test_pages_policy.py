"""/office/policy through the test client: a plugin's form built from its schema with the
value in effect and who set it; a draft saved, refused with field errors, previewed,
activated (the next record is capped) or discarded; the history with a diff; locks from
above respected; auditors and siblings kept out."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select

from points import service
from points.extensions import db
from points.models import AuditEvent, PolicyDraft
from points.policy import plugin_config, set_policy
from tests.office_fixtures import csrf, sign_in

EDIT = "/office/policy/caps?district=xizhaosi"


def _form(client, url: str = EDIT) -> dict[str, str]:
    """The form's fields as the page fills them (inputs and selected options)."""
    page = client.get(url).text
    fields = dict(re.findall(r'<input id="(v__[\w]+)" name="\1" type="text" value="([^"]*)"', page))
    fields |= {name: "1" for name in re.findall(r'name="(set__\w+)" value="1" checked', page)}
    fields["csrf_token"] = csrf(client.get(url))
    return fields


def _save(client, changes: dict, url: str = EDIT):
    return client.post(url, data={**_form(client, url), **changes})


def test_the_list_and_the_form_show_what_is_in_effect(office, accounts):
    listing = office.get("/office/policy").text
    assert "积分上限" in listing and "caps" in listing
    page = office.get(EDIT).text
    assert 'id="v__overall__day"' in page and 'value="100"' in page
    assert "default" in page or "默认" in page


def test_a_changed_value_is_saved_as_a_draft_only(office, accounts):
    before = dict(plugin_config("caps", "xizhaosi"))
    answer = _save(office, {"v__overall__day": "3", "comment": "每天最多 3 分"})
    assert answer.status_code == 302, answer.text[:3000]
    draft = db.session.scalar(select(PolicyDraft))
    assert draft.config == {"overall": {"day": 3}}  # only what changed is set here
    assert dict(plugin_config("caps", "xizhaosi")) == before
    assert "草稿" in office.get(answer.headers["Location"]).text
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "policy.draft_save")
    )


def test_a_bad_value_is_refused_with_a_field_error(office, accounts):
    answer = _save(office, {"v__overall__day": "很多"})
    assert answer.status_code == 422
    assert "整数" in answer.text and 'aria-invalid="true"' in answer.text
    answer = _save(office, {"v__overall__day": "-5"})
    assert answer.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(PolicyDraft)) == 0


def test_preview_activate_and_the_next_record_is_capped(office, accounts):
    world = accounts
    _save(office, {"v__overall__day": "3"})
    token = csrf(office.get(EDIT))
    preview = office.post(
        "/office/policy/caps/preview?district=xizhaosi",
        data={"csrf_token": token, "since": "2026-01-01", "until": "2026-12-31"},
    )
    assert preview.status_code == 200, preview.text[:2000]
    assert "data-draft-total" in preview.text
    activated = office.post(
        "/office/policy/caps/activate?district=xizhaosi",
        data={"csrf_token": token, "when": "now"},
    )
    assert activated.status_code == 302, activated.text[:3000]
    history = office.get(activated.headers["Location"]).text
    assert "config.overall.day" in history and "3" in history
    assert db.session.scalar(select(func.count()).select_from(PolicyDraft)) == 0
    record = service.record_service(
        world.volunteers["self"],
        "patrol",
        datetime.fromisoformat(world.started(0)),
        60,
        actor="office:test",
    )
    if record.status == "pending":
        record = service.approve(record.id, actor="office:test")
    assert record.points == 3


def test_a_stale_draft_is_not_activated(office, accounts):
    _save(office, {"v__overall__day": "3"})
    set_policy("xizhaosi", "caps", {"overall": {"day": 80}}, author="office:colleague")
    token = csrf(office.get(EDIT))
    answer = office.post(
        "/office/policy/caps/activate?district=xizhaosi", data={"csrf_token": token, "when": "now"}
    )
    assert answer.status_code == 409
    assert plugin_config("caps", "xizhaosi")["overall"]["day"] == 80


def test_discard(office, accounts):
    _save(office, {"v__overall__day": "3"})
    token = csrf(office.get(EDIT))
    answer = office.post(
        "/office/policy/caps/discard?district=xizhaosi", data={"csrf_token": token}
    )
    assert answer.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(PolicyDraft)) == 0


def test_a_key_locked_above_is_shown_and_left_alone(office, accounts):
    set_policy(
        "longtan", "caps", {"overall": {"day": 50}}, author="office:street", locked=["overall"]
    )
    page = office.get(EDIT).text
    assert "longtan" in page and 'name="above__overall__day"' in page
    answer = office.post(
        EDIT,
        data={**_form(office), "above__overall__day": "1", "v__per_kind": '{"log": {"day": 2}}'},
    )
    assert answer.status_code == 302, answer.text[:3000]
    assert db.session.scalar(select(PolicyDraft)).config == {"per_kind": {"log": {"day": 2}}}


def test_auditors_read_and_cannot_change(client, accounts):
    assert sign_in(client, "shenji").status_code == 302
    page = client.get(EDIT)
    assert page.status_code == 200 and 'name="v__overall__day"' not in page.text
    refused = client.post(EDIT, data={"csrf_token": csrf(page), "v__overall__day": "1"})
    assert refused.status_code == 403


def test_a_sibling_office_is_kept_out(client, accounts):
    assert sign_in(client, "zuoanmen").status_code == 302
    assert client.get(EDIT).status_code == 403
    assert client.get("/office/policy/caps/versions?district=xizhaosi").status_code == 403
