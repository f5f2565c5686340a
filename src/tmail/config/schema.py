"""
Typed settings: what a validated configuration file turns into.

Every limit tmail enforces is a field here, with the default an operator of
Dovecot or Postfix would expect.  Paths are absolute (the loader resolves them
against the configuration file's folder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PlaintextAuthPolicy = Literal["loopback", "never", "always"]
OverQuotaPolicy = Literal["reject", "tempfail"]
BareNewlinesPolicy = Literal["reject", "normalise"]
SenderCheck = Literal["envelope+header", "envelope", "off"]
ClientCheck = Literal["reject", "allow"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class TLSSettings:
    """The certificate and key used by STARTTLS/STLS and C{tls:} listeners."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class RealmSettings:
    """
    Which realm backend maps users to storage.

    @ivar backend: C{"virtual"}, C{"maildir"} or C{"package.module:Class"}.
    @ivar domain: the one domain of the C{maildir} backend.
    @ivar root: the Maildir root of the C{maildir} backend (users' Maildirs
        are C{root/<local part>}); defaults to C{data_dir/mail}.
    @ivar file_threads: threads each process does the stores' file work in
        (listing, renaming, fsync, lock waits), out of the thread that
        serves the sessions: a slow disk or a lock held elsewhere delays
        only the operations on that folder.
    """

    backend: str = "virtual"
    domain: str | None = None
    root: Path | None = None
    file_threads: int = 4


@dataclass(frozen=True)
class AuthSettings:
    """
    Failed-login throttling, per client address, shared by all protocols.

    After each failure the next answer is delayed by C{failure_delay} seconds,
    doubling up to C{max_failure_delay}; after C{max_failures} failures within
    C{failure_window} seconds further attempts are refused until the window
    passes.  Checks still running count as failures until they succeed, so
    parallel connections get no more guesses than one.

    @ivar check_threads: password checks hashing at once, in threads of
        their own (more wait their turn): a burst of logins neither takes
        every core from the sessions nor the threads deliveries fsync in.
    """

    failure_delay: float = 2.0
    max_failure_delay: float = 15.0
    max_failures: int = 10
    failure_window: float = 300.0
    check_threads: int = 2


@dataclass(frozen=True)
class ServerSettings:
    """
    The processes that serve the listeners (the C{[server]} table).

    @ivar workers: worker processes sharing the listeners, each restarted if
        it dies, under one supervising process that keeps the state they
        share (L{tmail.workers}); 0: one per core; 1: a single process, as
        when tmail is embedded.
    """

    workers: int = 0


@dataclass(frozen=True)
class QuotaSettings:
    """
    Every user's default quota, kept in the Maildir++ C{maildirsize} file.
    A user's own limits (C{tmail quota set}) override these.

    @ivar storage: bytes of all messages in all folders (the file may say
        C{"1G"}, C{"500M"}; binary units); 0 means no limit.
    @ivar messages: number of messages in all folders; 0 means no limit.
    @ivar over_quota: what SMTP answers for a recipient whose mailbox is
        full: C{"reject"} (C{552 5.2.2}, the sender gets a bounce at once)
        or C{"tempfail"} (C{452 4.2.2}, the sender retries for days).
    """

    storage: int = 0
    messages: int = 0
    over_quota: OverQuotaPolicy = "reject"


