"""Schemathesis against the live app: every API operation, generated inputs, a real token.

No answer may be a 5xx, and every answer must match the OpenAPI document (status code, content
type, body schema). Marked `schemathesis`; `.ci/run` runs it with the rest of the suite.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from engage.api import tokens
from engage.extensions import db
from engage.models import Fund, Holding, Interaction, Reminder, RiskFlag
from tests import factories

pytestmark = pytest.mark.schemathesis

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Examples per operation and mode: the whole run stays well under two minutes.
EXAMPLES = 12


def seed(today: dt.date) -> None:
    """One of each resource, with small ids a generated request may hit."""
    engagement = factories.engagement(opened_on=dt.date(2026, 1, 5))
    engagement.company.risk_flags.append(RiskFlag(source="uflpa_entity_list", citation="90 FR 1"))
    db.session.add(Interaction(engagement=engagement, kind="call", occurred_on=dt.date(2026, 2, 1), subject="Call"))
    db.session.add(Reminder(engagement=engagement, due_on=today, reason="Chase"))
    fund = Fund(name="Test Fund")
    db.session.add(Holding(fund=fund, company=engagement.company, as_of=dt.date(2026, 5, 31),
                           market_value=Decimal("1000.00"), weight=Decimal("0.5")))
    db.session.commit()


def test_every_operation_answers_within_the_document(make_app, make_user, frozen_today):
    app = make_app(API_RATE_LIMIT="100000 per minute")
    seed(frozen_today)
    user = make_user("analyst")
    _, secret = tokens.create(user, name="schemathesis", scope="read_write", today=frozen_today, max_days=366,
                              expires_on=frozen_today + dt.timedelta(days=7))
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    seen: dict[str, set] = {}
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case):
                response = case.call(headers=headers)
                seen.setdefault((mode.value, operation.label), set()).add(response.status_code)
                case.validate_response(response, checks=CHECKS, headers=headers)

            exercise()
    # The run reached the views, not only the refusals in front of them.
    positive = set().union(*(codes for (mode, _), codes in seen.items() if mode == "positive"))
    assert {200, 404, 422} <= positive, seen
    assert 401 not in positive and 429 not in positive, seen  # the token was accepted throughout
