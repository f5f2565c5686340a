"""
C{tmail init DIR}: a working demo installation in one step.

Writes C{DIR/tmail.toml} (every service on 127.0.0.1, unprivileged ports),
a self-signed certificate and key, and a user directory in C{DIR/data}
hosting one domain with one user, whose generated password is printed once.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from tmail.cli.commands import IO, CommandError
from tmail.config.schema import (
    AuthSettings,
    IMAPSettings,
    LMTPSettings,
    POP3Settings,
    RealmSettings,
    SMTPSettings,
)
from tmail.directory.addresses import isValidHostname, normalizeDomain
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.tlscert import writeSelfSignedCertificate

__all__ = ["DEFAULT_DOMAIN", "DEFAULT_HOSTNAME", "configText", "init"]

DEFAULT_HOSTNAME = "mail.example.test"
DEFAULT_DOMAIN = "example.test"
DEMO_USER = "demo"

_smtp, _imap, _pop3, _auth = SMTPSettings(), IMAPSettings(), POP3Settings(), AuthSettings()
_realm = RealmSettings()
_lmtp = LMTPSettings()

_TEMPLATE = f"""\
# tmail configuration, written by "tmail init".
#
# Check it:          tmail check --config tmail.toml
# Run the server:    twistd -n tmail --config tmail.toml
# Manage users:      tmail --config tmail.toml user add alice@example.test
#
# Relative paths are relative to the folder of this file.  Commented-out
# keys show their default values.  A service whose section is missing is off.

hostname = "{{hostname}}"
data_dir = "data"
# log_format = "text"             # or "json"
# ipv6_prefix_length = 64         # one IPv6 client holds a prefix this long

# [server]
# workers = 0                     # processes serving the listeners; 0: one per core

[realm]
backend = "virtual"               # or "maildir" with domain = "...", or "package.module:Class"
# file_threads = {_realm.file_threads}                # threads doing the stores' file work

# [auth]
# failure_delay = {_auth.failure_delay}
# max_failure_delay = {_auth.max_failure_delay}
# max_failures = {_auth.max_failures}
# failure_window = {_auth.failure_window}
# check_threads = {_auth.check_threads}    # password checks hashing at once

# Every user's default quota; "tmail quota set" overrides it per user.
# [quota]
# storage = 0                     # bytes, or "500M", "1G"; 0 = unlimited
# messages = 0
# over_quota = "reject"           # full mailbox: 552 5.2.2; "tempfail": 452 4.2.2

[tls]
# A self-signed certificate; replace it with one from a CA for real use.
certificate = "cert.pem"
key = "key.pem"

# Listeners are Twisted endpoint strings; "tls:PORT[:interface=ADDRESS]" is
# implicit TLS with the [tls] certificate.
[smtp]
listen = ["tcp:2525:interface=127.0.0.1"]
# max_message_size = {_smtp.max_message_size}
# max_recipients = {_smtp.max_recipients}
# timeout = {_smtp.timeout}
# max_connections_per_address = {_smtp.max_connections_per_address}
# max_connections = {_smtp.max_connections}    # from all clients together
# command_deadline = {_smtp.command_deadline}   # seconds to send one whole command line
# min_data_rate = {_smtp.min_data_rate}       # bytes/s message content must keep up
# greet_pause = {_smtp.greet_pause}         # a client talking before the last "220 " is refused
# min_free_space = {_smtp.min_free_space}        # bytes (or "1G") kept free, else 452 at MAIL
# commit_threads = {_smtp.commit_threads}        # threads fsync'ing deliveries at once

[submission]
listen = ["tcp:5870:interface=127.0.0.1", "tls:4650:interface=127.0.0.1"]
# burl_imap_host = "mail.example.com"   # imap.url_host: offer BURL imap (send an IMAP draft)

# LMTP, for an MTA in front of tmail (Postfix: virtual_transport =
# lmtp:inet:127.0.0.1:2424, or lmtp:unix:/PATH with "unix:/PATH:mode=660");
# the keys of [smtp].
# [lmtp]
# listen = ["tcp:2424:interface=127.0.0.1"]
# max_connections_per_address = {_lmtp.max_connections_per_address}

