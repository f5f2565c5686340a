"""The passwd-file directory passes the user directory contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from twisted.trial.unittest import TestCase

from tmail.interfaces import IUserDirectory
from tmail.testing import UserDirectoryTestsMixin, passwdFileDirectory


class PasswdFileDirectoryContractTests(UserDirectoryTestsMixin, TestCase):
    def makeDirectory(
        self, users: Mapping[str, bytes], aliases: Mapping[str, Sequence[str]]
    ) -> IUserDirectory:
        return passwdFileDirectory(Path(self.mktemp()), users, aliases)
