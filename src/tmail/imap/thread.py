# -*- test-case-name: tests.imap.test_imap_thread -*-
"""
THREAD (RFC 5256): the ORDEREDSUBJECT and REFERENCES algorithms and the
C{* THREAD} response.

Trees are walked with explicit stacks, not recursion, so a long reply chain
cannot exhaust Python's stack.  Hostile References cost bounded time: a
message's last L{MAX_REFERENCES} ids are used, and a link whose loop check
would climb more than L{MAX_THREAD_DEPTH} ancestors is not made, as one
that would close a loop is not (RFC 5256 4, step 1.A).  The algorithms
are generators that yield once per message, so a session can run them a
slice at a time (L{threadSteps}); everything they read of a message (its
links, sent date and base subject, the parsing of which is most of their
cost) is read in that message's step, so the tree work that follows in
one piece is plain list and dictionary work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Sequence
from itertools import groupby, pairwise

from tmail.imap.sort import MessageFacts, runSteps

#: The algorithms of RFC 5256, by the name THREAD takes.
ALGORITHMS = (b"ORDEREDSUBJECT", b"REFERENCES")

_MSG_ID = re.compile(rb"<[^<>\s]+@[^<>\s]+>")

#: Message ids of one References field used: the last ones, the nearest
#: ancestors (clients trim the field to a few dozen).
MAX_REFERENCES = 100
#: Ancestors a loop check climbs at most; a deeper link is not made.
MAX_THREAD_DEPTH = 1000
#: References text read, from its end: room for L{MAX_REFERENCES} ids.
_REFERENCES_TEXT = 64 * 1024

Steps = Generator[None, None, "Node"]


class Node:
    """A message in a thread tree; a dummy (C{facts is None}) stands for a missing one."""

    __slots__ = ("children", "facts", "parent")

    def __init__(self, facts: MessageFacts | None = None) -> None:
        self.facts = facts
        self.parent: Node | None = None
        self.children: list[Node] = []

    def adopt(self, child: Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def orphan(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def isAncestorOf(self, other: Node) -> bool:
        """
        Whether this node is C{other} or above it; also when C{other} has
        more than L{MAX_THREAD_DEPTH} ancestors, so that no link below
        them is made.
        """
        if self is not other and not self.children:
            return False
        node: Node | None = other
        for _ in range(MAX_THREAD_DEPTH):
            if node is None:
                return False
            if node is self:
                return True
            node = node.parent
        return node is not None


def _dateKey(node: Node) -> tuple[float, int]:
    """Sent date order (RFC 5256 2.2), ties by sequence number; a dummy sorts as its first child."""
    while node.facts is None:
        if not node.children:
            return (float("inf"), 0)
        node = node.children[0]
    return (node.facts.sentDate, node.facts.seq)


def _bottomUp(root: Node) -> list[Node]:
    """Every node below C{root}, each after all of its descendants."""
    order: list[Node] = []
    stack = list(root.children)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    order.reverse()
    return order


def _sortSiblings(root: Node) -> None:
    for node in [*_bottomUp(root), root]:
        node.children.sort(key=_dateKey)


def _orderedSubject(messages: Sequence[MessageFacts]) -> Steps:
    """
    ORDEREDSUBJECT: messages grouped by base subject, each group a thread
    of its earliest message with the others as its children, threads in
    order of their first message's sent date.
    """
    root = Node()
    keys: dict[int, tuple[bytes, float, int]] = {}
    for facts in messages:
        keys[id(facts)] = (facts.baseSubject, facts.sentDate, facts.seq)
        yield None
    bySubject = sorted(messages, key=lambda f: keys[id(f)])
    for _, group in groupby(bySubject, key=lambda f: f.baseSubject):
        members = list(group)
        first = Node(members[0])
        root.adopt(first)
        for facts in members[1:]:
            first.adopt(Node(facts))
    root.children.sort(key=_dateKey)
    return root


def _messageIds(value: bytes | None) -> list[bytes]:
    return _MSG_ID.findall(value) if value else []


def _references(value: bytes | None) -> list[bytes]:
    """The last L{MAX_REFERENCES} message ids of a References field."""
    return _messageIds(value and value[-_REFERENCES_TEXT:])[-MAX_REFERENCES:]


def _link(messages: Sequence[MessageFacts]) -> Generator[None, None, dict[object, Node]]:
    """Step 1: parent/child links from Message-ID, References and In-Reply-To."""
    table: dict[object, Node] = {}

    def lookup(key: bytes) -> Node:
        node = table.get(key)
        if node is None:
            node = table[key] = Node()
        return node

    for facts in sorted(messages, key=lambda f: f.seq):
        ids = _messageIds(facts.headerField(b"message-id"))
        key: object = ids[0] if ids else ("seq", facts.seq)
        node = table.get(key)
        if node is None or node.facts is not None:
            if node is not None:
                key = ("seq", facts.seq)
            node = table[key] = Node(facts)
        else:
            node.facts = facts
        facts.readForThreading()
        references = _references(facts.headerField(b"references"))
        if not references:
            references = _messageIds(facts.headerField(b"in-reply-to"))[:1]
        # (1)(A)
        for parentId, childId in pairwise(references):
            parent, child = lookup(parentId), lookup(childId)
            if child.parent is None and not child.isAncestorOf(parent):
                parent.adopt(child)
        # (1)(B)
        node.orphan()
        if references:
            last = lookup(references[-1])
            if not node.isAncestorOf(last):
                last.adopt(node)
        yield None
    return table


def _prune(root: Node) -> None:
    """
    Step 3: drop childless dummies and splice the children of the others
    into their place, except a dummy with several children under the root.
    """
    for node in [*_bottomUp(root), root]:
        kept: list[Node] = []
        for child in node.children:
            if child.facts is None and (node is not root or len(child.children) < 2):
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
                child.children, child.parent = [], None
            else:
                kept.append(child)
        node.children = kept


def _threadSubject(node: Node) -> bytes:
    """The base subject of a top-level message, or of a dummy's first child (step 5.B.i)."""
    facts = node.facts if node.facts is not None else node.children[0].facts
    return facts.baseSubject if facts is not None else b""


