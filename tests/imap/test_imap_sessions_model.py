"""
Several IMAP sessions selected on one Maildir INBOX (one plain, one with
CONDSTORE, one with QRESYNC), checked against a model of what each client
knows: the UIDs it holds by sequence number and the flags it was last told,
changed only by the server's responses (EXPUNGE, VANISHED, EXISTS, FETCH).
Between commands the folder is changed by the other sessions, by local
deliveries, by other Maildir programs (a file put in new/, renamed in cur/,
deleted; some as if on a file system whose coarse timestamps leave the
directory's mtime unchanged) and through a second store object on the same
directory.

After a NOOP, CHECK, IDLE or IDLE poll the client's list and flags are the
folder's on disk, but for changes made outside the process in the last
60 ms (a directory is listed again at most every 50 ms); a client in IDLE
hears of every change the server has seen without asking.  In between, a
client loses a message only through EXPUNGE or VANISHED, an EXPUNGE names
one of its messages, FETCH, STORE and SEARCH report no expunge (their UID
forms may, RFC 3501 7.4.1), and every sequence number names the message
the client thinks it does.  A QRESYNC client that selects the folder again
with the mod-sequence it may resynchronise from ends up with the folder's
messages and flags.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_imap_protocol import MESSAGE, Session, deliver, responses
from twisted.trial.unittest import SynchronousTestCase

from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap.server import IMAPServer
from tmail.store.blocking import unwrap
from tmail.store.maildir import BlockingMaildirStore, MaildirStore

SYSTEM = ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen")
LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
FLAG_OF = {letter: flag for flag, letter in LETTERS.items()}
#: Commands during which the server must not report expunges (RFC 3501
#: 7.4.1; their UID forms may).
NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})
#: How long a change made outside the process may stay unseen.
SETTLE = 0.06
#: The timestamp granularity of the coarse file system some changes made
#: outside the process are made as if on (see L{SessionsMachine.outside}).
COARSE_NS = 1_000_000_000
#: Seconds after which an idling client sends IDLE again (RFC 2177).
IDLE_RENEWAL = 25 * 60
SEARCH_KEYS = {
    "ALL": lambda flags: True,
    "SEEN": lambda flags: "\\Seen" in flags,
    "UNSEEN": lambda flags: "\\Seen" not in flags,
    "DELETED": lambda flags: "\\Deleted" in flags,
    "UNDELETED": lambda flags: "\\Deleted" not in flags,
    "FLAGGED": lambda flags: "\\Flagged" in flags,
    "ANSWERED": lambda flags: "\\Answered" in flags,
    "DRAFT": lambda flags: "\\Draft" in flags,
}
FLAG_SETS = st.frozensets(st.sampled_from(SYSTEM))
CLIENTS = st.integers(0, 2)
#: Choices among things whose number depends on timing (how soon the server
#: sees another program's change) are drawn as plain numbers and taken
#: modulo the count, so every run draws the same way.
PICK = st.integers(0, 255)
#: A message set: one message, a range, n:*, or 1:*.
SETS = st.tuples(st.sampled_from(["one", "range", "tail", "all"]), PICK, PICK)

_FETCH = re.compile(rb"^\* (\d+) FETCH \((.*)\)$")
_unique = itertools.count(1)


def letters(flags: frozenset[str]) -> str:
    """The Maildir info letters of system flags."""
    return "".join(sorted(LETTERS[flag] for flag in flags))


def parseSet(text: bytes) -> list[int]:
    """The numbers of a sequence set without C{*}."""
    numbers: list[int] = []
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        first, last = int(low), int(high or low)
        numbers.extend(range(min(first, last), max(first, last) + 1))
    return numbers


def uidSet(uids: list[int]) -> bytes:
    """A sequence set naming C{uids} one by one."""
    return b",".join(b"%d" % u for u in uids)


@dataclass
class Disk:
    """
    What the Maildir holds, read from its directories and uidlist.

    @ivar flags: UID -> flags of every message file that has a UID.
    @ivar bases: UID -> base file name.
    @ivar unnumbered: base names of message files without a UID yet.
    """

    flags: dict[int, frozenset[str]]
    bases: dict[int, str]
    unnumbered: set[str]


def readDisk(root: Path) -> Disk:
    """The messages of the Maildir at C{root}, as another program would list them."""
    numbers: dict[str, int] = {}
    uidlist = root / "dovecot-uidlist"
    if uidlist.exists():
        for line in uidlist.read_text().splitlines()[1:]:
            head, _, base = line.partition(" :")
            numbers[base] = int(head.split()[0])
    flags: dict[int, frozenset[str]] = {}
    bases: dict[int, str] = {}
    unnumbered = set()
    for sub in ("new", "cur"):
        for name in os.listdir(root / sub):
            base, _, info = name.partition(":")
            found = info[2:] if info.startswith("2,") else ""
            uid = numbers.get(base)
            if uid is None:
                unnumbered.add(base)
                continue
            flags[uid] = frozenset(FLAG_OF[c] for c in found if c in FLAG_OF)
            bases[uid] = base
    return Disk(flags, bases, unnumbered)


class _Session(Session):
    """A L{Session} that runs only the calls already due, not its timeouts' clock ticks."""

    def pump(self) -> None:
        clock = self.clock
        while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
            clock.advance(0)


