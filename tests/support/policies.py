"""SMTP policies that tests name in configuration files (C{class = "support.policies:X"})."""

from __future__ import annotations

from collections.abc import Sequence

from tmail.smtp.policy import Answer, Policy, PolicyContext, accept, reject


class Stamp(Policy):
    """Adds C{X-Stamp: <text>} to every message, and rejects the senders in C{refuse}."""

    def __init__(self, text: str = "stamped", refuse: Sequence[str] = ()) -> None:
        if not isinstance(text, str) or not text.isprintable():
            raise ValueError("text must be printable")
        self.text = text
        self.refuse = frozenset(refuse)

    def mail(self, context: PolicyContext) -> Answer:
        if context.sender in self.refuse:
            return reject(f"{context.sender} is refused by the stamp policy")
        return None

    def data(self, context: PolicyContext) -> Answer:
        return accept(("X-Stamp", self.text))


class NotAPolicy:
    """A class that does not provide ISMTPPolicy."""
