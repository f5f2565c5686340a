"""
Postfix from the system package, as a private instance: its own config,
queue and data directories under the work directory, smtpd on a free
loopback port, mail delivered to Maildirs by the C{virtual} agent.  A
system-wide Postfix, if any, is neither used nor touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from harness.processes import Running, freePorts, waitForPorts

POSTFIX = "/usr/sbin/postfix"
#: The unprivileged account the virtual agent writes the Maildirs as.
MAIL_USER = "nobody"
#: Services the master runs on demand; nothing is chrooted.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
virtual   unix  - n n - - virtual
postlog   unix-dgram n - n - 1 postlogd
"""
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {work}/queue
data_directory = {work}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
relay_domains =
relayhost =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = bench.test
virtual_mailbox_base = {work}/mail
virtual_mailbox_maps = texthash:{work}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
smtpd_client_connection_count_limit = 10000
default_process_limit = 200
maillog_file = {work}/maillog
maillog_file_prefixes = {work}
"""


def makeSearchable(path: Path) -> None:
    """
    Let other users through C{path}'s directories below the temporary
    directory (the harness's scratch space is private to root), so the
    unprivileged Postfix daemons reach their files by absolute path.
    """
    top = Path(tempfile.gettempdir()).resolve()
    for directory in [path, *path.parents]:
        if directory == top or top not in directory.parents:
            break
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


class PostfixRunning(Running):
    """A private Postfix instance: stopped with C{postfix stop}, then waited for."""

    def stop(self) -> None:
        processes = self.processes()
        if self.stopCommand:
            subprocess.run(self.stopCommand, capture_output=True, timeout=60, check=False)
        _, alive = psutil.wait_procs(processes, timeout=20)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=5)


def masterPid(work: Path, timeout: float = 30.0) -> int:
    """The master's pid, once it has written it."""
    pidFile = work / "queue" / "pid" / "master.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(pidFile.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"postfix wrote no {pidFile}")


class PostfixPeer:
    name = "postfix"
    protocols = frozenset({"smtp"})

    def missing(self) -> str | None:
        try:
            pwd.getpwnam("postfix")
        except KeyError:
            return "not installed (apt-get install postfix)"
        if not os.path.exists(POSTFIX):
            return "not installed (apt-get install postfix)"
        if os.geteuid() != 0:
            return "needs root to start"
        return None

    def start(self, workdir: Path, userList: list[str], protocols: frozenset[str]) -> Running:
        if workdir.exists():
            shutil.rmtree(workdir)
        work = workdir.resolve()
        for sub in ("etc", "queue", "data", "mail"):
            (work / sub).mkdir(parents=True)
        makeSearchable(work)
        postfixUser = pwd.getpwnam("postfix")
        os.chown(work / "data", postfixUser.pw_uid, postfixUser.pw_gid)
        owner = pwd.getpwnam(MAIL_USER)
        maildirs = {}
        lines = []
        for user in userList:
            local, domain = user.split("@", 1)
            lines.append(f"{user} {domain}/{local}/")
            maildirs[user] = work / "mail" / domain / local
            for sub in ("tmp", "new", "cur"):
                (maildirs[user] / sub).mkdir(parents=True)
        for directory in [work / "mail", *(work / "mail").rglob("*")]:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        (port,) = freePorts(1)
        etc = work / "etc"
        (etc / "vmailbox").write_text("\n".join(lines) + "\n")
        (etc / "master.cf").write_text(MASTER_CF.format(port=port))
        (etc / "main.cf").write_text(MAIN_CF.format(work=work, uid=owner.pw_uid, gid=owner.pw_gid))
        log = work / "maillog"
        started = subprocess.run(
            [POSTFIX, "-c", str(etc), "start"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed:\n{started.stdout}{started.stderr}")
        server = PostfixRunning(
            self.name,
            {"smtp": port},
            maildirs,
            stopCommand=[POSTFIX, "-c", str(etc), "stop"],
            log=log,
        )
        try:
            server.rootPid = masterPid(work)
            waitForPorts([port], None, log)
        except BaseException:
            server.stop()
            raise
        return server


PEER = PostfixPeer()
