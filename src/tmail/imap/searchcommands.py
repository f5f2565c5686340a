# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
SEARCH, SORT (with ESORT and SORT=DISPLAY) and THREAD, evaluated a message
at a time through the session's cooperator (a large folder keeps no other
session waiting), the headers a slice needs opened together; ESEARCH
results, saved results (SEARCHRES) and the live contexts of
CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.imap.esearch import (
    ReturnOptions,
    esearchResponse,
    parseReturnOptions,
    parseSortReturnOptions,
)
from tmail.imap.fetch import (
    OpenedAhead,
)
from tmail.imap.largemessages import HEADER, INFO, inWorker, isLarge
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.mailboxsearch import MailboxSearch
from tmail.imap.message import openTogether
from tmail.imap.searchcontext import SearchContext, SearchContexts, SortContext, parseTags
from tmail.imap.session import IMAPSession, no
from tmail.imap.sort import MessageFacts, parseSortCriteria, sortSteps
from tmail.imap.thread import ALGORITHMS, Node, formatThreads, threadSteps
from tmail.steps import StepBudget

_S = imap4.IMAP4Server
_B = IMAPSession

__all__ = ["SearchCommands"]

#: The charsets SEARCH takes (RFC 3501 6.4.4).
_CHARSETS = (b"US-ASCII", b"UTF-8")
#: A SEARCH whose result is to be kept (SEARCHRES, RFC 5182).
_SAVE_REQUESTED = re.compile(rb" *RETURN +\([^)]*\bSAVE\b", re.IGNORECASE)


