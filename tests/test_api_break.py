"""The JSON API under hostile, careless and faulty requests: each test is a way it broke once."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from engage.api import tokens
from engage.extensions import db
from engage.models import AuditEvent, CompanyAlias
from tests import factories


@pytest.fixture()
def secret(make_user, frozen_today):
    """A read-write token of an analyst."""
    _, value = tokens.create(make_user("analyst"), name="script", scope="read_write", today=frozen_today,
                             max_days=366, expires_on=frozen_today + dt.timedelta(days=30))
    db.session.commit()
    return value


@pytest.fixture()
def engagement(frozen_today):
    item = factories.engagement(opened_on=dt.date(2026, 1, 5))
    db.session.commit()
    return item


def _patch(client, engagement, secret, **kw):
    headers = {"Authorization": f"Bearer {secret}", "If-Match": f'"engagement-{engagement.id}-v{engagement.version}"'}
    headers.update(kw.pop("headers", {}))
    return client.patch(f"/api/v1/engagements/{engagement.id}", headers=headers, **kw)


def _objectives(engagement) -> str:
    db.session.expire_all()
    return db.session.get(type(engagement), engagement.id).objectives


@pytest.mark.parametrize("kw, status, words", [
    ({"data": json.dumps({"objectives": "x"})}, 415, "no content type"),
    ({"data": json.dumps({"objectives": "x"}), "content_type": "text/plain"}, 415, "text/plain"),
    ({"data": {"objectives": "x"}}, 415, "application/x-www-form-urlencoded"),
    ({"data": '{"objectives": ', "content_type": "application/json"}, 400, "not valid JSON"),
    ({"data": b'{"objectives": "\xff"}', "content_type": "application/json"}, 400, "not valid JSON"),
    ({"data": "[" * 100_000 + "]" * 100_000, "content_type": "application/json"}, 400, "nests deeper"),
    ({"json": {"objectives": [[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]}}, 400, "nests deeper"),
])
def test_a_body_that_is_not_json_is_refused_not_ignored(client, engagement, secret, kw, status, words):
    """Before: a form or untyped body read as {} (a PATCH answered 200 having changed nothing);
    deeply nested JSON was a RecursionError, a 500."""
    response = _patch(client, engagement, secret, **kw)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert words in response.json["detail"]
    assert _objectives(engagement) == ""


def test_a_json_body_still_works_and_nul_is_still_refused(client, engagement, secret):
    refused = _patch(client, engagement, secret, json={"objectives": "a\x00b"})
    assert refused.status_code == 400 and "NUL" in refused.json["detail"]
    assert _objectives(engagement) == ""
    response = _patch(client, engagement, secret, json={"objectives": "Set targets"},
                      headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.json
    assert _objectives(engagement) == "Set targets"


def test_if_match_star_does_not_switch_the_lock_off(client, engagement, secret):
    response = _patch(client, engagement, secret, json={"objectives": "x"}, headers={"If-Match": "*"})
    assert response.status_code == 428 and "*" in response.json["detail"]
    response = _patch(client, engagement, secret, json={"objectives": "x"},
                      headers={"If-Match": '"stale", *'})
    assert response.status_code == 428
    assert _objectives(engagement) == ""
    # A list of ETags holding the current one is still fine.
    current = f'"engagement-{engagement.id}-v{engagement.version}"'
    ok = _patch(client, engagement, secret, json={"objectives": "y"}, headers={"If-Match": f'"old", {current}'})
    assert ok.status_code == 200 and _objectives(engagement) == "y"


@pytest.mark.parametrize("path", ["/api/v1/engagements?stag=closed", "/api/v1/companies?flaged=true",
                                  "/api/v1/exports/monthly?month=2026-05&campaign_id=1"])
def test_a_misspelt_filter_is_refused_not_ignored(client, engagement, secret, path):
    """Before: an unknown parameter was dropped, so the answer listed everything."""
    response = client.get(path, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 422
    misspelt = path.split("&")[-1].split("?")[-1].split("=")[0]
    assert response.json["errors"] == {misspelt: ["Unknown field."]}


def test_a_parameter_sent_twice_is_refused(client, engagement, secret):
    response = client.get("/api/v1/engagements?stage=closed&stage=identified",
                          headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 422 and set(response.json["errors"]) == {"stage"}


@pytest.mark.parametrize("month", ["2026-05\n", "\uff12\uff10\uff12\uff16-\uff10\uff15", "2026-5", ""])
def test_export_month_must_be_plain_digits(client, engagement, secret, month):
    response = client.get("/api/v1/exports/monthly", query_string={"month": month},
                          headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 422 and set(response.json["errors"]) == {"month"}


@pytest.mark.parametrize("q, names", [("%", ["Sale 50% Ltd"]), ("_", []), ("0%", ["Sale 50% Ltd"]), ("Formerly", ["Acme"])])
def test_company_search_takes_wildcards_literally_and_finds_aliases(client, secret, frozen_today, q, names):
    """Before: q=% matched every company (LIKE's wildcard), and aliases were not searched as documented."""
    factories.company(name="Sale 50% Ltd")
    acme = factories.company(name="Acme")
    acme.aliases.append(CompanyAlias(alias="Formerly Roadrunner"))
    db.session.commit()
    response = client.get("/api/v1/companies", query_string={"q": q}, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert [item["name"] for item in response.json["items"]] == names


def test_list_entry_search_takes_wildcards_literally(client, secret, frozen_today):
    from engage.models import ListedEntity, ListVersion

    version = ListVersion(name="UFLPA", source="uflpa_entity_list", format="csv", file_name="u.csv",
                          retrieved_on=frozen_today, sha256="0" * 64)
    for name in ("Hoshine Silicon", "100% Cotton Co"):
        db.session.add(ListedEntity(version=version, key=name, source="uflpa_entity_list", name=name,
                                    normalized_name=name.lower(), citation="89 FR 1"))
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    percent = client.get("/api/v1/list-entries?q=%25", headers=headers)
    assert [item["name"] for item in percent.json["items"]] == ["100% Cotton Co"]
    assert client.get("/api/v1/list-entries?q=_", headers=headers).json["total"] == 0


def test_api_sets_no_cookie_even_for_a_signed_in_browser(client, login_as, engagement, secret):
    login_as("admin")
    for response in (client.get("/api/v1/engagements", headers={"Authorization": f"Bearer {secret}"}),
                     client.get("/api/v1/engagements"),
                     _patch(client, engagement, secret, json={"objectives": "z"})):
        assert "Set-Cookie" not in response.headers, response.status_code
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.object_type == "Engagement")).all()
    assert any("(API token engage_" in (event.actor_label or "") for event in events)


