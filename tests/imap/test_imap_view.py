"""A session's view of its folder: the shared listing plus what changed for the session."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.folderstatus import folderStatus
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.view import SessionView
from tmail.interfaces import IMailFolder, MessageInfo
from tmail.store.listing import Listing, factsOf
from tmail.store.maildir import BlockingMaildirStore

SEEN = frozenset({"\\Seen"})


def deliver(folder: IMailFolder, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(b"Subject: hi\r\n\r\nbody\r\n")
    return pending.commit()


def info(uid: int, seen: bool) -> MessageInfo:
    return MessageInfo(uid, SEEN if seen else frozenset(), 10, 0.0, f"m{uid}")


class SharedListingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.inbox = BlockingMaildirStore(Path(self.mktemp())).getFolder("INBOX")
        for number in range(6):
            deliver(self.inbox, ("\\Seen",) if number % 3 else ())
        self.inbox.messages()

    def test_sessions_selecting_an_unchanged_folder_share_its_listing_and_counts(self) -> None:
        """A second SELECT counts nothing again: the listing keeps its counts."""
        first = self.inbox.messages(claimRecent=False)
        self.assertIsInstance(first, Listing)
        self.assertIs(self.inbox.messages(claimRecent=False), first)
        self.assertIs(factsOf(first), factsOf(first))
        one, two = IMAPMailbox(self.inbox), IMAPMailbox(self.inbox)
        self.assertEqual((one.getUnseenCount(), one.firstUnseen()), (2, 1))
        self.assertEqual((two.getUnseenCount(), two.firstUnseen()), (2, 1))

    def test_unseen_counts_follow_changes_the_session_took_in(self) -> None:
        """UNSEEN and the first unseen message follow flag changes, expunges and arrivals."""
        mailbox = IMAPMailbox(self.inbox)
        self.inbox.setFlags(1, ["\\Seen"])
        mailbox.sync(allowExpunge=True)
        self.assertEqual((mailbox.getUnseenCount(), mailbox.firstUnseen()), (1, 4))
        self.inbox.expunge([4])
        mailbox.sync(allowExpunge=True)
        self.assertEqual((mailbox.getUnseenCount(), mailbox.firstUnseen()), (0, None))
        deliver(self.inbox)
        mailbox.sync(allowExpunge=True)
        self.assertEqual((mailbox.getUnseenCount(), mailbox.firstUnseen()), (1, 6))

    def test_status_counts_come_from_the_listing(self) -> None:
        """STATUS answers from the listing's counts, \\Deleted sizes included."""
        self.inbox.setFlags(2, ["\\Deleted", "\\Seen"])
        status = folderStatus(self.inbox, ["MESSAGES", "UNSEEN", "DELETED", "DELETED-STORAGE"])
        self.assertEqual(status, {"MESSAGES": 6, "UNSEEN": 2, "DELETED": 1, "DELETED-STORAGE": 1})


class SessionViewTests(SynchronousTestCase):
    @given(
        st.lists(st.booleans(), max_size=20),
        st.lists(
            st.tuples(st.sampled_from(["set", "pop"]), st.integers(1, 25), st.booleans()),
            max_size=30,
        ),
    )
    def test_view_matches_a_dictionary_under_any_changes(
        self, seen: list[bool], changes: list[tuple[str, int, bool]]
    ) -> None:
        """The view answers as a dictionary of the same changes would, unseen count included."""
        listing = Listing(info(uid, flag) for uid, flag in enumerate(seen, 1))
        view = SessionView(listing, factsOf(listing))
        model = {item.uid: item for item in listing}
        for action, uid, flag in changes:
            if action == "set":
                view[uid] = model[uid] = info(uid, flag)
            else:
                self.assertEqual(view.pop(uid), model.pop(uid, None))
        for uid in range(0, 27):
            self.assertEqual(view.get(uid), model.get(uid))
            self.assertEqual(uid in view, uid in model)
        self.assertEqual(view.unseen, sum(1 for item in model.values() if not item.flags))
