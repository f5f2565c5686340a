"""
Outbound mail: the durable queue (L{tmail.queue.store}), what its entries
hold (L{tmail.queue.entry}), when to retry and give up
(L{tmail.queue.schedule}), where a domain's mail goes
(L{tmail.queue.mx}), the delivery reports sent back
(L{tmail.queue.dsn}) and DKIM signing (L{tmail.queue.dkim}).
L{tmail.queue.store}'s docstring says how a runner uses them and how it
notices what operators change with C{tmail queue}.
"""
