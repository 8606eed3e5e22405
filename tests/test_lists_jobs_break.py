"""A big list file read and previewed by the preview job, then confirmed and saved by the import
job (issue 20), under a careless user, a hostile one and a faulty environment: double clicks, a
stale preview confirmed from a second tab, a file bad halfway, a file over the limit, a viewer
posting, another user's job. Real queue (an SQLite file, or PostgreSQL when the tests run on it),
real consumer thread. The entries are made up (names like "Made Up Trading 17 Co"): they test the
reading of files, not any listing.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.models import BackgroundJob, ListedEntity, ListVersion
from tests import factories
from tests.test_background_jobs import no_worker, wait_for, worker  # noqa: F401 (fixtures)
from tests.test_bulk_jobs import LISTS, job_of

CSL_HEADER = ("_id,source,entity_number,type,programs,name,title,addresses,federal_register_notice,start_date,"
              "source_list_url,alt_names,source_information_url\n")


def csl_file(entries: int, *, nameless: int | None = None) -> bytes:
    """A Consolidated Screening List CSV of `entries` made-up Entity List entries (about 230 bytes
    each); the entry at row `nameless` (1-based, after the header) has no name."""
    rows = [CSL_HEADER]
    for n in range(1, entries + 1):
        name = "" if n == nameless else f"Made Up Trading {n} Co., Ltd."
        rows.append(f"{n},Entity List (EL) - Bureau of Industry and Security,,,,\"{name}\",,\"Somewhere {n}, CN\","
                    f"84 FR {50000 + n},2019-10-09,https://www.bis.gov/entity-list,Made Up {n},"
                    f"https://example.org/notice/{n}\n")
    return "".join(rows).encode()


@pytest.fixture()
def by_jobs(app, monkeypatch):
    """Every list upload is read by the preview job (and so every confirmation saved by the import job)."""
    monkeypatch.setitem(app.config, "LISTS_PREVIEW_JOB_BYTES", 1)
    monkeypatch.setitem(app.config, "JOBS_RETRY_SECONDS", 0)


def post_upload(client, data: bytes, name: str = "csl.csv", **fields):
    return client.post("/lists/import", data={"file": (io.BytesIO(data), name), **fields},
                       content_type="multipart/form-data")


def preview_by_job(client, data: bytes, name: str = "csl.csv", **fields):
    """Upload, let the worker read the file, open the preview it leads to: (token, page, response)."""
    job = wait_for(job_of(post_upload(client, data, name, **fields)))
    assert job.status == "done", job.error
    shown = client.get(job.result_url)
    return job.result_url.rsplit("/", 1)[1], shown.get_data(as_text=True), shown


def uploads_kept(app) -> int:
    folder = Path(app.instance_path) / "uploads"
    return len(list(folder.glob("*.bin"))) if folder.is_dir() else 0


def list_counts() -> tuple[int, int]:
    return (db.session.scalar(sa.select(sa.func.count(ListVersion.id))),
            db.session.scalar(sa.select(sa.func.count(ListedEntity.id))))


def strip(page: str) -> str:
    """A page without what differs between two uploads of the same file (the token, the CSRF field)."""
    return re.sub(r'(/lists/import/)[0-9a-f]{32}|name="csrf_token"[^>]*', r"\1", page)


# --- the path itself ------------------------------------------------------------------------------

def test_a_big_list_upload_is_answered_at_once_and_its_preview_is_the_one_the_request_shows(
        app, client, login_as, worker, by_jobs):  # noqa: F811
    login_as("analyst")
    data = (LISTS / "csl_2021-07-01.csv").read_bytes()
    answer = post_upload(client, data, "csl_2021-07-01.csv", retrieved_on="2021-07-01")
    assert "List file check: csl_2021-07-01.csv" in client.get(answer.location).get_data(as_text=True)
    job = wait_for(job_of(answer))
    assert job.status == "done" and job.message.startswith("csl_2021-07-01.csv: 13 entries read"), job.error
    assert "US Entity List: 13 entries, 13 added, 0 removed, 0 changed (first version)" in job.message
    page = client.get(job.result_url).get_data(as_text=True)
    app.config["LISTS_PREVIEW_JOB_BYTES"] = 10**9  # the same file read in the request, as small files are
    direct = post_upload(client, data, "csl_2021-07-01.csv", retrieved_on="2021-07-01")
    assert direct.status_code == 200 and list_counts() == (0, 0)
    assert strip(page) == strip(direct.get_data(as_text=True))  # what the page shows is the same
    app.config["LISTS_PREVIEW_JOB_BYTES"] = 1
    token = job.result_url.rsplit("/", 1)[1]
    saved = wait_for(job_of(client.post(f"/lists/import/{token}", data=factories.confirmation(page))))
    assert saved.status == "done" and list_counts() == (1, 13), saved.error
    assert saved.message.startswith("Version ") and "Screened" in saved.message


def test_a_consolidated_file_of_thousands_of_entries_is_read_by_a_job_at_the_default_threshold(
        app, client, login_as, worker):  # noqa: F811
    login_as("analyst")
    data = csl_file(6_000)
    assert len(data) >= app.config["LISTS_PREVIEW_JOB_BYTES"]  # over 1 MB: a job, with the default settings
    token, page, shown = preview_by_job(client, data, "consolidated.csv")
    assert shown.status_code == 200 and "US Entity List: 6000 entries, 6000 added" in page
    assert "… and 5800 more." in page  # the first 200 named, as a small file's preview does
    saved = wait_for(job_of(client.post(f"/lists/import/{token}", data=factories.confirmation(page))), seconds=240)
    assert saved.status == "done" and list_counts() == (1, 6_000), saved.error


# --- double click, second tab ----------------------------------------------------------------------

def test_a_double_clicked_upload_makes_one_reading_and_keeps_one_file(app, client, login_as, no_worker, by_jobs):  # noqa: F811
    login_as("analyst")
    data = (LISTS / "csl_2021-07-01.csv").read_bytes()
    before = uploads_kept(app)
    first, second = post_upload(client, data), post_upload(client, data)
    assert job_of(first) == job_of(second)
    assert uploads_kept(app) == before + 1
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 1
    other = post_upload(client, data, retrieved_on="2021-07-01")  # other options: other work
    assert job_of(other) != job_of(first) and uploads_kept(app) == before + 2


def test_a_stale_preview_confirmed_from_a_second_tab_saves_nothing_and_the_fresh_one_once(
        app, client, login_as, worker, by_jobs):  # noqa: F811
    login_as("analyst")
    token, tab_one, _ = preview_by_job(client, (LISTS / "csl_2021-07-01.csv").read_bytes(), "july.csv")
    # tab two loads another file of the same list meanwhile
    other, tab_two, _ = preview_by_job(client, (LISTS / "csl_2021-08-01.csv").read_bytes(), "august.csv")
    loaded = wait_for(job_of(client.post(f"/lists/import/{other}", data=factories.confirmation(tab_two))))
    assert loaded.status == "done" and list_counts()[0] == 1, loaded.error
    counts = list_counts()
    stale = wait_for(job_of(client.post(f"/lists/import/{token}", data=factories.confirmation(tab_one))))
    assert stale.status == "failed" and stale.attempts == 1 and list_counts() == counts
    assert "another version of this list was loaded since the preview" in stale.error
    # tab one's preview opened again: read again by a job (the kept preview is stale), against august's version
    again = client.get(f"/lists/import/{token}")
    fresh = wait_for(job_of(again))
    assert fresh.status == "done" and fresh.id != stale.id, fresh.error
    page = client.get(fresh.result_url).get_data(as_text=True)
    assert f"against version {loaded.result_url.rsplit('/', 1)[1]}" in page
    assert factories.confirmation(page) != factories.confirmation(tab_one)
    saved = wait_for(job_of(client.post(f"/lists/import/{token}", data=factories.confirmation(page))))
    assert saved.id == stale.id and saved.status == "done" and list_counts()[0] == counts[0] + 1, saved.error
    # confirmed again (a third click, the old tab): saved once, said once
    repeated = client.post(f"/lists/import/{token}", data=factories.confirmation(page))
    assert job_of(repeated) == saved.id and list_counts()[0] == counts[0] + 1
    reloaded = client.get(f"/lists/import/{token}", follow_redirects=True).get_data(as_text=True)
    assert "This file was confirmed already and saved once" in reloaded


# --- a file bad halfway: what and where, as the request says; nothing written ------------------------

def test_a_file_bad_halfway_is_refused_by_the_job_with_what_and_where(app, client, login_as, worker, by_jobs):  # noqa: F811
    login_as("analyst")
    data = csl_file(400, nameless=250)
    job = wait_for(job_of(post_upload(client, data, "bad.csv")))
    assert job.status == "done", job.error
    lines = job.message.splitlines()
    assert lines[0] == "bad.csv was refused; nothing was saved: 1 problem(s) in the file; nothing was loaded."
    assert lines[1] == "Row 251, column name: a listed entity needs a name.", lines  # row 251: the header is row 1
    shown = client.get(job.result_url)
    page = shown.get_data(as_text=True)
    assert shown.status_code == 422 and 'name="preview"' not in page and "Save this version" not in page
    app.config["LISTS_PREVIEW_JOB_BYTES"] = 10**9
    direct = post_upload(client, data, "bad.csv")
    assert direct.status_code == 422
    table = lambda text: text[text.index("<table>"):text.index("</table>")]  # noqa: E731
    assert table(page) == table(direct.get_data(as_text=True))
    assert re.search(r'<td class="num">251</td><td>name</td>', page)
    assert list_counts() == (0, 0)


# --- a file over the limit --------------------------------------------------------------------------

def test_a_list_file_over_the_limit_is_refused_with_its_size_and_the_limit(app, client, login_as, no_worker, monkeypatch):  # noqa: F811
    login_as("analyst")
    monkeypatch.setitem(app.config, "LISTS_MAX_UPLOAD_MB", 1)
    before = uploads_kept(app)
    answer = post_upload(client, b"x" * (3 * 1024 * 1024), "huge.csv")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 413
    assert "This upload is 3 MB and a list file may be at most 1 MB (LISTS_MAX_UPLOAD_MB)" in page
    assert "Check the file" in page  # the upload form again
    assert uploads_kept(app) == before and db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 0


def test_the_list_limit_is_its_own_so_a_whole_consolidated_list_fits(app, client, login_as, no_worker, monkeypatch):  # noqa: F811
    login_as("analyst")
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024 * 1024)
    answer = post_upload(client, csl_file(8_000), "big.csv")  # about 2 MB: over the global limit
    assert answer.status_code == 302 and answer.location.startswith("/background/")
    assert app.config["LISTS_MAX_UPLOAD_MB"] * 1024 * 1024 > 30e6  # the whole CSL is about 30 MB


# --- a viewer, another analyst, a forged kept preview -------------------------------------------------

def test_a_viewer_posts_nothing_and_no_one_sees_anothers_reading(app, client, login_as, no_worker, by_jobs):  # noqa: F811
    login_as("analyst")
    before = uploads_kept(app)
    job_id = job_of(post_upload(client, (LISTS / "csl_2021-07-01.csv").read_bytes()))
    token = db.session.get(BackgroundJob, job_id).params["token"]
    login_as("viewer")
    assert post_upload(client, (LISTS / "csl_2021-07-01.csv").read_bytes()).status_code == 403
    assert client.get(f"/lists/import/{token}").status_code == 403
    assert client.post(f"/lists/import/{token}", data={"preview": "0" * 64}).status_code == 403
    assert client.get(f"/background/{job_id}").status_code == 404
    login_as("analyst")  # another analyst
    assert client.get(f"/background/{job_id}").status_code == 404
    assert client.get(f"/lists/import/{token}").status_code == 404
    assert client.get("/lists/import/not-a-token").status_code == 404
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 1 and uploads_kept(app) == before + 1


def test_a_kept_preview_not_signed_by_this_server_is_not_loaded(app, client, login_as, worker, by_jobs):  # noqa: F811
    login_as("analyst")
    token, _page, _ = preview_by_job(client, (LISTS / "csl_2021-07-01.csv").read_bytes())
    (Path(app.instance_path) / "uploads" / f"{token}.preview").write_bytes(
        b"\0" * 32 + pickle.dumps({"for": None, "checked": None}))
    shown = client.get(f"/lists/import/{token}")
    assert shown.status_code == 503 and "not signed with this server" in shown.get_data(as_text=True)
    assert list_counts() == (0, 0)
