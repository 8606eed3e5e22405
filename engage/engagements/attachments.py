"""Attachments stored on disk under instance/attachments, never under a name the user chose."""

from __future__ import annotations

import hashlib
import mimetypes
import uuid
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

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


def _extension(filename: str) -> str:
    return filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


def check_upload(upload: FileStorage) -> tuple[str, bytes]:
    """Read and vet one upload: allowed type, content matching the type, within the size limit."""
    original = upload.filename or ""
    filename = secure_filename(original) or "attachment"
    extension = _extension(filename)
    if extension not in ALLOWED_TYPES:
        allowed = ", ".join(sorted(ALLOWED_TYPES))
        raise AttachmentError(f"{original}: files of type .{extension or '?'} are not accepted (allowed: {allowed}).")
    limit = current_app.config["ATTACHMENT_MAX_BYTES"]
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise AttachmentError(f"{original}: larger than the {limit // (1024 * 1024)} MB limit for attachments.")
    if not data:
        raise AttachmentError(f"{original}: the file is empty.")
    signatures = ALLOWED_TYPES[extension]
    if signatures is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AttachmentError(f"{original}: not a UTF-8 text file, as a .{extension} file should be.") from exc
    elif not any(data.startswith(sig) for sig in signatures):
        raise AttachmentError(f"{original}: the content is not a .{extension} file.")
    return filename, data


def store(filename: str, data: bytes) -> StoredFile:
    """Write the bytes under a random name; the caller deletes the file if its transaction fails."""
    stored_name = f"{uuid.uuid4().hex}.{_extension(filename)}"
    path = attachment_dir() / stored_name
    path.write_bytes(data)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return StoredFile(filename=filename[:255], stored_name=stored_name, content_type=content_type,
                      size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def path_of(stored_name: str) -> Path:
    return attachment_dir() / stored_name
