"""Which Docker engine the caller uses, and whether it can run the image: standard library only.

``noxfile.py`` loads this file by path before installing anything (``nox -s docker`` decides
to skip in a second, with the exact cause); the Docker backend uses it to say why no engine
answers. The engine is ``DOCKER_HOST`` when set (``unix://``, ``tcp://``; ``DOCKER_TLS_VERIFY``
and ``DOCKER_CERT_PATH`` as the Docker CLI reads them), else the local socket.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.parse
from collections.abc import Mapping

__all__ = ["DEFAULT_SOCKET", "engine_url", "probe"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_url(environ: Mapping[str, str] | None = None) -> str:
    """``DOCKER_HOST`` when set, else the local engine's socket."""
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST", "").strip() or DEFAULT_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


def _connection(url: str, environ: Mapping[str, str], timeout: float) -> http.client.HTTPConnection:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "unix":
        return _UnixConnection(parsed.path, timeout)
    if parsed.scheme in ("tcp", "http", "https"):
        host, port = parsed.hostname or "localhost", parsed.port
        tls = parsed.scheme == "https" or environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
        if not tls:
            return http.client.HTTPConnection(host, port or 2375, timeout=timeout)
        certs = environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        ctx.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
        return http.client.HTTPSConnection(host, port or 2376, timeout=timeout, context=ctx)
    raise ValueError(f"{parsed.scheme or url!r} engines cannot be asked without the Docker SDK")


def _request(conn: http.client.HTTPConnection, method: str, path: str) -> tuple[int, bytes]:
    conn.request(method, path, headers={"Host": "docker"})
    res = conn.getresponse()
    return res.status, res.read()


def _message(body: bytes) -> str:
    """The engine's error text: ``{"message": ...}``, or the last ``{"error": ...}`` line of a
    pull's progress stream."""
    found = ""
    for line in body.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            found = str(item.get("message") or item.get("error") or found)
    return " ".join(found.split())[:300]


def probe(
    image: str | None = None,
    *,
    pull: bool = True,
    environ: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> str | None:
    """Why Docker cannot run ``image`` here, or None when it can.

    The engine must answer ``/_ping``; the image must be present, or (``pull``) pulled now.
    The cause names the engine (and where its address came from) and the image.
    """
    env = os.environ if environ is None else environ
    url = engine_url(env)
    where = f"{url} ({'DOCKER_HOST' if env.get('DOCKER_HOST', '').strip() else 'the default'})"
    try:
        conn = _connection(url, env, timeout)
    except (ValueError, OSError) as exc:
        return f"cannot ask the Docker engine at {where}: {exc}"
    try:
        try:
            status, body = _request(conn, "GET", "/_ping")
        except (OSError, http.client.HTTPException) as exc:
            return f"no Docker engine answers at {where}: {exc.__class__.__name__}: {exc}"
        if status != 200:
            return f"the Docker engine at {where} answers /_ping with {status}: {_message(body)}"
        if image is None:
            return None
        quoted = urllib.parse.quote(image, safe="")
        status, body = _request(conn, "GET", f"/images/{quoted}/json")
        if status == 200:
            return None
        if status != 404:
            return f"the Docker engine at {where} cannot inspect {image!r}: {_message(body)}"
        if not pull:
            return f"Docker image {image!r} is not present at {where}"
        name, tag = image, "latest"
        if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
            name, tag = image.rsplit(":", 1)
        query = urllib.parse.urlencode({"fromImage": name, "tag": tag})
        status, body = _request(conn, "POST", f"/images/create?{query}")
        error = _message(body) if status != 200 or b'"error"' in body else ""
        if error or status != 200:
            return (
                f"Docker image {image!r} is not present at {where} and cannot be pulled "
                f"({error or status}); build or pull it, or set TSACCESS_TEST_IMAGE to an "
                "image the engine has"
            )
        return None
    except (OSError, http.client.HTTPException) as exc:
        return f"the Docker engine at {where} stopped answering: {exc.__class__.__name__}: {exc}"
    finally:
        conn.close()
