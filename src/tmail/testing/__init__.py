"""
Contract tests for tmail's extension points, as test mixins: a developer
who writes a store, a realm or a user directory mixes them into a
L{twisted.trial.unittest.TestCase}, defines the one factory method each
asks for, and gets every behaviour the SMTP, IMAP and POP3 front ends rely
on checked (as Twisted's C{twisted.internet.testing} serves transports).

    - L{MailStoreTestsMixin} and L{MailFolderTestsMixin}: C{makeStore()}
      (and C{makeLimitedStore(limits)} for quotas);
    - L{MailRealmTestsMixin}: C{makeRealm(directory)};
    - L{UserDirectoryTestsMixin}: C{makeDirectory(users, aliases)};
    - L{tmail.testing.stateful.FolderModelTestsMixin} and
      L{tmail.testing.stateful.StoreModelTestsMixin}: C{makeStore()};
      Hypothesis drives a folder, or the folders of a store, through
      random sequences of changes against a model (imported on their own:
      they need C{hypothesis}).

Every store and folder call goes through C{maybeDeferred}, so the mixins
hold for a store that answers at once and for one that answers with
Deferreds; only the tests that the disk and network operations answer with
Deferreds, as the store seam's interfaces say, are skipped for a store that
answers at once (a test case sets C{answersAtOnce}).  Tests of an
optional interface are skipped, with the reason, when the object under
test does not provide it.
"""

from tmail.testing.calls import MESSAGE, call, deliver, read, requireProvider, verifyProvided
from tmail.testing.directory import UserDirectoryTestsMixin, passwdFileDirectory
from tmail.testing.folder import MailFolderTestsMixin
from tmail.testing.realm import MailRealmTestsMixin
from tmail.testing.store import MailStoreTestsMixin

__all__ = [
    "MESSAGE",
    "MailFolderTestsMixin",
    "MailRealmTestsMixin",
    "MailStoreTestsMixin",
    "UserDirectoryTestsMixin",
    "call",
    "deliver",
    "passwdFileDirectory",
    "read",
    "requireProvider",
    "verifyProvided",
]