@dataclass(frozen=True)
class SMTPSettings:
    """
    One SMTP service: C{[smtp]} (MX) or C{[submission]}.

    @ivar listen: endpoint strings; C{tls:PORT[:interface=ADDR]} means an
        implicit-TLS listener using C{[tls]}.
    @ivar max_message_size: bytes; larger messages get C{552 5.3.4}.
    @ivar max_recipients: per message; more get C{452 4.5.3}.
    @ivar max_line_length: bytes per command or DATA line, CRLF excluded.
    @ivar max_errors: bad commands per session before the server hangs up.
    @ivar timeout: seconds a client may stay silent (RFC 5321 4.5.3.2).
    @ivar max_connections_per_address: concurrent sessions per client address
        (an IPv6 client: its prefix, see L{Settings.ipv6_prefix_length}).
    @ivar max_connections: concurrent sessions of the listener from all
        clients together (Postfix's C{default_process_limit}); more get
        C{421 4.3.2} and are closed.  0: no limit.
    @ivar bare_newlines: what a message holding a CR or LF outside a CRLF
        gets: C{"reject"} (C{550 5.5.2}), or C{"normalise"} (stored with
        CRLF there, as Postfix's C{smtpd_forbid_bare_newline = normalize});
        either way only C{<CRLF>.<CRLF>} ends DATA.
    @ivar policies: names of C{[policy.<name>]} tables (or bundled
        policies), asked in this order at every stage of a session (of
        C{[lmtp]} too).
    @ivar command_deadline: seconds a client has to send one whole command
        line (or AUTH response) from its first byte, however steadily it
        trickles (Postfix's C{smtpd_per_request_deadline}); also the time
        DATA or BDAT content starts with (see C{min_data_rate}).
    @ivar min_data_rate: bytes per second DATA and BDAT content must keep
        up (Postfix's C{smtpd_min_data_rate}): each byte adds
        1/C{min_data_rate} seconds to the time left, which never exceeds
        C{timeout}.  A transaction, from C{MAIL} to the end of its
        content, must be over within C{timeout} plus the time the largest
        message takes at this rate.  Past either: C{421 4.4.2}.
    @ivar junk_command_limit: C{NOOP}, C{RSET}, C{VRFY}, C{EXPN}, C{HELP},
        C{HELO}, C{EHLO} and C{LHLO} commands a session may send; each one
        after that counts towards C{max_errors} (Postfix's
        C{smtpd_junk_command_limit}).  Delivering a message resets the count.
    @ivar greet_pause: seconds between the first line of a multi-line
        greeting (C{220-}) and its last (C{220 }), as postscreen's
        C{postscreen_greet_wait} and sendmail's C{greet_pause}; 0 greets at
        once.  The MX pauses by default, submission and LMTP do not.
    @ivar early_talkers: a client that sends before the last greeting line:
        C{"reject"} (C{521 5.5.1 Protocol error} and hang up, postscreen's
        pregreet test with C{postscreen_greet_action = drop}) or C{"allow"}.
    @ivar unauth_pipelining: a client that sends a command before the reply
        to one after which RFC 2920 says it must wait (C{EHLO}, C{DATA},
        C{VRFY}, C{EXPN}, C{NOOP}; after C{HELO}, any command), unless
        authenticated: C{"reject"} (C{554 5.5.0 Error: SMTP protocol
        synchronization} and hang up, Postfix's
        C{smtpd_forbid_unauth_pipelining}) or C{"allow"}.
    @ivar min_free_space: bytes the file system holding the mail (and, on
        submission, the outbound queue's) must keep free: C{MAIL} gets
        C{452 4.3.1} when the free space less this cannot hold the C{SIZE}
        declared, or without C{SIZE} when no more than this is free
        (Postfix's C{queue_minfree}); C{"1G"} and the like are accepted.
    @ivar commit_threads: worker threads making deliveries durable (fsync)
        at once; the deliveries that end while they run are made durable
        together by the next (group commit).  More threads overlap more
        fsyncs but fight over the GIL.
    @ivar commit_stall: seconds after which a commit thread still running
        no longer counts against C{commit_threads}, so the deliveries
        behind it start their own: on a slow disk commits overlap as much
        as it takes.
    """

    listen: tuple[str, ...] = ()
    max_message_size: int = 25 * MiB
    max_recipients: int = 100
    max_line_length: int = 2048
    max_errors: int = 20
    timeout: float = 300.0
    max_connections_per_address: int = 20
    bare_newlines: BareNewlinesPolicy = "reject"
    policies: tuple[str, ...] = ()
    command_deadline: float = 60.0
    min_data_rate: int = 500
    junk_command_limit: int = 100
    greet_pause: float = 1.0
    early_talkers: ClientCheck = "reject"
    unauth_pipelining: ClientCheck = "reject"
    min_free_space: int = 0
    max_connections: int = 100
    commit_threads: int = 1
    commit_stall: float = 0.005


