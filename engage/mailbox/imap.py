"""The IMAP side of the mailbox (imapclient): connect, list what is not yet filed, read, flag.

A message is "not yet filed" while it lacks the keyword `$EngageFiled`; Engage adds that keyword
(and \\Seen) only after the message's row is committed. Reading uses BODY.PEEK, which leaves the
flags alone, so a message read by a fetcher that then dies is read again by the next one.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from contextlib import contextmanager
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from engage.mailbox.settings import port_of

#: The keyword that marks a message Engage has committed (filed, triaged or a duplicate).
FILED_KEYWORD = b"$EngageFiled"
SEEN = b"\\Seen"
#: Messages asked for per FETCH of sizes.
SIZE_BATCH = 500


class MailboxUnavailable(Exception):
    """The IMAP server could not be reached, refused the login, or dropped the connection."""


@dataclass
class Folder:
    name: str
    uidvalidity: int


class Mailbox:
    """One IMAP session on the configured folder."""

    def __init__(self, client: IMAPClient, folder: Folder):
        self.client = client
        self.folder = folder

    def unfiled(self) -> list[int]:
        with errors("searching"):
            return sorted(self.client.search(["UNKEYWORD", FILED_KEYWORD.decode()]))

    def sizes(self, uids: list[int]) -> dict[int, int]:
        found = {}
        with errors("reading message sizes"):
            for start in range(0, len(uids), SIZE_BATCH):
                for uid, data in self.client.fetch(uids[start:start + SIZE_BATCH], ["RFC822.SIZE"]).items():
                    found[uid] = int(data.get(b"RFC822.SIZE") or 0)
        return found

    def read(self, uid: int, header_only: bool = False) -> bytes | None:
        """The message's bytes (or only its header), without marking it seen; None if it is gone."""
        item, key = ("BODY.PEEK[HEADER]", b"BODY[HEADER]") if header_only else ("BODY.PEEK[]", b"BODY[]")
        with errors(f"reading message {uid}"):
            data = self.client.fetch([uid], [item]).get(uid)
        if not data:
            return None
        return data.get(key) or b""

    def mark_filed(self, uids: list[int]) -> None:
        if uids:
            with errors("flagging filed messages"):
                self.client.add_flags(uids, [SEEN, FILED_KEYWORD], silent=True)


@contextmanager
def errors(doing: str):
    """Turn every way the server or the network can fail into MailboxUnavailable."""
    try:
        yield
    except LoginError as exc:
        raise MailboxUnavailable(f"the IMAP server refused the login: {_text(exc)}") from exc
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        raise MailboxUnavailable(f"IMAP error while {doing}: {_text(exc)}") from exc
    except (OSError, EOFError) as exc:  # refused, reset, timed out, TLS failures (ssl.SSLError is an OSError)
        raise MailboxUnavailable(f"IMAP connection failed while {doing}: {_text(exc) or type(exc).__name__}") from exc


def _text(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    return " ".join(text.split())[:300]


@contextmanager
def connect(config):
    """An open session on IMAP_FOLDER, logged out on leaving the block."""
    host, port = config["IMAP_HOST"].strip(), port_of(config)
    security = config["IMAP_SECURITY"]
    where = f"{host}:{port} ({security})"
    context = ssl.create_default_context()
    with errors(f"connecting to {where}"):
        client = IMAPClient(host, port=port, ssl=security == "ssl", ssl_context=context,
                            timeout=config["IMAP_TIMEOUT_SECONDS"])
    try:
        with errors(f"logging in to {where}"):
            if security == "starttls":
                client.starttls(context)
            client.login(config["IMAP_USER"], config["IMAP_PASSWORD"])
        folder_name = config["IMAP_FOLDER"]
        with errors(f"opening folder {folder_name!r}"):
            info = client.select_folder(folder_name)
        flags = info.get(b"PERMANENTFLAGS") or ()
        if b"\\*" not in flags and FILED_KEYWORD not in flags:
            raise MailboxUnavailable(f"the folder {folder_name!r} does not accept the keyword "
                                     f"{FILED_KEYWORD.decode()}, which marks filed messages")
        yield Mailbox(client, Folder(folder_name, int(info[b"UIDVALIDITY"])))
    finally:
        try:
            client.logout()
        except (IMAPClientError, imaplib.IMAP4.error, OSError, EOFError, socket.timeout):
            pass
