"""The provider's own ``[oxen]`` settings, read the way Airflow reads its configuration."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def env_var(name: str) -> str:
    """``AIRFLOW__OXEN__<NAME>``: the environment variable Airflow maps to ``[oxen] <name>``."""
    return f"AIRFLOW__OXEN__{name.upper()}"


def provider_option(name: str) -> str | None:
    """``[oxen] <name>`` from Airflow's configuration; None if it is not set.

    Without an Airflow configuration (a bare script, a benchmark child) the environment
    variable Airflow would have read is looked at directly.
    """
    value: str | None = None
    with contextlib.suppress(Exception):
        from airflow.sdk import conf

        value = conf.get("oxen", name, fallback=None)
    if value is None:
        value = os.environ.get(env_var(name))
    return value


def provider_directory(name: str, leaf: str) -> Path | None:
    """``[oxen] <name>``, else ``<temp dir>/airflow-provider-oxen-<uid>/<leaf>``; None if set empty.

    Where the task processes of a host share what they need not each rebuild (model details,
    the CA directory): per OS user, so one user's files are never another's.
    """
    configured = provider_option(name)
    if configured is not None:
        return Path(configured).expanduser() if configured.strip() else None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"airflow-provider-oxen-{uid}" / leaf


def private_directory(path: Path) -> bool:
    """Create ``path`` and its missing parents (0700); usable only if nobody else can change it.

    The directory must be ours and not writable by others, and so must every directory above
    it, up to one owned by root (writable by others only with the sticky bit, like ``/tmp``):
    whoever can rename an entry on the way could put a directory of their own in its place (with
    their own CA, or model details that pass validation and cost checks they should fail).
    A refusal is logged once per path: it costs only speed, but should not go unnoticed.
    """
    why = _not_private(path)
    if why is not None and str(path) not in _refused:
        _refused.add(str(path))
        log.warning("Not using %s as a shared cache directory: %s.", path, why)
    return why is None


_refused: set[str] = set()


def _not_private(path: Path) -> str | None:
    try:
        missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
        for directory in reversed(missing):  # mkdir(parents=True) would give parents the umask's mode
            directory.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        return f"it cannot be created or read ({exc.strerror or exc})"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory (a symlink is not followed)"
    if not _ours(info) or info.st_mode & 0o022:
        return "another user owns it or can write to it"
    for ancestor in (*path.parents, *Path(os.path.realpath(path)).parents):
        if not _safe_ancestor(ancestor):
            return f"{ancestor} is another user's, or others can write to it without the sticky bit"
    return None


def _ours(info: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()


def _safe_ancestor(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    if not (_ours(info) or info.st_uid == 0):
        return False
    if stat.S_ISLNK(info.st_mode):
        return True  # its target's chain is checked too (the realpath's parents)
    return not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX)
