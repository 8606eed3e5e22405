"""Reading one message as hostile input: headers, plain text, attachments, and what is wrong.

Nothing here renders or fetches anything. HTML is never kept as HTML: when a message has no
plain-text part, its HTML is sanitised by nh3 down to a few block tags (scripts, styles and
remote images dropped with their content) and turned into text. Text in any declared charset
is decoded, with GB2312/GBK read as their superset GB18030 and Big5 as Big5-HKSCS; undeclared
8-bit text is read as UTF-8, or else as GB18030 or Big5, whichever charset-normalizer finds reads
as language (the same bytes are often valid in both). A problem that makes the message unsafe to file
by itself (no Message-ID, broken MIME structure, undecodable text, an automatic reply) is
listed in `problems`: such a message goes to triage with that reason.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email
import email.errors
import html
import re
import unicodedata
from dataclasses import dataclass, field
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

import charset_normalizer
import nh3
from email_reply_parser import EmailReplyParser

#: Charsets read as a superset that real mailers fill with characters of the larger set.
CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "euc-cn": "gb18030",
    "big5": "big5hkscs", "x-big5": "big5hkscs", "cp950": "big5hkscs",
    "us-ascii": "utf-8", "ascii": "utf-8",  # mislabelled 8-bit text is common; UTF-8 reads ASCII the same
}
#: Tried in order for text whose charset is missing, unknown or wrong.
FALLBACK_CHARSETS = ("utf-8", "gb18030", "big5hkscs")
#: What the detector chooses from for undeclared 8-bit text.
DETECTED_CHARSETS = ("gb18030", "big5")
#: MIME defects that mean the structure cannot be trusted (the message goes to triage).
SERIOUS_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.InvalidMultipartContentTransferEncodingDefect,
    email.errors.MissingHeaderBodySeparatorDefect,
)
#: Longest text kept from a message (the whole message stays in its .eml).
MAX_TEXT = 100_000
SNIPPET = 400
BLOCK_TAGS = {"p", "br", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr"}
DROPPED_WITH_CONTENT = {"script", "style", "head", "title", "template", "noscript", "blockquote", "iframe",
                        "object", "svg", "math", "textarea", "select"}
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")


@dataclass
class MailAttachment:
    filename: str
    data: bytes


@dataclass
class ParsedMessage:
    message_id: str | None = None
    from_address: str = ""
    from_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    sent_at: dt.datetime | None = None
    #: Message-IDs named by In-Reply-To, then References (most recent first).
    replied_to: list[str] = field(default_factory=list)
    text: str = ""
    attachments: list[MailAttachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def new_text(self) -> str:
        """The text without the quoted message it replies to (email-reply-parser)."""
        try:
            reply = EmailReplyParser.parse_reply(self.text)
        except Exception:  # a library bug on odd text must not lose the message: keep it all
            reply = self.text
        return (reply or self.text).strip()

    @property
    def snippet(self) -> str:
        return " ".join(self.new_text.split())[:SNIPPET]


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, bool]:
    """Text from bytes in `declared` or the likely charset; False when nothing decodes them cleanly."""
    candidates = []
    name = (declared or "").strip().strip('"').lower()
    if name:
        name = CHARSET_ALIASES.get(name, name)
        try:
            candidates.append(codecs.lookup(name).name)
        except LookupError:
            pass
    try:
        return data.decode(candidates[0] if candidates else "utf-8"), True
    except (UnicodeDecodeError, LookupError, IndexError):
        pass
    if "utf-8" not in candidates[:1]:
        try:
            return data.decode("utf-8"), True
        except UnicodeDecodeError:
            pass
    # Undeclared or wrong charset: the same bytes are often valid GB18030 *and* Big5, so let a
    # detector (charset-normalizer) choose between the two by which reads as language.
    best = charset_normalizer.from_bytes(data, cp_isolation=list(DETECTED_CHARSETS)).best()
    if best is not None:
        return str(best), True
    candidates += [c for c in FALLBACK_CHARSETS if c not in candidates]
    for charset in candidates:
        try:
            return data.decode(charset), True
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode(candidates[0] if candidates else "utf-8", "replace"), False


def clean_line(text: str, limit: int) -> str:
    """One line of display text: no control or format characters, spaces collapsed, capped."""
    text = "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") else " " for ch in text)
    return " ".join(text.split())[:limit]


def clean_text(text: str) -> str:
    """Multi-line text: newlines kept, other control and bidi-override characters removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    return re.sub(r"\n{3,}", "\n\n", text)[:MAX_TEXT]


def header_text(value) -> tuple[str, bool]:
    """A header decoded: RFC 2047 encoded words and raw 8-bit bytes in any charset."""
    if value is None:
        return "", True
    if isinstance(value, email.header.Header):
        value = str(value)
    ok = True
    pieces = []
    try:
        parts = decode_header(str(value))
    except (email.errors.HeaderParseError, ValueError, LookupError):
        parts = [(str(value), None)]
    for chunk, charset in parts:
        if isinstance(chunk, str):
            raw = chunk.encode("ascii", "surrogateescape") if any(0xDC80 <= ord(c) <= 0xDCFF for c in chunk) else None
            if raw is None:
                pieces.append(chunk)
                continue
            chunk = raw
        text, clean = decode_bytes(chunk, charset)
        ok = ok and clean
        pieces.append(text)
    return "".join(pieces), ok


