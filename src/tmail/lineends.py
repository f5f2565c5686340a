"""Turning the bare LF line ends some clients send into the CRLF a store keeps."""

from __future__ import annotations

import re
from collections.abc import Callable

_BARE_LF = re.compile(rb"(?<!\r)\n")


class CRLFWriter:
    """
    Passes bytes on to C{write} with every LF that has no CR before it
    turned into CRLF, also when the CR and the LF arrive in different
    chunks.  A lone CR is passed on as it is.
    """

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._afterCR = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if b"\n" in data:
            fixed = _BARE_LF.sub(b"\r\n", data)
            if self._afterCR and data[:1] == b"\n":
                fixed = fixed[1:]
            data = fixed
        self._afterCR = data[-1:] == b"\r"
        self._write(data)
