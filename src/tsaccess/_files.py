"""Private files: created readable by the owner only, never briefly readable by others."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["write_private"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def write_private(
    path: str | os.PathLike[str], data: bytes | str, *, replace: bool = False
) -> None:
    """Create ``path`` with mode 0600 and write ``data`` (``str`` is written as UTF-8).

    The file is created with ``O_CREAT | O_EXCL`` and mode 0600 in the same system call, so it
    is never readable by others and an existing file (or a planted symlink) is never written
    through.

    Args:
        replace: replace an existing ``path`` atomically (the data goes to a new private file
            beside it, which is then renamed over ``path``); without it an existing ``path``
            raises ``FileExistsError``.
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp") if replace else target
    fd = os.open(tmp, _FLAGS, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        if replace:
            os.replace(tmp, target)
    except BaseException:
        if replace:
            tmp.unlink(missing_ok=True)
        raise
