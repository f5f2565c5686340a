"""
Quotas in the Maildir++ C{maildirsize} file: its format, when it is recounted,
how the Maildir store keeps it while mail comes and goes, and that Dovecot's
C{maildir} quota backend reads what tmail writes (and the other way round).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import dovecot
from tmail.errors import OverQuota, StoreFull
from tmail.interfaces import IQuotaStore, QuotaUsage
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, MaildirStore
from tmail.store.quota import (
    FILENAME,
    MAX_FILE_SIZE,
    QuotaLimits,
    formatLimits,
    formatSize,
    limitsFromFields,
    overrideFields,
    parseLimits,
    parseMaildirSize,
    parseSize,
    scanUsage,
    userOverrides,
)

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def deliver(folder: MaildirFolder, data: bytes = MESSAGE, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(data)
    return pending.commit()


def quotaStore(root: Path, storage: int = 0, messages: int = 0) -> MaildirStore:
    return BlockingMaildirStore(root, quota=lambda: QuotaLimits(storage, messages))


def messageFiles(root: Path) -> list[str]:
    return sorted(
        name
        for folder in [root, *root.glob(".*")]
        for sub in ("tmp", "new", "cur")
        if (folder / sub).is_dir()
        for name in os.listdir(folder / sub)
        if not name.endswith(".deleted")
    )


# The file format


def test_sizes_take_binary_units_and_plain_numbers() -> None:
    assert parseSize("0") == 0
    assert parseSize("1234") == 1234
    assert parseSize("1K") == parseSize("1k") == parseSize("1KB") == parseSize("1KiB") == 1024
    assert parseSize("100M") == 100 * 1024**2
    assert parseSize(" 1G ") == 1024**3
    assert parseSize("2T") == 2 * 1024**4
    assert parseSize("512B") == 512
    assert parseSize("10", unit=1024) == 10240
    for bad in ("", "G", "-1G", "1.5G", "10X", "+5M", "10%"):
        with pytest.raises(ValueError):
            parseSize(bad)


@given(st.integers(min_value=0, max_value=2**62))
def test_formatted_sizes_read_back_exactly(size: int) -> None:
    assert parseSize(formatSize(size)) == size
    assert parseSize(formatSize(size), unit=1024) == size or formatSize(size) == "0"


def test_limits_line_is_the_one_dovecot_writes_and_reads() -> None:
    assert formatLimits(QuotaLimits(1073741824, 1000)) == "1073741824S,1000C"
    assert formatLimits(QuotaLimits(1048576, 0)) == "1048576S"
    assert formatLimits(QuotaLimits(0, 50)) == "50C"
    assert formatLimits(QuotaLimits()) == "0S"
    assert parseLimits("1073741824S,1000C") == QuotaLimits(1073741824, 1000)
    assert parseLimits("50C") == QuotaLimits(0, 50)
    assert parseLimits("0S") == QuotaLimits()
    assert parseLimits("100S,xC,7Q") == QuotaLimits(100, 0)
    assert parseLimits("") == QuotaLimits()


@given(
    st.builds(QuotaLimits, st.integers(0, 2**40), st.integers(0, 10**6)),
    st.lists(st.tuples(st.integers(-(2**31), 2**31), st.integers(-1000, 1000)), min_size=1),
)
def test_parsed_file_sums_its_change_lines(
    limits: QuotaLimits, deltas: list[tuple[int, int]]
) -> None:
    text = formatLimits(limits) + "\n" + "".join(f"{b} {c}\n" for b, c in deltas)
    parsed = parseMaildirSize(text.encode())
    storage, messages = sum(b for b, _ in deltas), sum(c for _, c in deltas)
    if storage < 0 or messages < 0:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.limits, parsed.storage, parsed.messages) == (limits, storage, messages)
        assert parsed.lines == len(deltas)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_ask_for_a_recount(data: bytes) -> None:
    parsed = parseMaildirSize(data)
    if parsed is not None:
        assert parsed.storage >= 0 and parsed.messages >= 0


def test_unfinished_or_malformed_files_ask_for_a_recount() -> None:
    assert parseMaildirSize(b"100S\n10 1") is None
    assert parseMaildirSize(b"100S\n") is None
    assert parseMaildirSize(b"100S\n10 1\nten 1\n") is None
    assert parseMaildirSize(b"100S\n10 1\n-20 -1\n") is None
    assert parseMaildirSize(b"100S\n10 1\n-10 -1\n") is not None


def test_user_rules_override_the_default_limit_by_limit() -> None:
    default = QuotaLimits(1024**3, 0)
    assert limitsFromFields({}, default) == default
    assert limitsFromFields({"quota_rule": "*:storage=100M"}, default) == QuotaLimits(
        100 * 1024**2, 0
    )
    assert limitsFromFields({"quota_rule2": "*:messages=1000"}, default) == QuotaLimits(
        1024**3, 1000
    )
    both = {"quota_rule": "*:storage=2048", "quota_rule2": "*:bytes=5000:messages=7"}
    assert limitsFromFields(both, default) == QuotaLimits(5000, 7)
    assert limitsFromFields({"quota_rule": "*:storage=0"}, default) == QuotaLimits(0, 0)
    unsupported = {
        "quota_rule": "Trash:storage=+100M",
        "quota_rule2": "*:storage=10%",
        "quota_rule3": "*:ignore",
        "quota": "maildir:User quota",
    }
    assert limitsFromFields(unsupported, default) == default


def test_override_fields_keep_rules_for_other_mailboxes() -> None:
    fields = {"quota_rule": "*:storage=1G:messages=5", "quota_rule2": "Trash:storage=+10M"}
    changes = overrideFields(fields, 100 * 1024**2, 1000)
    assert changes == {"quota_rule": "*:storage=100M", "quota_rule3": "*:messages=1000"}
    updated = {**fields, **{k: v for k, v in changes.items() if v is not None}}
    assert userOverrides(updated) == (100 * 1024**2, 1000)
    assert overrideFields({"quota_rule": "*:storage=1G"}, None, 10) == {
        "quota_rule": None,
        "quota_rule2": "*:messages=10",
    }


# The store keeps the file


def test_first_look_counts_every_folder_and_writes_the_file(tmp_path: Path) -> None:
    plain = BlockingMaildirStore(tmp_path)
    deliver(plain.getFolder("INBOX"))
    deliver(plain.createFolder("Trash"), MESSAGE * 2)
    deliver(plain.createFolder("Archive/2025"), MESSAGE * 3, ("\\Seen",))
    assert not (tmp_path / FILENAME).exists()
    store = quotaStore(tmp_path, 10_000, 100)
    assert store.quota() == QuotaUsage(6 * len(MESSAGE), 3, 10_000, 100)
    assert (tmp_path / FILENAME).read_text() == f"10000S,100C\n{6 * len(MESSAGE)} 3\n"
    assert (tmp_path / FILENAME).stat().st_mode & 0o777 == 0o600


def test_delivery_appends_one_line_and_never_rescans(tmp_path: Path) -> None:
    store = quotaStore(tmp_path, 10_000)
    inbox = store.getFolder("INBOX")
    assert store.quota() == QuotaUsage(0, 0, 10_000, None)
    deliver(inbox)
    deliver(inbox, MESSAGE * 2, ("\\Seen", "$Work"))
    size = len(MESSAGE)
    assert (tmp_path / FILENAME).read_text() == f"10000S\n0 0\n{size} 1\n{2 * size} 1\n"
    # A message the file does not know about stays uncounted: no rescan.
    shutil.copy(next((tmp_path / "cur").iterdir()), tmp_path / "new" / "123.extra,S=5")
    assert store.quota() == QuotaUsage(3 * size, 2, 10_000, None)


def test_store_without_quota_reports_none_and_writes_nothing(tmp_path: Path) -> None:
    store = BlockingMaildirStore(tmp_path)
    deliver(store.getFolder("INBOX"))
    assert IQuotaStore.providedBy(store)
    assert store.quota() is None
    assert store.recalculateQuota() is None
    assert not (tmp_path / FILENAME).exists()


def test_unlimited_user_file_is_made_on_request_and_then_kept(tmp_path: Path) -> None:
    store = quotaStore(tmp_path)
    inbox = store.getFolder("INBOX")
    deliver(inbox)
    store.checkQuota(10**15, 10**9)
    assert not (tmp_path / FILENAME).exists()
    assert store.quota() == QuotaUsage(len(MESSAGE), 1)
    assert (tmp_path / FILENAME).read_text() == f"0S\n{len(MESSAGE)} 1\n"
    deliver(inbox)
    assert store.quota() == QuotaUsage(2 * len(MESSAGE), 2)


def test_message_that_would_cross_the_storage_limit_is_refused(tmp_path: Path) -> None:
    size = len(MESSAGE)
    store = quotaStore(tmp_path, storage=2 * size)
    inbox = store.getFolder("INBOX")
    deliver(inbox)
    deliver(inbox)
    store.checkQuota(0)
    with pytest.raises(OverQuota):
        store.checkQuota(1)
    with pytest.raises(OverQuota) as caught:
        deliver(inbox, b"x")
    assert caught.value.resource == "storage"
    assert isinstance(caught.value, StoreFull)
    assert len(messageFiles(tmp_path)) == 2
    assert [m.uid for m in inbox.messages()] == [1, 2]
    assert store.quota() == QuotaUsage(2 * size, 2, 2 * size, None)


def test_message_count_limit_refuses_the_next_message(tmp_path: Path) -> None:
    store = quotaStore(tmp_path, messages=2)
    inbox = store.getFolder("INBOX")
    deliver(inbox)
    deliver(inbox, flags=("$Label",))
    with pytest.raises(OverQuota) as caught:
        deliver(inbox, flags=("$Label",))
    assert caught.value.resource == "messages"
    assert len(messageFiles(tmp_path)) == 2


def test_expunge_and_folder_delete_give_space_back(tmp_path: Path) -> None:
    size = len(MESSAGE)
    store = quotaStore(tmp_path, storage=3 * size)
    inbox = store.getFolder("INBOX")
    uids = [deliver(inbox) for _ in range(2)]
    trash = store.createFolder("Trash")
    deliver(trash)
    with pytest.raises(OverQuota):
        deliver(inbox)
    inbox.expunge(uids[:1])
    assert store.quota() == QuotaUsage(2 * size, 2, 3 * size, None)
    deliver(inbox)
    store.deleteFolder("Trash")
    assert store.quota() == QuotaUsage(2 * size, 2, 3 * size, None)
    lines = (tmp_path / FILENAME).read_text().splitlines()
    assert lines[-3:] == [f"-{size} -1", f"{size} 1", f"-{size} -1"]


def test_copy_counts_and_is_refused_over_quota(tmp_path: Path) -> None:
    size = len(MESSAGE)
    store = quotaStore(tmp_path, storage=2 * size)
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox)
    archive = store.createFolder("Archive")
    inbox.copyMessage(uid, archive)
    assert store.quota() == QuotaUsage(2 * size, 2, 2 * size, None)
    with pytest.raises(OverQuota):
        inbox.copyMessage(uid, archive)
    assert len(archive.messages()) == 1
    assert len(messageFiles(tmp_path)) == 2


def test_changed_limits_rewrite_the_file(tmp_path: Path) -> None:
    limits = [QuotaLimits(10_000, 0)]
    store = BlockingMaildirStore(tmp_path, quota=lambda: limits[0])
    deliver(store.getFolder("INBOX"))
    store.quota()
    limits[0] = QuotaLimits(20_000, 5)
    assert store.quota() == QuotaUsage(len(MESSAGE), 1, 20_000, 5)
    assert (tmp_path / FILENAME).read_text() == f"20000S,5C\n{len(MESSAGE)} 1\n"


def test_oversized_or_corrupt_file_is_recounted(tmp_path: Path) -> None:
    store = quotaStore(tmp_path, 10**9)
    inbox = store.getFolder("INBOX")
    deliver(inbox)
    path = tmp_path / FILENAME
    path.write_text("1000000000S\n" + "1 0\n" * (MAX_FILE_SIZE // 4))
    assert store.quota() == QuotaUsage(len(MESSAGE), 1, 10**9, None)
    path.write_text("1000000000S\n5 1\nnonsense\n")
    assert store.quota() == QuotaUsage(len(MESSAGE), 1, 10**9, None)
    assert path.read_text() == f"1000000000S\n{len(MESSAGE)} 1\n"


def test_over_quota_count_is_trusted_only_while_fresh_and_summarised(tmp_path: Path) -> None:
    """Dovecot's rule: an over-limit sum is recounted when it has several lines or is old."""
    store = quotaStore(tmp_path, storage=1000)
    deliver(store.getFolder("INBOX"))
    path = tmp_path / FILENAME
    path.write_text("1000S\n5000 1\n")
    assert store.quota() == QuotaUsage(5000, 1, 1000, None)
    path.write_text("1000S\n4000 1\n1000 0\n")
    assert store.quota() == QuotaUsage(len(MESSAGE), 1, 1000, None)
    path.write_text("1000S\n5000 1\n")
    old = time.time() - 16 * 60
    os.utime(path, (old, old))
    assert store.quota() == QuotaUsage(len(MESSAGE), 1, 1000, None)


