"""A throwaway PostgreSQL server for `make load` and `make bench` (as .ci/run starts one), and
emptying a given database first. Used by tests/load/run.py and tests/benchmarks/bench.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import sqlalchemy as sa

from smtp import free_port  # tests/smtp.py


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl, or None."""
    bins = [b for b in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name))
            if (b / "initdb").exists() and (b / "pg_ctl").exists()]
    return bins[-1] if bins else None


def _version(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in name.split("."))


def throwaway_postgres(folder: Path, stack: list, database: str | None = "engage") -> str:
    """Start a server whose data lives in `folder` on a free port, create `database` (when given),
    and return its URL; the server's stop is appended to `stack` (callables run in reverse at
    teardown). A folder that already holds a server's data (a kept one) is started, not created."""
    pg_bin = server_binaries()
    if pg_bin is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    data, port = folder / "pg", free_port()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        folder.chmod(0o755)
        subprocess.run(["chown", "-R", "postgres", str(folder)], check=True)
    if not (data / "PG_VERSION").exists():
        subprocess.run([*as_pg, str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E",
                        "UTF8", "--no-locale"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "pg.log"), "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, stdout=subprocess.DEVNULL)
    stack.append(lambda: subprocess.run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                                        stdout=subprocess.DEVNULL))
    if database:
        create_database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", database)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database or 'postgres'}"


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    """CREATE DATABASE `name` through the server's `postgres` database (dropping one left over),
    a copy of `template` when given."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    engine.dispose()


def database_exists(admin_url: str, name: str) -> bool:
    engine = sa.create_engine(admin_url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
    engine.dispose()
    return found is not None


def emptied(url: str) -> str:
    """The database at `url` (any PostgreSQL URL form config.database_url takes) with its public
    schema dropped and created again: everything in it is gone. Returns the SQLAlchemy URL."""
    from config import database_url

    url = database_url(url, "")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url