def _seed_rows(count: int) -> None:
    """`count` engagements, each with a flag, a contact, a reminder, an alias and a holding."""
    from decimal import Decimal

    from engage.models import Fund, Holding, Interaction, Reminder, RiskFlag

    fund = db.session.scalar(sa.select(Fund)) or Fund(name="Fund")
    for _ in range(count):
        item = factories.engagement()
        item.company.aliases.append(CompanyAlias(alias=f"Alias of {item.company.name}"))
        item.company.risk_flags.append(RiskFlag(source="uflpa_entity_list", citation="90 FR 1"))
        db.session.add(Interaction(engagement=item, kind="call", occurred_on=dt.date(2026, 2, 1), subject="Call"))
        db.session.add(Reminder(engagement=item, due_on=dt.date(2026, 7, 1), reason="Chase"))
        db.session.add(Holding(fund=fund, company=item.company, as_of=dt.date(2026, 5, 31),
                               market_value=Decimal("1000.00"), weight=Decimal("0.1")))
    db.session.commit()


@pytest.mark.parametrize("path", ["/api/v1/companies?flagged=true", "/api/v1/risk-flags", "/api/v1/interactions",
                                  "/api/v1/reminders", "/api/v1/holdings", "/api/v1/engagements?sort=score",
                                  "/api/v1/exports/engagements?month=2026-06",
                                  "/api/v1/exports/monthly?month=2026-06"])