def test_lock_held_elsewhere_counts_without_writing(tmp_path: Path) -> None:
    deliver(BlockingMaildirStore(tmp_path).getFolder("INBOX"))
    store = quotaStore(tmp_path, 10_000)
    (tmp_path / (FILENAME + ".lock")).write_text("")
    assert store.quota() == QuotaUsage(len(MESSAGE), 1, 10_000, None)
    assert not (tmp_path / FILENAME).exists()


def test_unusable_file_neither_loses_mail_nor_lifts_the_limit(tmp_path: Path) -> None:
    """A C{maildirsize} that cannot be read or written: counts come from the messages."""
    size = len(MESSAGE)
    store = quotaStore(tmp_path, storage=2 * size)
    inbox = store.getFolder("INBOX")
    (tmp_path / FILENAME).mkdir()
    uid = deliver(inbox)
    deliver(inbox)
    with pytest.raises(OverQuota):
        deliver(inbox)
    inbox.expunge([uid])
    deliver(inbox)
    assert [m.uid for m in inbox.messages()] == [2, 3]
    assert store.quota() == QuotaUsage(2 * size, 2, 2 * size, None)
    assert not (tmp_path / (FILENAME + ".lock")).exists()


def test_recalculate_repairs_a_wrong_sum(tmp_path: Path) -> None:
    store = quotaStore(tmp_path, 10_000)
    deliver(store.getFolder("INBOX"))
    store.quota()
    (tmp_path / FILENAME).write_text("10000S\n777 7\n")
    assert store.quota() == QuotaUsage(777, 7, 10_000, None)
    assert store.recalculateQuota() == QuotaUsage(len(MESSAGE), 1, 10_000, None)
    assert (tmp_path / FILENAME).read_text() == f"10000S\n{len(MESSAGE)} 1\n"


