"""
The extension points of tmail: what a storage backend, a user directory and a
realm must provide.

Front ends (SMTP, IMAP4, POP3) only ever talk to these interfaces; they never
touch the filesystem.  A developer who keeps mail elsewhere implements
L{IMailStore} and L{IMailFolder} and returns them from a realm's
C{storeFor}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

#: The IMAP system flags a store keeps; anything else is a keyword.
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """
    What a folder knows about one message without reading it.

    @ivar uid: the message's IMAP UID, unique and increasing within the folder
        for one UIDVALIDITY.
    @ivar flags: IMAP flag names (C{"\\Seen"}, ...) and keywords (C{"$Junk"}).
    @ivar size: the size in bytes of the message as stored (CRLF line ends).
    @ivar internaldate: seconds since the epoch: when the message arrived.
    @ivar key: the store's own stable name for the message (the Maildir base
        name); it does not change when flags change, so POP3 UIDL uses it.
    @ivar recent: whether this process first saw the message (IMAP \\Recent).
    @ivar modseq: the message's mod-sequence (RFC 7162): higher after every
        change of its flags; 0 from a store that keeps none.
    """

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    key: str
    recent: bool = False
    modseq: int = 0


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """
    A user's quota: what is used and the limits, for the IMAP QUOTA
    extension (RFC 9208 STORAGE and MESSAGE resources) and the admin CLI.

    @ivar storage: bytes of all messages in all folders.
    @ivar messages: number of messages in all folders.
    @ivar storageLimit: bytes allowed, C{None} for no limit.
    @ivar messagesLimit: messages allowed, C{None} for no limit.
    """

    storage: int
    messages: int
    storageLimit: int | None = None
    messagesLimit: int | None = None

    def refusal(self, size: int, count: int = 1) -> str | None:
        """
        The resource (C{"storage"} or C{"messages"}) that adding C{count}
        messages of C{size} bytes in all would take over its limit, or
        C{None} when they fit.  Reaching a limit exactly is allowed.
        """
        if self.storageLimit is not None and self.storage + size > self.storageLimit:
            return "storage"
        if self.messagesLimit is not None and self.messages + count > self.messagesLimit:
            return "messages"
        return None


class IPendingMessage(Interface):
    """
    A message being written into a folder: the two-phase delivery contract.

    Bytes go to a temporary file; L{commit} makes them durable and visible,
    L{abort} throws them away.  Nothing is visible to readers before commit.
    """

    def write(data: bytes) -> None:
        """Append C{data} (CRLF line ends) to the message."""

    def publish() -> None:
        """
        Optional, synchronous: the slow half of L{commit}, making the bytes
        durable (fsync) and, where the store can, moving them into the
        folder.  It touches nothing but this message, so a caller may run
        it in a worker thread and let many deliveries wait on the disk at
        once.  Raises like L{commit}.
        """

    def commit() -> int:
        """
        fsync the file, move it into the folder, fsync the directory (unless
        L{publish} did); fires with the new message's UID.  Fails with
        L{tmail.errors.StoreFull} (or C{OSError}) when the disk refuses; the
        message is then removed.  Call it from the reactor thread.  (A store
        may answer with the value itself: callers use C{maybeDeferred}.)
        """

    def abort() -> None:
        """Remove the temporary file.  Safe to call more than once."""


class IInsertablePendingMessage(IPendingMessage):
    """
    Optional for an L{IPendingMessage}: one that can insert bytes into what
    was already written.  SMTP uses it for header fields that are known
    only once the whole message is in (a policy's verdict at the end of
    DATA), which go in front of content already handed to the store.

    Inserting where the bytes are still in the store's own buffer is free;
    further back, the store may have to copy the file once (in L{publish},
    which callers may run in a worker thread).  A store without this
    interface is simply given the whole message at the end instead.
    """

    def insert(offset: int, data: bytes) -> None:
        """
        Insert C{data} at C{offset} of the message as written so far
        (earlier insertions included), before L{publish} or L{commit}.
        Raises C{ValueError} for an offset past the end.
        """


class IMailFolder(Interface):
    """
    One folder (IMAP mailbox) of a user's store.

    Messages are listed in UID order.

    What the folder knows is answered at once, from its in-memory index as
    of its last L{IIncrementalFolder.refresh} or its own changes, never
    touching disk: L{uidValidity}, L{uidNext}, L{messages},
    L{beginMessage} and the readers of the sub-interfaces.  Call
    C{refresh()} to see other processes' changes.  What needs the disk
    (or a network) answers with a L{Deferred} that may fire at once or
    later: L{openMessage}, L{setFlags}, L{expunge}, L{copyMessage},
    C{changeFlags}, C{refresh} and L{IPendingMessage.commit}; errors are
    failures of those Deferreds (their return annotations here name what
    the Deferred fires with).  A store may still answer those with plain
    values: callers wrap them with C{maybeDeferred}.  Operations on one
    folder complete in the order they were asked for.
    """

    name = Attribute("The folder's IMAP name (C{str}), C{INBOX} or e.g. C{Archive/2025}.")

    def uidValidity() -> int:
        """The folder's UIDVALIDITY."""

    def uidNext() -> int:
        """The UID the next message will get."""

    def messages(claimRecent: bool = True) -> Sequence[MessageInfo]:
        """
        All messages, in increasing UID order, as of the last refresh or
        this process's own changes; never touches disk (call C{refresh()}
        first to see other processes' changes).  Messages listed with
        C{recent} lose it for later calls, unless C{claimRecent} is false
        (IMAP STATUS and EXAMINE look without taking C{\\Recent} away).
        """

    def openMessage(uid: int) -> BinaryIO:
        """
        Open the message's raw bytes for reading; fires with the open file.
        Fails with C{KeyError} when the message is gone.
        """

    def beginMessage(
        flags: Iterable[str] = (), internaldate: float | None = None
    ) -> IPendingMessage:
        """
        Start writing a new message into this folder; never waits for the
        disk (the bytes may be buffered until L{IPendingMessage.commit}).
        """

    def setFlags(uid: int, flags: Iterable[str]) -> MessageInfo:
        """
        Replace the message's flags and keywords; fires with its new
        L{MessageInfo} once the change is visible to every process.  Flag
        changes and expunges need not be flushed to disk (a power loss may
        undo the last of them, as with Dovecot's C{mail_fsync =
        optimized}); new messages always are.  Fails with C{KeyError} when
        the message is gone, C{ValueError} for a keyword that cannot be
        stored.
        """

    def expunge(uids: Iterable[int]) -> list[int]:
        """Remove the given messages for good; fires with the UIDs that were removed."""

    def copyMessage(uid: int, target: IMailFolder) -> int:
        """
        Copy a message, with its flags, into C{target}; fires with the new
        UID there.  Never waits for this folder and C{target} at once.
        """

    def addListener(listener: Callable[[IMailFolder], None]) -> None:
        """Call C{listener(folder)} after this folder changes (in this process)."""

    def removeListener(listener: Callable[[IMailFolder], None]) -> None:
        """Stop calling C{listener}."""


