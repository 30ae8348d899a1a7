"""Where login passwords come from, and how they are stored (SCRAM-SHA-256).

Passwords never live in a policy. For each user they come from, in this order:

1. the environment variable ``TSACCESS_PASSWORD_<USER>`` (user name upper-cased);
2. a passwords file in pgpass format (``host:port:dbname:user:password``) that must be mode
   0600, like libpq's own ``.pgpass``;
3. generation on request, written to a new 0600 pgpass-format file.

Values are wrapped in :class:`Secret`, whose ``repr`` and ``str`` never show them. The server
only ever receives a SCRAM verifier computed here, never the plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from tsaccess._files import write_private
from tsaccess.errors import PasswordSourceError
from tsaccess.policy import password_env_var

__all__ = [
    "Secret",
    "check_private_file",
    "generate_password",
    "read_pgpass",
    "resolve_passwords",
    "scram_matches",
    "scram_verifier",
    "write_pgpass",
]

SCRAM_ITERATIONS = 4096


class Secret:
    """A password that does not show itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise PasswordSourceError("an empty password is not allowed")
        self._value = value

    def reveal(self) -> str:
        """The plain text, for handing to libpq."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def generate_password() -> Secret:
    """A new random password (24 random bytes, URL-safe text)."""
    return Secret(secrets.token_urlsafe(24))


def scram_verifier(
    password: Secret, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` verifier PostgreSQL stores."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.reveal().encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_matches(password: Secret, verifier: str | None) -> bool:
    """Whether a stored SCRAM verifier was made from ``password`` (False for other formats)."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        head, _keys = verifier[len("SCRAM-SHA-256$") :].split("$", 1)
        iterations, salt_b64 = head.split(":", 1)
        expected = scram_verifier(
            password, salt=base64.b64decode(salt_b64), iterations=int(iterations)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, verifier)


def check_private_file(path: Path) -> None:
    """Raise unless ``path`` is a readable regular file that only its owner can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise PasswordSourceError(f"passwords file {path} does not exist; check the path") from None
    except OSError as exc:
        raise PasswordSourceError(f"cannot read passwords file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PasswordSourceError(f"passwords file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise PasswordSourceError(
            f"passwords file {path} is readable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {path}'"
        )
    if not os.access(path, os.R_OK):
        raise PasswordSourceError(f"passwords file {path} is not readable by this user")


def _split_pgpass(line: str) -> list[str]:
    fields: list[str] = []
    cur: list[str] = []
    esc = False
    for ch in line:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ":" and len(fields) < 4:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return fields


def read_pgpass(path: str | os.PathLike[str]) -> dict[str, Secret]:
    """User -> password from a 0600 pgpass-format file (the first line for a user wins)."""
    p = Path(path)
    check_private_file(p)
    out: dict[str, Secret] = {}
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = _split_pgpass(line)
        if len(fields) != 5 or not fields[4]:
            raise PasswordSourceError(
                f"{p}:{n}: expected host:port:dbname:user:password (use \\: for a colon)"
            )
        out.setdefault(fields[3], Secret(fields[4]))
    return out


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace(":", "\\:")


def write_pgpass(
    path: str | os.PathLike[str],
    passwords: Mapping[str, Secret],
    *,
    host: str = "*",
    port: str | int = "*",
    dbname: str = "*",
) -> Path:
    """Write a new pgpass-format file with mode 0600 (never briefly readable by others)."""
    p = Path(path)
    lines = [
        f"{_esc(host)}:{_esc(str(port))}:{_esc(dbname)}:{_esc(user)}:{_esc(pw.reveal())}\n"
        for user, pw in passwords.items()
    ]
    text = "# written by tsaccess; keep this file mode 0600\n" + "".join(lines)
    write_private(p, text, replace=True)
    return p


def resolve_passwords(
    users: Iterable[str],
    *,
    passwords_file: str | os.PathLike[str] | None = None,
    generate: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Secret]:
    """Passwords for ``users`` from the environment, a passwords file, or generated.

    Users with no password from any source are left out unless ``generate`` is true. Write
    generated ones down with :func:`write_pgpass`.
    """
    env = os.environ if environ is None else environ
    from_file = read_pgpass(passwords_file) if passwords_file else {}
    out: dict[str, Secret] = {}
    for user in users:
        var = password_env_var(user)
        if env.get(var):
            out[user] = Secret(env[var])
        elif user in from_file:
            out[user] = from_file[user]
        elif generate:
            out[user] = generate_password()
    return out