@dataclass(frozen=True)
class SubmissionSettings(SMTPSettings):
    """
    The submission service, C{[submission]}: the keys of L{SMTPSettings},
    and what an authenticated user may send as.

    @ivar sender_check: C{"envelope+header"}: C{MAIL FROM} and the message's
        C{From} and C{Sender} addresses must be the user's own (its address,
        its sub-addresses, and addresses whose mail reaches it: aliases); C{553
        5.7.1} otherwise.  C{"envelope"}: C{MAIL FROM} only.  C{"off"}: no
        check.  A user's C{tmail_sender_check} field overrides it.
    @ivar greet_pause: 0: mail clients connect here, not spambots; the
        C{early_talkers} and C{unauth_pipelining} checks are off too.
    @ivar burl_imap_host: the host (C{host} or C{host:port}) of tmail's own
        IMAP URLs (as C{imap.url_host} names it): with it, C{BURL imap}
        (RFC 4468) is offered and URLAUTH URLs naming that host are read
        from the store directly.  Empty: no BURL.
    """

    sender_check: SenderCheck = "envelope+header"
    burl_imap_host: str = ""
    greet_pause: float = 0.0
    early_talkers: ClientCheck = "allow"
    unauth_pipelining: ClientCheck = "allow"


@dataclass(frozen=True)
class LMTPSettings(SMTPSettings):
    """
    The LMTP service (RFC 2033), C{[lmtp]}: where the MTA in front of tmail
    (Postfix's C{lmtp:} transport) hands over the mail of hosted users.  The
    keys of L{SMTPSettings}.

    @ivar listen: usually a unix socket, C{unix:/run/tmail/lmtp:mode=660}
        (who may connect is who may write the socket), or a loopback port,
        C{tcp:24:interface=127.0.0.1}.
    @ivar max_connections_per_address: the MTA opens up to its concurrency
        limit at once (Postfix: 20 per destination), and every client of a
        unix socket counts as the one address C{local}; hence more than for
        SMTP.
    @ivar greet_pause: 0: the client is the MTA, which may pipeline (LMTP
        requires PIPELINING); the C{early_talkers} and C{unauth_pipelining}
        checks are off too.
    """

    max_connections_per_address: int = 100
    greet_pause: float = 0.0
    early_talkers: ClientCheck = "allow"
    unauth_pipelining: ClientCheck = "allow"


#: Policies that need no C{class} key: their name is enough.
BUNDLED_POLICIES = {"ratelimit": "tmail.smtp.ratelimit:RateLimit"}
#: What a C{class} key holds: C{"package.module:Class"}.
POLICY_CLASS = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