class IModSeqFolder(IMailFolder):
    """
    A folder that keeps mod-sequences across restarts, for IMAP CONDSTORE
    and QRESYNC (RFC 7162).  Every message it lists has a C{modseq} of at
    least 1; a flag change or an expunge takes a mod-sequence higher than
    any before it, and the folder remembers which UIDs were expunged when.
    A folder without this interface is selected with C{NOMODSEQ}.
    """

    def highestModSeq() -> int:
        """
        The folder's HIGHESTMODSEQ as of the last refresh or own change:
        at least the mod-sequence of every change L{messages} has reported.
        Never touches disk.
        """

    def expungedSince(modseq: int) -> tuple[list[int], bool]:
        """
        The UIDs expunged after C{modseq}, ascending, as of the last
        refresh or own change (never touching disk), and whether the list
        is complete (C{False} when the folder no longer remembers that far
        back: QRESYNC then reports every missing UID).
        """


class IObjectIdFolder(IMailFolder):
    """
    A folder that keeps the object IDs of RFC 8474: one for the folder
    that stays when it is renamed, and one for each message that stays
    across restarts and is the same for a copy (so also after a move).
    IDs are 1 to 255 letters, digits, C{_} or C{-}.
    """

    def mailboxId() -> str:
        """The folder's MAILBOXID."""

    def emailId(uid: int) -> str:
        """The message's EMAILID.  Raises C{KeyError} when the message is gone."""


class ISaveDateFolder(IMailFolder):
    """
    A folder that knows when each message was saved into it (RFC 8514):
    delivered, appended, copied or moved there.
    """

    def saveDate(uid: int) -> float | None:
        """
        The message's save date (seconds since the epoch), or C{None} when
        it is not known.  Raises C{KeyError} when the message is gone.
        """


