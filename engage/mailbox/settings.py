"""Mailbox settings, checked when the app starts so a typo stops start-up with a clear message."""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr

SECURITY_MODES = ("ssl", "starttls", "none")


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def problems(config) -> list[str]:
    """Every problem with the mailbox settings, each naming the variable."""
    found = []
    security = str(config.get("IMAP_SECURITY") or "").strip().lower()
    if security not in SECURITY_MODES:
        found.append(f"IMAP_SECURITY must be one of {', '.join(SECURITY_MODES)}, not {security!r}")
    port = config.get("IMAP_PORT") or 0
    if not isinstance(port, int) or not 0 <= port <= 65535:
        found.append(f"IMAP_PORT must be a port number from 1 to 65535 (0: the usual one), not {port!r}")
    minutes = config.get("MAIL_FETCH_MINUTES")
    if not isinstance(minutes, int) or minutes < 1:
        found.append(f"MAIL_FETCH_MINUTES must be a whole number of minutes, at least 1, not {minutes!r}")
    max_bytes = config.get("MAIL_MAX_BYTES")
    if not isinstance(max_bytes, int) or max_bytes < 64 * 1024:
        found.append(f"MAIL_MAX_BYTES must be at least 65536 bytes, not {max_bytes!r}")
    address = str(config.get("ENGAGE_MAILBOX_ADDRESS") or "").strip()
    if address and "@" not in parseaddr(address)[1]:
        found.append(f"ENGAGE_MAILBOX_ADDRESS must be an email address, not {address!r}")
    host = str(config.get("IMAP_HOST") or "").strip()
    if not host:
        return found  # reading the mailbox is off
    if not str(config.get("IMAP_USER") or "").strip():
        found.append("IMAP_USER must be set when IMAP_HOST is (the engagement mailbox's login)")
    if not str(config.get("IMAP_FOLDER") or "").strip():
        found.append("IMAP_FOLDER must name a folder (default INBOX)")
    if not address:
        found.append("ENGAGE_MAILBOX_ADDRESS must be set when IMAP_HOST is (the engagement mailbox's address)")
    if security == "none" and config.get("PRODUCTION") and not is_loopback(host):
        found.append(f"IMAP_SECURITY=none sends the mailbox password in clear text: in production it is allowed "
                     f"only to a loopback host, not {host!r}; use ssl or starttls")
    return found


def check(app) -> None:
    """Refuse to start with broken mailbox settings (RuntimeError naming each problem)."""
    found = problems(app.config)
    if found:
        raise RuntimeError("; ".join(found))
    app.config["IMAP_SECURITY"] = str(app.config["IMAP_SECURITY"]).strip().lower()


def enabled(config) -> bool:
    return bool(str(config.get("IMAP_HOST") or "").strip())


def port_of(config) -> int:
    return config.get("IMAP_PORT") or (993 if config["IMAP_SECURITY"] == "ssl" else 143)
