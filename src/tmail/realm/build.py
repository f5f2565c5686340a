"""Build the realm a configuration asks for."""

from __future__ import annotations

import importlib

from tmail.config.schema import Settings
from tmail.errors import ConfigError
from tmail.interfaces import IMailRealm, IUserDirectory
from tmail.realm.base import MailRealm
from tmail.realm.maildir import MaildirRealm
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.filework import FileWork
from tmail.store.quota import QuotaLimits


def realmFromSettings(
    settings: Settings, directory: IUserDirectory, fileWork: FileWork | None = None
) -> IMailRealm:
    """
    C{virtual}, C{maildir}, or C{package.module:Class}.  A custom class is
    called as C{Class.fromSettings(settings, directory)} when it has that
    class method, else as C{Class(directory, data_dir / "mail")} (the
    signature of L{VirtualDomainRealm}).  The C{[quota]} limits become the
    default quota of a L{MailRealm} (a C{fromSettings} class reads them from
    the settings itself).

    @param fileWork: where the stores of a L{MailRealm} do their file work
        (L{MailRealm.fileWork}): the server's pool, or
        L{tmail.store.filework.INLINE} for command-line tools.
    """
    backend = settings.realm.backend
    mailRoot = settings.realm.root or settings.data_dir / "mail"
    quota = QuotaLimits(settings.quota.storage, settings.quota.messages)
    if backend == "virtual":
        return VirtualDomainRealm(directory, mailRoot, quota=quota, fileWork=fileWork)
    if backend == "maildir":
        if not settings.realm.domain:
            raise ConfigError(str(settings.path), "realm.domain", "required by the maildir backend")
        return MaildirRealm(
            directory, mailRoot, settings.realm.domain, quota=quota, fileWork=fileWork
        )
    moduleName, _, className = backend.partition(":")
    try:
        cls = getattr(importlib.import_module(moduleName), className)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(
            str(settings.path), "realm.backend", f"cannot load {backend}: {e}"
        ) from None
    factory = getattr(cls, "fromSettings", None)
    try:
        realm = factory(settings, directory) if factory else cls(directory, mailRoot)
    except Exception as e:
        raise ConfigError(
            str(settings.path), "realm.backend", f"cannot build {backend}: {e}"
        ) from None
    if not IMailRealm.providedBy(realm):
        raise ConfigError(
            str(settings.path), "realm.backend", f"{backend} does not provide IMailRealm"
        )
    built: IMailRealm = realm
    if not factory and isinstance(built, MailRealm):
        built.defaultQuota = quota
    if isinstance(built, MailRealm) and built.fileWork is None:
        built.fileWork = fileWork
    return built
