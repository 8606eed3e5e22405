import sqlalchemy as sa

from engage.extensions import db
from engage.models import AuditEvent, Campaign, Company, Criterion, Engagement, LetterTemplate, RiskFlag, Stage, User
from tests.conftest import login


def table_counts() -> dict[str, int]:
    return {
        table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }


def test_users_create_reads_password_from_stdin(runner, app):
    result = runner.invoke(args=["users", "create", "Chair@Example.org", "--name", "Committee Chair", "--role", "viewer"],
                           input="a password from stdin\n")
    assert result.exit_code == 0, result.output
    user = db.session.scalar(sa.select(User).where(User.email == "chair@example.org"))
    assert user.role == "viewer"
    assert login(app.test_client(), "chair@example.org", "a password from stdin").status_code == 302
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.object_type == "User"))
    assert event.actor_label == "cli"


def test_users_create_refuses_bad_role_with_one_line_reason(runner):
    result = runner.invoke(args=["users", "create", "x@example.org", "--name", "X", "--role", "superuser"],
                           input="a password from stdin\n")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "--role must be one of viewer, analyst, admin" in result.stderr
    assert db.session.scalar(sa.select(sa.func.count(User.id))) == 0


def test_users_create_refuses_duplicate_bad_email_and_short_password(runner, make_user):
    make_user("viewer", email="dup@example.org")
    cases = [
        (["dup@example.org"], "a password from stdin", "already exists"),
        (["not-an-email"], "a password from stdin", "email: Not a valid email address"),
        (["ok@example.org"], "short", "at least 12 characters"),
    ]
    for args, password, message in cases:
        result = runner.invoke(args=["users", "create", *args, "--name", "X", "--role", "analyst"], input=password + "\n")
        assert result.exit_code == 1, args
        assert message in result.stderr, result.stderr
    assert db.session.scalar(sa.select(sa.func.count(User.id))) == 1


def test_seed_is_idempotent(runner):
    first = runner.invoke(args=["seed"])
    assert first.exit_code == 0, first.output
    counts = table_counts()
    assert counts["companies"] >= 12 and counts["risk_flags"] >= 12
    second = runner.invoke(args=["seed"])
    assert second.exit_code == 0, second.output
    assert "nothing new" in second.output
    assert table_counts() == counts  # audit_events included: nothing changed, nothing logged


def test_seed_loads_campaign_rubric_and_entity_list_companies(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    assert [e["key"] for e in campaign.expectations] == ["map", "disengage", "disclose"]
    assert "Call to Action" in campaign.call_to_action
    keys = set(db.session.scalars(sa.select(Criterion.key)))
    assert {"value_chain_mapping", "disengagement", "public_disclosure", "call_to_action", "conflict_areas",
            "ungp_policy", "enhanced_hrdd", "community_engagement", "remedy"} == keys
    entity_list = db.session.scalars(
        sa.select(Company.name).join(RiskFlag, RiskFlag.company_id == Company.id).where(RiskFlag.source == "us_entity_list")
    ).all()
    assert len(entity_list) == 8
    flag = db.session.scalar(sa.select(RiskFlag).join(Company, Company.id == RiskFlag.company_id).where(Company.isin == "CNE100000PM8",
                                                                       RiskFlag.source == "us_entity_list"))
    assert flag.effective_date.isoformat() == "2019-10-09" and "84 FR 54002" in flag.citation
    assert db.session.scalar(sa.select(sa.func.count(LetterTemplate.id))) == 4


def test_seed_demo_prints_a_working_login(runner, app, monkeypatch):
    monkeypatch.setenv("ENGAGE_DEMO_PASSWORD", "demo password for tests")
    result = runner.invoke(args=["seed", "--demo"])
    assert result.exit_code == 0, result.output
    assert "Demo login: admin@example.org demo password for tests" in result.output
    assert login(app.test_client(), "admin@example.org", "demo password for tests").status_code == 302
    stages = set(db.session.scalars(sa.select(Engagement.stage)))
    assert stages == set(Stage.values())
    counts = table_counts()
    again = runner.invoke(args=["seed", "--demo"])
    assert again.exit_code == 0
    assert table_counts() == counts


def test_seed_demo_without_password_makes_a_fresh_one(runner, monkeypatch):
    monkeypatch.delenv("ENGAGE_DEMO_PASSWORD", raising=False)
    first = runner.invoke(args=["seed", "--demo"]).output
    second = runner.invoke(args=["seed", "--demo"]).output
    line = [l for l in first.splitlines() if l.startswith("Demo login:")][0]
    assert len(line.split()[-1]) >= 12
    assert line != [l for l in second.splitlines() if l.startswith("Demo login:")][0]


def test_bad_seed_file_is_refused_whole(make_app, app, tmp_path):
    import shutil
    from pathlib import Path

    seeds = tmp_path / "seeds"
    shutil.copytree(Path(app.config["SEEDS_DIR"]), seeds)
    text = (seeds / "companies.yaml").read_text().replace("CNE100000BJ4", "CNE100000BJ5")
    (seeds / "companies.yaml").write_text(text)
    other = make_app(SEEDS_DIR=str(seeds))
    with other.app_context():  # the CLI runs in the current app context, so push this app's
        result = other.test_cli_runner().invoke(args=["seed"])
    assert result.exit_code == 1
    assert "companies.yaml" in result.stderr and "Zhejiang Dahua" in result.stderr and "check digit" in result.stderr
    assert table_counts()["campaigns"] == 0  # nothing partial


def test_synth_builds_a_small_data_set_once(runner):
    from engage.models import Engagement, Interaction, Reminder

    result = runner.invoke(args=["synth", "--companies", "20", "--seed", "3"])
    assert result.exit_code == 0, result.stderr
    assert "20 companies" in result.output and "40 engagements" in result.output
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 400
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 200
    assert len(set(db.session.scalars(sa.select(Engagement.stage)))) > 3
    again = runner.invoke(args=["synth", "--companies", "20"])
    assert again.exit_code == 1 and "already holds a synthetic data set" in again.stderr
    assert runner.invoke(args=["synth", "--companies", "5"]).exit_code == 1


def test_seed_lei_is_validated(make_app, app, tmp_path):
    import shutil
    from pathlib import Path

    seeds = tmp_path / "seeds"
    shutil.copytree(Path(app.config["SEEDS_DIR"]), seeds)
    text = (seeds / "companies.yaml").read_text().replace("    isin: CNE100000BJ4\n",
                                                          "    isin: CNE100000BJ4\n    lei: 5493001KJTIIGC8Y1R13\n")
    (seeds / "companies.yaml").write_text(text)
    other = make_app(SEEDS_DIR=str(seeds))
    with other.app_context():
        result = other.test_cli_runner().invoke(args=["seed"])
    assert result.exit_code == 1
    assert "Zhejiang Dahua" in result.stderr and "is not a valid LEI: its check digits (13) do not match" in result.stderr
    assert table_counts()["campaigns"] == 0  # nothing partial
