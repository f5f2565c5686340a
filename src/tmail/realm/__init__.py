"""Realms: map users and recipient addresses to their stores."""

from tmail.realm.base import MailRealm
from tmail.realm.maildir import MaildirRealm
from tmail.realm.virtual import VirtualDomainRealm

__all__ = ["MailRealm", "MaildirRealm", "VirtualDomainRealm"]
