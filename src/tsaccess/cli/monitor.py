"""``tsaccess monitor``: the Prometheus exporter (``serve``, the default), one collection
(``once``), the alerting rules (``rules``) and the Grafana dashboard (``dashboard``).

``serve`` and ``once`` connect as the policy's monitoring user and refuse a login that may read
a data table (the superuser's, say) unless ``--allow-data-access``: the exporter is meant to run
with the least privilege there is (``docs/howto/monitoring.md``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tsaccess.cli.plan import EXIT_OK, Fail, Tools

__all__ = ["add_monitor_parser", "monitor_command"]

_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$")


def interval_seconds(text: str) -> float:
    """``15s``, ``1m``, ``500ms`` as seconds (argparse type)."""
    m = _INTERVAL.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number and ms/s/m/h, e.g. 15s or 1m")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]


def listen_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9187``, ``[::1]:9187`` or ``:9187`` (all interfaces); port 0: a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, e.g. 127.0.0.1:9187")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - asked for with ":PORT"


def _monitor(args: argparse.Namespace, tools: Tools) -> Any:
    """The :class:`~tsaccess.monitor.Monitor` of ``args``, its connection checked."""
    from tsaccess.client.connection import connect
    from tsaccess.client.tls import tls_status
    from tsaccess.monitor import Monitor, MonitorOptions
    from tsaccess.monitor.security import readable_data

    if not args.policy:
        raise Fail("tsaccess monitor needs --policy (and --dsn or PG* variables)", 2)
    policy = tools.policy(args)
    try:
        user = str(conninfo_to_dict(args.dsn or "").get("user") or os.environ.get("PGUSER") or "")
    except psycopg.ProgrammingError:
        raise Fail("--dsn could not be parsed (not shown: it may contain a password)") from None
    secret = tools.passwords(args, [user]).get(user) if user else None

    def opener() -> Any:
        extra = {"password": secret.reveal()} if secret is not None else {}
        return connect(args.dsn or "", dbname=policy.database, **extra)

    with opener() as conn:
        print(f"tsaccess: monitor: TLS: {tls_status(conn)}", file=sys.stderr)
        readable = readable_data(conn, policy.schema, [t.name for t in policy.tables])
        login = conn.info.user
    if readable and not args.allow_data_access:
        raise Fail(
            f"{login!r} may read data table {readable[0]!r}: run the exporter as the policy's "
            "monitoring user (a user holding a role with monitoring = true), or pass "
            "--allow-data-access"
        )
    options = MonitorOptions(
        applier=args.applier,
        expect_privileged=frozenset(args.expect_privileged or ()),
        server_log=args.server_log,
        chain_every=args.chain_every,
        state_file=args.state_file,
    )
    return Monitor(opener, policy, options)


def monitor_command(args: argparse.Namespace, tools: Tools) -> int:
    """``tsaccess monitor``."""
    from tsaccess.monitor import (
        Exporter,
        dashboard_json,
        exposition,
        require_prometheus_client,
        rules_yaml,
    )

    if args.action == "rules":
        try:
            sys.stdout.write(rules_yaml(job=args.job, duration=args.duration))
        except ValueError as exc:
            raise Fail(str(exc), 2) from None
        return EXIT_OK
    if args.action == "dashboard":
        sys.stdout.write(dashboard_json())
        return EXIT_OK
    if args.action == "once":
        with _monitor(args, tools) as monitor:
            reading = monitor.collect()
        if args.json:
            tools.print_json(
                [
                    {
                        "name": m.sample_name,
                        "labels": dict(zip(m.labels, labels, strict=True)),
                        "value": value,
                    }
                    for m, labels, value in reading.samples()
                ]
            )
        else:
            try:
                sys.stdout.write(exposition(reading).decode())
            except ImportError as exc:
                raise Fail(f"{exc} (or use --json)") from None
        return EXIT_OK if reading.up else 1
    try:
        require_prometheus_client()  # before connecting: name the missing extra first
    except ImportError as exc:
        raise Fail(str(exc)) from None
    with _monitor(args, tools) as monitor:
        exporter = Exporter(monitor, args.interval)
        try:
            host, port = exporter.listen(
                *args.listen,
                certfile=str(args.web_cert) if args.web_cert else None,
                keyfile=str(args.web_key) if args.web_key else None,
            )
        except OSError as exc:
            raise Fail(
                f"cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror}"
            ) from None
        scheme = "https" if args.web_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        print(
            f"tsaccess: monitor: serving {scheme}://{shown}:{port}/metrics",
            file=sys.stderr,
            flush=True,
        )
        try:
            exporter.run()
        finally:
            exporter.stop()
    return EXIT_OK


def add_monitor_parser(sub: Any, dsn_action: Any) -> None:
    """The ``monitor`` subcommand's parser (``sub``: the CLI's subparsers)."""
    sp: argparse.ArgumentParser = sub.add_parser(
        "monitor",
        help="Prometheus exporter of security signals (serve), one collection (once), the "
        "alerting rules (rules), a Grafana dashboard (dashboard)",
        epilog="serve needs the extra: pip install 'tsaccess[monitor]'. "
        "See docs/howto/monitoring.md.",
    )
    sp.add_argument(
        "action",
        nargs="?",
        default="serve",
        choices=["serve", "once", "rules", "dashboard"],
        help="serve /metrics (default), print one collection, print the rules file or the "
        "dashboard JSON",
    )
    sp.add_argument(
        "--dsn",
        action=dsn_action,
        help="libpq connection string of the policy's monitoring user (default: PG* "
        "variables); its password from TSACCESS_PASSWORD_<USER>, --passwords-file or libpq",
    )
    sp.add_argument("--policy", type=Path, help="policy TOML file")
    sp.add_argument(
        "--passwords-file",
        type=Path,
        action="append",
        metavar="FILE",
        help="pgpass-format file with the monitoring user's password (mode 0600)",
    )
    sp.add_argument(
        "--listen",
        type=listen_address,
        default=("127.0.0.1", 9187),
        metavar="HOST:PORT",
        help="where /metrics is served (default 127.0.0.1:9187; port 0: a free port)",
    )
    sp.add_argument(
        "--interval",
        type=interval_seconds,
        default=15.0,
        help="read the database this often (default 15s), whatever the scrape rate",
    )
    sp.add_argument(
        "--applier",
        metavar="ROLE",
        help="the administrator who applies the policy (drift is planned as it would plan); "
        "default: the owner of the policy's tables",
    )
    sp.add_argument(
        "--expect-privileged",
        action="append",
        metavar="ROLE",
        help="a role allowed SUPERUSER, BYPASSRLS, CREATEROLE or REPLICATION (repeat); the "
        "bootstrap superuser always is",
    )
    sp.add_argument(
        "--server-log",
        metavar="PATH",
        help="the server's jsonlog file or log directory, or 'postgres' (read through "
        "pg_read_binary_file, for a role allowed to): counts failed logins",
    )
    sp.add_argument(
        "--state-file",
        type=Path,
        metavar="FILE",
        help="keep the chunks seen here (JSON, 0600) so a restart misses no vanished chunk",
    )
    sp.add_argument(
        "--chain-every",
        type=int,
        default=20,
        metavar="N",
        help="count the rows of every sealed block every N collections (default 20; the "
        "others check the oldest and the newest block)",
    )
    sp.add_argument("--web-cert", type=Path, metavar="FILE", help="serve HTTPS with this cert")
    sp.add_argument("--web-key", type=Path, metavar="FILE", help="the key of --web-cert")
    sp.add_argument(
        "--allow-data-access",
        action="store_true",
        help="run even when the login may read a data table (not recommended)",
    )
    sp.add_argument("--job", default="tsaccess", help="rules: the scrape job's name")
    sp.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="rules: every rule's for: (e.g. 0s to try them out); default: each rule's own",
    )
    sp.add_argument("--json", action="store_true", help="once: the samples as JSON")
