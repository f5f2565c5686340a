"""tmail in one process (C{[server] workers = 1}), beside the default C{tmail}."""

from __future__ import annotations

from harness.peers.tmail import TmailPeer

PEER = TmailPeer("tmail-1", workers=1)
