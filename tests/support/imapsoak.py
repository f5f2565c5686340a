"""
A many-client state-tracking soak of an IMAP server.

N clients (threads, each with its own socket and raw IMAP) share a few
mailboxes of one user and, at random, APPEND, FETCH, STORE flags and
keywords, EXPUNGE, COPY, MOVE, SEARCH, NOOP, IDLE, re-SELECT and log out and
in again.  Each client keeps a model of the selected mailbox built only from
the replies it got (sequence number to UID, flags, the keywords it was told
of) and checks every reply against it:

  - C{EXPUNGE n} names a message of the client's view (1 <= n <= count),
    and never comes during FETCH, STORE or SEARCH (RFC 3501 7.4.1);
    C{VANISHED} names UIDs the client holds (QRESYNC clients);
  - C{EXISTS} never shrinks the view; C{RECENT} is at most C{EXISTS};
  - C{n FETCH} names a message of the view; its UID is the one the model
    has for C{n}; UIDs ascend with sequence numbers and are never reused;
  - every keyword in FLAGS of a FETCH was announced in a FLAGS response
    (RFC 3501 7.2.6);
  - a message's content (its C{X-Soak} header) is the one stored under its
    UID (APPENDUID, COPYUID), whichever client asks;
  - a FETCH answers every message it names; STORE's FETCH shows the change;
  - a valid command gets no C{NO} or C{BAD} (but COPY and MOVE of a message
    another client expunged: C{NO [EXPUNGEISSUED]}, as Dovecot answers);
  - the server drops no connection.

L{runSoak} runs it against a server on C{host:port} and returns a
L{SoakReport}: commands sent, commands/s, model errors (with the reply
lines that broke the model).
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

SYSTEM = ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen")
#: Keywords clients use; a few brand new ones are made up as the run goes.
KEYWORDS = tuple(f"$K{n}" for n in range(8))
_TAGGED = re.compile(rb"^(\S+) (OK|NO|BAD)\b ?(.*)$", re.S)
_UNTAGGED_NUMBER = re.compile(rb"^\* (\d+) (EXISTS|RECENT|EXPUNGE|FETCH)\b ?(.*)$", re.S)
_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]")
_SOAK_ID = re.compile(rb"X-Soak: (\S+)", re.I)


class Disconnected(Exception):
    """The server closed the connection."""


class LineReader:
    """Lines and counted octets from a socket; a timeout loses nothing read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _more(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionError as e:
            raise Disconnected(str(e).encode()) from e
        if not data:
            raise Disconnected(b"connection closed")
        self.buffer += data

    def readline(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._more()
        line = bytes(self.buffer[: end + 2])
        del self.buffer[: end + 2]
        return line

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def parseSet(text: bytes) -> list[int]:
    """A UID set (C{1:3,7}) as a list, in its order."""
    numbers: list[int] = []
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        first, last = int(low), int(high or low)
        step = 1 if last >= first else -1
        numbers.extend(range(first, last + step, step))
    return numbers


def makeSet(numbers: list[int]) -> bytes:
    return b",".join(b"%d" % n for n in numbers)


def parseList(data: bytes, at: int) -> tuple[list[object], int]:
    """A parenthesised list starting at C{data[at] == '('}: atoms, strings, literals, lists."""
    assert data[at : at + 1] == b"(", data[at : at + 40]
    items: list[object] = []
    i = at + 1
    while i < len(data):
        c = data[i : i + 1]
        if c == b" ":
            i += 1
        elif c == b")":
            return items, i + 1
        elif c == b"(":
            sub, i = parseList(data, i)
            items.append(sub)
        elif c == b'"':
            j = i + 1
            out = bytearray()
            while data[j : j + 1] != b'"':
                if data[j : j + 1] == b"\\":
                    j += 1
                out += data[j : j + 1]
                j += 1
            items.append(bytes(out))
            i = j + 1
        elif c == b"{":
            end = data.index(b"}", i)
            size = int(data[i + 1 : end].rstrip(b"+"))
            start = end + 3
            items.append(data[start : start + size])
            i = start + size
        else:
            j = i
            depth = 0
            while j < len(data):
                d = data[j : j + 1]
                if d == b"[":
                    depth += 1
                elif d == b"]":
                    depth -= 1
                elif depth == 0 and d in (b" ", b")", b"("):
                    break
                j += 1
            items.append(data[i:j])
            i = j
    raise ValueError("unbalanced list")


def fetchItems(rest: bytes) -> dict[bytes, object]:
    """The items of a FETCH response (C{rest} starts at its C{(}), by upper-case name."""
    parsed, _ = parseList(rest, 0)
    items: dict[bytes, object] = {}
    for name, value in zip(parsed[::2], parsed[1::2], strict=False):
        assert isinstance(name, bytes)
        items[name.upper()] = value
    return items


@dataclass
class Registry:
    """What every client learned of which content is stored under which UID."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    content: dict[tuple[str, int], str] = field(default_factory=dict)

    def learn(self, box: str, uid: int, soakId: str) -> str | None:
        """Record C{soakId} for a UID; the different one recorded before, if any."""
        with self.lock:
            known = self.content.setdefault((box, uid), soakId)
        return None if known == soakId else known

    def lookup(self, box: str, uid: int) -> str | None:
        with self.lock:
            return self.content.get((box, uid))


@dataclass
class SoakReport:
    """
    @ivar commands: tagged commands answered.
    @ivar errors: count of model errors by kind.
    @ivar examples: the first few model errors, with the lines involved.
    @ivar refused: NO/BAD answers the model expects (COPY or MOVE of a
        message another client expunged).
    @ivar disconnects: connections the server closed unasked.
    """

    clients: int
    seconds: float
    commands: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    refused: int = 0
    disconnects: int = 0
    elapsed: float = 0.0
    #: Seconds spent waiting for replies, and commands, by command name.
    waited: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def errorCount(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.commands / self.elapsed if self.elapsed else 0.0

    def error(self, kind: str, detail: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < 30:
                self.examples.append(f"{kind}: {detail}")

    def summary(self) -> str:
        lines = [
            f"{self.clients} clients, {self.elapsed:.1f} s: {self.commands} commands,"
            f" {self.rate:.0f} commands/s, {self.errorCount} model errors,"
            f" {self.refused} expected refusals, {self.disconnects} dropped connections"
        ]
        lines.append(
            "  mean reply time: "
            + ", ".join(
                f"{verb} {1000 * self.waited[verb] / count:.1f} ms"
                for verb, count in self.counts.most_common()
            )
        )
        lines += [f"  {kind}: {count}" for kind, count in self.errors.most_common()]
        lines += [f"  e.g. {example}" for example in self.examples[:10]]
        return "\n".join(lines)


class SoakClient:
    """One connection and its model of the selected mailbox."""

    def __init__(
        self,
        number: int,
        host: str,
        port: int,
        user: str,
        password: str,
        boxes: list[str],
        registry: Registry,
        report: SoakReport,
        rng: random.Random,
        qresync: bool,
        atomicStore: bool = True,
    ) -> None:
        self.number = number
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.boxes = boxes
        self.registry = registry
        self.report = report
        self.rng = rng
        self.qresync = qresync
        self.atomicStore = atomicStore
        self.tags = 0
        self.made = 0
        self.sock: socket.socket | None = None
        self.reset(None)

    # Model

    def reset(self, box: str | None) -> None:
        self.box = box
        self.uids: list[int | None] = []
        self.flags: dict[int, frozenset[str]] = {}
        self.announced: set[str] = set()
        self.gone: set[int] = set()
        self.command = b""
        self.bye = False
        self.noExpunge = False
        self.lines: list[bytes] = []

    def fail(self, kind: str, line: bytes = b"") -> None:
        context = b" | ".join(self.lines[-30:])[-3000:]
        self.report.error(
            kind,
            f"client {self.number} in {self.box} after {self.command[:80]!r}:"
            f" {line[:200]!r} (count {len(self.uids)}; last lines {context!r})",
        )

    # Wire

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=60)
        self.file = LineReader(self.sock)
        greeting = self.readLine()
        if not greeting.startswith(b"* OK"):
            raise Disconnected(greeting)
        status, _ = self.run(b"LOGIN %s %s" % (self.user.encode(), self.password.encode()))
        if status != b"OK":
            raise Disconnected(b"login refused")
        if self.qresync:
            self.run(b"ENABLE QRESYNC")

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def readLine(self) -> bytes:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise Disconnected(line)
        parts = [line]
        while (literal := re.search(rb"\{(\d+)\}\r\n$", line)) is not None:
            data = self.file.read(int(literal.group(1)))
            line = self.file.readline()
            if not line.endswith(b"\r\n"):
                raise Disconnected(line)
            parts += [data, line]
        return b"".join(parts)[:-2]

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Disconnected(str(e).encode()) from e

    def run(
        self, command: bytes, literal: bytes | None = None, noExpunge: bool = False
    ) -> tuple[bytes, bytes]:
        """Send a command; handle every response; return the tagged status and text."""
        if self.qresync and not noExpunge and None in self.uids:
            # A VANISHED may name any message of the view: a QRESYNC client
            # learns the UIDs of new messages first.
            self.learnUids()
        self.tags += 1
        tag = b"c%d" % self.tags
        self.command = command
        self.noExpunge = noExpunge
        sent = time.monotonic()
        self.untagged: list[bytes] = []
        self.fetched: list[tuple[int | None, frozenset[str] | None]] = []
        if literal is None:
            self.send(tag + b" " + command + b"\r\n")
        else:
            self.send(tag + b" " + command + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        while True:
            line = self.readLine()
            self.lines.append(line)
            del self.lines[:-40]
            match = _TAGGED.match(line)
            if match is not None and match.group(1) == tag:
                words = command.split(b" ", 2)
                verb = b" ".join(words[:2]) if words[0] == b"UID" else words[0]
                with self.report.lock:
                    self.report.commands += 1
                    self.report.counts[verb.decode()] += 1
                    self.report.waited[verb.decode()] += time.monotonic() - sent
                return match.group(2), match.group(3)
            if line.startswith(b"* "):
                self.untagged.append(line)
                self.untaggedResponse(line)
            elif line.startswith(b"+"):
                continue
            else:
                self.fail("unexpected line", line)

    # Responses

    def untaggedResponse(self, line: bytes) -> None:
        if self.bye:
            self.fail("response after BYE", line)
        match = _UNTAGGED_NUMBER.match(line)
        if match is not None:
            number, kind, rest = int(match.group(1)), match.group(2), match.group(3)
            getattr(self, "on" + kind.decode().title())(number, rest, line)
            return
        if line.startswith(b"* FLAGS "):
            flags, _ = parseList(line, len(b"* FLAGS "))
            self.announced = {f.decode() for f in flags if isinstance(f, bytes)}
            missing = {k for fl in self.flags.values() for k in fl} - self.announced
            if missing:
                self.fail("FLAGS drops a keyword in use", line)
        elif line.startswith(b"* VANISHED ") and not line.startswith(b"* VANISHED (EARLIER)"):
            self.onVanished(parseSet(line.split()[2]), line)
        elif line.startswith(b"* BYE"):
            self.bye = True
            if not self.command.startswith(b"LOGOUT"):
                self.fail("BYE", line)

    def onExists(self, number: int, rest: bytes, line: bytes) -> None:
        if number < len(self.uids):
            self.fail("EXISTS shrinks the view", line)
            return
        self.uids.extend([None] * (number - len(self.uids)))

    def onRecent(self, number: int, rest: bytes, line: bytes) -> None:
        if number > len(self.uids):
            self.fail("RECENT above EXISTS", line)

    def onExpunge(self, number: int, rest: bytes, line: bytes) -> None:
        if self.noExpunge:
            self.fail("EXPUNGE during FETCH, STORE or SEARCH", line)
        if self.qresync:
            self.fail("EXPUNGE under QRESYNC", line)
        if not 1 <= number <= len(self.uids):
            self.fail("EXPUNGE beyond the view", line)
            return
        uid = self.uids.pop(number - 1)
        if uid is not None:
            self.gone.add(uid)
            self.flags.pop(uid, None)

    def onVanished(self, uids: list[int], line: bytes) -> None:
        if self.noExpunge:
            self.fail("VANISHED during FETCH, STORE or SEARCH", line)
        held = {u for u in self.uids if u is not None}
        for uid in uids:
            if uid not in held:
                self.fail("VANISHED of a UID not in the view", line)
                continue
            self.uids.remove(uid)
            self.gone.add(uid)
            self.flags.pop(uid, None)

    def onFetch(self, number: int, rest: bytes, line: bytes) -> None:
        if not 1 <= number <= len(self.uids):
            self.fail("FETCH beyond the view", line)
            return
        try:
            items = fetchItems(rest)
        except (ValueError, AssertionError, IndexError):
            self.fail("unparsable FETCH", line)
            return
        uid = self.uids[number - 1]
        told = items.get(b"UID")
        if isinstance(told, bytes):
            toldUid = int(told)
            if uid is None:
                if toldUid in self.gone:
                    self.fail("FETCH UID of an expunged message", line)
                lower = [u for u in self.uids[: number - 1] if u is not None]
                higher = [u for u in self.uids[number:] if u is not None]
                if (lower and lower[-1] >= toldUid) or (higher and higher[0] <= toldUid):
                    self.fail("UIDs out of order", line)
                self.uids[number - 1] = uid = toldUid
            elif uid != toldUid:
                self.fail("FETCH UID differs from the model", line)
                return
        flags = items.get(b"FLAGS")
        if isinstance(flags, list):
            names = frozenset(f.decode() for f in flags if isinstance(f, bytes)) - {"\\Recent"}
            unannounced = {f for f in names if not f.startswith("\\")} - self.announced
            if unannounced:
                self.fail("FETCH names a keyword not announced", line)
            if uid is not None:
                self.flags[uid] = names
            self.fetched.append((uid, names))
        else:
            self.fetched.append((uid, None))
        for name, value in items.items():
            if name.startswith(b"BODY[HEADER.FIELDS") and isinstance(value, bytes):
                found = _SOAK_ID.search(value)
                if found is None:
                    self.fail("FETCH of a header without X-Soak", line)
                elif uid is not None and self.box is not None:
                    other = self.registry.learn(self.box, uid, found.group(1).decode())
                    if other is not None:
                        self.fail(f"wrong message served (UID holds {other})", line)

    # Commands

    def pick(self, count: int = 3) -> list[int]:
        """A few sequence numbers of the view, ascending."""
        n = len(self.uids)
        if n == 0:
            return []
        if self.rng.random() < 0.3:
            start = self.rng.randint(1, n)
            return list(range(start, min(n, start + self.rng.randint(0, 4)) + 1))
        return sorted(self.rng.sample(range(1, n + 1), min(n, self.rng.randint(1, count))))

    def expectOK(self, status: bytes, text: bytes, allowExpungeIssued: bool = False) -> bool:
        if status == b"OK":
            return True
        if allowExpungeIssued and status == b"NO" and text.startswith(b"[EXPUNGEISSUED]"):
            with self.report.lock:
                self.report.refused += 1
            return False
        self.fail(f"{status.decode()} to a valid command", status + b" " + text)
        return False

    def select(self, box: str) -> None:
        self.reset(box)
        status, text = self.run(b'SELECT "%s"' % box.encode())
        if not self.expectOK(status, text):
            self.reset(None)
            return
        self.learnUids()

    def learnUids(self) -> None:
        """FETCH the UIDs the model lacks (a FETCH may announce more: a few rounds)."""
        for _ in range(5):
            if None not in self.uids:
                return
            first = self.uids.index(None) + 1
            status, text = self.run(b"FETCH %d:* (UID FLAGS)" % first, noExpunge=True)
            self.expectOK(status, text)
            unanswered = [
                seq for seq in range(first, len(self.uids) + 1) if self.uids[seq - 1] is None
            ]
            if status == b"OK" and unanswered and not self.exceedsFrom(first):
                self.fail("FETCH leaves messages unanswered", b"%r" % unanswered[:5])
                return

    def exceedsFrom(self, first: int) -> bool:
        """Whether EXISTS grew during the last command (those messages were not asked for)."""
        return any(line.endswith(b" EXISTS") for line in self.untagged)

    def message(self) -> tuple[str, bytes]:
        self.made += 1
        soakId = f"c{self.number}-{self.made}-{self.rng.randrange(1 << 30)}"
        body = (
            f"From: soak{self.number}@example.test\r\nTo: soak@example.test\r\n"
            f"Subject: soak {soakId}\r\nX-Soak: {soakId}\r\n\r\n"
            + "Some text of the message.\r\n"
            * self.rng.randint(1, 20)
        ).encode()
        return soakId, body

    def flagChoice(self) -> list[str]:
        pool = list(SYSTEM[:1] + SYSTEM[2:]) + list(KEYWORDS)
        if self.rng.random() < 0.03:
            pool.append(f"$New{self.number}x{self.rng.randrange(10_000)}")
        return self.rng.sample(pool, self.rng.randint(1, 2))

    def doAppend(self) -> None:
        box = self.rng.choice(self.boxes)
        soakId, body = self.message()
        flags = " ".join(self.flagChoice()) if self.rng.random() < 0.5 else ""
        status, text = self.run(b'APPEND "%s" (%s)' % (box.encode(), flags.encode()), body)
        if self.expectOK(status, text):
            match = _APPENDUID.search(text)
            if match is None:
                self.fail("APPEND without APPENDUID", text)
                return
            other = self.registry.learn(box, parseSet(match.group(2))[0], soakId)
            if other is not None:
                self.fail("APPENDUID reuses a UID", text)

    def doFetch(self) -> None:
        seqs = self.pick(5)
        if not seqs:
            return
        byUid = self.rng.random() < 0.4 and None not in self.uids
        items = self.rng.choice(
            [b"(FLAGS)", b"(UID FLAGS)", b"(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-Soak)])"]
        )
        if self.rng.random() < 0.1:
            items = b"(UID BODY[HEADER.FIELDS (X-Soak)])"
        if byUid:
            named = [self.uids[s - 1] for s in seqs]
            command = b"UID FETCH %s %s" % (makeSet([u for u in named if u is not None]), items)
        else:
            command = b"FETCH %s %s" % (makeSet(seqs), items)
        wanted = {self.uids[s - 1] for s in seqs}
        status, text = self.run(command, noExpunge=not byUid)
        if not self.expectOK(status, text):
            return
        answered = {uid for uid, _ in self.fetched}
        missing = {u for u in wanted if u is not None and u not in self.gone} - answered
        if missing:
            self.fail("FETCH leaves messages unanswered", b"%r" % sorted(missing)[:5])

    def doStore(self) -> None:
        seqs = self.pick(4)
        if not seqs:
            return
        flags = self.flagChoice()
        mode = self.rng.choice([b"+FLAGS", b"-FLAGS", b"FLAGS"])
        silent = self.rng.random() < 0.3
        byUid = self.rng.random() < 0.3 and None not in self.uids
        target = (
            makeSet([u for s in seqs if (u := self.uids[s - 1]) is not None])
            if byUid
            else makeSet(seqs)
        )
        wanted = {self.uids[s - 1] for s in seqs}
        command = b"%sSTORE %s %s%s (%s)" % (
            b"UID " if byUid else b"",
            target,
            mode,
            b".SILENT" if silent else b"",
            " ".join(flags).encode(),
        )
        status, text = self.run(command, noExpunge=not byUid)
        if not self.expectOK(status, text) or silent:
            return
        if not self.atomicStore:
            return
        change = frozenset(flags)
        checked: set[int] = set()
        for uid, now in self.fetched:
            # The STORE's own reply comes first; a later FETCH of the same
            # message may report another session's change after it.
            if uid is None or uid not in wanted or now is None or uid in checked:
                continue
            checked.add(uid)
            ok = not (change & now) if mode == b"-FLAGS" else change <= now
            if not ok:
                self.fail("STORE reply does not show the change", b"UID %d %r" % (uid, sorted(now)))

    def doExpunge(self) -> None:
        seqs = self.pick(2)
        if not seqs:
            return
        self.run(b"STORE %s +FLAGS.SILENT (\\Deleted)" % makeSet(seqs), noExpunge=True)
        if self.rng.random() < 0.5 and None not in self.uids:
            uids = [u for s in seqs if s <= len(self.uids) and (u := self.uids[s - 1]) is not None]
            if uids:
                status, text = self.run(b"UID EXPUNGE %s" % makeSet(uids))
                self.expectOK(status, text)
                return
        status, text = self.run(b"EXPUNGE")
        self.expectOK(status, text)

    def doCopy(self, move: bool) -> None:
        seqs = self.pick(3)
        if not seqs or self.box is None:
            return
        target = self.rng.choice([b for b in self.boxes if b != self.box] or self.boxes)
        byUid = self.rng.random() < 0.5 and None not in self.uids
        sources = {u: self.registry.lookup(self.box, u) for s in seqs if (u := self.uids[s - 1])}
        verb = b"MOVE" if move else b"COPY"
        if byUid:
            command = b'UID %s %s "%s"' % (verb, makeSet(sorted(sources)), target.encode())
        else:
            command = b'%s %s "%s"' % (verb, makeSet(seqs), target.encode())
        status, text = self.run(command)
        if not self.expectOK(status, text, allowExpungeIssued=True):
            return
        found = _COPYUID.search(text) or next(
            (m for line in self.untagged if (m := _COPYUID.search(line)) is not None), None
        )
        if found is None:
            self.fail(f"{verb.decode()} without COPYUID", text)
            return
        for source, new in zip(parseSet(found.group(2)), parseSet(found.group(3)), strict=True):
            soakId = sources.get(source)
            if soakId is not None and self.registry.learn(target, new, soakId) is not None:
                self.fail("COPYUID reuses a UID", text)
        if move and set(parseSet(found.group(2))) & set(self.uids):
            self.fail("MOVE leaves moved messages in the view", text)

    def doSearch(self) -> None:
        status, text = self.run(b"SEARCH ALL", noExpunge=True)
        if not self.expectOK(status, text):
            return
        hits = next((line for line in self.untagged if line.startswith(b"* SEARCH")), b"* SEARCH")
        numbers = [int(n) for n in hits.split()[2:]]
        if numbers != sorted(numbers) or (numbers and numbers[-1] > len(self.uids)):
            self.fail("SEARCH names messages beyond the view", hits)

    def doIdle(self) -> None:
        self.tags += 1
        tag = b"c%d" % self.tags
        self.command = b"IDLE"
        self.noExpunge = False
        self.untagged = []
        self.send(tag + b" IDLE\r\n")
        assert self.sock is not None
        line = self.readLine()
        if not line.startswith(b"+"):
            self.fail("IDLE without continuation", line)
        self.sock.settimeout(self.rng.uniform(0.05, 0.3))
        try:
            while True:
                line = self.readLine()
                self.lines.append(line)
                self.untaggedResponse(line)
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(60)
        self.send(b"DONE\r\n")
        while True:
            line = self.readLine()
            if line.startswith(tag + b" "):
                with self.report.lock:
                    self.report.commands += 1
                if not line.startswith(tag + b" OK"):
                    self.fail("IDLE refused", line)
                return
            self.untaggedResponse(line)

    def doLogout(self) -> None:
        status, text = self.run(b"LOGOUT")
        self.expectOK(status, text)
        self.close()
        self.reset(None)
        self.connect()
        self.select(self.rng.choice(self.boxes))

    def step(self) -> None:
        roll = self.rng.random()
        if self.box is None:
            self.select(self.rng.choice(self.boxes))
        elif roll < 0.12:
            self.doAppend()
        elif roll < 0.37:
            self.doFetch()
        elif roll < 0.57:
            self.doStore()
        elif roll < 0.65:
            self.doExpunge()
        elif roll < 0.71:
            self.doCopy(move=False)
        elif roll < 0.77:
            self.doCopy(move=True)
        elif roll < 0.86:
            self.expectOK(*self.run(b"NOOP"))
        elif roll < 0.91:
            # A QRESYNC client in IDLE could not tell which unknown message
            # a VANISHED names: it would FETCH the UIDs first.
            self.doIdle() if not self.qresync else self.expectOK(*self.run(b"NOOP"))
        elif roll < 0.95:
            self.doSearch()
        elif roll < 0.98:
            self.select(self.rng.choice(self.boxes))
        else:
            self.doLogout()
        self.learnUids()

    def loop(self, deadline: float) -> None:
        try:
            self.connect()
            while time.monotonic() < deadline:
                self.step()
            self.run(b"LOGOUT")
        except Disconnected as e:
            if not self.command.startswith(b"LOGOUT"):
                with self.report.lock:
                    self.report.disconnects += 1
                self.fail("connection dropped", str(e).encode())
        except Exception as e:
            self.fail("client error", repr(e).encode())
        finally:
            self.close()


def prepare(host: str, port: int, user: str, password: str, boxes: list[str]) -> None:
    """Create the mailboxes (INBOX aside) and put a few messages in each."""
    registry = Registry()
    report = SoakReport(1, 0)
    client = SoakClient(
        0, host, port, user, password, boxes, registry, report, random.Random(0), False
    )
    client.connect()
    for box in boxes:
        if box.upper() != "INBOX":
            client.run(b'CREATE "%s"' % box.encode())
        for _ in range(5):
            _, body = client.message()
            client.run(b'APPEND "%s"' % box.encode(), body)
    client.run(b"LOGOUT")
    client.close()


def runSoak(
    host: str,
    port: int,
    user: str,
    password: str,
    clients: int = 6,
    seconds: float = 10.0,
    seed: int = 1,
    boxes: list[str] | None = None,
    atomicStore: bool = True,
) -> SoakReport:
    """
    Run C{clients} clients for C{seconds} against the server; the report of
    what they found.  With C{atomicStore}, a STORE's reply must show its
    change: true of a server that runs a small STORE and its reply with no
    other session's change in between (tmail's one process does); a server
    of several processes may report another session's later change instead.
    """
    boxes = boxes or ["INBOX", "Soak1", "Soak2"]
    prepare(host, port, user, password, boxes)
    registry = Registry()
    report = SoakReport(clients, seconds)
    workers = [
        SoakClient(
            n + 1,
            host,
            port,
            user,
            password,
            boxes,
            registry,
            report,
            random.Random(seed * 1000 + n),
            qresync=n % 3 == 2,
            atomicStore=atomicStore,
        )
        for n in range(clients)
    ]
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=w.loop, args=(deadline,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    report.elapsed = time.monotonic() - started
    return report