_operation = st.one_of(
    st.tuples(st.just("deliver"), st.sampled_from(["INBOX", "Trash", "A/B"]), st.integers(1, 400)),
    st.tuples(st.just("expunge"), st.sampled_from(["INBOX", "Trash", "A/B"]), st.integers(0, 5)),
    st.tuples(st.just("copy"), st.sampled_from(["INBOX", "Trash", "A/B"]), st.integers(0, 5)),
    st.tuples(st.just("delete"), st.sampled_from(["Trash", "A/B"]), st.just(0)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_operation, max_size=20), st.integers(0, 3000), st.integers(0, 12))
def test_sum_of_changes_equals_a_recount_after_any_mail_traffic(
    operations: list[tuple[str, str, int]], storage: int, messages: int
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        store = quotaStore(root, storage, messages)
        store.quota()
        for kind, name, number in operations:
            if name not in store.listFolders():
                store.createFolder(name)
            folder = store.getFolder(name)
            uids = [m.uid for m in folder.messages()]
            try:
                if kind == "deliver":
                    deliver(folder, b"x" * number, ("\\Seen",) if number % 2 else ())
                elif kind == "expunge" and uids:
                    folder.expunge([uids[number % len(uids)]])
                elif kind == "copy" and uids:
                    folder.copyMessage(uids[number % len(uids)], store.getFolder("INBOX"))
                elif kind == "delete":
                    store.deleteFolder(name)
            except OverQuota:
                pass
            parsed = parseMaildirSize((root / FILENAME).read_bytes())
            assert parsed is not None
            assert (parsed.storage, parsed.messages) == scanUsage(root)
        usage = store.quota()
        assert usage is not None
        if storage:
            assert usage.storage <= storage
        if messages:
            assert usage.messages <= messages


# Dovecot reads the file tmail writes


@pytest.fixture
def sharedPath() -> Iterator[Path]:
    with dovecot.scratchDirectory() as path:
        yield path


@pytest.mark.skipif(dovecot.missing() is not None, reason=str(dovecot.missing()))
def test_dovecot_maildir_quota_reads_and_extends_the_file_tmail_writes(sharedPath: Path) -> None:
    """
    Dovecot's C{maildir} quota backend (its C{imap} binary run preauthenticated
    as the mail user) takes tmail's file as it is (its counts, no recount),
    appends its own change line, and tmail then sums Dovecot's line with its
    own.
    """
    tmp_path = sharedPath
    uid, _ = dovecot.mailIds()
    root = tmp_path / "mail" / "alice"
    store = quotaStore(root, 1024**2, 10)
    inbox = store.getFolder("INBOX")
    uids = [deliver(inbox, MESSAGE * n) for n in (1, 2, 3)]
    inbox.expunge(uids[1:2])
    written = (root / FILENAME).read_text()
    assert store.quota() == QuotaUsage(4 * len(MESSAGE), 2, 1024**2, 10)

    config = tmp_path / "dovecot.conf"
    config.write_text(
        f"""
base_dir = {tmp_path}/run
log_path = /dev/stderr
mail_location = maildir:{tmp_path}/mail/%n
mail_plugins = quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage=1M
  quota_rule2 = *:messages=10
}}
"""
    )
    dovecot.handToMailUser(tmp_path / "mail")
    appended = b"Subject: from dovecot\r\n\r\nhi\r\n"
    script = b"a GETQUOTAROOT INBOX\r\nb APPEND INBOX {%d+}\r\n%s\r\nc LOGOUT\r\n" % (
        len(appended),
        appended,
    )
    result = subprocess.run(
        [
            "/usr/lib/dovecot/imap",
            "-c",
            str(config),
            "-o",
            "mail_uid=mail",
            "-o",
            "mail_gid=mail",
            "-o",
            f"first_valid_uid={uid}",
        ],
        input=script,
        env={"USER": "alice", "HOME": str(root)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    output = result.stdout.decode()
    assert "b OK" in output, output + result.stderr.decode()
    quota = re.search(r'\* QUOTA "User quota" \(STORAGE (\d+) (\d+) MESSAGE (\d+) (\d+)\)', output)
    assert quota is not None, output
    assert [int(n) for n in quota.groups()] == [math.ceil(4 * len(MESSAGE) / 1024), 1024, 2, 10]
    afterDovecot = (root / FILENAME).read_text()
    assert afterDovecot.startswith(written)
    storedByDovecot = scanUsage(root)[0] - 4 * len(MESSAGE)
    assert afterDovecot[len(written) :] == f"{storedByDovecot} 1\n"
    assert store.quota() == QuotaUsage(4 * len(MESSAGE) + storedByDovecot, 3, 1024**2, 10)
    # Dovecot stored LF line ends (its file name says ,S= and the CRLF ,W=):
    # expunging it gives back the stored size, which is what a recount finds.
    inbox.refresh()
    fromDovecot = max(m.uid for m in inbox.messages())
    inbox.expunge([fromDovecot])
    assert store.quota() == QuotaUsage(4 * len(MESSAGE), 2, 1024**2, 10)
    assert scanUsage(root) == (4 * len(MESSAGE), 2)
