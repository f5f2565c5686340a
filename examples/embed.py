"""
Embed tmail in your own Twisted application, next to a web service of its own.

    python examples/embed.py CONFIG WEB_ENDPOINT

e.g. C{python examples/embed.py var/tmail.toml tcp:8080:interface=127.0.0.1}.
The same services can be attached to a C{.tac} application with
C{makeApplication(...).setServiceParent(application)}.

The web page reports how many users each hosted domain has and how many
messages wait in a user's INBOX (C{/inbox/<address>}), read through the same
realm the mail protocols use: the store answers with a Deferred (its file
work runs in the service's threads), so the page is finished when it fires.
"""

from __future__ import annotations

import sys

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import Request

from tmail.interfaces import IMailFolder
from tmail.service import TmailService, serviceFromConfig


class Status(resource.Resource):
    """A plain-text status page over tmail's directory and realm."""

    isLeaf = True

    def __init__(self, mail: TmailService) -> None:
        super().__init__()
        self.mail = mail

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        path = request.path.decode("utf-8", "replace").strip("/").split("/")
        if len(path) == 2 and path[0] == "inbox":
            user = path[1].lower()
            if not self.mail.directory.hasUser(user):
                request.setResponseCode(404)
                return b"no such user\n"
            store = self.mail.realm.storeFor(user)

            def counted(inbox: IMailFolder) -> None:
                request.write(f"{user}: {len(inbox.messages())} messages\n".encode())
                request.finish()

            def failed(reason: Failure) -> None:
                request.setResponseCode(500)
                request.write(b"the mailbox cannot be read now\n")
                request.finish()

            maybeDeferred(store.getFolder, "INBOX").addCallbacks(counted, failed)
            return server.NOT_DONE_YET
        lines = [
            f"{domain}: {len(self.mail.directory.users(domain))} users"
            for domain in self.mail.directory.domains()
        ]
        return ("\n".join(lines) + "\n").encode()


def makeApplication(configPath: str, webEndpoint: str) -> MultiService:
    """tmail's services and a web site, as one service tree."""
    from twisted.internet import reactor

    top = MultiService()
    mail = serviceFromConfig(configPath)
    mail.setServiceParent(top)
    site = server.Site(Status(mail))
    web = StreamServerEndpointService(serverFromString(reactor, webEndpoint), site)
    web.setServiceParent(top)
    return top


def main(argv: list[str]) -> None:
    from twisted.internet import reactor

    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} CONFIG WEB_ENDPOINT")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    top = makeApplication(argv[1], argv[2])
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
