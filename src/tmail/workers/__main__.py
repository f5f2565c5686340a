"""
C{python -m tmail.workers}: one worker process, as its supervisor starts it.

SIGTERM is noted before anything is imported, so that a worker stopped
while it starts stops cleanly once started rather than dying half-way.
"""

import signal

_terminated: list[bool] = []
signal.signal(signal.SIGTERM, lambda number, frame: _terminated.append(True))
signal.signal(signal.SIGINT, signal.SIG_IGN)

from tmail.workers.worker import main  # noqa: E402

main(terminated=_terminated)
