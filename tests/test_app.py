import ast
from pathlib import Path

import pytest

from config import Config, ProductionConfig
from engage import create_app

#: Production refuses keys shorter than 32 characters.
PRODUCTION_KEY = "a-long-random-production-secret-4f9c2e7a"


def test_security_headers_and_cookie_flags(client, make_user):
    response = client.get("/auth/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    user = make_user("viewer")
    response = client.post("/auth/login", data={"email": user.email, "password": "correct horse battery staple"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in development and tests


def test_production_cookies_are_secure_and_https_forced(database_url, monkeypatch):
    app = create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url,
                                                   "SECRET_KEY": PRODUCTION_KEY})
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
    response = app.test_client().get("/auth/login")
    assert response.status_code == 302 and response.headers["Location"].startswith("https://")
    secure = app.test_client().get("/auth/login", base_url="https://localhost")
    assert "max-age" in secure.headers["Strict-Transport-Security"]


def test_production_refuses_the_development_secret(database_url):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url,
                                                 "SECRET_KEY": Config.SECRET_KEY})


def test_unknown_url_gets_the_404_page(client, login_as):
    login_as("viewer")
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is no page at this address." in response.get_data(as_text=True)
    assert "main-nav" in response.get_data(as_text=True)  # rendered in the app's layout


def test_missing_object_is_404(client, login_as):
    login_as("viewer")
    assert client.get("/companies/424242").status_code == 404
    assert client.get("/engagements/424242").status_code == 404


def test_oversized_request_gets_413(make_app, app):
    small = make_app(MAX_CONTENT_LENGTH=1024)
    response = small.test_client().post("/auth/login", data={"email": "x" * 4096, "password": "y"})
    assert response.status_code == 413
    assert "larger than the limit" in response.get_data(as_text=True)


def test_bad_filter_value_is_400_with_reason(client, login_as):
    login_as("viewer")
    response = client.get("/engagements?stage=nowhere")
    assert response.status_code == 400
    assert "Unknown stage" in response.get_data(as_text=True)


def test_server_error_page_and_rollback(make_app, app):
    broken = make_app(PROPAGATE_EXCEPTIONS=False)
    from engage.security import public

    @broken.route("/boom")
    @public
    def boom():
        raise RuntimeError("boom")

    response = broken.test_client().get("/boom")
    assert response.status_code == 500
    assert "Nothing was saved" in response.get_data(as_text=True)


def test_static_assets_are_served_by_the_app(client):
    css = client.get("/static/css/app.css")
    assert css.status_code == 200 and b"--brand" in css.data
    assert client.get("/static/js/app.js").status_code == 200
    page = client.get("/auth/login").get_data(as_text=True)
    assert "http://" not in page.replace("http://localhost", "") and "https://" not in page


def test_create_app_starts_nothing(monkeypatch, database_url):
    import threading

    before = set(threading.enumerate())
    create_app(Config, overrides={"SQLALCHEMY_DATABASE_URI": database_url})
    started = [t for t in set(threading.enumerate()) - before
               if not isinstance(t, threading.Timer)]  # the rate limiter's in-memory expiry timer
    assert started == []


def test_behind_a_tls_proxy_forwarded_headers_are_trusted(database_url):
    app = create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "PROXY_COUNT": 1,
                                                   "SECRET_KEY": PRODUCTION_KEY})
    client = app.test_client()
    assert client.get("/auth/login").status_code == 302  # plain http is redirected
    response = client.get("/auth/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200


def test_templates_take_csrf_tokens_from_forms():
    """Every POST form's token comes from the FlaskForm its view passes (form.csrf_token or
    form.hidden_tag()), never a hand-written input: a form class is where a post is checked."""
    templates = Path(__file__).resolve().parent.parent / "templates"
    written = [str(path.relative_to(templates)) for path in templates.rglob("*.html")
               if 'name="csrf_token"' in path.read_text(encoding="utf-8")]
    assert written == []


def test_every_function_local_import_says_why():
    """An import inside a function carries a comment (on it, or above its group): heavy library, app factory step."""
    unexplained = []
    for path in sorted(Path("engage").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                above = node.lineno - 1  # index of the line before the import's group
                while above > 0 and lines[above - 1].strip().startswith(("import ", "from ")):
                    above -= 1
                if "#" not in lines[node.lineno - 1] and not (above > 0 and lines[above - 1].strip().startswith("#")):
                    unexplained.append(f"{path}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []

