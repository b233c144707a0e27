"""Imports over the API: a file as the body, a dry run then its rows posted, the state and
refused rows, a node's mapping; hostile files are clear problems and post nothing."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select

from points.api import body
from points.extensions import db
from points.models import ImportRun, ServiceRecord, Volunteer
from tests.api_fixtures import RawFile

pytest_plugins = ("tests.api_fixtures",)


def _finished(api, token, run_id: int) -> dict:
    """The run once its thread is done (runs go on in the background), as the API says."""
    thread = current_app.extensions.get("import_threads", {}).get(run_id)
    if thread is not None:
        thread.join(timeout=60)
        assert not thread.is_alive()
    # The tests' requests share one session: end its read snapshot (SQLite) to see the run.
    db.session.rollback()
    state = api.get(f"imports/{run_id}", token).get_json()
    assert state["status"] != "running", state
    return state


def _records() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(ServiceRecord))


def test_a_file_previewed_then_posted_once(api, world):
    office = world.tokens["office_in"]
    card = db.session.get(Volunteer, world.volunteers["self"]).card_code
    content = (
        "志愿者,类型,日期,分钟\n"
        f"{card},patrol,2025-03-14,60\n"
        f"{card},巡街,2025-03-15,60\n"
        "NOBODY,patrol,2025-03-16,60\n"
    ).encode()
    sent = api.post("imports?district=xizhaosi&kind=records", office, RawFile(content))
    assert sent.status_code == 202, sent.get_json()
    assert sent.headers["Location"].endswith(f"/api/v1/imports/{sent.get_json()['id']}")
    preview = _finished(api, office, sent.get_json()["id"])
    assert preview["dry_run"] and preview["status"] == "done"
    assert (preview["rows_total"], preview["posted"], preview["refused"]) == (3, 1, 2)
    assert _records() == 0

    problems = api.get(f"imports/{preview['id']}/problems", office).get_json()
    assert [p["line"] for p in problems] == [3, 4]
    assert "巡街" in problems[0]["reason"] and problems[1]["row"]["志愿者"] == "NOBODY"
    page = api.get(f"imports/{preview['id']}/problems?after_line=3", office).get_json()
    assert [p["line"] for p in page] == [4]
    as_csv = api.get(f"imports/{preview['id']}/problems?format=csv", office)
    assert as_csv.mimetype == "text/csv" and "NOBODY" in as_csv.get_data(as_text=True)

    # The node's mapping names 巡街: the next preview reads it.
    mapping = {"columns": {}, "values": {"kind": {"巡街": "patrol"}}}
    saved = api.put("imports/mappings/records?district=xizhaosi", office, mapping)
    assert saved.status_code == 200, saved.get_json()
    assert api.get("imports/mappings/records?district=xizhaosi", office).get_json() == mapping
    again = api.post("imports?district=xizhaosi&kind=records", office, RawFile(content))
    second = _finished(api, office, again.get_json()["id"])
    assert (second["posted"], second["refused"]) == (2, 1)

    posted = api.post(f"imports/{second['id']}/post", office)
    assert posted.status_code == 202, posted.get_json()
    real = _finished(api, office, posted.get_json()["id"])
    assert (real["dry_run"], real["posted"], real["minutes"]) == (False, 2, 120)
    assert _records() == 2
    # The same file again posts nothing new.
    once_more = api.post(
        "imports?district=xizhaosi&kind=records&dry_run=false", office, RawFile(content)
    )
    assert _finished(api, office, once_more.get_json()["id"])["duplicates"] == 2
    assert _records() == 2
    listed = api.get("imports?district=xizhaosi", office).get_json()
    assert [run["id"] for run in listed][:2] == [once_more.get_json()["id"], real["id"]]


def test_hostile_files_are_clear_problems_and_post_nothing(api, world, monkeypatch):
    office = world.tokens["office_in"]
    path = "imports?district=xizhaosi&kind=records"
    runs = db.session.scalar(select(func.count()).select_from(ImportRun))
    cases = [
        (RawFile(b""), 422, "file"),
        (RawFile(b"\x00\x01\x02\xff\xfe garbage"), 422, "file"),
        (RawFile(b"who,when\nx,y\n"), 422, "columns"),
        (RawFile(b"PK\x03\x04 not a workbook", "application/octet-stream"), 422, "file"),
        (RawFile(b"volunteer,kind,date\n", "application/json"), 415, None),
        (RawFile(b"volunteer,kind,date\n", "text/plain"), 415, None),
    ]
    for sent, status, field in cases:
        response = api.post(path, office, sent)
        assert response.status_code == status, (sent, response.get_json())
        assert response.content_type == "application/problem+json"
        if field is not None:
            assert field in response.get_json()["errors"], response.get_json()
    bad_query = api.post("imports?district=xizhaosi&kind=nonsense", office, RawFile(b"a\n"))
    assert bad_query.status_code == 422 and "kind" in bad_query.get_json()["errors"]
    outside = api.post("imports?district=zuoanmen&kind=records", office, RawFile(b"a\n"))
    assert outside.status_code == 403
    # Larger than an import file may be: refused before it is read.
    endpoint = "imports.Imports"
    methods, media, _ = body._RAW_BODIES[endpoint]
    monkeypatch.setitem(body._RAW_BODIES, endpoint, (methods, media, 1024))
    too_large = api.post(path, office, RawFile(b"volunteer,kind,date\n" + b"x" * 4096))
    assert too_large.status_code == 413
    assert db.session.scalar(select(func.count()).select_from(ImportRun)) == runs
    assert _records() == 0


def test_a_run_outside_reach_is_refused(api, world):
    office = world.tokens["office_in"]
    card = db.session.get(Volunteer, world.volunteers["self"]).card_code
    sent = api.post(
        "imports?district=xizhaosi&kind=records",
        office,
        RawFile(f"volunteer,kind,date,minutes\n{card},patrol,2025-03-14,60\n".encode()),
    )
    run_id = _finished(api, office, sent.get_json()["id"])["id"]
    assert api.get(f"imports/{run_id}", world.tokens["office_out"]).status_code == 403
    assert api.post(f"imports/{run_id}/post", world.tokens["auditor_in"]).status_code == 403
    assert api.get(f"imports/{run_id}", world.tokens["auditor_in"]).status_code == 200
    assert api.get("imports/999999", office).status_code == 404
    done = _finished(api, office, api.post(f"imports/{run_id}/post", office).get_json()["id"])
    # A real run is no preview: posting it again is a 404.
    assert api.post(f"imports/{done['id']}/post", office).status_code == 404