[imap]
listen = ["tcp:1143:interface=127.0.0.1", "tls:9930:interface=127.0.0.1"]
# allow_plaintext_auth = "{_imap.allow_plaintext_auth}"    # loopback, never or always
# max_literal_size = {_imap.max_literal_size}      # also the advertised APPENDLIMIT
# literal_minus = false     # true: advertise LITERAL- (non-sync literals <= 4096) for LITERAL+
# timeout = {_imap.timeout}
# Folders listed with RFC 6154 special-use attributes (\\Sent, \\Drafts, ...);
# they are made and subscribed at a user's first login.
# special_use_sent = "{_imap.special_use_sent}"
# special_use_drafts = "{_imap.special_use_drafts}"
# special_use_trash = "{_imap.special_use_trash}"
# special_use_junk = "{_imap.special_use_junk}"
# special_use_archive = "{_imap.special_use_archive}"
# create_special_folders = true    # false: make none (the names still get their attribute)
# Limits on one command (over them: BAD [TOOBIG] or BAD [LIMIT]).
# max_command_size = {_imap.max_command_size}    # lines and literals, APPEND's messages aside
# max_sequence_ranges = {_imap.max_sequence_ranges}    # ranges in one sequence set
# max_nesting = {_imap.max_nesting}    # parentheses, NOT and OR in search keys; at most 200
# max_inflation_ratio = {_imap.max_inflation_ratio}   # COMPRESS input inflating more: closed
# max_mime_depth = {_imap.max_mime_depth}    # deeper MIME parts are opaque
# max_mime_parts = {_imap.max_mime_parts}   # parts per message taken apart
# message_threads = {_imap.message_threads}    # messages over 1 MiB worked on at once, apart
# preview_scan_bytes = {_imap.preview_scan_bytes}   # octets read for FETCH PREVIEW
# METADATA (RFC 5464) per folder and for the server: one value, entries, all bytes.
# max_metadata_size = {_imap.max_metadata_size}
# max_metadata_entries = {_imap.max_metadata_entries}
# max_metadata_total = {_imap.max_metadata_total}
# notify_poll_interval = {_imap.notify_poll_interval}   # NOTIFY: seconds between looks at folders
# notify_queue_limit = {_imap.notify_queue_limit}   # NOTIFY: events waiting; more: OVERFLOW
# urlauth = true    # URLAUTH (RFC 4467): URLs to message parts, for BURL
# url_host = ""     # host[:port] of this server's IMAP URLs; empty: hostname
# max_catenate_parts = {_imap.max_catenate_parts}   # parts of one CATENATE message
# max_search_contexts = {_imap.max_search_contexts}   # live SEARCH/SORT results per session
# max_update_reads = {_imap.max_update_reads}   # messages a live result re-reads per report
# uidbatches_max_messages = {_imap.uidbatches_max_messages}   # messages one UIDBATCHES may ask for
# message_cache_size = {_imap.message_cache_size}   # parsed facts kept in memory; 0 = none
# message_cache_persistent = true   # keep parsed facts in each folder's file too

[pop3]
listen = ["tcp:1110:interface=127.0.0.1", "tls:9950:interface=127.0.0.1"]
# allow_plaintext_auth = "{_pop3.allow_plaintext_auth}"
# timeout = {_pop3.timeout}
# uidl_format = "{_pop3.uidl_format}"   # Dovecot's default; "hash" for tmail's own

# Sending queued mail on. "dane" authenticates MX hosts by their DNSSEC-signed
# TLSA records (RFC 7672) and needs a validating resolver on this host.
# [relay]
# resolver = "127.0.0.1:53"       # e.g. unbound; empty: those of /etc/resolv.conf
# tls = "opportunistic"          # "required" | "none" | "dane" | "dane-only"
"""


def configText(hostname: str) -> str:
    """The demo configuration for the server name C{hostname}."""
    return _TEMPLATE.format(hostname=hostname)


def init(args: argparse.Namespace, io: IO) -> int:
    """
    C{tmail init DIR [--hostname H] [--domain D]}.

    @raise CommandError: when C{DIR} already holds a configuration,
        certificate or key, or an option is invalid.
    """
    folder = Path(args.directory)
    hostname: str = args.hostname
    if not isValidHostname(hostname):
        raise CommandError(f"not a valid host name: {hostname!r}")
    domain = normalizeDomain(args.domain)
    config, cert, key = folder / "tmail.toml", folder / "cert.pem", folder / "key.pem"
    for existing in (config, cert, key):
        if existing.exists():
            raise CommandError(f"{existing} already exists; not overwriting it")

    folder.mkdir(parents=True, exist_ok=True)
    with open(config, "x", encoding="utf-8") as f:
        f.write(configText(hostname))
    names = [hostname] if hostname == "localhost" else [hostname, "localhost"]
    writeSelfSignedCertificate(cert, key, names, ["127.0.0.1"])

    directory = PasswdFileDirectory(folder / "data")
    if not directory.hasDomain(domain):
        directory.addDomain(domain)
    password = secrets.token_urlsafe(12)
    user = directory.addUser(f"{DEMO_USER}@{domain}", password.encode("ascii"))

    io.say(f"wrote {config}, {cert}, {key} and {folder / 'data'}{os.sep}")
    io.say(f"{user} password: {password}")
    io.say(f"start the server with: twistd -n tmail --config {config}")
    return 0
