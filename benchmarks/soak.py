"""
The many-client state-tracking soak (tests/support/imapsoak.py) against a
server the harness starts: prints commands/s and the model errors.

    python benchmarks/soak.py [--clients 50] [--seconds 300] [--seed 1] [--peer tmail|dovecot]

Exits 1 when a client found a model error, a NO/BAD to a valid command or a
dropped connection.  Against Dovecot (the C{dovecot} peer, root needed) it
shows what the same load costs there, and that the model holds for it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness.model import PASSWORD, users  # noqa: E402
from harness.peers import allPeers  # noqa: E402

from support.imapsoak import runSoak  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peer", default="tmail")
    args = parser.parse_args(argv)
    peer = next((p for p in allPeers() if p.name == args.peer), None)
    if peer is None:
        parser.error(f"no peer called {args.peer}")
    missing = peer.missing()
    if missing:
        print(f"{peer.name}: skipped: {missing}")
        return 0
    user = users(1)[0]
    with tempfile.TemporaryDirectory(prefix="tmail-soak-") as scratch:
        running = peer.start(Path(scratch) / peer.name, [user], frozenset({"imap"}))
        try:
            report = runSoak(
                "127.0.0.1",
                running.ports["imap"],
                user,
                PASSWORD,
                clients=args.clients,
                seconds=args.seconds,
                seed=args.seed,
                atomicStore=peer.name == "tmail",
            )
            cpu = running.cpuSeconds()
        finally:
            running.stop()
    print(f"{peer.name}: {report.summary()}")
    print(
        f"{peer.name}: server CPU {cpu:.1f} s,"
        f" {report.commands / max(cpu, 0.001):.0f} commands per CPU second"
    )
    failed = report.errorCount or report.disconnects
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
