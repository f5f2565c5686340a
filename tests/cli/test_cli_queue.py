"""
C{tmail queue} against a queue directory, as an operator uses it while the
server runs: a second L{QueueStore} stands for the running queue runner.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tmail.cli.commands import IO
from tmail.cli.main import main
from tmail.queue.entry import Diagnostic, Envelope, NoSuchEntry, Outcome, Recipient
from tmail.queue.store import QueueStore, queueDirectory

MESSAGE = b"From: alice@example.com\r\nSubject: Report\r\n\r\nThe numbers.\r\n"
BOB, CAROL = "bob@example.net", "carol@example.org"
REFUSED = Diagnostic("4.4.1", "Connection refused", None, "mx.example.net")
ARRIVAL = 1_764_000_000.0
TMAIL = str(Path(sys.executable).with_name("tmail"))


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TMAIL_CONFIG", raising=False)
    path = tmp_path / "tmail.toml"
    path.write_text('hostname = "mail.example.com"\ndata_dir = "data"\n')
    return path


@pytest.fixture
def runner(config: Path) -> QueueStore:
    """The queue as the running server's queue runner sees it."""
    return QueueStore(queueDirectory(config.parent / "data"))


def run(config: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(
        [*argv, "--config", str(config)], IO(stdin=io.StringIO(""), stdout=out, stderr=err)
    )
    return status, out.getvalue(), err.getvalue()


def when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def queued(runner: QueueStore, *addresses: str, sender: str = "alice@example.com") -> str:
    envelope = Envelope(sender, tuple(Recipient(a) for a in addresses or (BOB,)))
    return runner.enqueue(envelope, MESSAGE, now=ARRIVAL).id


def test_list_of_an_empty_queue_says_so_and_creates_nothing(
    config: Path, runner: QueueStore
) -> None:
    assert run(config, "queue", "list") == (0, "queue is empty\n", "")
    assert not runner.path.exists()
    assert run(config, "queue", "flush") == (0, "queue is empty\n", "")


def test_list_shows_each_entry_its_recipients_and_why_they_wait(
    config: Path, runner: QueueStore
) -> None:
    first = queued(runner, BOB, CAROL)
    second = queued(runner, BOB, sender="")
    runner.record(first, {BOB: Outcome.deferred(REFUSED, ARRIVAL + 300)}, ARRIVAL + 1)
    runner.hold(second)
    status, out, err = run(config, "queue", "list")
    assert (status, err) == (0, "")
    assert out == (
        f"{first}  {when(ARRIVAL)}  58 bytes  from <alice@example.com>\n"
        f"    <{BOB}>  deferred, 1 attempt, next {when(ARRIVAL + 300)}\n"
        "        mx.example.net: Connection refused\n"
        f"    <{CAROL}>  pending\n"
        f"{second}  {when(ARRIVAL)}  58 bytes  from <>  HELD\n"
        f"    <{BOB}>  pending\n"
        "-- 2 entries, 3 recipients to deliver, 1 held\n"
    )


def test_list_json_gives_the_metadata(config: Path, runner: QueueStore) -> None:
    entryId = queued(runner)
    status, out, _ = run(config, "queue", "list", "--json")
    assert status == 0
    [entry] = json.loads(out)
    assert (entry["id"], entry["sender"], entry["recipients"][0]["state"]) == (
        entryId,
        "alice@example.com",
        "pending",
    )


def test_list_warns_of_an_entry_it_cannot_read(config: Path, runner: QueueStore) -> None:
    good, bad = queued(runner), queued(runner)
    (runner.path / f"{bad}.json").write_text("{")
    status, out, err = run(config, "queue", "list")
    assert status == 0
    assert out.startswith(f"{good}  ")
    assert err.startswith(f"tmail: warning: cannot read queue entry {bad}: not JSON")


def test_show_prints_the_envelope_the_state_and_the_header(
    config: Path, runner: QueueStore
) -> None:
    entryId = runner.enqueue(
        Envelope(
            "alice@example.com",
            (Recipient(BOB, ("SUCCESS", "FAILURE"), "rfc822;bob@example.net"),),
            body="8BITMIME",
            ret="HDRS",
            envid="report-7",
        ),
        MESSAGE,
        now=ARRIVAL,
    ).id
    runner.record(entryId, {BOB: Outcome.deferred(REFUSED, ARRIVAL + 300)}, ARRIVAL + 1)
    status, out, _ = run(config, "queue", "show", entryId)
    assert status == 0
    assert out == (
        f"id: {entryId}\n"
        f"arrival: {when(ARRIVAL)}\n"
        "sender: <alice@example.com>\n"
        "size: 58 (58 bytes)\n"
        "body: 8BITMIME\n"
        "dsn: ret=HDRS envid=report-7\n"
        "held: no\n"
        f"recipient: <{BOB}>  deferred, 1 attempt, next {when(ARRIVAL + 300)}\n"
        "    notify: SUCCESS,FAILURE\n"
        "    orcpt: rfc822;bob@example.net\n"
        f"    last attempt: {when(ARRIVAL + 1)}\n"
        "    result: mx.example.net: Connection refused\n"
        "\n"
        "From: alice@example.com\nSubject: Report\n"
    )
    status, out, _ = run(config, "queue", "show", entryId, "--message")
    assert out.endswith("Subject: Report\n\nThe numbers.\n")


@pytest.mark.parametrize("action", ["show", "hold", "release", "delete", "flush"])
def test_an_unknown_or_malformed_id_is_one_line_and_status_1(
    config: Path, runner: QueueStore, action: str
) -> None:
    queued(runner)
    missing = "0" * 24
    assert run(config, "queue", action, missing) == (
        1,
        "",
        f"tmail: error: no such queue entry: {missing}\n",
    )
    status, out, err = run(config, "queue", action, "../../etc/passwd")
    assert (status, out) == (1, "")
    assert err.startswith("tmail: error: not a queue ID: '../../etc/passwd' (24 hex digits")


def test_hold_stops_the_running_runner_and_release_lets_it_go_on(
    config: Path, runner: QueueStore
) -> None:
    entryId = queued(runner)
    assert [e.id for e in runner.due(ARRIVAL)] == [entryId]
    assert run(config, "queue", "hold", entryId) == (0, f"{entryId}: held\n", "")
    assert runner.due(ARRIVAL) == []
    assert runner.load(entryId).held
    assert not runner.takeWakeup()
    assert run(config, "queue", "release", entryId) == (0, f"{entryId}: released\n", "")
    assert [e.id for e in runner.due(ARRIVAL)] == [entryId]
    assert runner.takeWakeup()


def test_delete_removes_entries_and_reports_the_ones_it_did_not_find(
    config: Path, runner: QueueStore
) -> None:
    first, second = queued(runner), queued(runner)
    attempt = runner.load(first)
    missing = "F" * 24
    status, out, err = run(config, "queue", "delete", first, missing, second)
    assert (status, out) == (1, f"{first}: deleted\n{second}: deleted\n")
    assert err == f"tmail: error: no such queue entry: {missing}\n"
    assert runner.entries() == []
    assert sorted(p.name for p in runner.path.iterdir() if p.is_file()) == ["lock"]
    with pytest.raises(NoSuchEntry):
        runner.record(attempt.id, {BOB: Outcome.delivered()})


def test_flush_makes_deferred_mail_due_now_and_wakes_the_runner(
    config: Path, runner: QueueStore
) -> None:
    later = time.time() + 3600
    first, second = queued(runner), queued(runner)
    for entryId in (first, second):
        runner.record(entryId, {BOB: Outcome.deferred(REFUSED, later)})
    assert runner.due(time.time()) == []
    assert run(config, "queue", "flush", first) == (0, f"{first}: due now\n", "")
    assert [e.id for e in runner.due(time.time())] == [first]
    assert runner.takeWakeup()
    assert run(config, "queue", "flush") == (0, "1 entry made due now\n", "")
    assert [e.id for e in runner.due(time.time())] == [first, second]
    assert runner.takeWakeup()


def test_flush_of_a_held_entry_says_it_stays_held(config: Path, runner: QueueStore) -> None:
    entryId = queued(runner)
    runner.hold(entryId)
    assert run(config, "queue", "flush", entryId) == (
        0,
        f"{entryId}: due now (held: release it to send it)\n",
        "",
    )


def test_the_installed_command_holds_an_entry(config: Path, runner: QueueStore) -> None:
    entryId = queued(runner)
    done = subprocess.run(
        [TMAIL, "--config", str(config), "queue", "hold", entryId],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{entryId}: held\n", "")
    assert runner.load(entryId).held
