"""A real IMAP server for tests: Debian's Dovecot 2.3 on a free loopback port, in a temp dir.

One config file: its own base_dir and state_dir, a passwd-file passdb with one user, a static
userdb, Maildir storage, an `inet_listener imap` on the free port, no chroot for the login and
anvil services (so it runs outside /var/run/dovecot), plain text authentication without TLS
(loopback only), and a log file. Dovecot must start as root; the mail itself belongs to
`nobody`. Messages are delivered with IMAP APPEND, as a mail server would put them in a folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = os.environ.get("ENGAGE_DOVECOT", "/usr/sbin/dovecot")
USER = "engage-mailbox"
PASSWORD = "mailbox secret 2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dovecot_missing() -> str | None:
    """Why the IMAP tests cannot run here, or None."""
    if not Path(DOVECOT).exists():
        return f"Dovecot is not installed at {DOVECOT} (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "Dovecot must be started as root (run the tests as root, as .ci/run does)"
    return None


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = engage-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


class DovecotServer:
    """Start, stop and restart Dovecot on one port (to simulate the mailbox server being down)."""

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="engage-dovecot-"))
        self.root.chmod(0o755)  # the mail processes run as nobody and must reach the Maildir
        self.uid, self.gid = 65534, 65534
        for name in ("run", "state", "mail", "home"):
            (self.root / name).mkdir()
        for name in ("mail", "home"):
            os.chown(self.root / name, self.uid, self.gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.config = self.root / "dovecot.conf"
        self.config.write_text(CONFIG.format(root=self.root, port=self.port, uid=self.uid, gid=self.gid))
        self.process: subprocess.Popen | None = None

    @property
    def settings(self) -> dict:
        """App settings that point the mailbox fetcher at this server."""
        return {"IMAP_HOST": "127.0.0.1", "IMAP_PORT": self.port, "IMAP_USER": USER, "IMAP_PASSWORD": PASSWORD,
                "IMAP_FOLDER": "INBOX", "IMAP_SECURITY": "none"}

    def start(self) -> None:
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Dovecot did not start: {self.process.stderr.read().decode()} {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    if conn.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"Dovecot did not answer on port {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until the port is closed for good
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.05)
            except OSError:
                return

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self):
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def empty_inbox(self) -> None:
        """Running (again, if a test stopped it and failed before starting it), with an empty INBOX."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        with self.client() as client:
            client.select_folder("INBOX")
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()

    def deliver(self, *messages: bytes, folder: str = "INBOX") -> None:
        """Put messages in the mailbox with IMAP APPEND (unread, as newly delivered mail)."""
        with self.client() as client:
            for raw in messages:
                client.append(folder, raw, flags=())

    def flags(self, folder: str = "INBOX") -> dict[int, tuple]:
        """Each message's flags by UID."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            return {uid: data[b"FLAGS"] for uid, data in client.fetch(uids, ["FLAGS"]).items()} if uids else {}
