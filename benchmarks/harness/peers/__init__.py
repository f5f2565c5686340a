"""The servers the harness compares: tmail and its peers."""

from __future__ import annotations

import importlib

from harness.model import Peer

#: module name -> the peer object it defines as C{PEER}
PEER_MODULES = ("tmail", "tmail_single", "aiosmtpd_peer", "postfix", "pymap_peer", "dovecot")


def allPeers() -> list[Peer]:
    peers = []
    for name in PEER_MODULES:
        module = importlib.import_module(f"harness.peers.{name}")
        peers.append(module.PEER)
    return peers
