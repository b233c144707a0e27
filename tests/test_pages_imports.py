"""The import page through the test client: a file uploaded is previewed (a dry run in the
background), its refused rows shown by line and reason; the node's mapping saved changes
the preview; posting runs the file for real; the same file again posts nothing. Bad
files come back as form errors; auditors and other nodes cannot import."""

from __future__ import annotations

import re
from datetime import date

from flask import Flask
from sqlalchemy import func, select

from points import imports
from points.extensions import db
from points.imports import files
from points.models import ImportKey, ImportRun, ServiceRecord
from points.web.office import imports as imports_page
from tests.office_fixtures import csrf, sign_in

LAST_YEAR = date.today().year - 1


def _csv(*rows: str, header: str = "志愿者,类型,日期,分钟") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _upload(client, content: bytes, *, name="纸质记录.csv", district="xizhaosi", kind="records"):
    from io import BytesIO

    token = csrf(client.get("/office/imports"))
    return client.post(
        "/office/imports",
        data={
            "csrf_token": token,
            "district": district,
            "kind": kind,
            "file": (BytesIO(content), name),
        },
        content_type="multipart/form-data",
    )


def _run_id(response) -> int:
    assert response.status_code == 302, response.text
    return int(re.search(r"/office/imports/(\d+)$", response.headers["Location"]).group(1))


def _finished(app: Flask, client, response):
    """Wait for the run's thread, then read its page."""
    run_id = _run_id(response)
    thread = app.extensions.get("import_threads", {}).get(run_id)
    if thread is not None:
        thread.join(timeout=60)
        assert not thread.is_alive()
    # The tests' requests share one session: end its read transaction (a snapshot on
    # SQLite) so that it sees what the thread wrote.
    db.session.rollback()
    page = client.get(f"/office/imports/{run_id}")
    assert page.status_code == 200
    return run_id, page


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_imports_page_previews_maps_posts_and_posts_once(app, office, accounts):
    world = accounts
    card = world.cards["self"]
    content = _csv(
        f"{card},patrol,{LAST_YEAR}-03-14,60",
        f"{card},巡街,{LAST_YEAR}-03-15,30",
        f"NOBODY,patrol,{LAST_YEAR}-03-16,60",
    )
    assert 'href="/office/imports"' in office.get("/office").text  # the menu links the page

    run_id, preview = _finished(app, office, _upload(office, content))
    run = db.session.get(ImportRun, run_id)
    assert run.dry_run and run.status == "done"
    assert (run.rows_total, run.posted, run.refused) == (3, 1, 2)
    text = preview.text
    assert 'id="problems"' in text
    assert re.search(r'<td class="number">3</td><td>未知的服务类型 &#39;巡街&#39;', text)
    assert re.search(r'<td class="number">4</td><td>本节点没有志愿者 NOBODY', text)
    assert "志愿者、类型、日期、分钟" in text  # the file's columns
    assert "预览：完成" in text and "将这些行入账" in text and _count(ServiceRecord) == 0
    refused = office.get(f"/office/imports/{run_id}/refused.csv")
    assert refused.status_code == 200 and refused.mimetype == "text/csv"
    lines = refused.get_data().decode("utf-8-sig").splitlines()
    assert lines[0].startswith("行 / line,原因 / reason,志愿者")
    assert [line.split(",")[0] for line in lines[1:]] == ["3", "4"]

    # The paper's word for patrol, mapped: the preview runs again and reads it.
    mapped = office.post(
        "/office/imports/mapping",
        data={
            "csrf_token": csrf(preview),
            "sha256": run.file_sha256,
            "district": "xizhaosi",
            "kind": "records",
            "column-volunteer": "志愿者",
            "values": "巡街 = patrol\n",
        },
    )
    again_id, again = _finished(app, office, mapped)
    assert again_id != run_id
    assert imports.saved_mapping(world_node_id("xizhaosi"), "records").values == {
        "kind": {"巡街": "patrol"}
    }
    second = db.session.get(ImportRun, again_id)
    assert (second.posted, second.refused) == (2, 1)
    assert "巡街 = patrol" in again.text

    # Post: the real run, in the background, then its counts.
    posted = office.post(f"/office/imports/{again_id}/post", data={"csrf_token": csrf(again)})
    real_id, done = _finished(app, office, posted)
    real = db.session.get(ImportRun, real_id)
    assert not real.dry_run and real.status == "done"
    assert (real.posted, real.refused, real.minutes) == (2, 1, 90)
    assert "导入：完成" in done.text and 'id="post-rows"' not in done.text
    assert _count(ServiceRecord) == 2 and _count(ImportKey) == 2
    assert f"/office/imports/{real_id}" in office.get("/office/imports?district=xizhaosi").text

    # The same file again: nothing would post, nothing posts.
    repeat_id, repeat = _finished(app, office, _upload(office, content))
    repeat_run = db.session.get(ImportRun, repeat_id)
    assert (repeat_run.posted, repeat_run.duplicates, repeat_run.refused) == (0, 2, 1)
    assert "这个文件没有一行会入账" in repeat.text and "将这些行入账" not in repeat.text
    assert _count(ServiceRecord) == 2


