"""
A DNSSEC-validating resolver on loopback, for DANE tests: Debian's
C{unbound}, serving a test zone signed at setup with C{ldns-signzone} (a
key made by C{ldns-keygen} in the test's temporary folder, never kept)
from its own C{auth-zone}, which it validates against the zone's key as
its trust anchor, as it would data from the network.

    resolver = startValidatingResolver(self, [
        "dane.test. MX 10 mx.dane.test.",
        "mx.dane.test. A 127.0.0.1",
        f"_{port}._tcp.mx.dane.test. TLSA 3 1 1 {digest}",
    ], insecure={"plain.test": ["plain.test. MX 10 mx.plain.test.", ...]})

Names under C{test.} are in the signed zone C{test.} (answers carry the AD
bit); each C{insecure} zone is delegated from it without a DS record (an
unsigned delegation: answers come without AD); the TLSA records of the
C{bogus} owner names are altered after signing, so that their validation
fails and the resolver answers SERVFAIL.  A test using it is skipped when
C{unbound}, C{ldns-keygen} or C{ldns-signzone} is missing (Debian packages
C{unbound} and C{ldnsutils}).
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.names import dns
from twisted.trial.unittest import SkipTest, TestCase

TOOLS = {"unbound": "unbound", "ldns-keygen": "ldnsutils", "ldns-signzone": "ldnsutils"}


@dataclass
class ValidatingServer:
    """A running validating resolver."""

    port: int
    folder: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        """What unbound logged (validation failures among it)."""
        path = self.folder / "unbound.log"
        return path.read_text(errors="replace") if path.exists() else ""


def tools() -> dict[str, str]:
    """The programs' paths; L{SkipTest} naming the packages when one is missing."""
    found = {}
    for name, package in TOOLS.items():
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
        if path is None:
            raise SkipTest(f"{name} is not installed (Debian package {package})")
        found[name] = path
    return found


def tlsa(
    certificate: x509.Certificate, usage: int = 3, selector: int = 1, matching: int = 1
) -> str:
    """The text of a TLSA record's data for C{certificate}: C{"3 1 1 <hex>"}."""
    if selector == 1:
        data = certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
    else:
        data = certificate.public_bytes(Encoding.DER)
    if matching == 1:
        data = hashlib.sha256(data).digest()
    elif matching == 2:
        data = hashlib.sha512(data).digest()
    return f"{usage} {selector} {matching} {data.hex()}"


def _zone(origin: str, lines: Sequence[str], delegations: Collection[str] = ()) -> str:
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 60",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60",
        f"@ IN NS ns.{origin}.",
        f"ns.{origin}. IN A 127.0.0.1",
    ]
    for child in delegations:
        head += [f"{child}. IN NS ns.{child}.", f"ns.{child}. IN A 127.0.0.1"]
    return "\n".join([*head, *lines]) + "\n"


def _spoil(signed: str, bogus: Collection[str]) -> str:
    """The signed zone with the TLSA data of C{bogus} owners changed (signatures kept)."""
    owners = {name.lower().rstrip(".") + "." for name in bogus}
    out = []
    for line in signed.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0].lower() in owners and fields[3] == "TLSA":
            last = fields[-1]
            fields[-1] = last[:-1] + ("0" if last[-1] != "0" else "1")
            line = "\t".join(fields)
        out.append(line)
    return "\n".join(out) + "\n"


def _freePort() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (for a moment)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port for both UDP and TCP")


def _answersWithAD(port: int) -> bool | None:
    """Ask for C{test. SOA} with AD: C{None} without an answer, else whether AD came back."""
    query = dns.Message(4242, recDes=1, authenticData=1)
    query.queries = [dns.Query(b"test", dns.SOA, dns.IN)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(query.toStr(), ("127.0.0.1", port))
            data = s.recv(4096)
        except OSError:
            return None
    answer = dns.Message()
    answer.fromStr(data)
    return bool(answer.authenticData) if answer.rCode == dns.OK else None


def startValidatingResolver(
    testCase: TestCase,
    signed: Sequence[str],
    insecure: Mapping[str, Sequence[str]] = {},
    bogus: Collection[str] = (),
) -> ValidatingServer:
    """
    Sign a zone C{test.} holding C{signed} (zone file lines, absolute
    names), delegate the C{insecure} zones from it unsigned, spoil the
    C{bogus} TLSA records, and run unbound serving and validating them on a
    free loopback port until the test ends.
    """
    paths = tools()
    folder = Path(testCase.mktemp()).resolve()
    folder.mkdir(parents=True)
    (folder / "test.zone").write_text(_zone("test", signed, insecure.keys()))
    key = subprocess.run(
        [paths["ldns-keygen"], "-a", "ECDSAP256SHA256", "-k", "-r", "/dev/urandom", "test"],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [paths["ldns-signzone"], "-o", "test.", "-f", "test.signed", "test.zone", key],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    signedZone = folder / "test.signed"
    signedZone.write_text(_spoil(signedZone.read_text(), bogus))
    zones = [("test", signedZone)]
    for child, lines in insecure.items():
        path = folder / f"{child}.zone"
        path.write_text(_zone(child, lines))
        zones.append((child, path))
    authZones = "".join(
        f'auth-zone:\n    name: "{name}."\n    zonefile: "{path}"\n'
        "    for-upstream: yes\n    for-downstream: no\n    fallback-enabled: no\n"
        for name, path in zones
    )
    for _ in range(5):
        port = _freePort()
        config = folder / "unbound.conf"
        config.write_text(
            "server:\n"
            "    interface: 127.0.0.1\n"
            f"    port: {port}\n"
            "    do-ip6: no\n"
            "    do-daemonize: no\n"
            "    num-threads: 1\n"
            '    username: ""\n'
            '    chroot: ""\n'
            f'    directory: "{folder}"\n'
            '    pidfile: ""\n'
            "    use-syslog: no\n"
            f'    logfile: "{folder / "unbound.log"}"\n'
            "    val-log-level: 2\n"
            "    access-control: 127.0.0.0/8 allow\n"
            '    module-config: "validator iterator"\n'
            f'    trust-anchor-file: "{folder / (key + ".ds")}"\n'
            "    trust-anchor-signaling: no\n"
            "    root-key-sentinel: no\n"
            "    do-not-query-localhost: no\n"
            '    local-zone: "test." nodefault\n' + authZones
        )
        process = subprocess.Popen(
            [paths["unbound"], "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        secure = None
        while process.poll() is None and time.monotonic() < deadline:
            secure = _answersWithAD(port)
            if secure is not None:
                break
        if secure is None:
            process.kill()
            process.wait()
            continue
        testCase.addCleanup(_stop, process)
        if not secure:
            raise RuntimeError(f"unbound does not validate the test zone:\n{folder}")
        return ValidatingServer(port, folder)
    raise RuntimeError(f"unbound did not start; see {folder / 'unbound.log'}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