class IIncrementalFolder(IMailFolder):
    """
    A folder that can say which messages changed since a point, so each
    IMAP session selected on it catches up in time proportional to the
    changes rather than to the folder's size.  Serials are this object's
    own counters: they mean nothing to another process or folder object.
    """

    def changeSerial() -> int:
        """The serial of the index's current state (never touches disk)."""

    def changesSince(
        serial: int, claimRecent: bool = True
    ) -> tuple[int, list[MessageInfo | int] | None]:
        """
        The current serial, from the index as of the last refresh or own
        change (never touching disk; claiming C{recent} as
        L{IMailFolder.messages} does), with what changed after C{serial}:
        the current
        L{MessageInfo} of each message added or changed and the UID of each
        one removed, once each; C{None} instead of the list when C{serial}
        is too old to tell (the caller then lists every message).
        """

    def refresh() -> None:
        """
        Pick up the changes other processes made (cheap when nothing
        changed: no rescan of the whole folder) into the index the other
        methods answer from; fires once they are in, the listeners told.
        A folder whose index was never loaded answers as empty until then.
        """

    def info(uid: int) -> MessageInfo | None:
        """What the folder knows of a message now, or C{None} when it is gone."""

    def messageCount() -> int:
        """
        How many messages the folder held at the last refresh or own change,
        without listing them, touching disk or taking C{\\Recent} from
        anyone (NOTIFY's STATUS).
        """


class IRetainingFolder(IMailFolder):
    """
    A folder that keeps the bytes of a message expunged in this process
    while a reader still holds it: an IMAP session not yet told of the
    expunge may still FETCH it (RFC 2180 4.1.1).  L{IMailFolder.openMessage}
    opens such a message until every reader that held it lets it go.
    """

    def addReader(holds: Callable[[int], bool]) -> None:
        """Register a reader; C{holds(uid)} says whether it still holds a message."""

    def removeReader(holds: Callable[[int], bool]) -> None:
        """The reader is done: it lets go of every message it held."""

    def release(holds: Callable[[int], bool], uids: Iterable[int]) -> None:
        """The reader lets these expunged messages go."""


class ILinkingFolder(IMailFolder):
    """
    A folder that can take a new message as a copy of another folder's
    message being delivered, sharing its bytes: one message to several
    local users is then stored once (hard links in Maildir).
    """

    def linkedCopy(source: IPendingMessage) -> IPendingMessage:
        """
        A pending message in this folder with the content C{source} holds
        now (complete: nothing more is written to it), to be published and
        committed on its own: one user's quota refusal does not touch the
        others'.  C{source} must come from a folder of the same store type.
        """


class IFlagChangingFolder(IMailFolder):
    """
    A folder that adds and removes flags on whatever the message has when
    the change is made, so that a change another process made meanwhile,
    which the caller had not seen yet, is kept rather than undone (as
    IMAP's C{STORE +FLAGS} and C{-FLAGS} mean).
    """

    def changeFlags(uid: int, add: Iterable[str], remove: Iterable[str]) -> MessageInfo:
        """
        Add C{add} and remove C{remove} (flags and keywords) and leave the
        message's others as they are; otherwise (a Deferred) as
        L{IMailFolder.setFlags}.
        """


class IFieldCacheFolder(Interface):
    """
    Opaque fields of a folder's messages (what a front end made of their
    bytes: parsed facts) kept across restarts and shared by the processes
    serving the folder, the role of Dovecot's C{dovecot.index.cache}.  The
    store knows nothing of what fields mean; it gives a message's fields
    back only while the message it kept them for (its UID, the folder's
    UIDVALIDITY and its stored content, as its L{MessageInfo} names them)
    is asked for.  A store offers it by
    adaptation: C{IFieldCacheFolder(folder, None)}; without it, a front end
    keeps what it parsed in memory only.

    Every method but L{flushFields} is called in the reactor thread and
    answers from memory and small reads of the cache (a record; what other
    processes appended since; a small file the first time).
    """

    def cachedFields(info: MessageInfo) -> dict[str, bytes] | None:
        """The fields kept of the message C{info} names, or C{None} when none are."""

    def cacheFields(info: MessageInfo, fields: dict[str, bytes]) -> None:
        """
        Keep C{fields} of the message C{info} names, with those kept before;
        written with the next L{flushFields} (until then, L{cachedFields}
        has them).
        """

    def useField(name: str, when: float) -> None:
        """
        A client asked for field C{name} at C{when} (seconds since the
        epoch): the field's decision, kept with the fields.
        """

    def fieldUses() -> dict[str, float]:
        """Each field's last L{useField} time, as kept."""

    def pendingFields() -> int:
        """Messages whose fields wait for the next L{flushFields}."""

    def flushFields(dropUnusedBefore: float, compactShare: float) -> Deferred[None]:
        """
        Write the waiting fields, out of the reactor thread.  When dead
        records (replaced ones, those of messages no longer in the folder)
        pass C{compactShare} of the file, or a field was last used before
        C{dropUnusedBefore}, write it anew without them and without such
        fields.
        """


