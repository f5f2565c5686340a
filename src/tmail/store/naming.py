"""
Folder names: validation, modified UTF-7 (RFC 3501 5.1.3) and the Maildir++
mapping between IMAP names (C{Archive/2025}) and directories
(C{.Archive.2025}).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from tmail.errors import InvalidFolderName

INBOX = "INBOX"
DELIMITER = "/"

#: The longest directory entry most filesystems accept, in bytes.
MAX_ENTRY_BYTES = 255

_BASE64_CHUNK = re.compile(r"[A-Za-z0-9+,]*")


def _isPrintableAscii(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encodeMUTF7(text: str) -> str:
    """
    Encode C{text} as modified UTF-7: printable ASCII stays as is (C{&}
    becomes C{&-}); other runs become C{&<base64 of UTF-16BE>-} with C{,}
    for C{/} and no padding.  Raises C{ValueError} for lone surrogates.
    """
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            try:
                raw = "".join(pending).encode("utf-16-be")
            except UnicodeEncodeError as e:
                raise ValueError(f"cannot encode {text!r}: {e.reason}") from e
            encoded = base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")
            out.append("&" + encoded.decode("ascii") + "-")
            pending.clear()

    for ch in text:
        if _isPrintableAscii(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decodeMUTF7(text: str) -> str:
    """
    Decode modified UTF-7.  Only the canonical encoding is accepted (what
    L{encodeMUTF7} produces), so every name has exactly one spelling on
    disk; anything else raises C{ValueError}.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if not _isPrintableAscii(ch):
            raise ValueError(f"{text!r}: character {ch!r} is not printable ASCII")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError(f"{text!r}: unterminated '&' sequence")
        chunk = text[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if not _BASE64_CHUNK.fullmatch(chunk) or len(chunk) % 4 == 1:
            raise ValueError(f"{text!r}: bad base64 in '&' sequence")
        b64 = chunk.replace(",", "/")
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except binascii.Error as e:
            raise ValueError(f"{text!r}: bad base64 in '&' sequence") from e
        if len(raw) % 2:
            raise ValueError(f"{text!r}: odd number of UTF-16 bytes")
        out.append(raw.decode("utf-16-be"))
    result = "".join(out)
    if encodeMUTF7(result) != text:
        raise ValueError(f"{text!r} is not canonical modified UTF-7")
    return result


def normalizeName(name: str) -> str:
    """
    Check an IMAP folder name and return its canonical form (C{INBOX} in
    upper case as first component; everything else is case-sensitive).

    Raises L{InvalidFolderName} for: an empty name or component (C{a//b},
    trailing C{/}), a leading C{/}, C{.} or C{..} components, any C{.} in a
    component (Maildir++ uses it as its own separator, so it cannot be
    represented), control characters or lone surrogates, and names whose
    directory entry would exceed 255 bytes.
    """
    if not name:
        raise InvalidFolderName("empty folder name")
    if name.startswith(DELIMITER):
        raise InvalidFolderName(f"{name!r}: folder names must not start with {DELIMITER!r}")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise InvalidFolderName(f"{name!r}: control characters are not allowed")
    components = name.split(DELIMITER)
    for component in components:
        if not component:
            raise InvalidFolderName(f"{name!r}: empty hierarchy level")
        if component in (".", ".."):
            raise InvalidFolderName(f"{name!r}: {component!r} is not a folder name")
        if "." in component:
            raise InvalidFolderName(
                f"{name!r}: '.' cannot be used in folder names of a Maildir++ store"
            )
    if components[0].upper() == INBOX:
        components[0] = INBOX
    canonical = DELIMITER.join(components)
    if canonical != INBOX:
        entry = diskName(canonical)
        if len(entry.encode("ascii")) > MAX_ENTRY_BYTES:
            raise InvalidFolderName(f"{name!r}: name is too long")
    return canonical


def diskName(name: str) -> str:
    """
    The Maildir++ directory entry of a canonical non-INBOX folder name:
    C{Archive/Entwürfe} -> C{.Archive.Entw&APw-rfe}.
    """
    return "." + ".".join(encodeMUTF7(c) for c in name.split(DELIMITER))


def nameFromDisk(entry: str) -> str | None:
    """
    The IMAP name of Maildir++ directory entry C{entry}, or C{None} when the
    entry is not a folder this store could have written (not starting with
    one C{.}, bad encoding, non-canonical spelling, C{.INBOX}).
    """
    if not entry.startswith(".") or entry.startswith(".."):
        return None
    try:
        name = DELIMITER.join(decodeMUTF7(c) for c in entry[1:].split("."))
        canonical = normalizeName(name)
    except (ValueError, InvalidFolderName):
        return None
    if canonical == INBOX or diskName(canonical) != entry:
        return None
    return canonical