class SearchCommands(IMAPSession):
    """SEARCH, SORT and THREAD for an L{tmail.imap.server.IMAPServer}."""

    if TYPE_CHECKING:

        def _cooperate(self, steps: Iterator[object]) -> Deferred[None]: ...

    def arg_searchprogram(self, line: bytes) -> Any:
        """SEARCH arguments: C{[RETURN (...)] [CHARSET x] keys}, as tokens."""
        self._savingSearch = _SAVE_REQUESTED.match(line) is not None
        return self.arg_searchkeys(line)

    def _commandFailed(self, failure: Failure, tag: bytes) -> None:
        if self._savingSearch:
            self._savingSearch = False
            if self.mbox is not None:
                self.mbox.saved = frozenset()
        super()._commandFailed(failure, tag)

    @staticmethod
    def _checkCharset(token: Any) -> None:
        if not isinstance(token, bytes):
            raise imap4.IllegalClientResponse("Invalid charset")
        if token.upper() not in _CHARSETS:
            raise no(b"[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")

    def do_SEARCH(self, tag: bytes, tokens: list[Any], uid: int = 0) -> Deferred[None]:
        options, tokens = parseReturnOptions(tokens)
        if options is None and self.rev2:
            options = ReturnOptions(frozenset({b"ALL"}))
        if tokens and isinstance(tokens[0], bytes) and tokens[0].upper() == b"CHARSET":
            if len(tokens) < 2:
                raise imap4.IllegalClientResponse("Missing charset")
            self._checkCharset(tokens[1])
            tokens = tokens[2:]
        mbox = self._selected()
        limit, fromEnd = (None, False) if options is None else options.scan()
        self.searchContexts.check(tag, options)
        search = mbox.searching(tokens, limit=limit, fromEnd=fromEnd)
        # What a live result tests changed messages with; it keeps no matches.
        live = mbox.searching(tokens) if options is not None and options.update else None
        return self._cooperate(search.steps(self.runInWorker)).addCallback(
            lambda _: self._searched(tag, mbox, search, options, uid, live)
        )

    def _searched(
        self,
        tag: bytes,
        mbox: IMAPMailbox,
        search: MailboxSearch,
        options: ReturnOptions | None,
        uid: int,
        live: MailboxSearch | None = None,
    ) -> None:
        pairs = search.pairs()
        hits = [u if uid else seq for seq, u in pairs]
        modseq = None
        if search.usesModSeq:
            self._enableCondstore()
            returned = pairs if options is None else options.returned(pairs)
            if returned:
                modseq = max(mbox.info(u).modseq for _, u in returned)
        if options is None:
            words = [b"SEARCH", *(b"%d" % hit for hit in hits)]
            if modseq is not None:
                words.append(b"(MODSEQ %d)" % modseq)
            self.sendUntaggedResponse(b" ".join(words))
        else:
            if b"SAVE" in options.names:
                mbox.saved = frozenset(u for _, u in options.returned(pairs))
            if live is not None:
                self._openContext(tag, SearchContext(mbox, live, bool(uid), pairs))
            if options.answered:
                response = esearchResponse(tag, options, hits, bool(uid))
                if modseq is not None:
                    response += b" MODSEQ %d" % modseq
                self.sendUntaggedResponse(response)
        self._savingSearch = False
        self.sendPositiveResponse(tag, b"SEARCH completed")

    select_SEARCH = (do_SEARCH, arg_searchprogram)

    # CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4)

    _searchContexts: SearchContexts | None = None

    @property
    def searchContexts(self) -> SearchContexts:
        """The live results of SEARCH and SORT RETURN (UPDATE) in the selected mailbox."""
        if self._searchContexts is None:
            settings = self.settings
            self._searchContexts = SearchContexts(
                settings.max_search_contexts, settings.max_update_reads
            )
        return self._searchContexts

    def _openContext(self, tag: bytes, context: SearchContext | SortContext) -> None:
        refusal = self.searchContexts.open(tag, context)
        if refusal is not None:
            self.sendUntaggedResponse(refusal)

    def do_CANCELUPDATE(self, tag: bytes, line: bytes) -> None:
        self.searchContexts.cancel(parseTags(line))
        self.sendPositiveResponse(tag, b"CANCELUPDATE completed")

    select_CANCELUPDATE = (do_CANCELUPDATE, _S.arg_line)

    def _factSteps(
        self, tokens: list[Any], then: Callable[[list[MessageFacts]], Generator[None, None, Any]]
    ) -> Deferred[Any]:
        """
        Charset check, then the matching messages of SORT and THREAD handed
        to C{then}, all a step at a time; fires with what C{then} returns.
        """
        self._checkCharset(tokens[1])
        search = self._selected().searching(tokens[2:], messages=True)
        result: list[Any] = []

        def steps() -> Iterator[object]:
            yield from search.steps(self.runInWorker)
            facts = [MessageFacts(seq, m) for seq, m in search.messages()]
            budget = StepBudget()
            for start in range(0, len(facts), OpenedAhead.SLICE):
                some = facts[start : start + OpenedAhead.SLICE]
                # The headers not read yet: their files are opened together.
                unread = [
                    f.message
                    for f in some
                    if not f.message.hasHeader() and f.message.cachedFact("header") is None
                ]
                waiting = openTogether(unread)
                if waiting is not None:
                    yield waiting
                try:
                    for fact in some:
                        if isLarge(fact.message):
                            # Its header is read and taken apart in a worker thread.
                            need = INFO if fact.message.hasHeader() else HEADER
                            with contextlib.suppress(KeyError):
                                yield inWorker(self.runInWorker, fact.message, need, fact.readAll)
                        elif fact.message in unread:
                            with contextlib.suppress(KeyError, OSError):
                                fact.message.header()
                            if budget.spent():
                                yield None
                finally:
                    for message in unread:
                        message.drop()
            result.append((yield from then(facts)))

        return self._cooperate(steps()).addCallback(lambda _: result[0])

    def do_SORT(self, tag: bytes, tokens: list[Any], uid: int = 0) -> Deferred[None]:
        """SORT (RFC 5256), with ESORT's and CONTEXT=SORT's RETURN options (RFC 5267)."""
        options, tokens = parseSortReturnOptions(tokens)
        if len(tokens) < 3:
            raise imap4.IllegalClientResponse("SORT needs criteria, a charset and search keys")
        try:
            criteria = parseSortCriteria(tokens[0])
        except ValueError as e:
            raise imap4.IllegalClientResponse(str(e)) from None
        self.searchContexts.check(tag, options)
        mbox = self._selected()

        def respond(ordered: list[MessageFacts]) -> None:
            if options is None:
                numbers = (b"%d" % (f.uid if uid else f.seq) for f in ordered)
                self.sendUntaggedResponse(b" ".join([b"SORT", *numbers]))
            else:
                if b"SAVE" in options.names:
                    mbox.saved = frozenset(f.uid for f in options.returned(ordered))
                if options.update:
                    search = mbox.searching(tokens[2:])
                    context = SortContext(mbox, search, bool(uid), criteria, ordered)
                    self._openContext(tag, context)
                if options.answered:
                    hits = [f.uid if uid else f.seq for f in ordered]
                    self.sendUntaggedResponse(esearchResponse(tag, options, hits, bool(uid)))
            self.sendPositiveResponse(tag, b"SORT completed")

        return self._factSteps(tokens, lambda facts: sortSteps(facts, criteria)).addCallback(
            respond
        )

    select_SORT = (do_SORT, _B.arg_searchkeys)

    def do_THREAD(self, tag: bytes, tokens: list[Any], uid: int = 0) -> Deferred[None]:
        if len(tokens) < 3:
            raise imap4.IllegalClientResponse(
                "THREAD needs an algorithm, a charset and search keys"
            )
        algorithm = tokens[0]
        if not isinstance(algorithm, bytes) or algorithm.upper() not in ALGORITHMS:
            raise imap4.IllegalClientResponse("Unknown threading algorithm")

        def threaded(root: Node) -> None:
            threads = formatThreads(root, bool(uid))
            self.sendUntaggedResponse(b"THREAD " + threads if threads else b"THREAD")
            self.sendPositiveResponse(tag, b"THREAD completed")

        return self._factSteps(
            tokens, lambda facts: threadSteps(algorithm.upper(), facts)
        ).addCallback(threaded)

    select_THREAD = (do_THREAD, _B.arg_searchkeys)
