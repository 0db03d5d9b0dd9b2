"""Names derived from a blob version: its Batch task id, its MP3's name, and input validation.

Task id = readable prefix of the blob name + "-" + lowercase hash of (name, ETag).
- Batch ids allow letters, digits, "-" and "_", at most 64 characters, and are unique
  case-insensitively within a job; the hash is lowercase base32 over the exact (case-sensitive)
  name, so names differing only in case still get ids that differ case-insensitively.
- Deterministic: a duplicate trigger of the same blob version maps to the same id (the service
  answers TaskExists), a re-upload (new ETag) maps to a new id.
- The readable prefix leads so a person can find a file's ledger row (RowKey = task id) by
  typing the start of its name in Storage Explorer.
"""
from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass

MAX_TASK_ID = 64
HASH_CHARS = 16  # 80 bits of base32: collisions are negligible at any realistic volume
PREFIX_CHARS = MAX_TASK_ID - HASH_CHARS - 1
# Azure Blob Storage's limit, counted as the service counts: UTF-16 code units ("😀" is two, "長" one),
# https://github.com/Azure/azure-storage-cpp/issues/291 (512 emoji fit, 513 get 400 OutOfRangeInput).
MAX_BLOB_NAME = 1024
INPUT_EXTENSION = ".mp4"
OUTPUT_EXTENSION = ".mp3"

_ILLEGAL_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def normalize_etag(etag: str) -> str:
    """The ETag's opaque value: Get Blob Properties returns it quoted ('"0x8D…"'), List Blobs
    and some event payloads unquoted; ids must not depend on which path saw the blob."""
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def task_id(blob_name: str, etag: str) -> str:
    digest = hashlib.sha256(f"{blob_name}\x00{normalize_etag(etag)}".encode("utf-8", "surrogatepass")).digest()
    suffix = base64.b32encode(digest).decode("ascii").lower()[:HASH_CHARS]
    return f"{readable_prefix(blob_name)}-{suffix}"


def name_key(container: str, blob_name: str) -> str:
    """A table key for a blob by name alone (any version): readable prefix + hash of container and name."""
    digest = hashlib.sha256(f"{container}/{blob_name}".encode("utf-8", "surrogatepass")).digest()
    return f"{readable_prefix(blob_name)}-{base64.b32encode(digest).decode('ascii').lower()[:HASH_CHARS]}"


def readable_prefix(blob_name: str) -> str:
    """An ASCII, Batch-legal rendering of the name without its last extension (ü -> u, '/' -> '_')."""
    stem = _strip_last_extension(blob_name)
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    cleaned = _ILLEGAL_ID_CHARS.sub("_", ascii_text).strip("_-")
    cleaned = cleaned[:PREFIX_CHARS].rstrip("_-")
    return cleaned or "blob"


def is_mp4(blob_name: str) -> bool:
    """True when the last path segment has a non-empty stem and the extension .mp4 (any case)."""
    leaf = blob_name.rsplit("/", 1)[-1]
    return len(leaf) > len(INPUT_EXTENSION) and leaf.lower().endswith(INPUT_EXTENSION)


def not_mp4_reason(blob_name: str) -> str:
    """Why a name is not work, in the words a person needs when the name looks like an MP4 at a glance."""
    leaf = blob_name.rsplit("/", 1)[-1]
    if leaf.lower() == INPUT_EXTENSION:
        return "not an .mp4 file: the name is only the extension (a hidden file, nothing before '.mp4')"
    if leaf.rstrip().lower().endswith(INPUT_EXTENSION) and leaf.rstrip() != leaf:
        return "not an .mp4 file: the name ends with spaces after '.mp4'"
    return "not an .mp4 file"


def output_name(blob_name: str) -> str:
    """`a/b/clip.MP4` -> `a/b/clip.mp3`: only the last extension is replaced, folders kept."""
    if not is_mp4(blob_name):
        raise ValueError("not an .mp4 blob name")
    return blob_name[: -len(INPUT_EXTENSION)] + OUTPUT_EXTENSION


def _strip_last_extension(blob_name: str) -> str:
    head, sep, leaf = blob_name.rpartition("/")
    dot = leaf.rfind(".")
    if dot > 0:
        leaf = leaf[:dot]
    return head + sep + leaf


# Characters that make a name display as something else: bidirectional embeddings, overrides, isolates and
# marks (a name can read "clip_mp4.exe" backwards), and line/paragraph separators (a log line that looks
# like two). Other format characters (ZWJ in emoji, soft hyphens) are harmless and kept.
_DISGUISING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _unsafe_char(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in "\ufffe\uffff" or ch in _DISGUISING


def printable_name(blob_name: str) -> str:
    """The name for logs and the ledger: unchanged unless it holds control or invalid characters,
    which are backslash-escaped (a lone surrogate cannot even be encoded as UTF-8)."""
    if not any(_unsafe_char(ch) for ch in blob_name):
        return blob_name
    return "".join(ch.encode("unicode_escape").decode("ascii") if _unsafe_char(ch) else ch for ch in blob_name)


def utf16_length(text: str) -> int:
    """Length as .NET and JavaScript count it (and so Azure Storage and Azurite): characters outside the
    Basic Multilingual Plane count twice."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


@dataclass(frozen=True)
class NameProblem:
    """Why a blob name cannot be processed safely (the ledger's `Reason`)."""

    reason: str


def name_problem(blob_name: str) -> NameProblem | None:
    """Names the pipeline refuses, or None. Spaces, unicode and shell metacharacters are fine:
    the name never reaches a shell (resource/output files use fixed local names)."""
    if not blob_name:
        return NameProblem("empty blob name")
    if utf16_length(blob_name) > MAX_BLOB_NAME:
        return NameProblem(f"blob name longer than {MAX_BLOB_NAME} characters (UTF-16 code units, "
                           "as Azure Storage counts them)")
    if any(unicodedata.category(ch) in ("Zl", "Zp") or ch in _DISGUISING for ch in blob_name):
        return NameProblem("blob name contains bidirectional-text or line-separator characters "
                           "(they make a name display as another)")
    if any(_unsafe_char(ch) for ch in blob_name):
        return NameProblem("blob name contains control or invalid unicode characters")
    segments = blob_name.split("/")
    if any(seg in (".", "..") for seg in segments):
        # HTTP clients and servers collapse dot segments: the URL would name another blob.
        return NameProblem("blob name contains a '.' or '..' path segment")
    if any(seg == "" for seg in segments):
        return NameProblem("blob name has an empty path segment (leading, trailing or '//')")
    return None