class IMailStore(Interface):
    """
    All folders of one user.  Folder names are IMAP names (C{str}) with C{/}
    as hierarchy delimiter; C{INBOX} always exists and cannot be deleted.

    Every operation here may touch the disk or the network, so it answers
    with a L{Deferred} (Maildir does its file work in a thread pool), which
    may have fired already or fire later; errors arrive as its failure, of
    the exception types named here.  Front ends call these through
    C{maybeDeferred}, so that a store written before this seam (answering
    with the values themselves) still serves, and never assume that a
    Deferred has fired.
    """

    delimiter = Attribute("The hierarchy delimiter of folder names (C{str}).")

    def listFolders() -> Deferred[list[str]]:
        """Names of all folders, INBOX included."""

    def getFolder(name: str) -> Deferred[IMailFolder]:
        """
        The folder, refreshed (L{IIncrementalFolder.refresh}: its index
        loaded, so L{IMailFolder.messages} right after is current).  Fails
        with L{tmail.errors.NoSuchFolder} when it does not exist and
        L{tmail.errors.InvalidFolderName} for a name that is not allowed.
        Repeated calls answer the same object.
        """

    def createFolder(name: str) -> Deferred[IMailFolder]:
        """
        Create a folder (and its missing parents) and answer it, as
        L{getFolder} does.  Fails with L{tmail.errors.FolderExists}.
        """

    def deleteFolder(name: str) -> Deferred[None]:
        """
        Delete a folder and its messages; answers when its messages are
        gone (however many: a store whose deletion would take the caller's
        thread for long provides L{ISteppedStore} instead).
        """

    def renameFolder(old: str, new: str) -> Deferred[None]:
        """Rename a folder and its children.  Renaming INBOX moves its messages."""

    def subscriptions() -> Deferred[list[str]]:
        """Names of subscribed folders."""

    def subscribe(name: str) -> Deferred[None]:
        """Add a folder to the subscriptions."""

    def unsubscribe(name: str) -> Deferred[None]:
        """Remove a folder from the subscriptions."""


class ISteppedStore(IMailStore):
    """
    A store whose L{IMailStore.renameFolder} and L{IMailStore.deleteFolder}
    would do all their work in the caller's thread at once (renaming INBOX
    moves every message, deleting a folder removes every message), and that
    offers them a step at a time instead, for a caller that lets other work
    run between the steps.  A front end runs the steps of a store that
    provides this interface, and otherwise awaits the one call.

    A store that answers those calls with Deferreds and does the work
    elsewhere (Maildir's thread pool, a database server) need not provide
    it.
    """

    def renameFolderSteps(old: str, new: str) -> Iterator[None]:
        """
        L{IMailStore.renameFolder} as an iterator of steps, each a bounded
        amount of work; the rename is done when it is exhausted.  Its errors
        are raised by the first step.
        """

    def deleteFolderSteps(name: str) -> Iterator[None]:
        """
        L{IMailStore.deleteFolder} as an iterator of steps: the folder is
        gone after the first (which raises its errors); the steps after it
        free the space its messages took.
        """


class IDeliveryStore(IMailStore):
    """
    A store that hands out a folder to deliver into without reading its
    index first, as Dovecot's LDA opens a mailbox only to save into it.

    L{IMailStore.getFolder} answers a folder refreshed, which costs a look
    at the folder's directories (a listing after every change) and, for a
    Maildir, moves new mail into C{cur/}: right for a reader, wasted on a
    delivery, which only starts and commits messages.
    """

    def deliveryFolder(name: str) -> Deferred[IMailFolder]:
        """
        The folder C{name} as L{IMailStore.getFolder} answers it, for
        L{IMailFolder.beginMessage} (and L{ILinkingFolder.linkedCopy}) and
        the commit of what it starts; its index need not be loaded, so its
        readers may not be current.  Fails as L{IMailStore.getFolder} does.
        """


