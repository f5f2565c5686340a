"""
Every core: C{[server] workers = N} worker processes serving the same
listeners under one supervising process (what C{twistd tmail} runs).

The supervisor opens each listening socket once, before twistd drops
privileges (so ports below 1024 work as with one process), and hands the
sockets to the workers as inherited descriptors, which they adopt with
C{IReactorSocket.adoptStreamPort} (L{tmail.workers.supervisor},
L{tmail.workers.worker}).  This rather than C{SO_REUSEPORT}: each worker
binding its own socket would need the privileges twistd has dropped, would
not work for C{unix:} and C{systemd:} listeners, and the kernel would keep
handing connections to a dead worker's queue until it is restarted; a
shared socket is served by whichever worker is free.

What must hold for all workers together is kept by the supervisor
(L{tmail.workers.anvil}, as Postfix's and Dovecot's C{anvil}) and asked
over an AMP channel (L{tmail.workers.channel}): failed-login throttling
and the per-client connection limits.  The outbound queue runner runs in
the supervisor only; workers tell it of each entry they commit, so it is
attempted at once, and C{tmail queue} commands work through the queue
directory as before.  A folder changed by one process (a delivery, a flag
change, an expunge) is announced to the others through the supervisor
(L{tmail.changes}), so IDLE and NOTIFY sessions in every worker hear of it
at once instead of at their next poll; a worker sends only the changes of
folders another worker watches, gathered over 50 ms.

Workers accept connections once all of them are set up (or after a
timeout), one per wakeup of the shared socket: every worker is woken when
it is readable, and a worker that took whole bursts (Twisted accepts up to
a hundred at a time) would serve long-lived sessions alone while the
others sat idle.  A worker's log events reach the supervisor's log as one
formatted line each (L{tmail.workers.loglines}).

A worker that dies is started again after a delay that doubles while it
keeps dying; stopping the supervisor stops the workers (SIGTERM, then
SIGKILL after a grace period), and a worker whose supervisor is gone
stops by itself.  C{workers = 1} runs everything in one process, as
L{tmail.service.makeService} does for integrators.

Listeners other than C{tcp:}, C{tcp6:}, C{unix:}, C{systemd:} and the
C{tls:} shorthand (C{ssl:}, C{haproxy:} ... wrap the socket in ways a
worker cannot rebuild from a descriptor) keep the server to one process,
with a warning.
"""
