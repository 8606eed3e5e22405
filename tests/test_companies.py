import datetime as dt

import sqlalchemy as sa

from engage.extensions import db
from engage.models import AuditEvent, Company, Fund, Holding, RiskFlag
from tests import factories


def company_form(**overrides):
    data = {"name": "Xinjiang Example Cotton Co., Ltd.", "aliases": "Example Cotton\nExample Cotton\n新疆样例",
            "isin": "cne100000pm8", "ticker": "600001", "exchange": "xshg", "country": "cn", "sector": "Textiles",
            "website": "", "description": ""}
    data.update(overrides)
    return data


def test_analyst_creates_and_edits_a_company(client, login_as):
    login_as("analyst")
    response = client.post("/companies/new", data=company_form())
    assert response.status_code == 302
    company = db.session.scalar(sa.select(Company))
    assert (company.isin, company.ticker, company.exchange, company.country) == ("CNE100000PM8", "600001", "XSHG", "CN")
    assert company.alias_names == ["Example Cotton", "新疆样例"]
    response = client.post(f"/companies/{company.id}/edit", data=company_form(aliases="Example Cotton\nNew Name"))
    assert response.status_code == 302
    db.session.expire_all()
    assert sorted(db.session.get(Company, company.id).alias_names) == ["Example Cotton", "New Name"]
    assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.object_type == "CompanyAlias",
                                                         AuditEvent.action == "delete"))


def test_bad_company_input_is_refused_on_the_field(client, login_as):
    login_as("analyst")
    factories.company("Holder", isin="CNE100000BJ4")
    db.session.commit()
    cases = [
        (company_form(isin="CNE100000PM9"), "expected 8"),
        (company_form(isin="NOTANISIN"), "is not an ISIN"),
        (company_form(isin="CNE100000BJ4"), "already belongs to Holder"),
        (company_form(country="China"), "Two-letter ISO code"),
        (company_form(website="javascript:alert(1)"), "http:// or https://"),
        (company_form(name=""), "This field is required"),
    ]
    for data, message in cases:
        response = client.post("/companies/new", data=data)
        assert response.status_code == 422, message
        assert message in response.get_data(as_text=True), message
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == 1


def test_risk_flags_are_added_with_a_citation_and_removed(client, login_as):
    login_as("analyst")
    company = factories.company()
    db.session.commit()
    refused = client.post(f"/companies/{company.id}/flags", data={"source": "uflpa_entity_list", "citation": ""})
    assert refused.status_code == 422
    bad_link = client.post(f"/companies/{company.id}/flags", data={
        "source": "uflpa_entity_list", "citation": "UFLPA list", "citation_url": "ftp://x"})
    assert bad_link.status_code == 422
    response = client.post(f"/companies/{company.id}/flags", data={
        "source": "uflpa_entity_list", "section": "2(d)(2)(B)(i)", "effective_date": "2023-06-12",
        "citation": "DHS UFLPA Entity List update, 12 Jun 2023", "citation_url": "https://www.dhs.gov/uflpa-entity-list"})
    assert response.status_code == 302
    flag = db.session.scalar(sa.select(RiskFlag))
    assert flag.section == "2(d)(2)(B)(i)" and flag.effective_date == dt.date(2023, 6, 12)
    page = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert "UFLPA Entity List" in page and "https://www.dhs.gov/uflpa-entity-list" in page
    assert client.post(f"/companies/{company.id}/flags/{flag.id}/delete").status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(RiskFlag.id))) == 0
    assert client.post(f"/companies/{company.id + 1}/flags/{flag.id}/delete").status_code == 404


def test_viewer_cannot_change_companies(client, login_as):
    login_as("viewer")
    company = factories.company()
    db.session.commit()
    assert client.get("/companies/new").status_code == 403
    assert client.post("/companies/new", data=company_form()).status_code == 403
    assert client.post(f"/companies/{company.id}/edit", data=company_form()).status_code == 403
    assert client.post(f"/companies/{company.id}/flags", data={"source": "analyst", "citation": "x"}).status_code == 403
    page = client.get("/companies").get_data(as_text=True)
    assert "New company" not in page