def world_node_id(code: str) -> int:
    from points.policy import district_info

    return district_info(code).id


def test_imports_page_bad_files_are_form_errors(app, office, accounts, monkeypatch):
    empty = _upload(office, b"")
    assert empty.status_code == 422 and "error-summary" in empty.text
    not_csv = _upload(office, b"\x89PNG\r\n", name="photo.png")
    assert not_csv.status_code == 422 and 'id="file-error"' in not_csv.text
    garbage = _upload(office, b"PK\x03\x04 not a zip", name="book.xlsx")
    assert garbage.status_code == 422 and 'id="file-error"' in garbage.text
    # A required column missing: the mapping form comes back to name it.
    missing = _upload(office, _csv(f"{accounts.cards['self']},60", header="卡号,分钟"))
    assert missing.status_code == 422
    assert 'id="mapping"' in missing.text and 'name="column-volunteer"' in missing.text
    sha = re.search(r'name="sha256" value="([0-9a-f]{64})"', missing.text).group(1)
    named = office.post(
        "/office/imports/mapping",
        data={
            "csrf_token": csrf(missing),
            "sha256": sha,
            "district": "xizhaosi",
            "kind": "records",
            "column-volunteer": "卡号",
            "values": "this line has no equals sign",
        },
    )
    assert named.status_code == 422 and 'id="values-error"' in named.text
    assert _count(ImportRun) == 0
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    large = _upload(office, _csv("x,y,z,w"))
    assert large.status_code == 422 and "文件超过 0 MB" in large.text
    # A body over the limit is refused before it is read, with the same form error.
    monkeypatch.setattr(imports_page, "FORM_SLACK", 0)
    refused = _upload(office, _csv("x,y,z,w"))
    assert refused.status_code == 413 and 'id="file-error"' in refused.text
    assert _count(ImportRun) == 0


def test_imports_page_auditors_read_and_other_nodes_are_out_of_reach(app, client, accounts):
    assert sign_in(client, "xizhaosi").status_code == 302
    card = accounts.cards["self"]
    run_id, _page = _finished(
        app, client, _upload(client, _csv(f"{card},patrol,{LAST_YEAR}-03-14,60"))
    )
    # Zuoanmen's office sees neither the run nor its refused rows; cannot upload to xizhaosi.
    from flask import g

    g.pop("csrf_token", None)
    other = app.test_client()
    assert sign_in(other, "zuoanmen").status_code == 302
    assert other.get(f"/office/imports/{run_id}").status_code == 404
    assert other.get(f"/office/imports/{run_id}/refused.csv").status_code == 404
    refused = _upload(other, _csv(f"{card},patrol,{LAST_YEAR}-03-14,60"), district="xizhaosi")
    assert refused.status_code == 422 and 'id="district-error"' in refused.text
    # The auditor over longtan reads the run, with no upload or post controls; posts are 403.
    g.pop("csrf_token", None)
    auditor = app.test_client()
    assert sign_in(auditor, "shenji").status_code == 302
    shown = auditor.get(f"/office/imports/{run_id}")
    assert shown.status_code == 200 and 'id="post-rows"' not in shown.text
    listed = auditor.get("/office/imports")
    assert 'id="upload"' not in listed.text and f"/office/imports/{run_id}" in listed.text
    token = csrf(listed)
    assert (
        auditor.post(f"/office/imports/{run_id}/post", data={"csrf_token": token}).status_code
        == 403
    )
    assert _upload(auditor, _csv(f"{card},patrol,{LAST_YEAR}-03-14,60")).status_code == 403
