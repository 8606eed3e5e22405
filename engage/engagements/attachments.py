"""Attachments stored on disk under instance/attachments, never under a name the user chose.

The user's file name is kept for display and download (any script: 回复函.pdf, Réponse.docx),
cleaned of what could mislead or break (path parts, control and bidirectional-override
characters) and capped at 255 characters; the type comes from that name's extension and is
checked against the content. On disk the file gets a random name with that extension.
"""

from __future__ import annotations

import hashlib
import mimetypes
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from werkzeug.datastructures import FileStorage

#: Allowed extensions and the bytes a real file of that type starts with (None: text).
ALLOWED_TYPES: dict[str, tuple[bytes, ...] | None] = {
    "pdf": (b"%PDF-",),
    "docx": (b"PK\x03\x04",),
    "xlsx": (b"PK\x03\x04",),
    "pptx": (b"PK\x03\x04",),
    "odt": (b"PK\x03\x04",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "msg": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",),
    "doc": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",),
    "txt": None,
    "csv": None,
    "eml": None,
    "md": None,
}


class AttachmentError(ValueError):
    pass


@dataclass
class StoredFile:
    filename: str
    stored_name: str
    content_type: str
    size_bytes: int
    sha256: str
    path: Path


def attachment_dir() -> Path:
    folder = Path(current_app.config.get("ATTACHMENT_DIR") or Path(current_app.instance_path) / "attachments")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: The longest file name kept (the column's size); longer names keep their extension.
MAX_NAME = 255
#: Unicode categories never kept in a name: controls (NUL, newlines), format characters (the
#: right-to-left override that shows "fdp.exe" as "exe.pdf", zero-width joiners), separators
#: of lines and paragraphs, surrogates, private-use and unassigned code points.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def display_name(original: str | None) -> str:
    """The name to show and offer on download: the user's own, minus what could mislead or break."""
    name = unicodedata.normalize("NFC", original or "")
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # a browser may send a whole path
    name = " ".join(name.split()).strip(" .")  # no leading dots (hidden files), no trailing dots or spaces
    if not name:
        return "attachment"
    if len(name) > MAX_NAME:
        extension = _extension(name)
        keep = MAX_NAME - (len(extension) + 1 if extension else 0)
        name = name[:keep].rstrip(" .") + (f".{extension}" if extension else "")
    return name


def _extension(filename: str) -> str:
    """The lower-case ASCII extension of a name ('' if none or not plain letters and digits)."""
    if "." not in filename:
        return ""
    extension = unicodedata.normalize("NFKC", filename.rsplit(".", 1)[-1]).lower()
    return extension if extension.isascii() and extension.isalnum() and len(extension) <= 10 else ""


def check_upload(upload: FileStorage) -> tuple[str, bytes]:
    """Read and vet one upload: allowed type, content matching the type, within the size limit."""
    filename = display_name(upload.filename)
    extension = _extension(filename)
    if extension not in ALLOWED_TYPES:
        allowed = ", ".join(sorted(ALLOWED_TYPES))
        if "." not in filename:
            raise AttachmentError(f"{filename}: the name has no extension such as .pdf (allowed: {allowed}).")
        shown = filename.rsplit(".", 1)[-1][:20]
        raise AttachmentError(f"{filename}: files of type .{shown} are not accepted (allowed: {allowed}).")
    limit = current_app.config["ATTACHMENT_MAX_BYTES"]
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise AttachmentError(f"{filename}: larger than the {limit // (1024 * 1024)} MB limit for attachments.")
    if not data:
        raise AttachmentError(f"{filename}: the file is empty.")
    signatures = ALLOWED_TYPES[extension]
    if signatures is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AttachmentError(f"{filename}: not a UTF-8 text file, as a .{extension} file should be.") from exc
    elif not any(data.startswith(sig) for sig in signatures):
        raise AttachmentError(f"{filename}: the content is not a .{extension} file.")
    return filename, data


def store(filename: str, data: bytes) -> StoredFile:
    """Write the bytes under a random name; the caller deletes the file if its transaction fails."""
    extension = _extension(filename)
    stored_name = f"{uuid.uuid4().hex}.{extension}"
    path = attachment_dir() / stored_name
    path.write_bytes(data)
    content_type = mimetypes.guess_type(f"file.{extension}")[0] or "application/octet-stream"
    return StoredFile(filename=filename[:MAX_NAME], stored_name=stored_name, content_type=content_type,
                      size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def path_of(stored_name: str) -> Path:
    return attachment_dir() / stored_name