def test_company_filters_and_sorting(client, login_as):
    login_as("viewer")
    a = factories.company("Alpha Solar", sector="Solar", country="CN")
    b = factories.company("Beta Cotton", sector="Textiles", country="VN")
    a.risk_flags.append(RiskFlag(source="cbp_wro", citation="WRO"))
    db.session.commit()
    factories.engagement(company=b, stage="acknowledged")

    def names(query):
        response = client.get("/companies" + query)
        assert response.status_code == 200, query
        text = response.get_data(as_text=True)
        return [n for n in sorted(("Alpha Solar", "Beta Cotton"), key=text.find) if n in text]

    assert names("?sector=Solar") == ["Alpha Solar"]
    assert names("?country=vn") == ["Beta Cotton"]
    assert names("?source=cbp_wro") == ["Alpha Solar"]
    assert names("?engaged=yes") == ["Beta Cotton"]
    assert names("?engaged=no") == ["Alpha Solar"]
    assert names("?stage=acknowledged") == ["Beta Cotton"]
    assert names("?sort=name&dir=desc") == ["Beta Cotton", "Alpha Solar"]
    assert names("?sort=country&dir=asc") == ["Alpha Solar", "Beta Cotton"]
    assert client.get("/companies?sort=password").status_code == 400
    assert client.get("/companies?engaged=maybe").status_code == 400


def test_company_page_shows_latest_holdings(client, login_as):
    login_as("viewer")
    company = factories.company("Held Co")
    fund = Fund(name="EM Index")
    db.session.add_all([
        Holding(fund=fund, company=company, as_of=dt.date(2026, 1, 31), market_value=100, shares=10),
        Holding(fund=fund, company=company, as_of=dt.date(2026, 2, 28), market_value=250, shares=20),
    ])
    db.session.commit()
    page = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert "28 Feb 2026" in page and "31 Jan 2026" not in page
    assert "USD 250" in page


def test_list_filters_are_checked_forms_with_clear_refusals(client, login_as):
    """Companies, engagements and the audit trail: a bad filter value is a 400 naming the filter and the value."""
    login_as("admin")
    cases = [
        ("/companies?engaged=maybe", "Open engagement: engaged must be &#39;yes&#39; or &#39;no&#39;."),
        ("/companies?source=rumour", "Risk list: Unknown risk list &#39;rumour&#39;."),
        ("/companies?score_below=101", "Score below: score_below must be a whole number from 0 to 100."),
        ("/engagements?owner=someone", "Owner: owner must be a user number, &#39;me&#39; or &#39;none&#39;."),
        ("/engagements?sort=company&dir=up", "Sort: Cannot sort by &#39;company&#39; &#39;up&#39;."),
        ("/admin/audit?action=explode", "Action: Not a valid choice"),
    ]
    for url, message in cases:
        response = client.get(url)
        assert response.status_code == 400 and message in response.get_data(as_text=True), (url, message)
    assert client.get("/companies?q=" + "x" * 500 + "&country=cn").status_code == 200  # cut, as before


# LEI and parent company (issue 15). LEI 5493001KJTIIGC8Y1R12 is python-stdnum's documented example.

def test_lei_is_validated_and_unique(client, login_as):
    login_as("analyst")
    factories.company("Holder", lei="5493001KJTIIGC8Y1R12")
    db.session.commit()
    cases = [
        (company_form(lei="5493001KJTIIGC8Y1R13"), "is not a valid LEI: its check digits (13) do not match"),
        (company_form(lei="5493001KJT"), "is not an LEI: expected 20 letters or digits"),
        (company_form(lei="5493001kjtiigc8y1r12"), "LEI 5493001KJTIIGC8Y1R12 already belongs to Holder."),
    ]
    for data, message in cases:
        response = client.post("/companies/new", data=data)
        assert response.status_code == 422, message
        assert message in response.get_data(as_text=True), message
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == 1
    holder = db.session.scalar(sa.select(Company))
    response = client.post(f"/companies/{holder.id}/edit", data=company_form(name="Holder", isin="", lei="5493001KJTIIGC8Y1R12"))
    assert response.status_code == 302  # its own LEI is no duplicate
    assert client.post("/companies/new", data=company_form(isin="", lei=" 5493 001K JTII GC8Y 1R12 ")).status_code == 422


