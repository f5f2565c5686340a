"""
The MX listener's factory as the SMTP tests serve it: no greeting pause, no
TLS, the realm's own portal for AUTH.
"""

from __future__ import annotations

from twisted.cred.portal import Portal
from twisted.internet import reactor

from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, OverQuotaPolicy, SMTPSettings
from tmail.interfaces import IMailRealm
from tmail.smtp.factory import SMTPFactory


def mxFactory(
    realm: IMailRealm, portal: Portal, overQuota: OverQuotaPolicy = "reject"
) -> SMTPFactory:
    """An MX (not submission) factory delivering into C{realm}."""
    return SMTPFactory(
        realm,
        SMTPSettings(greet_pause=0),
        hostname="mx.example.test",
        submission=False,
        portal=portal,
        tlsContextFactory=None,
        throttle=AuthThrottle(AuthSettings(), reactor),
        overQuota=overQuota,
    )
