"""
SMTP policies in tmail.toml: C{policies} lists in C{[smtp]} and
C{[submission]}, C{[policy.<name>]} tables, the bundled rate limit, and one
line naming the key for every mistake; C{sender_check} of C{[submission]}.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.task import Clock

from support.policies import Stamp
from tmail.config.loader import loadSettings
from tmail.config.schema import PolicySettings, Settings
from tmail.errors import ConfigError
from tmail.service import checkConfig, makeService
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.lmtp import LMTPFactory
from tmail.smtp.ratelimit import RateLimit

LISTENERS = """
[smtp]
listen = ["tcp:0:interface=127.0.0.1"]
{smtp}

[submission]
listen = ["tcp:0:interface=127.0.0.1"]
{submission}
"""
LMTP = """
[lmtp]
listen = ["tcp:0:interface=127.0.0.1"]
{lmtp}
"""


def write(tmp_path: Path, text: str, smtp: str = "", submission: str = "", lmtp: str = "") -> Path:
    path = tmp_path / "tmail.toml"
    path.write_text(
        'hostname = "mx.example.test"\n'
        + text
        + LISTENERS.format(smtp=smtp, submission=submission)
        + (LMTP.format(lmtp=lmtp) if lmtp else "")
    )
    return path


def load(
    tmp_path: Path, text: str, smtp: str = "", submission: str = "", lmtp: str = ""
) -> Settings:
    return loadSettings(write(tmp_path, text, smtp, submission, lmtp))


def problem(tmp_path: Path, text: str, smtp: str = "", submission: str = "") -> str:
    """The one-line error of C{tmail check}, without the file's name."""
    path = write(tmp_path, text, smtp, submission)
    with pytest.raises(ConfigError) as raised:
        checkConfig(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def test_no_policies_by_default(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.policy == {}
    assert settings.smtp is not None and settings.smtp.policies == ()


def test_the_bundled_rate_limit_by_name_with_its_settings(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "[policy.ratelimit]\nmessages = 50\nwindow = 3600\n",
        smtp='policies = ["ratelimit"]',
    )
    assert settings.smtp is not None and settings.smtp.policies == ("ratelimit",)
    assert settings.policy == {
        "ratelimit": PolicySettings(
            "ratelimit", "tmail.smtp.ratelimit:RateLimit", {"messages": 50, "window": 3600}
        )
    }


def test_a_policy_class_of_ones_own_with_keyword_settings(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[policy.stamp]\nclass = "support.policies:Stamp"\ntext = "hello"\n',
        submission='policies = ["stamp"]',
    )
    assert settings.policy["stamp"] == PolicySettings(
        "stamp", "support.policies:Stamp", {"text": "hello"}
    )


@pytest.mark.parametrize(
    ("text", "smtp", "expected"),
    [
        ("", 'policies = ["greylist"]', "smtp.policies[0]: no [policy.greylist] table"),
        ("", 'policies = "ratelimit"', "smtp.policies: expected an array of policy names"),
        ("", 'policies = ["a b"]', "smtp.policies[0]: a policy name is up to 64 letters"),
        (
            "[policy.ratelimit]\nmessages = 1\n",
            'policies = ["ratelimit", "ratelimit"]',
            "smtp.policies[1]: ratelimit is listed twice",
        ),
        (
            "[policy.ratelimit]\nmessages = 1\n",
            "",
            "policy.ratelimit: not used: no policies list of [smtp], [submission] or [lmtp]",
        ),
        ("", 'policies = ["ratelimit"]', "policy.ratelimit: set connections or messages"),
        (
            "[policy.ratelimit]\nmessages = 5\nwindow = -1\n",
            'policies = ["ratelimit"]',
            "policy.ratelimit.window: must be a positive number of seconds",
        ),
        (
            "[policy.ratelimit]\nmesages = 5\n",
            'policies = ["ratelimit"]',
            "policy.ratelimit.mesages: unknown key (known: connections, messages, window)",
        ),
        (
            '[policy.dnsbl]\nzone = "zen.example"\n',
            'policies = ["dnsbl"]',
            'policy.dnsbl.class: required: "package.module:Class"',
        ),
        (
            '[policy.dnsbl]\nclass = "nowhere.dnsbl:DNSBL"\n',
            'policies = ["dnsbl"]',
            "policy.dnsbl.class: cannot load nowhere.dnsbl:DNSBL: No module named 'nowhere'",
        ),
        (
            '[policy.dnsbl]\nclass = "support.policies"\n',
            'policies = ["dnsbl"]',
            'policy.dnsbl.class: must be "package.module:Class"',
        ),
        (
            '[policy.x]\nclass = "support.policies:NotAPolicy"\n',
            'policies = ["x"]',
            "policy.x.class: support.policies:NotAPolicy does not provide ISMTPPolicy",
        ),
        (
            '[policy.x]\nclass = "support.policies:Stamp"\ncolour = "red"\n',
            'policies = ["x"]',
            "policy.x: Stamp.__init__() got an unexpected keyword argument 'colour'",
        ),
        (
            '[policy.x]\nclass = "support.policies:Stamp"\ntext = "a\\tb"\n',
            'policies = ["x"]',
            "policy.x: text must be printable",
        ),
        ("policy = 3\n", "", "policy: expected [policy.<name>] tables, got integer 3"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(
    tmp_path: Path, text: str, smtp: str, expected: str
) -> None:
    assert problem(tmp_path, text, smtp).startswith(expected)


def test_sender_check_of_submission(tmp_path: Path) -> None:
    settings = load(tmp_path, "", submission='sender_check = "envelope"')
    assert settings.submission is not None and settings.submission.sender_check == "envelope"
    assert load(tmp_path, "").submission.sender_check == "envelope+header"  # type: ignore[union-attr]
    assert problem(tmp_path, "", submission='sender_check = "no"') == (
        "submission.sender_check: must be one of envelope+header, envelope, off"
    )
    assert problem(tmp_path, "", smtp='sender_check = "off"').startswith(
        "smtp.sender_check: unknown key"
    )


def test_listeners_naming_one_policy_share_it(tmp_path: Path) -> None:
    """One RateLimit counts a client's mail on every listener; each runs its own list."""
    settings = load(
        tmp_path,
        '[policy.ratelimit]\nmessages = 5\n[policy.stamp]\nclass = "support.policies:Stamp"\n',
        smtp='policies = ["ratelimit"]',
        submission='policies = ["stamp", "ratelimit"]',
        lmtp='policies = ["stamp"]',
    )
    service = makeService(settings, clock=Clock())
    factories = {
        child.name.split()[0]: child.factory
        for child in service
        if isinstance(child, StreamServerEndpointService)
    }
    smtp, submission = factories["smtp"], factories["submission"]
    assert isinstance(smtp, SMTPFactory) and isinstance(submission, SMTPFactory)
    [limit] = smtp.policies
    stamp, again = submission.policies
    assert isinstance(limit, RateLimit) and again is limit
    assert isinstance(stamp, Stamp)
    assert smtp.senders is None
    assert submission.senders is not None and submission.senders.default == "envelope+header"
    assert isinstance(factories["lmtp"], LMTPFactory)
    assert factories["lmtp"].policies == (stamp,)