def _isReply(node: Node) -> bool:
    return node.facts is not None and node.facts.isReplyOrForward


def _gatherBySubject(root: Node) -> None:
    """
    Step 5: merge top-level threads with the same base subject.  Nodes
    leaving the top level are marked by their new parent and the root's
    list is rebuilt once, so many merges cost linear time.
    """
    table: dict[bytes, Node] = {}
    for node in root.children:
        subject = _threadSubject(node)
        if not subject:
            continue
        old = table.get(subject)
        if old is None or (
            old.facts is not None and (node.facts is None or (_isReply(old) and not _isReply(node)))
        ):
            table[subject] = node
    added: list[Node] = []
    for node in root.children:
        subject = _threadSubject(node) if node.parent is root else b""
        if not subject:
            continue
        other = table[subject]
        if other is node:
            continue
        if other.facts is None and node.facts is None:
            for child in node.children:
                child.parent = other
            other.children.extend(node.children)
            node.children, node.parent = [], None
        elif other.facts is None or (_isReply(node) and not _isReply(other)):
            node.parent = other
            other.children.append(node)
        else:
            dummy = Node()
            dummy.parent = root
            dummy.children = [other, node]
            other.parent = node.parent = dummy
            table[subject] = dummy
            added.append(dummy)
    root.children = [node for node in root.children if node.parent is root] + added


def _referenceThreads(messages: Sequence[MessageFacts]) -> Steps:
    """REFERENCES (RFC 5256 4): threads by Message-ID links, then merged by base subject."""
    table = yield from _link(messages)
    root = Node()
    for node in table.values():
        if node.parent is None:
            root.adopt(node)
    _prune(root)
    for node in root.children:
        node.children.sort(key=_dateKey)
    root.children.sort(key=_dateKey)
    _gatherBySubject(root)
    _sortSiblings(root)
    return root


def orderedSubject(messages: Sequence[MessageFacts]) -> Node:
    """The ORDEREDSUBJECT thread tree of C{messages}."""
    return runSteps(_orderedSubject(messages))


def references(messages: Sequence[MessageFacts]) -> Node:
    """The REFERENCES thread tree of C{messages}."""
    return runSteps(_referenceThreads(messages))


def threadSteps(algorithm: bytes, messages: Sequence[MessageFacts]) -> Steps:
    """
    Build the thread tree of C{messages} by the named algorithm (upper
    case), yielding once per message; the generator returns the tree.
    """
    if algorithm == b"ORDEREDSUBJECT":
        return _orderedSubject(messages)
    return _referenceThreads(messages)


def threadMessages(algorithm: bytes, messages: Sequence[MessageFacts]) -> Node:
    """The thread tree of C{messages} by the named algorithm (upper case)."""
    return runSteps(threadSteps(algorithm, messages))


def _tokens(node: Node, number: Callable[[MessageFacts], int]) -> Iterator[bytes]:
    """The pieces of one top-level thread's thread-list, parentheses included."""
    stack: list[Node | bytes] = [b")", node, b"("]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            yield item
            continue
        children = item.children
        if item.facts is not None:
            yield b"%d" % number(item.facts)
            if children:
                yield b" "
        if len(children) == 1:
            stack.append(children[0])
        else:
            for child in reversed(children):
                stack.extend([b")", child, b"("])


def formatThreads(root: Node, uid: bool) -> bytes:
    """
    The data of a C{* THREAD} response (RFC 5256 5): one thread-list per
    thread.  The tree is taken apart as it is written: its parent links
    make every node part of a reference cycle, which would otherwise keep
    the tree and each message it holds until the next full garbage
    collection, a pause every session of the process waits for.
    """

    def number(facts: MessageFacts) -> int:
        return facts.uid if uid else facts.seq

    try:
        return b"".join(piece for thread in root.children for piece in _tokens(thread, number))
    finally:
        for node in [*_bottomUp(root), root]:
            node.parent = None
            node.children = []