class IQuotaStore(Interface):
    """
    Optional for an L{IMailStore}: a store that keeps per-user quotas.
    Deliveries into such a store fail with L{tmail.errors.OverQuota} (from
    C{commit}, C{publish} or C{copyMessage}) when they would go over a
    limit; front ends use L{quota} to refuse early and to report usage.
    Like L{IMailStore}'s, these answer with Deferreds.
    """

    def quota() -> Deferred[QuotaUsage | None]:
        """Current usage and limits, or C{None} when the store keeps no quota."""

    def checkQuota(size: int, count: int = 1) -> Deferred[None]:
        """
        Fail with L{tmail.errors.OverQuota} when C{count} more messages of
        C{size} bytes in all would not fit.  Cheap: front ends call it before
        a message arrives (SMTP RCPT, IMAP APPEND), and without limits it
        reads nothing.
        """

    def recalculateQuota() -> Deferred[QuotaUsage | None]:
        """Count the usage again from the messages themselves and answer it."""


class ISpecialUseStore(Interface):
    """
    Optional for an L{IMailStore}: a store that keeps the RFC 6154
    special-use attributes (C{\\Sent}, C{\\Trash}, ...) users give folders
    with IMAP C{CREATE ... (USE (...))}.  Deleting a folder drops its
    attributes; renaming one moves them (and those of its sub-folders).
    Like L{IMailStore}'s, these answer with Deferreds.
    """

    def specialUse() -> Deferred[dict[str, frozenset[str]] | None]:
        """
        The attributes by folder name, or C{None} while nothing was ever
        recorded: the IMAP server then makes the configured special folders
        (a user's first login) and records that it did.
        """

    def updateSpecialUse(changes: dict[str, frozenset[str]]) -> Deferred[None]:
        """
        Replace the attributes of the folders named in C{changes} (an empty
        set clears them); C{{}} only records that the record exists.
        """


class IMetadataStore(Interface):
    """
    Optional for an L{IMailStore}: a store that keeps METADATA entries
    (RFC 5464) for each folder and for the server.  Entry names are the
    IMAP ones (C{/private/comment}), compared without regard to case;
    values are any octets.  A folder's entries go with it when it is
    renamed and are gone when it is deleted.  Like L{IMailStore}'s, these
    answer with Deferreds.
    """

    def metadata(folder: str | None) -> Deferred[dict[str, bytes]]:
        """
        The entries of C{folder} (C{None}: the server's), by name.  Fails
        with L{tmail.errors.NoSuchFolder} for a folder that does not exist.
        """

    def updateMetadata(
        folder: str | None,
        changes: dict[str, bytes | None],
        check: Callable[[dict[str, bytes]], None] | None = None,
    ) -> Deferred[None]:
        """
        Set the entries of C{changes} (C{None} removes one) at once, durably.
        C{check}, if given, is called with all the entries as they would be
        and may raise to refuse the change, which then changes nothing; it
        may be called in another thread (where the store does its file
        work), so it must only look at what it is given.
        """


class IMailboxKeys(Interface):
    """
    The IMAP URLAUTH mailbox access keys of one user (RFC 4467 3): a random
    key per mailbox, kept durably, tied to the mailbox's UIDVALIDITY.
    """

    def key(mailbox: str, uidValidity: int) -> bytes | None:
        """The mailbox's key, or C{None} when it has none for this UIDVALIDITY."""

    def keyFor(mailbox: str, uidValidity: int) -> bytes:
        """The mailbox's key, made and kept durably when it has none yet."""

    def reset(mailbox: str | None = None) -> None:
        """Forget the key of C{mailbox}, or of every mailbox (C{None})."""


class IURLAuthStore(Interface):
    """Optional for an L{IMailStore}: one that keeps URLAUTH mailbox access keys."""

    def mailboxKeys() -> IMailboxKeys:
        """The user's mailbox access keys."""


class IUserDirectory(Interface):
    """
    Domains, users, aliases and password hashes.  Addresses are
    C{local@domain}, compared case-insensitively.
    """

    def domains() -> list[str]:
        """Hosted domains, lower case."""

    def hasDomain(domain: str) -> bool:
        """Whether C{domain} is hosted here."""

    def users(domain: str | None = None) -> list[str]:
        """Addresses of users (of one domain, or all)."""

    def hasUser(address: str) -> bool:
        """Whether C{address} is a user (not an alias)."""

    def checkPassword(address: str, password: bytes) -> str | None:
        """
        Return the user's canonical address when C{password} is right, else
        C{None}.  Takes about the same time for unknown users as for wrong
        passwords.
        """

    def aliasTargets(address: str) -> list[str] | None:
        """
        The addresses an alias (or a C{@domain} catch-all, when C{address}
        is not otherwise known) points to, or C{None} when there is no alias.
        """


