"""/office/catalog through the test client: add, edit, retire and reopen one item without
touching the others, field errors on the form, a stale form refused, auditors and siblings
kept out, and the kiosk's catalog showing what the office added."""

from __future__ import annotations

from sqlalchemy import select

from points.extensions import db
from points.models import AuditEvent
from points.policy import district_info, show_policy
from points.policy_versions import own_layer
from tests.office_fixtures import csrf, sign_in

SHAMPOO = {
    "sku": "shampoo",
    "name_zh": "洗头",
    "name_en": "hair wash",
    "cost": "12",
    "provider": "barber-wang",
    "stock_per_month": "20",
    "per_person_limit": "2",
    "per_person_period": "month",
    "min_star": "0",
    "active_from": "",
    "active_until": "",
}


def items(district: str) -> dict:
    return show_policy(district_info(district))["plugins"]["catalog"]["config"]["items"]


def version(client, url: str = "/office/catalog") -> str:
    import re

    return re.search(r'name="version" value="(\d+)"', client.get(url).get_data(as_text=True))[1]


def post(client, url: str, data: dict, page: str = "/office/catalog"):
    return client.post(
        url, data={"csrf_token": csrf(client.get(page)), "version": version(client, page), **data}
    )


def test_the_list_shows_inherited_items_and_where_they_are_set(office):
    page = office.get("/office/catalog").get_data(as_text=True)
    assert "理发" in page and "家电维修" in page
    assert "longtan" in page  # set by the street above
    assert 'name="sku"' in page  # the add form


def test_adding_an_item_keeps_the_others_and_is_audited(office):
    before = items("longtan")
    response = post(office, "/office/catalog", {**SHAMPOO, "district": "xizhaosi"})
    assert response.status_code == 302, response.get_data(as_text=True)
    here = items("xizhaosi")
    assert here["shampoo"]["cost"] == 12
    assert here["shampoo"]["per_person"] == {"limit": 2, "period": "month"}
    assert here["haircut"] == before["haircut"] and here["repair"] == before["repair"]
    assert items("longtan") == before  # the street's own catalog is untouched
    own = own_layer(district_info("xizhaosi"), "catalog").config["items"]
    assert set(own) == {"shampoo"}  # only what was added is set at the community
    assert db.session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "policy.version", AuditEvent.actor_name == "xizhaosi"
        )
    )
    assert "洗头" in office.get("/office/catalog?done=added").get_data(as_text=True)


def test_editing_an_inherited_item_sets_only_the_changed_key(office):
    form = office.get("/office/catalog/haircut?district=xizhaosi").get_data(as_text=True)
    assert 'value="30"' in form
    data = {
        **SHAMPOO,
        "name_zh": "理发",
        "name_en": "haircut",
        "cost": "25",
        "stock_per_month": "",
        "per_person_limit": "",
        "district": "xizhaosi",
    }
    data.pop("sku")
    response = post(office, "/office/catalog/haircut", data, page="/office/catalog/haircut")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert items("xizhaosi")["haircut"]["cost"] == 25
    assert items("longtan")["haircut"]["cost"] == 30
    own = own_layer(district_info("xizhaosi"), "catalog").config["items"]
    assert own == {"haircut": {"cost": 25}}


def test_bad_input_comes_back_on_the_form_naming_the_field(office):
    bad = {**SHAMPOO, "cost": "-3", "active_until": "2020-01-01", "district": "xizhaosi"}
    response = post(office, "/office/catalog", bad)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="cost-error"' in page and "请填写 1 及以上的整数" in page
    assert 'value="洗头"' in page  # what was typed stays
    unknown = post(office, "/office/catalog", {**SHAMPOO, "provider": "nobody"})
    assert unknown.status_code == 422
    assert 'id="provider-error"' in unknown.get_data(as_text=True)
    assert "没有这个服务商" in unknown.get_data(as_text=True)
    assert "shampoo" not in items("xizhaosi")
    taken = post(office, "/office/catalog", {**SHAMPOO, "sku": "haircut", "district": "xizhaosi"})
    assert taken.status_code == 422 and 'id="sku-error"' in taken.get_data(as_text=True)


def test_a_stale_form_saves_nothing(office):
    stale = version(office)
    assert post(office, "/office/catalog", {**SHAMPOO, "district": "xizhaosi"}).status_code == 302
    response = office.post(
        "/office/catalog",
        data={
            "csrf_token": csrf(office.get("/office/catalog")),
            "version": stale,
            **SHAMPOO,
            "sku": "massage",
            "district": "xizhaosi",
        },
    )
    assert response.status_code == 409
    assert "massage" not in items("xizhaosi")


def test_retire_and_reopen(office, accounts):
    done = post(office, "/office/catalog/repair/retire", {"district": "xizhaosi"})
    assert done.status_code == 302
    assert "repair" not in catalog_at_kiosk(accounts.volunteers["self"])
    page = office.get("/office/catalog").get_data(as_text=True)
    assert "已下架" in page or "Retired" in page
    assert post(office, "/office/catalog/repair/reopen", {"district": "xizhaosi"}).status_code == (
        302
    )
    assert "repair" in catalog_at_kiosk(accounts.volunteers["self"])
    # Retired at the street above: the community cannot reopen it there.
    assert (
        post(office, "/office/catalog/haircut/reopen", {"district": "xizhaosi"}).status_code == 422
    )


def catalog_at_kiosk(volunteer: int) -> set[str]:
    """What a volunteer of xizhaosi is offered (at the kiosk and on /me)."""
    from points.redemptions import catalog_for

    return {entry.item.sku for entry in catalog_for("xizhaosi", volunteer)}


def test_an_auditor_reads_the_catalog_and_changes_nothing(client, accounts):
    assert sign_in(client, "shenji").status_code == 302
    page = client.get("/office/catalog?district=xizhaosi")
    assert page.status_code == 200 and 'name="sku"' not in page.get_data(as_text=True)
    assert client.get("/office/catalog/haircut?district=xizhaosi").status_code == 200
    for url in ("/office/catalog", "/office/catalog/haircut", "/office/catalog/haircut/retire"):
        response = client.post(
            url, data={"csrf_token": csrf(page), **SHAMPOO, "district": "xizhaosi"}
        )
        assert response.status_code == 403, url
    assert "shampoo" not in items("xizhaosi")


def test_a_sibling_community_is_out_of_reach(office):
    assert office.get("/office/catalog?district=zuoanmen").status_code == 403
    response = post(office, "/office/catalog", {**SHAMPOO, "district": "zuoanmen"})
    assert response.status_code == 403
    assert "shampoo" not in items("zuoanmen")
