"""The analysts' daily mix for `make load` (Locust, headless): dashboard, lists with filters,
engagement pages, logging an interaction, moving a stage, scoring a response.

Each simulated user signs in as its own analyst (LOAD_USERS_FILE, written by tests/load/run.py)
and works on its own engagements and responses, as a team splits its companies, so an optimistic-
lock conflict (409) is not expected; it is counted apart if it happens. Every write that the app
confirms (a redirect to where the form says it goes) is counted in LOAD_RESULT_FILE, for run.py to
check against the rows in the database afterwards: nothing lost, nothing written twice.

Every request's time is also kept with the phase it fell in (LOAD_SAMPLES_FILE): "ramp" while
analysts are still arriving (until the last one has signed in), "steady" once all of them have,
so that run.py can report the whole run and the steady state apart.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
import uuid

from locust import HttpUser, between, events, task

from forms import fill, find_form  # tests/load/forms.py (Locust puts the locustfile's folder on the path)

USERS = json.loads(open(os.environ["LOAD_USERS_FILE"], encoding="utf-8").read())
_next_user = itertools.count()
_lock = threading.Lock()
CONFIRMED = {"interactions": 0, "stage_moves": 0, "scores": 0, "conflicts": 0, "refused": 0}
#: Each request's (name, milliseconds, failed) by phase: "ramp" until every analyst has signed in.
SAMPLES: dict[str, list] = {"ramp": [], "steady": []}
_phase = ["ramp"]
_signed_in = itertools.count(1)
SUBJECT = os.environ.get("LOAD_SUBJECT", "Load test note")


def confirmed(what: str) -> None:
    with _lock:
        CONFIRMED[what] += 1


@events.request.add_listener
def _sample(request_type, name, response_time, exception=None, **kwargs):
    SAMPLES[_phase[0]].append((name, round(response_time, 1), exception is not None))


@events.quitting.add_listener
def _write_counts(environment, **kwargs):
    path = os.environ.get("LOAD_RESULT_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(CONFIRMED, out)
    samples = os.environ.get("LOAD_SAMPLES_FILE")
    if samples:
        with open(samples, "w", encoding="utf-8") as out:
            json.dump(SAMPLES, out)


class Analyst(HttpUser):
    wait_time = between(float(os.environ.get("LOAD_WAIT_MIN", "0.5")), float(os.environ.get("LOAD_WAIT_MAX", "2.0")))

    def on_start(self):
        me = USERS[next(_next_user) % len(USERS)]
        self.engagements, self.responses = list(me["engagements"]), list(me["responses"])
        page = self.client.get("/auth/login", name="sign in (page)")
        form = find_form(page.text, "/auth/login") or find_form(page.text, "")
        data = fill(form, email=me["email"], password=me["password"])
        with self.client.post("/auth/login", data=data, name="sign in", allow_redirects=False,
                              catch_response=True) as response:
            if response.status_code != 302:
                response.failure(f"sign-in answered {response.status_code}")
        if next(_signed_in) >= len(USERS):  # the last analyst is in: the steady state begins
            _phase[0] = "steady"
        if os.environ.get("LOAD_EVERY_WRITE") == "1":  # the smoke: each kind of write once per user, whatever chance does
            self.log_interaction()
            self.move_stage()
            self.score_response()

    @task(3)
    def dashboard(self):
        self.client.get("/", name="dashboard")

    @task(2)
    def engagements_filtered(self):
        stage = random.choice(["acknowledged", "mapping_requested", "value_chain_mapped"])
        self.client.get(f"/engagements?stage={stage}", name="engagements, filtered")

    @task(1)
    def engagements_by_follow_up(self):
        self.client.get("/engagements?sort=next_follow_up", name="engagements, by next follow-up")

    @task(2)
    def companies_filtered(self):
        self.client.get("/companies?sector=Energy&source=us_entity_list", name="companies, filtered")

    @task(1)
    def reminders(self):
        self.client.get("/reminders", name="reminders")

    @task(3)
    def engagement_page(self):
        self.client.get(f"/engagements/{random.choice(self.engagements)}", name="engagement page")

    def _post_form(self, page_url: str, action_suffix: str, name: str, expect: str, **overrides):
        page = self.client.get(page_url, name=f"{name} (form)")
        form = find_form(page.text, action_suffix)
        if form is None:
            return None
        data = fill(form, choose=overrides.pop("choose", None), **overrides)
        with self.client.post(form["action"], data=data, name=name, allow_redirects=False,
                              catch_response=True) as response:
            if response.status_code == 302 and expect in response.headers.get("Location", ""):
                return True
            if response.status_code == 409:
                confirmed("conflicts")
                response.success()  # optimistic locking did its job: counted apart, not an error
                return False
            said = re.findall(r'<li>([^<]{1,200})</li>', response.text.split('role="alert"', 1)[-1])[:3]
            response.failure(f"{name}: {response.status_code} {'; '.join(said)}")
            return False

    @task(1)
    def log_interaction(self):
        engagement = random.choice(self.engagements)
        if self._post_form(f"/engagements/{engagement}", f"/engagements/{engagement}/interactions",
                           "log an interaction", "#timeline", kind="note", direction="internal", move_to="",
                           subject=f"{SUBJECT} {uuid.uuid4().hex[:12]}"):
            confirmed("interactions")

    @task(1)
    def move_stage(self):
        engagement = random.choice(self.engagements)

        def forward(name, options):  # not closing (that needs an outcome) and not a step back
            if name != "target":
                return None
            return next((o for o in options if o != "closed" and not o.startswith("back")), None)

        if self._post_form(f"/engagements/{engagement}", f"/engagements/{engagement}/stage", "move a stage",
                           f"/engagements/{engagement}", choose=forward, evidence_url=""):
            confirmed("stage_moves")

    @task(1)
    def score_response(self):
        if not self.responses:
            return
        interaction = self.responses.pop()
        if self._post_form(f"/scoring/interactions/{interaction}", f"/scoring/interactions/{interaction}",
                           "score a response", "/scoring/scores/"):
            confirmed("scores")