class IUserFields(Interface):
    """
    Optional for an L{IUserDirectory}: per-user settings as Dovecot's
    userdb extra fields (C{quota_rule=*:storage=1G}).
    """

    def userFields(address: str) -> dict[str, str]:
        """
        The user's extra fields, names without a C{userdb_} prefix; empty for
        an unknown user.
        """


@dataclass(frozen=True, slots=True)
class Destinations:
    """
    Where mail to one recipient address goes.

    @ivar local: the canonical addresses of the local users it is stored for.
    @ivar remote: addresses outside the hosted domains it is passed on to
        (aliases pointing elsewhere), through the outbound queue.
    """

    local: tuple[str, ...]
    remote: tuple[str, ...] = ()


class IMailUser(Interface):
    """
    The avatar a realm hands out for a user who logged in: who it is and
    where its mail is.  Each front end makes what it serves from it (an
    IMAP account, a POP3 mailbox of the INBOX), so a realm knows nothing
    of protocols and a new front end needs no change to any realm.
    """

    name = Attribute("The user's canonical address.")
    store = Attribute("The user's L{IMailStore}.")


class IMailRealm(IRealm):
    """
    The one place that maps an authenticated user or a recipient address to
    its storage.  Subclass a realm and override L{storeFor} to keep mail
    elsewhere.  Asked for an avatar (C{requestAvatar}), it hands out an
    L{IMailUser}.
    """

    directory = Attribute("The L{IUserDirectory} the realm consults.")

    def storeFor(user: str) -> IMailStore:
        """
        The store of the user with canonical address C{user}.  Repeated calls
        return the same object, so sessions share change notifications.
        """

    def resolveRecipient(address: str) -> list[str]:
        """
        The canonical addresses of the local users that mail to C{address}
        goes to, after C{+tag} removal and alias expansion.  Raises
        L{tmail.errors.UnknownRecipient} for an unknown user of a hosted
        domain and L{tmail.errors.NotHostedDomain} for any other domain.
        """


class IForwardingRealm(IMailRealm):
    """
    Optional for a realm: one whose aliases may point outside the hosted
    domains.  SMTP asks L{destinations} instead of C{resolveRecipient} and
    hands the remote part to the outbound queue.
    """

    def destinations(address: str) -> Destinations:
        """
        Where mail to C{address} goes, after C{+tag} removal and alias
        expansion.  Raises as C{resolveRecipient} does.
        """


class ILoginAttempt(Interface):
    """
    One password check from a client address, counted against the address's
    limit from L{ILoginThrottle.begin} until it is closed by one of the
    methods below.  The first call closes it; later calls do nothing.
    """

    def succeeded() -> None:
        """The credentials were right: the attempt stops counting."""

    def failed() -> Deferred[None]:
        """
        The credentials were wrong: the attempt becomes a failure of its
        address.  The returned Deferred fires when the failure may be
        reported to the client (each failure is answered later than the
        one before).
        """

    def abandoned() -> None:
        """The check reached no verdict (an internal error): the attempt stops counting."""


class ILoginThrottle(Interface):
    """
    Bounds the password checks made for one client address, whichever
    protocol, session or process they come through: failures within a
    window plus checks still running never exceed the limit, so parallel
    connections cannot guess more passwords than sequential ones.

    One process keeps the counts in memory (L{tmail.auth.throttle.AuthThrottle});
    several worker processes would share one implementation that asks a
    common keeper of the counts, which is why L{begin} answers with a
    Deferred.
    """

    def begin(address: str) -> Deferred[ILoginAttempt | None]:
        """
        Count a password check from C{address} as running, before the check
        is made.  Fires with the attempt, to be closed with its verdict, or
        with C{None} when the address's failures and running checks already
        reach the limit: the check must not be made.
        """


class IFreeSpace(Interface):
    """
    Optional for a realm or a queue that keeps mail on a file system: how
    much room is left there, so that SMTP can refuse a message at C{MAIL}
    rather than after its content.
    """

    def freeSpace() -> int:
        """
        The bytes that may still be written where mail is kept.  Blocks
        briefly on the file system: call it from a thread.
        """