def test_query_count_does_not_grow_with_rows(client, secret, count_queries, path):
    headers = {"Authorization": f"Bearer {secret}"}
    _seed_rows(2)
    client.get(path, headers=headers)  # last_used written once
    with count_queries() as few:
        first = client.get(path, headers=headers)
    _seed_rows(10)
    with count_queries() as many:
        second = client.get(path, headers=headers)
    assert first.status_code == second.status_code == 200, second.get_data(as_text=True)
    assert len(second.get_data()) > len(first.get_data())  # the rows are in the answer
    assert many.count == few.count, many.statements


def test_made_up_tokens_are_rate_limited_per_address(make_app, make_user, frozen_today):
    """Before: each guessed token had a limit of its own, so guessing was never slowed."""
    app = make_app(API_RATE_LIMIT="3 per minute")
    client = app.test_client()
    codes = [client.get("/api/v1/funds", headers={"Authorization": f"Bearer engage_guess{i}"}).status_code
             for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    refused = client.get("/api/v1/funds", headers={"Authorization": "Bearer engage_guess9"})
    assert refused.mimetype == "application/problem+json" and refused.headers["Retry-After"]
    # Another address is not affected, and good requests do not count as refusals.
    other = app.test_client()
    _, secret = tokens.create(make_user("viewer"), name="loop", scope="read", expires_on=frozen_today,
                              today=frozen_today, max_days=366)
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert [other.get("/api/v1/funds", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code
            for _ in range(3)] == [200, 200, 200]


def test_a_missing_resource_says_which_and_a_wrong_method_says_what_is_allowed(client, engagement, secret):
    """Before: the app's own 404 page text replaced the view's, so a missing id read like a wrong path;
    a 405 had no Allow header."""
    headers = {"Authorization": f"Bearer {secret}"}
    missing = client.get("/api/v1/engagements/999999", headers=headers)
    assert missing.status_code == 404 and missing.json["detail"] == "There is no engagement 999999."
    logged = client.post("/api/v1/engagements/999999/interactions", headers=headers,
                         json={"kind": "call", "occurred_on": "2026-06-01", "subject": "x"})
    assert logged.status_code == 404 and "engagement 999999" in logged.json["detail"]
    wrong_path = client.get("/api/v1/engagement/1", headers=headers)
    assert wrong_path.status_code == 404 and "no page" in wrong_path.json["detail"]
    wrong_method = client.put(f"/api/v1/engagements/{engagement.id}", json={}, headers=headers)
    assert wrong_method.status_code == 405 and wrong_method.mimetype == "application/problem+json"
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "PATCH"}


def test_unpaired_surrogate_escape_is_refused_not_a_server_error(client, engagement, secret):
    """Before: "\\ud800" parsed, and the database driver's UTF-8 encoding raised: a 500."""
    for body in ('{"objectives": "\\ud800"}', '{"next_step": "x \\udfff"}'):
        response = _patch(client, engagement, secret, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "surrogate" in response.json["detail"]
    assert _objectives(engagement) == ""
    paired = _patch(client, engagement, secret, data='{"objectives": "ok \\ud83d\\ude00"}',
                    headers={"Content-Type": "application/json"})
    assert paired.status_code == 200 and _objectives(engagement) == "ok \U0001F600"


def test_a_fractional_id_is_refused_not_truncated(client, engagement, secret, make_user):
    """Before: owner_id 1.5 was taken as 1 (marshmallow's Integer truncates)."""
    owner = make_user("analyst")
    response = _patch(client, engagement, secret, json={"owner_id": owner.id + 0.5})
    assert response.status_code == 422 and set(response.json["errors"]) == {"owner_id"}
    whole = _patch(client, engagement, secret, json={"owner_id": float(owner.id)})
    assert whole.status_code == 200 and whole.json["owner_id"] == owner.id
    listed = client.get("/api/v1/engagements?per_page=2.5", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 422


def test_openapi_still_documents_whole_numbers_as_integers(client, secret):
    document = client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {secret}"}).json
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/engagements"]["get"]["parameters"]}
    assert parameters["page"]["schema"]["type"] == "integer"
    assert parameters["company"]["schema"]["type"] == "integer"


def test_a_change_committed_meanwhile_makes_the_write_a_412(client, engagement, secret, monkeypatch):
    """The race the If-Match check cannot see: another request commits between the check and this
    commit. A real second connection writes in that gap; nothing of this request is saved."""
    from engage.api import routes
    from engage.models import Engagement

    real = routes.engagements.update_engagement

    def then_someone_else_saves(item, **kw):
        real(item, **kw)
        with db.engine.begin() as other:  # its own connection and transaction: a concurrent request
            other.execute(sa.update(Engagement.__table__).where(Engagement.__table__.c.id == item.id)
                          .values(objectives="Theirs", version=Engagement.__table__.c.version + 1))

    monkeypatch.setattr(routes.engagements, "update_engagement", then_someone_else_saves)
    response = _patch(client, engagement, secret, json={"objectives": "Mine"})
    assert response.status_code == 412, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert _objectives(engagement) == "Theirs"


def test_a_score_with_a_criterion_twice_or_not_in_the_rubric_is_refused(client, secret, runner, frozen_today):
    """Before: the second of two levels for a criterion silently won, and a criterion of no rubric
    was dropped without a word (201 both times)."""
    from engage.models import Campaign, Interaction, Rubric, Score

    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    item = factories.engagement(campaign=campaign)
    reply = Interaction(engagement=item, kind="response", direction="inbound", occurred_on=dt.date(2026, 6, 1))
    db.session.add(reply)
    db.session.commit()
    rubric = db.session.scalar(sa.select(Rubric).where(Rubric.campaign_id == campaign.id))
    criteria = [{"criterion_id": c.id, "level": 1} for c in rubric.criteria]
    headers = {"Authorization": f"Bearer {secret}"}
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Score))

    def post(entries):
        return client.post("/api/v1/scores", headers=headers,
                           json={"interaction_id": reply.id, "scored_on": "2026-06-10", "criteria": entries})

    twice = post(criteria + [{**criteria[0], "level": 4}])
    assert twice.status_code == 422
    assert twice.json["errors"] == {f"criteria.{len(criteria)}.criterion_id": [f"Criterion {criteria[0]['criterion_id']} is sent twice."]}
    stray = post(criteria + [{"criterion_id": 99999, "level": 1}])
    assert stray.status_code == 422 and "99999 is not in the rubric" in stray.json["detail"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Score)) == before
    assert post(criteria).status_code == 201