def html_to_text(markup: str) -> str:
    """Plain text from HTML: sanitised first (nothing active or remote survives), then tags dropped."""
    cleaned = nh3.clean(markup, tags=BLOCK_TAGS, clean_content_tags=DROPPED_WITH_CONTENT, attributes={},
                        link_rel=None, strip_comments=True)
    cleaned = re.sub(r"<(br|hr)\s*/?>", "\n", cleaned)
    cleaned = re.sub(r"<li>", "\n- ", cleaned)
    cleaned = re.sub(r"</(p|div|li|tr|h[1-6]|pre)>", "\n", cleaned)
    cleaned = re.sub(r"</t[dh]>", " ", cleaned)
    cleaned = re.sub(r"<[^>]*>", "", cleaned)
    text = html.unescape(cleaned)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _addresses(message: Message, name: str) -> list[str]:
    values = [header_text(v)[0] for v in message.get_all(name, [])]
    found = []
    for _display, address in getaddresses(values):
        address = address.strip().lower()
        if "@" in address and address not in found and len(address) <= 254:
            found.append(address)
    return found


def _message_ids(value: str) -> list[str]:
    return _MESSAGE_ID.findall(value or "")


def _part_text(part: Message, problems: list[str]) -> str:
    payload = part.get_payload(decode=True) or b""
    text, ok = decode_bytes(payload, part.get_content_charset())
    if not ok:
        problems.append(f"undecodable bytes in the {part.get_content_type()} text "
                        f"(charset {part.get_content_charset() or 'not declared'})")
    return text


def _attachment_name(part: Message, index: int) -> str:
    raw = part.get_filename()
    if raw:
        name, _ok = header_text(raw)  # some mailers put RFC 2047 words in the file name
    else:
        name = ""
    name = clean_line(name, 255)
    if not name:
        extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg",
                     "text/plain": "txt", "message/rfc822": "eml"}.get(part.get_content_type(), "bin")
        name = f"attachment-{index}.{extension}"
    return name


def parse(raw: bytes, *, header_only: bool = False) -> ParsedMessage:
    """Everything Engage uses from one message; never raises on a malformed message."""
    parsed = ParsedMessage()
    problems = parsed.problems
    try:
        message = email.message_from_bytes(raw)
    except Exception as exc:  # the stdlib parser is lenient, but a hostile message must never stop the run
        problems.append(f"the message could not be parsed ({type(exc).__name__})")
        return parsed

    message_ids = _message_ids(header_text(message.get("Message-ID"))[0])
    if message_ids:
        parsed.message_id = message_ids[0]
    else:
        problems.append("no Message-ID header")
    name, address = parseaddr(header_text(message.get("From"))[0])
    parsed.from_address = address.strip().lower()[:254] if "@" in address else ""
    parsed.from_name = clean_line(name, 200)
    if not parsed.from_address:
        problems.append("no usable From address")
    parsed.to = _addresses(message, "To")
    parsed.cc = _addresses(message, "Cc")
    subject, subject_ok = header_text(message.get("Subject"))
    parsed.subject = clean_line(subject, 300)
    if not subject_ok:
        problems.append("undecodable bytes in the Subject")
    try:
        sent = parsedate_to_datetime(str(message.get("Date"))) if message.get("Date") else None
        if sent is not None and sent.tzinfo is not None:
            sent = sent.astimezone(dt.UTC).replace(tzinfo=None)
        parsed.sent_at = sent
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed.sent_at = None
    replied = _message_ids(header_text(message.get("In-Reply-To"))[0])
    references = _message_ids(header_text(message.get("References"))[0])
    parsed.replied_to = list(dict.fromkeys(replied + list(reversed(references))))

    auto = (message.get("Auto-Submitted") or "").strip().lower()
    if (auto and auto != "no") or message.get("X-Autoreply") or message.get("X-Autorespond") \
            or (message.get("Precedence") or "").strip().lower() in ("auto_reply", "bulk", "junk") \
            or message.get_content_type() == "multipart/report" \
            or parsed.from_address.split("@")[0] in ("mailer-daemon", "postmaster"):
        problems.append("an automatic reply or delivery report")

    defects = list(message.defects)
    for part in message.walk():
        defects += list(getattr(part, "defects", []))
    serious = sorted({type(d).__name__ for d in defects if isinstance(d, SERIOUS_DEFECTS)})
    if serious:
        problems.append("broken MIME structure (" + ", ".join(serious) + ")")
    if header_only:
        return parsed

    plain, markup = [], []
    index = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = (part.get_content_disposition() or "").lower()
        content_type = part.get_content_type()
        if disposition != "attachment" and not part.get_filename() and content_type in ("text/plain", "text/html"):
            (plain if content_type == "text/plain" else markup).append(_part_text(part, problems))
            continue
        if disposition == "attachment" or part.get_filename() or not content_type.startswith(("text/", "multipart/")):
            index += 1
            data = part.get_payload(decode=True)
            if data is None and isinstance(part.get_payload(), list):
                data = part.as_bytes()  # an attached message (message/rfc822)
            parsed.attachments.append(MailAttachment(_attachment_name(part, index), data or b""))
    if plain:
        text = "\n\n".join(plain)
    elif markup:
        text = "\n\n".join(html_to_text(m) for m in markup)
    else:
        text = ""
    parsed.text = clean_text(text).strip()
    return parsed
