"""How settings become listeners."""

from __future__ import annotations

from tmail.service import DEFAULT_BACKLOG, withBacklog


def test_tcp_listeners_get_a_deep_listen_queue_unless_they_choose_one() -> None:
    assert withBacklog("tcp:143:interface=127.0.0.1") == (
        f"tcp:143:interface=127.0.0.1:backlog={DEFAULT_BACKLOG}"
    )
    assert withBacklog("tcp6:143") == f"tcp6:143:backlog={DEFAULT_BACKLOG}"
    assert withBacklog("tcp:143:backlog=10") == "tcp:143:backlog=10"
    assert withBacklog("unix:/run/tmail/lmtp") == "unix:/run/tmail/lmtp"
    assert withBacklog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"