@dataclass(frozen=True)
class PolicySettings:
    """
    One SMTP policy, a C{[policy.<name>]} table.

    @ivar name: the table's name, as C{policies} lists name it.
    @ivar cls: C{"package.module:Class"}, from the C{class} key (bundled
        policies need none).
    @ivar options: the table's other keys, as TOML gave them, for the class.
    """

    name: str
    cls: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IMAPSettings:
    """
    The IMAP4 service.

    @ivar max_literal_size: bytes; a larger APPEND gets C{NO [TOOBIG]}.
        Advertised as C{APPENDLIMIT} (RFC 7889).
    @ivar max_line_length: bytes per command line outside literals.
    @ivar literal_minus: advertise C{LITERAL-} instead of C{LITERAL+}
        (RFC 7888 5), as Dovecot's C{imap_literal_minus} does:
        non-synchronizing literals of up to 4096 octets only.
    @ivar special_use_sent: the folder LIST marks C{\\Sent} (RFC 6154), and
        so on for the other C{special_use_*} names (as Dovecot's
        C{mailbox Sent { special_use = \\Sent }}).
    @ivar create_special_folders: make (and subscribe) the C{special_use_*}
        folders at a user's first login.
    @ivar max_command_size: bytes of one command's lines and literals
        together, APPEND's message data aside; more is C{BAD [TOOBIG]}.
    @ivar max_sequence_ranges: ranges in one sequence set (C{1,3:5} has
        two); more is C{BAD [LIMIT]}.  20000 is more than the distinct
        message numbers a 64 KiB line can list.
    @ivar max_nesting: depth of parentheses, and of C{NOT}/C{OR}/parentheses
        in search keys (chains of C{OR} and C{NOT NOT} count once); deeper is
        C{BAD [LIMIT]}.  At most 200.
    @ivar max_inflation_ratio: under COMPRESS=DEFLATE (RFC 4978), inflated
        bytes allowed per compressed byte a client sends, over its session
        (after a first 64 KiB); a session over it is closed as a
        decompression bomb.  0: no limit.
    @ivar max_mime_depth: MIME nesting (multipart and message/rfc822) taken
        apart; deeper parts are opaque to BODYSTRUCTURE, sections and
        SEARCH (Dovecot CVE-2020-12100).
    @ivar max_mime_parts: body parts one message is taken apart into; the
        rest are not numbered (Dovecot's C{max_total_mime_parts}).
    @ivar max_connections: concurrent sessions from all clients together;
        more get C{* BYE} and are closed.  0: no limit.
    @ivar message_threads: messages over 1 MiB read, taken apart, decoded
        and searched at once (SEARCH, SORT, THREAD, FETCH), in threads of
        their own; more wait their turn, and no session waits for them.
    @ivar preview_scan_bytes: octets of a message read to make its FETCH
        PREVIEW (RFC 8970); text beyond them is not looked at.
    @ivar max_metadata_size: bytes of one METADATA value (RFC 5464); a larger
        SETMETADATA gets C{NO [METADATA MAXSIZE n]}.
    @ivar max_metadata_entries: METADATA entries per folder (and for the
        server); more get C{NO [METADATA TOOMANY]}.
    @ivar max_metadata_total: bytes of all METADATA entries (names and
        values) per folder (and for the server); more get
        C{NO [METADATA TOOMANY]}.
    @ivar notify_poll_interval: seconds between a NOTIFY session's looks at
        the folders it watches, for changes other processes made (this
        process's own changes arrive at once).
    @ivar notify_queue_limit: mailboxes with a NOTIFY event waiting for one
        session; more, and it gets C{OK [NOTIFICATIONOVERFLOW]} and NOTIFY
        is off (RFC 5465 5.8).
    @ivar urlauth: offer URLAUTH and URLAUTH=BINARY (RFC 4467, 5524):
        GENURLAUTH, RESETKEY, URLFETCH, and the URLs BURL sends (RFC 4468).
    @ivar url_host: the host (C{host} or C{host:port}) IMAP URLs name this
        server by (RFC 5092); only URLs naming it are opened.  Empty: the
        top-level C{hostname}.
    @ivar max_catenate_parts: TEXT and URL parts of one CATENATE message
        (RFC 4469); more is C{NO [LIMIT]}.
    @ivar max_search_contexts: live results (SEARCH or SORT C{RETURN
        (UPDATE)}, RFC 5267) one session keeps up to date at once; another
        is answered once, with C{NO [NOUPDATE]}.  Each costs a test of every
        changed message.  At least 1 (the RFC's minimum).
    @ivar max_update_reads: messages a live result whose criteria read
        message files (headers, text) tests again for one report of
        changes; a report with more changes ends that live result with
        C{NO [NOUPDATE]} rather than keep other sessions waiting.
    @ivar uidbatches_max_messages: messages one UIDBATCHES command may ask
        for (RFC 10022): the batches of its range times the batch size, or
        the whole mailbox; more is C{NO [TOOMANY]}.  At least 100000 (the
        RFC's minimum).
    @ivar message_cache_size: bytes of parsed facts of messages (ENVELOPE,
        BODYSTRUCTURE, the header) kept in memory for all sessions, so that
        fetching them again reads no file; least recently used go first.
        0: none kept.
    @ivar message_cache_persistent: keep parsed facts in each folder's
        cache file too (Maildir: C{tmail-fields}), so that they outlive a
        restart and every process serving the folder shares them.
    @ivar message_cache_flush_interval: seconds new facts may wait in
        memory before they are written to the folder's file (a crash loses
        at most these: a cache is only a cache).
    @ivar message_cache_flush_records: messages whose new facts wait before
        they are written at once.
    @ivar message_cache_compact_share: share of a folder's cache file held
        by dead records (replaced, or of messages gone) past which it is
        written anew.
    @ivar message_cache_drop_unused_after: seconds after which a fact no
        client asked for in a folder is dropped from its file when it is
        next written anew.
    @ivar message_cache_file_max_fact: bytes of one fact at most written to
        a folder's file (a larger one, a huge header, is parsed again).
    """

    listen: tuple[str, ...] = ()
    allow_plaintext_auth: PlaintextAuthPolicy = "loopback"
    max_literal_size: int = 50 * MiB
    max_line_length: int = 64 * 1024
    timeout: float = 1800.0
    max_connections_per_address: int = 50
    literal_minus: bool = False
    special_use_sent: str = "Sent"
    special_use_drafts: str = "Drafts"
    special_use_trash: str = "Trash"
    special_use_junk: str = "Junk"
    special_use_archive: str = "Archive"
    create_special_folders: bool = True
    max_command_size: int = MiB
    max_sequence_ranges: int = 20000
    max_nesting: int = 64
    max_inflation_ratio: int = 200
    max_mime_depth: int = 32
    max_mime_parts: int = 10_000
    max_connections: int = 1000
    message_threads: int = 2
    preview_scan_bytes: int = 64 * 1024
    max_metadata_size: int = 64 * 1024
    max_metadata_entries: int = 256
    max_metadata_total: int = 1 * MiB
    notify_poll_interval: float = 5.0
    notify_queue_limit: int = 1000
    urlauth: bool = True
    url_host: str = ""
    max_catenate_parts: int = 100
    max_search_contexts: int = 10
    max_update_reads: int = 1000
    uidbatches_max_messages: int = 100_000
    message_cache_size: int = 64 * MiB
    message_cache_persistent: bool = True
    message_cache_flush_interval: float = 1.0
    message_cache_flush_records: int = 256
    message_cache_compact_share: float = 0.5
    message_cache_drop_unused_after: float = 30 * 86400.0
    message_cache_file_max_fact: int = 1 * MiB

    def specialFolders(self) -> dict[str, str]:
        """The configured special-use folders: name -> attribute (C{"\\Sent"})."""
        return {
            self.special_use_sent: "\\Sent",
            self.special_use_drafts: "\\Drafts",
            self.special_use_trash: "\\Trash",
            self.special_use_junk: "\\Junk",
            self.special_use_archive: "\\Archive",
        }


