"""
Delivery: what happens to a message once a front end (SMTP, LMTP) or the
outbound queue has accepted it for a destination here.

It sits below the protocol front ends and the queue, above the realms and
stores: L{tmail.delivery.local} writes each local user's copy with the
store's two-phase contract (L{tmail.delivery.groupcommit} shares the
fsyncs of concurrent deliveries), L{tmail.delivery.trace} makes the trace
header fields, and L{tmail.delivery.envelope} holds the envelope's value
types.  Nothing here imports a protocol module.
"""
