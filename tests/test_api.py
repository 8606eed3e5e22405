"""The JSON API: tokens (scope, expiry, revocation, role), If-Match, the cycle, problems, the feed."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from engage.api import tokens
from engage.extensions import db
from engage.models import ApiToken, AuditEvent, EngagementEvent, RiskFlag
from tests import factories

TODAY = dt.date(2026, 6, 15)


@pytest.fixture()
def make_token(make_user, frozen_today):
    """A token for a fresh user of `role`: returns (user, secret)."""

    def make(role: str = "analyst", scope: str = "read_write", expires_on: dt.date | None = None):
        user = make_user(role)
        _, secret = tokens.create(user, name=f"{role} script", scope=scope, today=frozen_today, max_days=366,
                                  expires_on=expires_on or frozen_today + dt.timedelta(days=30))
        db.session.commit()
        return user, secret

    return make


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture()
def engagement(frozen_today):
    item = factories.engagement(opened_on=dt.date(2026, 1, 5))
    item.company.risk_flags.append(RiskFlag(source="uflpa_entity_list", citation="90 FR 1"))
    db.session.commit()
    return item


def test_no_token_is_401_problem_and_a_session_cookie_does_not_count(client, login_as, engagement):
    login_as("admin")  # the client now carries a valid session cookie
    response = client.get("/api/v1/engagements")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["status"] == 401 and "Bearer" in response.json["detail"]
    assert client.get("/api/v1/engagements", headers={"Authorization": "Bearer engage_nonsense"}).status_code == 401


def test_token_reads_lists_and_one_resource_with_etag(client, make_token, engagement):
    _, secret = make_token("viewer", scope="read")
    listed = client.get("/api/v1/companies?flagged=true", headers=bearer(secret))
    assert listed.status_code == 200, listed.json
    assert [c["name"] for c in listed.json["items"]] == [engagement.company.name]
    assert listed.json["items"][0]["flags"] == ["uflpa_entity_list"]
    assert client.get("/api/v1/companies?flagged=false", headers=bearer(secret)).json["total"] == 0
    one = client.get(f"/api/v1/engagements/{engagement.id}", headers=bearer(secret))
    assert one.status_code == 200
    assert one.headers["ETag"].startswith(f'"engagement-{engagement.id}-v{engagement.version}-')
    assert one.json["stage"] == "identified" and one.json["company_name"] == engagement.company.name
    assert client.get("/api/v1/engagements/999999", headers=bearer(secret)).mimetype == "application/problem+json"
    unchanged = client.get(f"/api/v1/engagements/{engagement.id}",
                           headers={**bearer(secret), "If-None-Match": one.headers["ETag"]})
    assert unchanged.status_code == 304 and unchanged.data == b""


def test_bad_query_value_is_422_naming_the_field(client, make_token):
    _, secret = make_token("viewer", scope="read")
    response = client.get("/api/v1/engagements?stage=nowhere&sort=bogus", headers=bearer(secret))
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert set(response.json["errors"]) == {"stage", "sort"}


def test_last_used_is_recorded(client, make_token, freeze_clock):
    user, secret = make_token("viewer", scope="read")
    assert client.get("/api/v1/funds", headers=bearer(secret)).status_code == 200
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    db.session.refresh(token)
    assert token.last_used_at == dt.datetime(2026, 6, 15, 9, 0)


def test_read_token_and_viewer_token_refused_on_writes(client, make_token, make_user, engagement):
    etag = f'"engagement-{engagement.id}-v{engagement.version}"'
    _, read_only = make_token("analyst", scope="read")
    response = client.patch(f"/api/v1/engagements/{engagement.id}", json={"objectives": "x"},
                            headers={**bearer(read_only), "If-Match": etag})
    assert response.status_code == 403 and "read only" in response.json["detail"]
    viewer = make_user("viewer")
    # A viewer cannot even make a read-write token...
    with pytest.raises(tokens.TokenError):
        tokens.create(viewer, name="x", scope="read_write", expires_on=TODAY, today=TODAY, max_days=366)
    # ...and a read-write token whose user became a viewer is bounded by the role.
    analyst, secret = make_token("analyst")
    analyst.role = "viewer"
    db.session.commit()
    response = client.patch(f"/api/v1/engagements/{engagement.id}", json={"objectives": "x"},
                            headers={**bearer(secret), "If-Match": etag})
    assert response.status_code == 403 and "viewer" in response.json["detail"]
    db.session.refresh(engagement)
    assert engagement.objectives == ""


def test_revoked_and_expired_tokens_stop_working(client, make_token, freeze_clock):
    user, secret = make_token("viewer", scope="read", expires_on=TODAY + dt.timedelta(days=1))
    assert client.get("/api/v1/funds", headers=bearer(secret)).status_code == 200
    freeze_clock(dt.datetime(2026, 6, 17, 9, 0))  # the day after its last day
    response = client.get("/api/v1/funds", headers=bearer(secret))
    assert response.status_code == 401 and "expired" in response.json["detail"]
    freeze_clock(dt.datetime(2026, 6, 15, 10, 0))
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    tokens.revoke(user, token.id, dt.datetime(2026, 6, 15, 10, 0))
    db.session.commit()
    response = client.get("/api/v1/funds", headers=bearer(secret))
    assert response.status_code == 401 and "revoked" in response.json["detail"]
    actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.object_type == "ApiToken")).all()
    assert "api_token_created" in actions and "api_token_revoked" in actions


def test_token_stored_hashed(make_token):
    user, secret = make_token("viewer", scope="read")
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    assert secret not in (row.token_hash, row.prefix) and row.token_hash == tokens.digest(secret)


def test_if_match_required_and_stale_refused(client, make_token, engagement):
    _, secret = make_token("analyst")
    url = f"/api/v1/engagements/{engagement.id}"
    missing = client.patch(url, json={"objectives": "Map suppliers"}, headers=bearer(secret))
    assert missing.status_code == 428
    etag = client.get(url, headers=bearer(secret)).headers["ETag"]
    ok = client.patch(url, json={"objectives": "Map suppliers", "next_step": "Call IR",
                                 "next_step_on": "2026-07-01"}, headers={**bearer(secret), "If-Match": etag})
    assert ok.status_code == 200, ok.json
    assert ok.json["objectives"] == "Map suppliers" and ok.headers["ETag"] != etag
    stale = client.patch(url, json={"objectives": "Overwrite"}, headers={**bearer(secret), "If-Match": etag})
    assert stale.status_code == 412 and stale.mimetype == "application/problem+json"
    db.session.refresh(engagement)
    assert engagement.objectives == "Map suppliers" and engagement.next_step == "Call IR"
    audited = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.object_type == "Engagement", AuditEvent.action == "update"))
    assert audited == 1


def test_stage_move_obeys_the_cycle(client, make_token, engagement):
    user, secret = make_token("analyst")
    url = f"/api/v1/engagements/{engagement.id}"

    def move(target: str, on: str = "2026-06-01", path: str = "/stage", **extra):
        etag = client.get(url, headers=bearer(secret)).headers["ETag"]
        return client.post(url + path, json={"target": target, "occurred_on": on, **extra},
                           headers={**bearer(secret), "If-Match": etag})

    same = move("identified")
    assert same.status_code == 409 and "already" in same.json["errors"]["target"][0]
    future = move("mapping_requested", on="2026-07-01")
    assert future.status_code == 422 and "occurred_on" in future.json["errors"]
    moved = move("mapping_requested")
    assert moved.status_code == 200, moved.json
    assert moved.json["stage"] == "mapping_requested"
    event = db.session.scalar(sa.select(EngagementEvent).where(EngagementEvent.engagement_id == engagement.id))
    assert (event.from_value, event.to_value, event.actor_id) == ("identified", "mapping_requested", user.id)
    back = move("identified", on="2026-06-02")
    assert back.status_code == 422 and "reason" in back.json["errors"]
    unfinished = move("closed", on="2026-06-02")
    assert unfinished.status_code == 422 and "outcome" in unfinished.json["errors"]
    closed = move("closed", on="2026-06-02", outcome="dropped")
    assert closed.status_code == 200 and closed.json["closed_on"] == "2026-06-02"
    escalate = move("follow_up", on="2026-06-03", path="/escalation")
    assert escalate.status_code == 409 and "closed" in escalate.json["detail"]
    stale_etag = f'"engagement-{engagement.id}-v1"'
    stale = client.post(url + "/stage", json={"target": "acknowledged", "occurred_on": "2026-06-02",
                                              "reason": "reopened"}, headers={**bearer(secret), "If-Match": stale_etag})
    assert stale.status_code == 412
    db.session.refresh(engagement)
    assert engagement.stage == "closed"
    actors = db.session.execute(sa.select(AuditEvent.actor_id, AuditEvent.actor_label).where(
        AuditEvent.object_type == "Engagement", AuditEvent.action == "update")).all()
    assert len(actors) == 2  # the two moves made; nothing of the refused ones
    for actor in actors:
        assert actor.actor_id == user.id and actor.actor_label.startswith(f"{user.email} (API token engage_")


def test_open_engagement_and_log_interaction(client, make_token, frozen_today):
    _, secret = make_token("analyst")
    company, campaign = factories.company(), factories.campaign()
    db.session.commit()
    opened = client.post("/api/v1/engagements", headers=bearer(secret),
                         json={"company_id": company.id, "campaign_id": campaign.id, "opened_on": "2026-06-10"})
    assert opened.status_code == 201, opened.json
    twice = client.post("/api/v1/engagements", headers=bearer(secret),
                        json={"company_id": company.id, "campaign_id": campaign.id, "opened_on": "2026-06-10"})
    assert twice.status_code == 422 and "campaign_id" in twice.json["errors"]
    logged = client.post(f"/api/v1/engagements/{opened.json['id']}/interactions", headers=bearer(secret),
                         json={"kind": "call", "occurred_on": "2026-06-12", "subject": "Intro call"})
    assert logged.status_code == 201, logged.json
    listed = client.get(f"/api/v1/interactions?engagement={opened.json['id']}", headers=bearer(secret))
    assert [i["subject"] for i in listed.json["items"]] == ["Intro call"]


def test_reminders_create_and_complete_with_if_match(client, make_token, engagement):
    _, secret = make_token("analyst")
    made = client.post("/api/v1/reminders", headers=bearer(secret),
                       json={"engagement_id": engagement.id, "due_on": "2026-06-20", "reason": "Chase reply"})
    assert made.status_code == 201, made.json
    url = f"/api/v1/reminders/{made.json['id']}"
    assert client.patch(url, json={"status": "done"}, headers=bearer(secret)).status_code == 428
    done = client.patch(url, json={"status": "done"}, headers={**bearer(secret), "If-Match": made.headers["ETag"]})
    assert done.status_code == 200 and done.json["status"] == "done"


def test_export_feed_json_and_csv(client, make_token, engagement):
    _, secret = make_token("viewer", scope="read")
    rows = client.get("/api/v1/exports/monthly?month=2026-05", headers=bearer(secret))
    assert rows.status_code == 200, rows.json
    assert [r["company"] for r in rows.json["rows"]] == [engagement.company.name]
    assert rows.json["rows"][0]["stage"] == "identified"
    as_csv = client.get("/api/v1/exports/monthly?month=2026-05&format=csv", headers=bearer(secret))
    assert as_csv.mimetype == "text/csv" and engagement.company.name in as_csv.get_data(as_text=True)
    before = client.get("/api/v1/exports/engagements?month=2025-12", headers=bearer(secret))
    assert before.status_code == 200 and before.json["rows"] == []
    listed = client.get("/api/v1/exports/engagements?month=2026-06&format=csv", headers=bearer(secret))
    assert listed.get_data(as_text=True).splitlines()[1].startswith(str(engagement.id))
    future = client.get("/api/v1/exports/monthly?month=2027-01", headers=bearer(secret))
    assert future.status_code == 422 and "month" in future.json["errors"]


def test_rate_limited(make_app, make_user, frozen_today):
    app = make_app(API_RATE_LIMIT="3 per minute")
    user = make_user("viewer")
    _, secret = tokens.create(user, name="loop", scope="read", expires_on=frozen_today, today=frozen_today,
                              max_days=366)
    db.session.commit()
    client = app.test_client()
    codes = [client.get("/api/v1/funds", headers=bearer(secret)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    last = client.get("/api/v1/funds", headers=bearer(secret))
    assert last.mimetype == "application/problem+json"


def test_openapi_document_and_docs_page(client, make_token, login_as):
    _, secret = make_token("viewer", scope="read")
    spec = client.get("/api/v1/openapi.json", headers=bearer(secret))
    assert spec.status_code == 200 and spec.json["openapi"] == "3.1.0"
    assert "/api/v1/engagements/{engagement_id}/stage" in spec.json["paths"]
    problem = spec.json["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert list(problem) == ["application/problem+json"]
    login_as("viewer")
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert client.get("/api/v1/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/api/v1/docs/assets/index.html").status_code == 404


def test_unknown_api_path_is_a_problem(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_account_page_creates_shows_once_and_revokes(client, login_as, frozen_today):
    user = login_as("analyst")
    made = client.post("/account/tokens", data={"name": "BI refresh", "scope": "read",
                                                "expires_on": "2026-09-01"})
    assert made.status_code == 200
    html = made.get_data(as_text=True)
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    assert token.name == "BI refresh" and token.scope == "read"
    secret = html.split('id="new-token">')[1].split("<")[0]
    assert tokens.digest(secret) == token.token_hash
    assert secret not in client.get("/account").get_data(as_text=True)  # shown once
    bad = client.post("/account/tokens", data={"name": "", "scope": "read", "expires_on": "2031-01-01"})
    assert bad.status_code == 422
    client.post(f"/account/tokens/{token.id}/revoke")
    db.session.refresh(token)
    assert token.revoked_at is not None
    fresh = client.application.test_client()
    assert fresh.get("/api/v1/funds", headers=bearer(secret)).status_code == 401


def test_someone_elses_token_cannot_be_revoked(client, login_as, make_token):
    owner, _ = make_token("viewer", scope="read")
    login_as("admin")
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == owner.id))
    client.post(f"/account/tokens/{token.id}/revoke")
    db.session.refresh(token)
    assert token.revoked_at is None


def test_list_query_count_does_not_grow(client, make_token, count_queries, frozen_today):
    _, secret = make_token("viewer", scope="read")
    for _ in range(3):
        factories.engagement()
    client.get("/api/v1/engagements", headers=bearer(secret))  # last_used written once
    with count_queries() as few:
        client.get("/api/v1/engagements", headers=bearer(secret))
    for _ in range(12):
        factories.engagement()
    with count_queries() as many:
        response = client.get("/api/v1/engagements", headers=bearer(secret))
    assert response.json["total"] == 15
    assert many.count == few.count


def test_company_create_update_and_flag_use_the_forms_rules(client, make_token, frozen_today):
    user, secret = make_token("analyst")
    bad = client.post("/api/v1/companies", headers=bearer(secret),
                      json={"name": "Hikvision", "isin": "CNE100000PM9", "website": "not a url"})
    assert bad.status_code == 422, bad.json
    assert set(bad.json["errors"]) == {"isin", "website"}
    made = client.post("/api/v1/companies", headers=bearer(secret),
                       json={"name": "Hikvision", "isin": "CNE100000PM8", "aliases": ["海康威视"], "country": "cn"})
    assert made.status_code == 201, made.json
    assert made.json["country"] == "CN" and made.json["aliases"] == ["海康威视"]
    url = f"/api/v1/companies/{made.json['id']}"
    dup = client.post("/api/v1/companies", headers=bearer(secret), json={"name": "Copy", "isin": "CNE100000PM8"})
    assert dup.status_code == 422 and "already belongs" in dup.json["errors"]["isin"][0]
    assert client.patch(url, json={"sector": "Electronics"}, headers=bearer(secret)).status_code == 428
    changed = client.patch(url, json={"sector": "Electronics"},
                           headers={**bearer(secret), "If-Match": made.headers["ETag"]})
    assert changed.status_code == 200, changed.json
    assert changed.json["sector"] == "Electronics" and changed.json["isin"] == "CNE100000PM8"
    stale = client.patch(url, json={"sector": "Other"}, headers={**bearer(secret), "If-Match": made.headers["ETag"]})
    assert stale.status_code == 412
    flag = client.post(url + "/risk-flags", headers=bearer(secret),
                       json={"source": "us_entity_list", "citation": "84 FR 54002", "effective_date": "2019-10-09"})
    assert flag.status_code == 201, flag.json
    assert client.get(url, headers=bearer(secret)).json["flags"] == ["us_entity_list"]
    no_citation = client.post(url + "/risk-flags", headers=bearer(secret), json={"source": "cbp_wro", "citation": ""})
    assert no_citation.status_code == 422
    creator = db.session.scalar(sa.select(AuditEvent.actor_id).where(AuditEvent.object_type == "RiskFlag",
                                                                     AuditEvent.action == "create"))
    assert creator == user.id


def test_score_a_response_and_add_a_fund(client, make_token, runner, frozen_today):
    from engage.models import Campaign, Interaction, Rubric

    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    item = factories.engagement(campaign=campaign)
    reply = Interaction(engagement=item, kind="response", direction="inbound", occurred_on=dt.date(2026, 6, 1))
    db.session.add(reply)
    db.session.commit()
    rubric = db.session.scalar(sa.select(Rubric).where(Rubric.campaign_id == campaign.id))
    _, secret = make_token("analyst")
    criteria = [{"criterion_id": c.id, "level": 1} for c in rubric.criteria]
    short = client.post("/api/v1/scores", headers=bearer(secret),
                        json={"interaction_id": reply.id, "scored_on": "2026-06-10", "criteria": criteria[1:]})
    assert short.status_code == 422 and "criteria" in short.json["errors"]
    no_evidence = [{**c, "level": 3} for c in criteria]
    refused = client.post("/api/v1/scores", headers=bearer(secret),
                          json={"interaction_id": reply.id, "scored_on": "2026-06-10", "criteria": no_evidence})
    assert refused.status_code == 422 and "evidence" in refused.json["detail"]
    made = client.post("/api/v1/scores", headers=bearer(secret),
                       json={"interaction_id": reply.id, "scored_on": "2026-06-10", "criteria": criteria})
    assert made.status_code == 201, made.json
    assert float(made.json["total"]) == 25.0 and len(made.json["criteria"]) == len(criteria)
    shown = client.get(f"/api/v1/engagements/{item.id}", headers=bearer(secret)).json
    assert (shown["latest_score"], shown["score_change"], shown["last_contact"]) == ("25.00", None, "2026-06-01")
    listed = client.get("/api/v1/engagements?sort=score&dir=desc", headers=bearer(secret)).json["items"]
    assert listed[0]["latest_score"] == "25.00"
    fund = client.post("/api/v1/funds", headers=bearer(secret), json={"name": "EM Equity", "base_currency": "usd"})
    assert fund.status_code == 201 and fund.json["base_currency"] == "USD"
    again = client.post("/api/v1/funds", headers=bearer(secret), json={"name": "EM Equity"})
    assert again.status_code == 422 and "already exists" in again.json["errors"]["name"][0]


def test_nul_in_a_json_body_is_refused(client, make_token):
    _, secret = make_token("analyst")
    response = client.post("/api/v1/funds", headers=bearer(secret), json={"name": "Fund\u0000", "x": [{"y": "ok"}]})
    assert response.status_code == 400 and "NUL" in response.json["detail"]
    nested = client.post("/api/v1/scores", headers=bearer(secret),
                         json={"interaction_id": 1, "scored_on": "2026-06-01",
                               "criteria": [{"criterion_id": 1, "level": 1, "evidence": "\u0000"}]})
    assert nested.status_code == 400


def test_nested_errors_name_the_item(client, make_token):
    _, secret = make_token("analyst")
    response = client.post("/api/v1/scores", headers=bearer(secret),
                           json={"interaction_id": 1, "scored_on": "2026-06-01",
                                 "criteria": [{"criterion_id": 1, "level": 1}, {"criterion_id": 0, "level": 9}]})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"criteria.1.criterion_id", "criteria.1.level"}
    assert all(isinstance(m, str) for msgs in response.json["errors"].values() for m in msgs)


def test_remove_a_flag_with_if_match(client, make_token, engagement):
    _, secret = make_token("analyst")
    flag = engagement.company.risk_flags[0]
    url = f"/api/v1/risk-flags/{flag.id}"
    read = client.get(url, headers=bearer(secret))
    assert client.delete(url, headers=bearer(secret)).status_code == 428
    assert client.delete(url, headers={**bearer(secret), "If-Match": '"stale"'}).status_code == 412
    gone = client.delete(url, headers={**bearer(secret), "If-Match": read.headers["ETag"]})
    assert gone.status_code == 204
    assert client.get(url, headers=bearer(secret)).status_code == 404
    assert db.session.scalar(sa.select(AuditEvent.action).where(AuditEvent.action == "flag_removed")) == "flag_removed"


def test_a_viewer_is_offered_read_only_tokens(client, login_as, frozen_today):
    login_as("viewer")
    page = client.get("/account").get_data(as_text=True)
    assert 'value="read"' in page and 'value="read_write"' not in page
    refused = client.post("/account/tokens", data={"name": "x", "scope": "read_write", "expires_on": "2026-07-01"})
    assert refused.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0