def test_a_missing_risk_flag_is_named_in_words(client, secret):
    response = client.get("/api/v1/risk-flags/424242", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 404 and response.json["detail"] == "There is no risk flag 424242."


def test_engagements_csv_has_a_bom_and_neutralised_formulas(client, secret, frozen_today):
    """Before: unlike the monthly CSV, no BOM, so Excel showed a Chinese company name as mojibake."""
    import csv
    import io

    company = factories.company(name='=HYPERLINK("http://x") 新疆')
    factories.engagement(company=company, opened_on=dt.date(2026, 1, 5))
    response = client.get("/api/v1/exports/engagements?month=2026-06&format=csv",
                          headers={"Authorization": f"Bearer {secret}"})
    assert response.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert [row["company_name"] for row in rows] == ["'=HYPERLINK(\"http://x\") 新疆"]


def test_database_down_is_a_problem_500_not_an_html_page(make_app):
    """A faulty environment: the database refuses connections while a script calls the API."""
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql://postgres@127.0.0.1:1/nothing", PROPAGATE_EXCEPTIONS=False)
    response = app.test_client().get("/api/v1/funds", headers={"Authorization": "Bearer engage_anything"})
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    assert "Nothing was saved" in response.json["detail"] and "Set-Cookie" not in response.headers


def test_a_token_in_the_address_or_a_cookie_is_refused_saying_where_it_belongs(client, secret):
    by_address = client.get(f"/api/v1/funds?access_token={secret}")
    assert by_address.status_code == 401 and "never in the address" in by_address.json["detail"]
    client.set_cookie("token", secret)
    by_cookie = client.get("/api/v1/funds")
    assert by_cookie.status_code == 401 and "Authorization: Bearer" in by_cookie.json["detail"]
    assert client.get("/api/v1/funds", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
