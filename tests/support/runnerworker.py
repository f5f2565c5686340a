"""
A queue runner in a process of its own, for crash tests: it sends the queue
in C{QUEUE} through the name server on loopback port C{DNSPORT} to mail
servers on port C{SMTPPORT} until it is killed.

    python -m support.runnerworker QUEUE DNSPORT SMTPPORT
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor

from tmail.queue.clientsettings import Timeouts, TLSMode, TLSPolicy
from tmail.queue.relaysettings import RelaySettings
from tmail.queue.runner import QueueRunner
from tmail.queue.schedule import RetrySchedule
from tmail.queue.store import QueueStore


def main(queue: str, dnsPort: str, smtpPort: str) -> None:
    settings = RelaySettings(
        heloName="relay.example.org",
        nameservers=(f"127.0.0.1:{dnsPort}",),
        port=int(smtpPort),
        dnsTimeouts=(1.0,),
        timeouts=Timeouts(connect=5.0, initial=5.0, mail=5.0, rcpt=5.0, dataEnd=60.0),
        tls=TLSPolicy(TLSMode.NONE),
        schedule=RetrySchedule(firstRetry=0.2, maxBackoff=0.2, delayWarning=0.0),
        rescanInterval=0.2,
        wakeupPoll=0.05,
    )
    runner = QueueRunner(QueueStore(Path(queue)), settings)
    reactor.callWhenRunning(runner.startService)
    print("started", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
