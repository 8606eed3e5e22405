import sqlalchemy as sa

from engage.extensions import db
from engage.models import AuditEvent, User
from tests.conftest import login


def new_user_form(**overrides):
    data = {"email": "new.person@example.org", "name": "New Person", "role": "analyst", "active": "y",
            "password": "a long enough password", "confirm": "a long enough password"}
    data.update(overrides)
    return data


def test_admin_creates_user_who_can_sign_in(client, login_as, app):
    login_as("admin")
    response = client.post("/admin/users/new", data=new_user_form())
    assert response.status_code == 302
    user = db.session.scalar(sa.select(User).where(User.email == "new.person@example.org"))
    assert user.role == "analyst" and user.active
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "create", AuditEvent.object_type == "User",
                                                          AuditEvent.object_id == user.id))
    assert event.actor_label.startswith("admin")
    assert event.changes["email"] == "new.person@example.org"
    assert event.changes["password_hash"] == "(redacted)"
    other = app.test_client()
    assert login(other, "new.person@example.org", "a long enough password").status_code == 302


def test_duplicate_email_is_a_field_error(client, login_as, make_user):
    make_user("viewer", email="taken@example.org")
    login_as("admin")
    before = db.session.scalar(sa.select(sa.func.count(User.id)))
    response = client.post("/admin/users/new", data=new_user_form(email="Taken@Example.org"))
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(User.id))) == before


def test_malformed_email_is_a_field_error(client, login_as):
    login_as("admin")
    for bad in ["not-an-email", "two@@example.org", "space in@example.org"]:
        response = client.post("/admin/users/new", data=new_user_form(email=bad))
        assert response.status_code == 422, bad
        assert 'class="error" id="email-error"' in response.get_data(as_text=True), bad
    assert db.session.scalar(sa.select(sa.func.count(User.id))) == 1


def test_short_password_and_mismatch_are_refused(client, login_as):
    login_as("admin")
    assert client.post("/admin/users/new", data=new_user_form(password="short", confirm="short")).status_code == 422
    response = client.post("/admin/users/new", data=new_user_form(confirm="something different"))
    assert response.status_code == 422
    assert "The passwords differ." in response.get_data(as_text=True)


def test_role_change_and_deactivation_are_audited(client, login_as, make_user):
    login_as("admin")
    target = make_user("viewer")
    response = client.post(f"/admin/users/{target.id}/edit",
                           data={"email": target.email, "name": "Renamed", "role": "analyst"})
    assert response.status_code == 302
    db.session.expire_all()
    target = db.session.get(User, target.id)
    assert target.role == "analyst" and not target.active and target.name == "Renamed"
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "role_change"))
    assert event.object_id == target.id
    assert event.changes["role"] == ["viewer", "analyst"]
    assert event.changes["active"] == [True, False]
    assert event.actor_label.startswith("admin")


def test_deactivated_user_cannot_sign_in(client, login_as, make_user, app):
    login_as("admin")
    target = make_user("analyst")
    client.post(f"/admin/users/{target.id}/edit", data={"email": target.email, "name": target.name, "role": "analyst"})
    assert login(app.test_client(), target.email).status_code == 200


def test_last_admin_cannot_demote_or_deactivate_themselves(client, login_as):
    admin = login_as("admin")
    response = client.post(f"/admin/users/{admin.id}/edit",
                           data={"email": admin.email, "name": admin.name, "role": "viewer", "active": "y"})
    assert response.status_code == 422
    assert "last active admin" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, admin.id).role == "admin"


def test_admin_resets_a_password(client, login_as, make_user, app):
    login_as("admin")
    target = make_user("analyst")
    response = client.post(f"/admin/users/{target.id}/password",
                           data={"pw-password": "brand new secret 42", "pw-confirm": "brand new secret 42"})
    assert response.status_code == 302
    assert login(app.test_client(), target.email, "brand new secret 42").status_code == 302
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "update", AuditEvent.object_id == target.id,
                                                          AuditEvent.object_type == "User"))
    assert event.changes == {"password_hash": ["(redacted)", "(changed)"]}


def test_audit_page_lists_and_filters(client, login_as, make_user):
    login_as("admin")
    make_user("viewer", email="someone@example.org")
    login(client.application.test_client(), "nobody@example.org", "wrong password here")
    page = client.get("/admin/audit?action=login_failed").get_data(as_text=True)
    assert "nobody@example.org" in page
    assert "someone@example.org" not in page
    page = client.get("/admin/audit?object_type=User&action=create").get_data(as_text=True)
    assert "someone@example.org" in page
    assert client.get("/admin/audit?action=bogus").status_code == 400