@dataclass
class Client:
    """
    What one client knows of the selected folder.

    @ivar uids: UIDs by sequence number; C{None} for a message announced by
        EXISTS whose UID the client has not fetched yet.
    @ivar flags: the flags it was last told, by sequence number.
    @ivar modseqs: UID -> the highest MODSEQ it was told (CONDSTORE).
    @ivar highest: the mod-sequence it may resynchronise from: the highest
        MODSEQ it was told, unless a later C{OK
        [HIGHESTMODSEQ]} said less (RFC 7162 3.2: expunges are still to come).
    @ivar validity: the folder's UIDVALIDITY.
    @ivar idleTag: the tag of the IDLE in progress, if any.
    @ivar idleSince: when it began, on the session's clock.
    """

    name: str
    session: Session
    condstore: bool = False
    qresync: bool = False
    uids: list[int | None] = field(default_factory=list)
    flags: list[frozenset[str] | None] = field(default_factory=list)
    modseqs: dict[int, int] = field(default_factory=dict)
    highest: int = 0
    validity: int = 0
    idleTag: bytes | None = None
    idleSince: float = 0.0

    @property
    def server(self) -> IMAPServer:
        return self.session.server

    def known(self) -> list[int]:
        return [u for u in self.uids if u is not None]

    def seqOf(self, uid: int) -> int:
        return self.uids.index(uid) + 1