def test_parent_is_chosen_by_name_number_or_identifier(client, login_as):
    login_as("analyst")
    parent = factories.company("Daqo New Energy Corp", isin="US23703Q2030")
    factories.company("Twin Holdings")
    factories.company("twin holdings ltd")
    db.session.commit()
    for reference in ("daqo new energy corp", "Daqo New Energy", f"#{parent.id}", f"#{parent.id} Daqo New Energy Corp",
                      "US23703Q2030"):
        response = client.post("/companies/new", data=company_form(name=f"Sub via {reference}", isin="",
                                                                   parent_ref=reference))
        assert response.status_code == 302, reference
    db.session.expire_all()
    assert len(db.session.get(Company, parent.id).subsidiaries) == 5
    cases = [
        ("Nobody Ltd", "No company is called or identified by &#39;Nobody Ltd&#39;"),
        ("#999999", "There is no company #999999."),
        ("Twin Holdings Co", "Several companies match"),
    ]
    for reference, message in cases:
        response = client.post("/companies/new", data=company_form(isin="", parent_ref=reference))
        assert response.status_code == 422, reference
        assert message in response.get_data(as_text=True), reference


def test_a_company_cannot_be_its_own_ancestor(client, login_as):
    login_as("analyst")
    top = factories.company("Top Co")
    middle = factories.company("Middle Co", parent=top)
    db.session.flush()
    bottom = factories.company("Bottom Co", parent=middle)
    db.session.commit()
    response = client.post(f"/companies/{top.id}/edit", data=company_form(name="Top Co", isin="", parent_ref=f"#{bottom.id}"))
    assert response.status_code == 422
    assert "Bottom Co is already a subsidiary of Top Co" in response.get_data(as_text=True)
    response = client.post(f"/companies/{top.id}/edit", data=company_form(name="Top Co", isin="", parent_ref="Top Co"))
    assert "Top Co cannot be its own parent." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Company, top.id).parent_id is None
    # moving the middle under another company is fine, and the edit page shows the current parent
    page = client.get(f"/companies/{middle.id}/edit").get_data(as_text=True)
    assert f'value="#{top.id} Top Co"' in page
    other = factories.company("Other Co")
    db.session.commit()
    assert client.post(f"/companies/{middle.id}/edit", data=company_form(name="Middle Co", isin="", parent_ref="Other Co")).status_code == 302
    assert client.post(f"/companies/{middle.id}/edit", data=company_form(name="Middle Co", isin="", parent_ref="")).status_code == 302
    db.session.expire_all()
    assert db.session.get(Company, middle.id).parent_id is None
    assert db.session.get(Company, other.id).subsidiaries == []
    changes = [e.changes for e in db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.object_type == "Company", AuditEvent.object_id == middle.id, AuditEvent.action == "update"))]
    assert [c["parent_id"] for c in changes if "parent_id" in c] == [[top.id, other.id], [other.id, None]]


def test_company_page_shows_lei_parent_and_subsidiaries(client, login_as, count_queries):
    login_as("viewer")
    parent = factories.company("Parent Co", lei="5493001KJTIIGC8Y1R12")
    company = factories.company("Middle Co", parent=parent)
    db.session.commit()

    def add_subsidiaries(n):
        for _ in range(n):
            factories.company(parent=company)
        db.session.commit()

    add_subsidiaries(1)
    with count_queries() as small:
        page = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert f'<a href="/companies/{parent.id}">Parent Co</a>' in page and "Subsidiaries" in page
    add_subsidiaries(12)
    with count_queries() as large:
        page = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert large.count == small.count, large.statements
    assert page.count('<a href="/companies/') >= 14
    page = client.get(f"/companies/{parent.id}").get_data(as_text=True)
    assert "<code>5493001KJTIIGC8Y1R12</code>" in page and f'<a href="/companies/{company.id}">Middle Co</a>' in page
