"""Mailbox settings are checked at start-up; the scheduler reads the mailbox only when it is set."""

from __future__ import annotations

import pytest

from config import Config, ProductionConfig, TestConfig
from engage import create_app
from engage.jobs import jobs
from engage.mailbox.parsing import decode_bytes, html_to_text

KEY = "x7Rq2mK9vLp4Wz8NcT3bYh6Jd1Fs5GaE0uQiOkXe"
MAILBOX = {"IMAP_HOST": "imap.example.org", "IMAP_USER": "engage", "ENGAGE_MAILBOX_ADDRESS": "engage@example.org"}


@pytest.mark.parametrize("overrides, message", [
    ({"IMAP_SECURITY": "tls"}, "IMAP_SECURITY must be one of ssl, starttls, none, not 'tls'"),
    ({"IMAP_PORT": 70000}, "IMAP_PORT must be a port number"),
    ({"MAIL_FETCH_MINUTES": 0}, "MAIL_FETCH_MINUTES must be a whole number of minutes, at least 1"),
    ({"MAIL_MAX_BYTES": 10}, "MAIL_MAX_BYTES must be at least 65536 bytes"),
    ({**MAILBOX, "IMAP_USER": ""}, "IMAP_USER must be set when IMAP_HOST is"),
    ({**MAILBOX, "ENGAGE_MAILBOX_ADDRESS": ""}, "ENGAGE_MAILBOX_ADDRESS must be set when IMAP_HOST is"),
    ({"ENGAGE_MAILBOX_ADDRESS": "not an address"}, "ENGAGE_MAILBOX_ADDRESS must be an email address"),
])
def test_broken_mailbox_settings_stop_start_up(overrides, message):
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(")):
        create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://", **overrides})


def test_plain_text_imap_is_refused_in_production_except_to_loopback():
    production = {"SECRET_KEY": KEY, "SQLALCHEMY_DATABASE_URI": "sqlite://", **MAILBOX, "IMAP_SECURITY": "none"}
    with pytest.raises(RuntimeError, match="only to a loopback host, not 'imap.example.org'; use ssl or starttls"):
        create_app(ProductionConfig, overrides=production)
    create_app(ProductionConfig, overrides={**production, "IMAP_HOST": "127.0.0.1"})
    create_app(Config, overrides={**production, "SECRET_KEY": "dev"})  # development may read a test server


def test_the_scheduler_reads_the_mailbox_every_mail_fetch_minutes_only_when_configured():
    off = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert "mail-fetch" not in [job.id for job in jobs(off)]
    on = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://", **MAILBOX, "MAIL_FETCH_MINUTES": 7})
    [job] = [job for job in jobs(on) if job.id == "mail-fetch"]
    assert job.trigger_args == {"minutes": 7}


def test_mail_fetch_without_a_mailbox_says_so(runner):
    result = runner.invoke(args=["mail", "fetch"])
    assert result.exit_code == 1 and "IMAP_HOST is not set" in result.output


def test_charsets_and_html_are_read_as_text():
    assert decode_bytes("供应链：镕".encode("gb18030"), "gb2312") == ("供应链：镕", True)
    assert decode_bytes("謝謝您的來信".encode("big5"), None) == ("謝謝您的來信", True)
    assert decode_bytes(b"\xff\xfe\x80", "utf-8")[1] is False
    text = html_to_text('<p>A &lt;b&gt; &amp; B</p><script>x()</script><img src="http://t.example/p.png"><ul><li>one</li></ul>')
    assert text == "A <b> & B\n\n- one"