class SessionsMachine(RuleBasedStateMachine):
    """Three clients (plain, CONDSTORE, QRESYNC) on one INBOX, and other programs."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tmail-sessions-"))
        self.fixture = makeRealm(self.tmp)
        testCase = SynchronousTestCase()
        self.clients = [
            Client("plain", _Session(testCase, fixture=self.fixture)),
            Client("condstore", _Session(testCase, fixture=self.fixture), condstore=True),
            Client("qresync", _Session(testCase, fixture=self.fixture), True, True),
        ]
        store = self.clients[0].session.store
        assert isinstance(unwrap(store), MaildirStore)
        self.inbox = store.getFolder("INBOX")
        self.root = store.root
        #: Another process's view of the same Maildir.
        self.other = BlockingMaildirStore(self.root)
        #: (time, base name) of changes made outside the process that the
        #: server may not have seen yet.
        self.unseen: list[tuple[float, str]] = []
        self.baseOf: dict[int, str] = {}
        self.tags = itertools.count(1)

    def teardown(self) -> None:
        for client in self.clients:
            client.server.connectionLost(None)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # The disk, and changes made outside the process

    def disk(self) -> Disk:
        """The Maildir now (remembering each UID's file name)."""
        found = readDisk(self.root)
        self.baseOf.update(found.bases)
        return found

    def external(self, base: str) -> None:
        """Note a change made outside the process to one message."""
        self.unseen.append((time.monotonic(), base))
        self.pushed()

    def excused(self, since: float | None = None) -> set[str]:
        """Base names changed outside the process (after C{since}, when given)."""
        return {base for at, base in self.unseen if since is None or at > since}

    def looked(self, at: float) -> None:
        """The server looked at the folder at C{at}: what changed well before is seen."""
        self.unseen = [(t, base) for t, base in self.unseen if t > at - SETTLE]

    def files(self) -> list[tuple[str, str]]:
        """(subdirectory, file name) of every message file."""
        return sorted((sub, name) for sub in ("new", "cur") for name in os.listdir(self.root / sub))

    # Talking to the server

    def send(
        self, client: Client, command: bytes, beforeApplying: Callable[[], None] | None = None
    ) -> tuple[bytes, bytes]:
        """
        Send one command (ending the client's IDLE first), apply the reply
        to the client's model, fetch the UIDs of new messages; return the
        tagged status and the whole reply.  C{beforeApplying} runs between
        the reply and its reading.
        """
        self.wake(client)
        tag = b"t%d" % next(self.tags)
        words = command.split()
        verb = " ".join(w.decode() for w in words[: 2 if words[0] == b"UID" else 1])
        reply = client.session.send(tag + b" " + command + b"\r\n")
        if beforeApplying is not None:
            beforeApplying()
        status = self.apply(client, verb, reply, tag)
        self.complete(client)
        return status, reply

    def apply(self, client: Client, verb: str, reply: bytes, tag: bytes | None = None) -> bytes:
        """Update the client's model from a reply; return its tagged status."""
        status = b""
        for line in responses(reply):
            if not line:
                continue
            if tag is not None and line.startswith(tag + b" "):
                status = line[len(tag) + 1 :]
                continue
            assert line.startswith((b"* ", b"+ ")), (client.name, verb, line)
            self.applyUntagged(client, verb, line)
        return status

    def applyUntagged(self, client: Client, verb: str, line: bytes) -> None:
        """Apply one untagged response to a command C{verb} to the client's model."""
        words = line.split(b" ")
        where = (client.name, verb, line)
        if words[1] == b"OK" and words[2:3] == [b"[HIGHESTMODSEQ"]:
            client.highest = int(words[3].rstrip(b"]"))
        elif words[1] == b"OK" and words[2:3] == [b"[UIDVALIDITY"]:
            client.validity = int(words[3].rstrip(b"]"))
        if words[0] == b"+" or words[1] in (b"FLAGS", b"OK") or words[2:3] == [b"RECENT"]:
            return
        if words[1] == b"SEARCH":
            assert verb.endswith("SEARCH"), where
        elif words[2:3] == [b"EXPUNGE"]:
            assert verb not in NO_EXPUNGE, where
            assert not client.qresync, where
            seq = int(words[1])
            assert 1 <= seq <= len(client.uids), (*where, len(client.uids))
            del client.uids[seq - 1], client.flags[seq - 1]
        elif words[1] == b"VANISHED":
            assert verb not in NO_EXPUNGE, where
            assert client.qresync and words[2] != b"(EARLIER)", where
            for u in parseSet(words[2]):
                assert u in client.uids, (*where, client.uids)
                seq = client.seqOf(u)
                del client.uids[seq - 1], client.flags[seq - 1]
        elif words[2:3] == [b"EXISTS"]:
            count = int(words[1])
            assert count >= len(client.uids), (*where, len(client.uids))
            more = count - len(client.uids)
            client.uids += [None] * more
            client.flags += [None] * more
        elif (match := _FETCH.match(line)) is not None:
            self.applyFetch(client, verb, int(match.group(1)), match.group(2))
        else:
            raise AssertionError(f"unexpected response {where}")

    def applyFetch(self, client: Client, verb: str, seq: int, items: bytes) -> None:
        """Apply C{* seq FETCH (items)}: its UID must be the client's, its FLAGS are news."""
        where = (client.name, verb, seq, items)
        assert 1 <= seq <= len(client.uids), (*where, len(client.uids))
        found = re.search(rb"(?:^| )UID (\d+)", items)
        if found is not None:
            said = int(found.group(1))
            if client.uids[seq - 1] is None:
                assert said not in client.uids, (*where, client.uids)
                client.uids[seq - 1] = said
            assert client.uids[seq - 1] == said, (*where, client.uids)
        u = client.uids[seq - 1]
        flags = re.search(rb"FLAGS \(([^)]*)\)", items)
        modseq = re.search(rb"MODSEQ \((\d+)\)", items)
        if modseq is not None:
            assert client.condstore and u is not None, where
            value, previous = int(modseq.group(1)), client.modseqs.get(u, 0)
            assert value >= previous, (*where, previous)
            client.modseqs[u] = value
            client.highest = max(client.highest, value)
        if flags is not None:
            if client.qresync and verb in ("NOOP", "CHECK", "IDLE"):
                # A client under QRESYNC keys its cache by UID.
                assert found is not None, where
            told = frozenset(flags.group(1).decode().split()) - {"\\Recent"}
            assert told <= set(SYSTEM), where
            if client.condstore:
                assert modseq is not None, where
                if u is not None and client.flags[seq - 1] not in (None, told):
                    assert value > previous, (*where, previous)
            client.flags[seq - 1] = told

    def complete(self, client: Client) -> None:
        """Fetch the UIDs and flags of messages announced by EXISTS."""
        while None in client.uids:
            first = client.uids.index(None) + 1
            status, _ = self.send(client, b"FETCH %d:* (UID FLAGS)" % first)
            assert status == b"OK FETCH completed", (client.name, status)

    def idle(self, client: Client) -> None:
        """Start an IDLE."""
        tag = b"t%d" % next(self.tags)
        reply = client.session.send(tag + b" IDLE\r\n")
        assert reply.startswith(b"+ Idling\r\n"), (client.name, reply)
        client.idleTag, client.idleSince = tag, client.session.clock.seconds()
        self.apply(client, "IDLE", reply)

    def wake(self, client: Client) -> None:
        """End the client's IDLE, if it is idling."""
        tag, client.idleTag = client.idleTag, None
        if tag is not None:
            status = self.apply(client, "IDLE", client.session.send(b"DONE\r\n"), tag)
            assert status == b"OK IDLE terminated", (client.name, status)

    def pushed(self) -> None:
        """
        Read what the server pushed to idling clients; one told of new
        messages leaves IDLE to fetch their UIDs, then idles again.
        """
        for client in self.clients:
            if client.idleTag is None:
                continue
            client.session.pump()
            self.apply(client, "IDLE", client.session.take())
            while None in client.uids:
                self.complete(client)
                self.idle(client)

    # Choosing messages

    def messageSet(
        self, client: Client, byUid: bool, choice: tuple[str, int, int]
    ) -> tuple[bytes, list[int]]:
        """
        A sequence set, of UIDs when C{byUid}, and the sequence numbers it
        names for the client.
        """
        kind, one, other = choice
        count = len(client.uids)
        if kind == "all":
            return b"1:*", list(range(1, count + 1))
        first, second = one % count + 1, other % count + 1
        low, high = sorted((first, second))
        if byUid:
            known = client.known()
            if kind == "one":
                return b"%d" % known[first - 1], [first]
            if kind == "tail":
                return b"%d:*" % known[first - 1], list(range(first, count + 1))
            return b"%d:%d" % (known[first - 1], known[second - 1]), list(range(low, high + 1))
        if kind == "one":
            return b"%d" % first, [first]
        if kind == "tail":
            return b"%d:*" % first, list(range(first, count + 1))
        return b"%d:%d" % (first, second), list(range(low, high + 1))

    def activeClient(self, who: int) -> Client | None:
        """A client to send a command, out of IDLE; C{None} when its view is empty."""
        client = self.clients[who]
        self.wake(client)
        return client if client.uids else None

    # Setting up

    @initialize(count=st.integers(0, 4))
    def select(self, count: int) -> None:
        for _ in range(count):
            deliver(self.inbox)
        for client in self.clients:
            reply = client.session.send(b"l LOGIN %s %s\r\n" % (ALICE.encode(), PASSWORD.encode()))
            assert reply.startswith(b"l OK "), reply
            for wanted, name in ((client.qresync, b"QRESYNC"), (client.condstore, b"CONDSTORE")):
                if wanted:
                    reply = client.session.send(b"e ENABLE " + name + b"\r\n")
                    assert reply.startswith(b"* ENABLED " + name), reply
                    break
            status, _ = self.send(client, b"SELECT INBOX")
            assert status == b"OK [READ-WRITE] SELECT completed", (client.name, status)

    # Changes

    @rule()
    def deliverLocally(self) -> None:
        """A delivery in this process (SMTP, LMTP, APPEND by another session)."""
        deliver(self.inbox)
        self.pushed()

    @contextlib.contextmanager
    def outside(self, sameTick: bool) -> Iterator[None]:
        """
        A change by another program.  With C{sameTick}, a directory last
        modified less than a second before keeps its mtime, as on a file
        system with coarse timestamps: only listing it again shows the change.
        """
        self.disk()
        before = {sub: os.stat(self.root / sub).st_mtime_ns for sub in ("new", "cur")}
        yield
        now = time.time_ns()
        for sub, mtime in before.items():
            if sameTick and now - mtime < COARSE_NS:
                os.utime(self.root / sub, ns=(mtime, mtime))

    @rule(sameTick=st.booleans())
    def deliverFromOutside(self, sameTick: bool) -> None:
        """Another program delivers a file into new/."""
        base = f"{time.time_ns()}.M{next(_unique)}P{os.getpid()}.elsewhere"
        temporary = self.root / "tmp" / base
        temporary.write_bytes(MESSAGE)
        with self.outside(sameTick):
            os.rename(temporary, self.root / "new" / base)
        self.external(base)

    @rule(pick=PICK, flags=FLAG_SETS, sameTick=st.booleans())
    def renameFromOutside(self, pick: int, flags: frozenset[str], sameTick: bool) -> None:
        """Another program changes a message's flag letters (moving it to cur/ from new/)."""
        files = self.files()
        if files:
            sub, name = files[pick % len(files)]
            base = name.partition(":")[0]
            with self.outside(sameTick):
                os.rename(self.root / sub / name, self.root / "cur" / f"{base}:2,{letters(flags)}")
            self.external(base)

    @rule(pick=PICK, sameTick=st.booleans())
    def deleteFromOutside(self, pick: int, sameTick: bool) -> None:
        """Another program deletes a message file."""
        files = self.files()
        if files:
            sub, name = files[pick % len(files)]
            with self.outside(sameTick):
                os.unlink(self.root / sub / name)
            self.external(name.partition(":")[0])

    @rule(
        pick=PICK,
        action=st.sampled_from(["deliver", "flag", "expunge"]),
        flags=FLAG_SETS,
        sameTick=st.booleans(),
    )
    def changeThroughAnotherStore(
        self, pick: int, action: str, flags: frozenset[str], sameTick: bool
    ) -> None:
        """Another process using tmail's store on the same Maildir."""
        folder = self.other.getFolder("INBOX")
        with self.outside(sameTick):
            if action == "deliver":
                uid = deliver(folder)
                changed = [info.key for info in folder.messages() if info.uid == uid]
            else:
                infos = folder.messages()
                changed = [infos[pick % len(infos)].key] if infos else []
                for info in infos:
                    if info.key in changed:
                        # Gone meanwhile: that process sees an error.
                        with contextlib.suppress(KeyError):
                            if action == "flag":
                                folder.setFlags(info.uid, flags)
                            else:
                                folder.expunge([info.uid])
        for base in changed:
            self.external(base)

    # Commands

    @rule(
        who=CLIENTS,
        choice=SETS,
        byUid=st.booleans(),
        mode=st.sampled_from([b"+FLAGS", b"-FLAGS", b"FLAGS"]),
        silent=st.booleans(),
        flags=FLAG_SETS,
    )
    def store(
        self,
        who: int,
        choice: tuple[str, int, int],
        byUid: bool,
        mode: bytes,
        silent: bool,
        flags: frozenset[str],
    ) -> None:
        """STORE changes the messages the client names, and only those."""
        client = self.activeClient(who)
        if client is not None:
            self.storeFlags(client, choice, byUid, mode, silent, flags)
        self.pushed()

    def storeFlags(
        self,
        client: Client,
        choice: tuple[str, int, int],
        byUid: bool,
        mode: bytes,
        silent: bool,
        flags: frozenset[str],
    ) -> None:
        messages, seqs = self.messageSet(client, byUid, choice)
        named = {u: seq for seq in seqs if (u := client.uids[seq - 1]) is not None}
        before = self.disk()
        afterwards: list[Disk] = []

        def change(old: frozenset[str]) -> frozenset[str]:
            return old | flags if mode == b"+FLAGS" else old - flags if mode == b"-FLAGS" else flags

        def stored() -> None:
            after = self.disk()
            afterwards.append(after)
            if silent:
                # Told nothing, the client takes its request as done (a
                # message expunged meanwhile is not changed).
                for u, seq in named.items():
                    old = client.flags[seq - 1]
                    if u in after.flags and old is not None:
                        client.flags[seq - 1] = change(old)

        command = b"%sSTORE %s %s%s (%s)" % (
            b"UID " if byUid else b"",
            messages,
            mode,
            b".SILENT" if silent else b"",
            " ".join(sorted(flags)).encode(),
        )
        status, _ = self.send(client, command, stored)
        assert status == b"OK STORE completed", (client.name, command, status)
        [after] = afterwards
        excused = self.excused()
        for u in before.flags.keys() & after.flags.keys():
            if self.baseOf[u] in excused:
                continue
            wanted = change(before.flags[u]) if u in named else before.flags[u]
            assert after.flags[u] == wanted, (client.name, command, u, after.flags[u], wanted)

    @rule(
        who=CLIENTS,
        choice=SETS,
        byUid=st.booleans(),
        everything=st.booleans(),
        picks=st.lists(PICK, min_size=1, max_size=4),
    )
    def expunge(
        self,
        who: int,
        choice: tuple[str, int, int],
        byUid: bool,
        everything: bool,
        picks: list[int],
    ) -> None:
        """
        Messages marked C{\\Deleted}, then EXPUNGE or UID EXPUNGE: only
        marked messages go, and the client is told of each.
        """
        client = self.activeClient(who)
        if client is None:
            self.pushed()
            return
        self.storeFlags(client, choice, byUid, b"+FLAGS", False, frozenset({"\\Deleted"}))
        known = client.known()
        if not known:
            # UID STORE may report expunges.
            self.pushed()
            return
        before = self.disk()
        if everything:
            command, scope = b"EXPUNGE", set(known)
        else:
            chosen = {known[pick % len(known)] for pick in picks}
            command, scope = b"UID EXPUNGE " + uidSet(sorted(chosen)), set(chosen)
        status, _ = self.send(client, command)
        assert status.startswith(b"OK ") and status.endswith(b"EXPUNGE completed"), status
        after = self.disk()
        excused = self.excused()
        for u in known:
            if u not in before.flags or self.baseOf[u] in excused:
                continue
            marked = "\\Deleted" in before.flags[u]
            if u in after.flags:
                assert not (marked and u in scope), (client.name, command, u)
            else:
                assert marked and u in scope, (client.name, command, u)
                assert u not in client.uids, (client.name, command, u, client.uids)
        self.pushed()

    @rule(
        who=CLIENTS,
        choice=SETS,
        byUid=st.booleans(),
        items=st.sampled_from([b"(FLAGS)", b"(UID FLAGS)", b"(UID BODY[HEADER.FIELDS (SUBJECT)])"]),
    )
    def fetch(self, who: int, choice: tuple[str, int, int], byUid: bool, items: bytes) -> None:
        """
        FETCH answers for the messages the client names (a body part marks
        them C{\\Seen}), and reports no expunge.
        """
        client = self.activeClient(who)
        if client is not None:
            messages, seqs = self.messageSet(client, byUid, choice)
            named = {u for seq in seqs if (u := client.uids[seq - 1]) is not None}
            # RFC 3501 6.4.5: \\Seen on every message whose body is fetched,
            # also one whose \\Seen another session cleared meanwhile.
            unseen = named
            command = b"%sFETCH %s %s" % (b"UID " if byUid else b"", messages, items)
            status, reply = self.send(client, command)
            disk = self.disk()
            excused = self.excused()
            if status != b"OK FETCH completed":
                # A message whose file is gone cannot be read.
                assert (
                    status == b"NO [EXPUNGEISSUED] Some of the requested messages no longer exist"
                ), status
                assert b"BODY" in items and not named <= disk.flags.keys(), (command, status)
            answered = {int(m.group(1)) for m in re.finditer(rb"^\* (\d+) FETCH", reply, re.M)}
            assert status.startswith(b"NO") or set(seqs) <= answered, (command, seqs, answered)
            if b"BODY" in items:
                for u in unseen & disk.flags.keys():
                    assert self.baseOf[u] in excused or "\\Seen" in disk.flags[u], (command, u)
        self.pushed()

    @rule(
        who=CLIENTS,
        choice=SETS,
        key=st.sampled_from(sorted(SEARCH_KEYS)),
        byUid=st.booleans(),
        within=st.booleans(),
    )
    def search(
        self, who: int, choice: tuple[str, int, int], key: str, byUid: bool, within: bool
    ) -> None:
        """SEARCH answers from what the client was told, and reports no expunge."""
        client = self.activeClient(who)
        if client is not None:
            seqs = list(range(1, len(client.uids) + 1))
            criteria = key.encode()
            if within:
                messages, seqs = self.messageSet(client, False, choice)
                criteria = messages + b" " + criteria
            expected = [
                client.uids[seq - 1] if byUid else seq
                for seq in seqs
                if SEARCH_KEYS[key](client.flags[seq - 1] or frozenset())
            ]
            command = (b"UID SEARCH " if byUid else b"SEARCH ") + criteria
            status, reply = self.send(client, command)
            assert status == b"OK SEARCH completed", (client.name, command, status)
            [line] = [line for line in reply.split(b"\r\n") if line.startswith(b"* SEARCH")]
            found = [int(n) for n in line.split()[2:]]
            assert found == expected, (client.name, command, found, expected)
        self.pushed()

    @rule(who=CLIENTS, knownUids=st.booleans())
    def reselect(self, who: int, knownUids: bool) -> None:
        """
        SELECT again.  The QRESYNC client resynchronises from what it knows
        (RFC 7162 3.2.5): the UIDs it holds less those VANISHED (EARLIER),
        and the messages past its highest UID, are the folder's; their flags,
        as it knew them or as the FETCH responses of the SELECT say, are
        what a FETCH of every message says.
        """
        client = self.clients[who]
        self.wake(client)
        if not client.qresync:
            client.uids, client.flags = [], []
            status, _ = self.send(client, b"SELECT INBOX")
            assert status == b"OK [READ-WRITE] SELECT completed", (client.name, status)
            self.pushed()
            return
        cache = dict(zip(client.known(), client.flags, strict=True))
        params = b"%d %d" % (client.validity, client.highest)
        if knownUids and cache:
            params += b" " + uidSet(sorted(cache))
        command = b"SELECT INBOX (QRESYNC (%s))" % params
        tag = b"t%d" % next(self.tags)
        reply = client.session.send(tag + b" " + command + b"\r\n")
        lines = responses(reply)
        assert lines[0] == b"* OK [CLOSED] Previous mailbox closed", (command, lines)
        assert lines[-1] == tag + b" OK [READ-WRITE] SELECT completed", (command, lines)
        exists = 0
        for line in lines[1:-1]:
            words = line.split(b" ")
            if words[2:3] == [b"EXISTS"]:
                exists = int(words[1])
            elif words[1:3] == [b"VANISHED", b"(EARLIER)"]:
                for u in parseSet(words[3]):
                    cache.pop(u, None)
            elif (match := _FETCH.match(line)) is not None:
                items = match.group(2)
                found = re.search(rb"UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)", items)
                assert found is not None, (command, line)
                u = int(found.group(1))
                cache[u] = frozenset(found.group(2).decode().split()) - {"\\Recent"}
                client.modseqs[u] = int(found.group(3))
            elif words[1] == b"OK" and words[2] == b"[HIGHESTMODSEQ":
                client.highest = int(words[3].rstrip(b"]"))
            elif words[1] == b"OK" and words[2] == b"[UIDVALIDITY":
                assert int(words[3].rstrip(b"]")) == client.validity, (command, line)
        assert len(cache) <= exists, (command, sorted(cache), exists)
        client.uids = [*sorted(cache), *[None] * (exists - len(cache))]
        client.flags = [*(cache[u] for u in sorted(cache)), *[None] * (exists - len(cache))]
        self.complete(client)
        if client.uids:
            told = list(client.flags)
            status, _ = self.send(client, b"FETCH 1:* (UID FLAGS)")
            assert status == b"OK FETCH completed", (command, status)
            assert client.flags == told, (command, told, client.flags)
        self.pushed()

    @rule(who=CLIENTS, how=st.sampled_from([b"NOOP", b"CHECK", b"IDLE"]), wait=st.booleans())
    def look(self, who: int, how: bytes, wait: bool) -> None:
        """
        NOOP, CHECK, IDLE (or, for a client already idling, the next IDLE
        poll) tell the client everything: its view is the folder's.
        """
        client = self.clients[who]
        if wait and self.unseen:
            pause = self.unseen[-1][0] + SETTLE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        at = time.monotonic()
        if client.idleTag is not None:
            clock = client.session.clock
            if clock.seconds() - client.idleSince > IDLE_RENEWAL:
                # As RFC 2177 asks, before the server's inactivity timeout.
                self.wake(client)
                self.idle(client)
            clock.advance(IMAPServer.idlePollInterval)
        elif how == b"IDLE":
            self.idle(client)
        else:
            status, _ = self.send(client, how)
            assert status == b"OK %s completed" % how, (client.name, status)
        self.pushed()
        self.checkUpToDate(client, self.excused(since=at - SETTLE))
        self.looked(at)

    def checkUpToDate(self, client: Client, excused: set[str]) -> None:
        """The client's view is the folder's, but for messages changed outside lately."""
        disk = self.disk()
        assert disk.unnumbered <= excused, (client.name, disk.unnumbered)
        mine = dict(zip(client.known(), client.flags, strict=True))
        for u in sorted(mine.keys() | disk.flags.keys()):
            if self.baseOf.get(u) in excused:
                continue
            assert u in mine and u in disk.flags, (client.name, u, sorted(mine), sorted(disk.flags))
            assert mine[u] == disk.flags[u], (client.name, u, mine[u], disk.flags[u])

    # Invariants

    @invariant()
    def clientsKnowEveryUidInOrder(self) -> None:
        """Every client has fetched the UID of every message, in ascending order."""
        for client in self.clients:
            known = client.known()
            assert len(known) == len(client.uids), (client.name, client.uids)
            assert known == sorted(set(known)), (client.name, known)

    @invariant()
    def sessionsNumberMessagesAsTheirClients(self) -> None:
        """The server's sequence numbers are the client's."""
        for client in self.clients:
            mbox = client.server.mbox
            if mbox is not None:
                count = mbox.getMessageCount()
                server = [mbox.getUID(seq) for seq in range(1, count + 1)]
                assert server == client.uids, (client.name, server, client.uids)

    @invariant()
    def idlingClientsAreUpToDate(self) -> None:
        """A client in IDLE hears of every change the server has seen, unasked."""
        for client in self.clients:
            if client.idleTag is not None:
                self.checkUpToDate(client, self.excused())


SessionsMachine.TestCase.settings = settings(deadline=None)
TestEverySessionOnAFolderKeepsItsClientInStep = SessionsMachine.TestCase