@dataclass(frozen=True)
class POP3Settings:
    """
    The POP3 service.

    @ivar max_connections: concurrent sessions from all clients together;
        more get C{-ERR [SYS/TEMP]} and are closed.  0: no limit.
    """

    listen: tuple[str, ...] = ()
    allow_plaintext_auth: PlaintextAuthPolicy = "loopback"
    max_line_length: int = 1024
    timeout: float = 600.0
    max_connections_per_address: int = 20
    uidl_format: str = "%08Xu%08Xv"
    max_connections: int = 1000


#: Postfix's names for how much TLS a destination must have.
TLSLevel = Literal["none", "may", "encrypt", "verify", "dane", "dane-only"]
TLS_LEVELS: tuple[TLSLevel, ...] = ("none", "may", "encrypt", "verify", "dane", "dane-only")


@dataclass(frozen=True)
class RelayConfig:
    """
    Sending queued mail on (the C{[relay]} table), for the queue runner
    (L{tmail.queue.relaysettings.RelaySettings.fromConfig}).

    @ivar nameservers: the name servers to ask (C{"192.0.2.53"},
        C{"127.0.0.1:5353"}, C{"[::1]:53"}); C{/etc/resolv.conf}'s when empty.
    @ivar resolver: one name server, the same as C{nameservers = [resolver]}
        (asked before those C{nameservers} lists).
    @ivar port: the receiving servers' port.
    @ivar tls: C{"opportunistic"} STARTTLS, C{"required"}, C{"none"}, or
        DANE (RFC 7672): C{"dane"} (TLSA records authenticate the MX hosts
        that publish them, opportunistic TLS elsewhere) or C{"dane-only"}
        (no delivery without them).  DANE trusts the DNSSEC validation of
        the name servers, which must be a validating resolver on this host.
    @ivar tls_verify: check the receiving servers' certificates (not with DANE).
    @ivar tls_policy: per destination domain (the C{[relay.tls_policy]}
        table), what TLS its MX hosts must offer, as Postfix's
        C{smtp_tls_policy_maps} levels: C{"none"} (never STARTTLS),
        C{"may"} (opportunistic, unverified), C{"encrypt"} (required,
        unverified) or C{"verify"} (required, the certificate must chain to
        a trusted CA and name the MX host), C{"dane"} or C{"dane-only"} (see
        C{tls}).  Other domains follow C{tls} and C{tls_verify}.
    @ivar max_connections: domains attempted at once in total.
    @ivar max_per_domain: of them, to the same domain.
    @ivar connect_timeout: seconds to wait for a connection.
    @ivar first_retry: seconds from a temporary failure to the first retry;
        each wait doubles, up to C{max_backoff}.
    @ivar lifetime: seconds after which mail still failing is bounced.
    @ivar delay_warning: seconds after which the sender is told of a delay
        (0: never).
    @ivar connection_reuse_time: seconds an idle connection to a receiving
        server is kept for the next message to it (0: one message per
        connection), as Postfix's C{smtp_connection_cache_time_limit}.
    @ivar connection_reuse_limit: messages sent over one connection at most.
    @ivar smarthost: send all mail to this server instead of the MX hosts:
        C{"tcp:HOST:PORT"} (STARTTLS required) or C{"tls:HOST:PORT"}
        (implicit TLS); IPv6 in brackets, C{"tcp:[2001:db8::1]:587"}.
        Empty: MX delivery.  C{port} and C{tls} do not apply to it, and
        C{max_per_domain} limits the connections to it.
    @ivar smarthost_credentials: a file holding one line
        C{username:password} to log in to the smarthost with (AUTH PLAIN
        or LOGIN, over TLS only).  A file others may read is used, with a
        warning in the log, as Postfix does with its C{sasl_passwd}.
    @ivar smarthost_tls_verify: check the smarthost's certificate (chain,
        and that it names HOST).
    @ivar smarthost_ca: a PEM bundle of the CAs to trust for the smarthost
        instead of the platform's.
    """

    nameservers: tuple[str, ...] = ()
    resolver: str = ""
    port: int = 25
    tls: Literal["opportunistic", "required", "none", "dane", "dane-only"] = "opportunistic"
    tls_verify: bool = False
    tls_policy: tuple[tuple[str, TLSLevel], ...] = ()
    max_connections: int = 20
    max_per_domain: int = 4
    connect_timeout: float = 30.0
    first_retry: float = 300.0
    max_backoff: float = 3600.0
    lifetime: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0
    connection_reuse_time: float = 2.0
    connection_reuse_limit: int = 100
    smarthost: str = ""
    smarthost_credentials: Path | None = None
    smarthost_tls_verify: bool = True
    smarthost_ca: Path | None = None


@dataclass(frozen=True)
class Settings:
    """
    A whole validated configuration.  A service section that is C{None} was
    absent from the file, and that service is off.

    @ivar ipv6_prefix_length: the IPv6 addresses of one prefix this long
        count as one client for the per-client limits (connections, failed
        logins): a client holds a whole prefix, not one address (Postfix's
        C{smtpd_client_ipv6_prefix_length}, Dovecot's /48 auth penalty).
    """

    path: Path
    hostname: str
    data_dir: Path
    realm: RealmSettings = field(default_factory=RealmSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    tls: TLSSettings | None = None
    smtp: SMTPSettings | None = None
    submission: SubmissionSettings | None = None
    imap: IMAPSettings | None = None
    pop3: POP3Settings | None = None
    lmtp: LMTPSettings | None = None
    log_format: Literal["text", "json"] = "text"
    policy: dict[str, PolicySettings] = field(default_factory=dict)
    relay: RelayConfig = field(default_factory=RelayConfig)
    ipv6_prefix_length: int = 64
    server: ServerSettings = field(default_factory=ServerSettings)
