#!/usr/bin/env python3
"""A script against Engage's JSON API with a personal access token (standard library only).

It lists the companies flagged on a risk list, moves one of their open engagements to the next
stage of the cycle (with If-Match, so a change made meanwhile is not overwritten), and saves the
monthly status rows of a month as CSV:

    ENGAGE_TOKEN=engage_... python scripts/api_example.py --url http://127.0.0.1:5000 --month 2026-11

Make the token on your account page (read-write to move an engagement; read-only is enough
with --no-move). Exit status 0 on success, 1 with the API's problem detail on stderr otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

#: The open stages in cycle order: a forward move goes to the next one.
CYCLE = ["identified", "mapping_requested", "acknowledged", "value_chain_mapped", "disengaging", "disclosed"]


class ApiError(Exception):
    pass


def call(base: str, token: str, method: str, path: str, *, params: dict | None = None, body: dict | None = None,
         headers: dict | None = None) -> tuple[bytes, dict]:
    """One request; the body and headers of a 2xx answer, else ApiError with the problem's detail."""
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json",
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        try:
            problem = json.loads(error.read())
            detail = problem.get("detail", "")
        except ValueError:
            detail = error.reason
        raise ApiError(f"{method} {path}: {error.code} {detail}") from None


def get_json(base, token, path, **params):
    return json.loads(call(base, token, "GET", path, params=params or None)[0])


def flagged_companies(base: str, token: str) -> list[dict]:
    """Every company with a current risk flag, page by page."""
    companies, page = [], 1
    while True:
        batch = get_json(base, token, "/api/v1/companies", flagged="true", page=page, per_page=200)
        companies += batch["items"]
        if page * batch["per_page"] >= batch["total"]:
            return companies
        page += 1


def move_forward(base: str, token: str, companies: list[dict], on: dt.date) -> dict | None:
    """Move the first open engagement of a flagged company one stage forward; the engagement after it."""
    for company in companies:
        listed = get_json(base, token, "/api/v1/engagements", company=company["id"], stage="open")
        for item in listed["items"]:
            if item["stage"] == CYCLE[-1]:
                continue
            body, headers = call(base, token, "GET", f"/api/v1/engagements/{item['id']}")
            target = CYCLE[CYCLE.index(json.loads(body)["stage"]) + 1]
            moved, _ = call(base, token, "POST", f"/api/v1/engagements/{item['id']}/stage",
                            body={"target": target, "occurred_on": on.isoformat(),
                                  "note": "Moved by the API example script."},
                            headers={"If-Match": headers["ETag"]})
            return json.loads(moved)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="Engage's address")
    parser.add_argument("--month", help="YYYY-MM (default: last month)")
    parser.add_argument("--out", default="-", help="where to write the monthly CSV (default: stdout)")
    parser.add_argument("--no-move", action="store_true", help="only read (a read-only token is enough)")
    parser.add_argument("--company", type=int, help="move an engagement of this flagged company (its id); "
                                                    "default: the first flagged company with one to move")
    args = parser.parse_args(argv)
    token = os.environ.get("ENGAGE_TOKEN", "")
    if not token:
        print("Set ENGAGE_TOKEN to a personal access token (account page).", file=sys.stderr)
        return 1
    today = dt.date.today()
    month = args.month or (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    try:
        companies = flagged_companies(args.url, token)
        for company in companies:
            print(f"flagged: {company['name']} ({', '.join(company['flags'])})", file=sys.stderr)
        if not args.no_move:
            chosen = [c for c in companies if args.company is None or c["id"] == args.company]
            moved = move_forward(args.url, token, chosen, today)
            print(f"moved: engagement {moved['id']} of {moved['company_name']} to {moved['stage']}" if moved
                  else "moved: nothing (no open engagement of a flagged company can move forward)", file=sys.stderr)
        rows, _ = call(args.url, token, "GET", "/api/v1/exports/monthly", params={"month": month, "format": "csv"})
    except ApiError as error:
        print(error, file=sys.stderr)
        return 1
    if args.out == "-":
        sys.stdout.write(rows.decode("utf-8-sig"))
    else:
        with open(args.out, "wb") as out:
            out.write(rows)
    count = max(len(list(csv.reader(io.StringIO(rows.decode("utf-8-sig"))))) - 1, 0)
    print(f"monthly rows: {count} for {month}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
