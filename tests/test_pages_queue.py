"""/office/queue through the test client: the records waiting for the office, filtered and
paged; decided one by one and in bulk (a rejection needs a reason, a record decided
meanwhile is reported and the rest are decided); reports marked verified; gifts; auditors
and siblings kept out."""

from __future__ import annotations

import re

from points import ledger, service
from tests.office_fixtures import csrf, sign_in
from tests.test_api_matrix import _pending_gift
from tests.test_api_service_records_list import _record


def _decide(client, data: dict, url: str = "/office/queue"):
    return client.post(url, data={"csrf_token": csrf(client.get(url)), **data})


def _listed(client, url: str = "/office/queue") -> list[int]:
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', client.get(url).text)]


def test_the_queue_lists_pending_records_of_the_node_and_below(office, accounts):
    world = accounts
    mine = [_record(world, "self", 30 + 6 * n) for n in range(3)]
    far = _record(world, "far", 40)
    page = office.get("/office/queue")
    assert page.status_code == 200
    assert _listed(office) == sorted(mine, reverse=True)
    assert far not in _listed(office)
    assert "每日巡" in page.text  # the kind, in Chinese first
    assert _listed(office, "/office/queue?order=oldest") == sorted(mine)
    assert _listed(office, "/office/queue?kind=visit") == []
    self_id = world.volunteers["self"]
    assert _listed(office, f"/office/queue?volunteer_id={self_id}") == sorted(mine, reverse=True)


def test_filters_that_do_not_fit_say_so(office, accounts):
    for query, message in (
        ("since=yesterday", "日期"),
        ("district=zuoanmen", "辖区"),
        ("volunteer=nobody-at-all", "志愿者"),
    ):
        page = office.get(f"/office/queue?{query}")
        assert page.status_code == 422, query
        assert message in page.text, (query, page.text[:2000])


def test_pages_follow_on_without_gaps(office, accounts, monkeypatch):
    from points.web.office import queue

    monkeypatch.setattr(queue, "PAGE_SIZE", 2)
    made = [_record(accounts, "self", 30 + 6 * n) for n in range(5)]
    seen, url = [], "/office/queue"
    while True:
        page = office.get(url).text
        seen += [int(i) for i in re.findall(r'name="ids" value="(\d+)"', page)]
        found = re.search(r'href="(/office/queue\?after=\d+)"', page)
        if found is None:
            break
        url = found[1]
    assert seen == sorted(made, reverse=True)


def test_one_record_approved_by_its_own_button(office, accounts):
    record = _record(accounts, "self", 30)
    answer = _decide(office, {"row": f"approve:{record}", "reason": ""})
    assert answer.status_code == 302
    shown = office.get(answer.headers["Location"])
    assert "已批准：1" in shown.text
    assert service.get_record(record).status == "approved"
    assert record not in _listed(office)


def test_bulk_rejection_needs_a_reason_and_reports_what_it_could_not_decide(office, accounts):
    records = [_record(accounts, "self", 30 + 6 * n) for n in range(3)]
    refused = _decide(office, {"ids": [str(i) for i in records], "decision": "reject"})
    assert refused.status_code == 422
    assert "原因" in refused.text
    assert all(service.get_record(i).status == "pending" for i in records)

    service.approve(records[0], actor="office:colleague")  # decided meanwhile
    answer = _decide(
        office,
        {"ids": [str(i) for i in records], "decision": "reject", "reason": "重复提交"},
    )
    shown = office.get(answer.headers["Location"]).text
    assert "已驳回：2" in shown and "未处理：1" in shown and f"№ {records[0]}" in shown
    assert [service.get_record(i).status for i in records] == ["approved", "rejected", "rejected"]
    assert service.get_record(records[1]).decision_reason == "重复提交"
    rejected = office.get("/office/queue?status=rejected").text
    assert "重复提交" in rejected


def test_a_report_is_marked_verified_and_earns_its_bonus(office, accounts):
    from datetime import datetime

    report = service.record_service(
        accounts.volunteers["self"],
        "report",
        datetime.fromisoformat(accounts.started(3)),
        None,
        {"problem": "路灯不亮"},
        actor="office:test",
    )
    before = ledger.balance(accounts.volunteers["self"]).balance
    answer = _decide(
        office, {"row": f"verify:{report.id}"}, "/office/queue?status=approved&kind=report"
    )
    assert answer.status_code == 302
    assert "已标记核实：1" in office.get(answer.headers["Location"]).text
    assert service.get_record(report.id).verified
    assert ledger.balance(accounts.volunteers["self"]).balance > before


def test_gifts_are_decided_on_their_tab(office, accounts):
    gift = _pending_gift(accounts)
    assert _listed(office, "/office/queue?show=gifts") == [gift]
    answer = _decide(
        office, {"ids": [str(gift)], "decision": "approve"}, "/office/queue?show=gifts"
    )
    assert answer.status_code == 302
    assert _listed(office, "/office/queue?show=gifts") == []


def test_auditors_see_the_queue_without_controls_and_cannot_decide(client, accounts):
    record = _record(accounts, "self", 30)
    assert sign_in(client, "shenji").status_code == 302
    page = client.get("/office/queue")
    assert page.status_code == 200 and str(record) in page.text
    assert 'name="decision"' not in page.text and 'name="row"' not in page.text
    refused = client.post(
        "/office/queue", data={"csrf_token": csrf(page), "row": f"approve:{record}"}
    )
    assert refused.status_code == 403
    assert service.get_record(record).status == "pending"


def test_a_sibling_office_cannot_decide_another_communitys_record(client, accounts):
    record = _record(accounts, "self", 30)  # xizhaosi
    assert sign_in(client, "zuoanmen").status_code == 302
    assert record not in _listed(client)
    answer = _decide(client, {"row": f"approve:{record}"})
    assert answer.status_code == 403
    assert service.get_record(record).status == "pending"
