#!/usr/bin/env python3
"""A minimal real DBOS (Python SDK, pinned in requirements.txt) application used by
pg-queue-scaler's end-to-end tests.

The system database URL is read from the environment variable
DBOS_SYSTEM_DATABASE_URL and is never printed.

Subcommands
-----------
register --queue NAME --worker-concurrency N [--app-name APP] [--no-launch]
    Launch DBOS against the system database (this creates or migrates the
    `dbos` schema), register the queue so that a row lands in dbos.queues with
    that worker_concurrency, then destroy DBOS and exit.
    The process never dequeues user work: it calls DBOS.listen_queues([])
    before launch, so no worker thread is started for any user queue, and it
    uses a unique executor ID so startup recovery finds nothing of its own.
    Caveat (DBOS behaviour, not ours): while launched (about a second) DBOS's
    background job may promote already-due DELAYED rows owned by APP (or
    unowned) to ENQUEUED, and DBOS's internal queue is polled. Register before
    you enqueue, or pass --no-launch, which applies migrations with
    DBOS.migrate() and registers through DBOSClient.register_queue() without
    starting any DBOS background thread at all.

enqueue --queue NAME --count K [--delay-seconds S] [--app-name APP | --unowned]
        [--workflow-name work] [--priority P]
    Enqueue K workflows named `work` on the queue with DBOSClient, then destroy
    the client. Rows appear in dbos.workflow_status as ENQUEUED, or DELAYED
    (with delay_until_epoch_ms set) when --delay-seconds is given. Nothing
    executes them: the workflow function does not need to exist anywhere.

Output: one JSON object on stdout describing what was done; DBOS's own logs go
to stderr (level WARNING unless --log-level says otherwise). On failure a short
message goes to stderr and the exit status is non-zero (2 = usage/config,
1 = DBOS or database error).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from typing import Any, NoReturn, Optional
from urllib.parse import unquote, urlsplit

ENV_URL = "DBOS_SYSTEM_DATABASE_URL"
DEFAULT_APP_NAME = "pg-queue-scaler-e2e"
# A fixed application version: repeated `register` runs reuse one
# dbos.application_versions row instead of adding one per source hash.
APP_VERSION = "pg-queue-scaler-e2e-v1"


class Failure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def system_database_url() -> str:
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        raise Failure(f"environment variable {ENV_URL} is not set", code=2)
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise Failure(f"{ENV_URL} must be a postgresql:// URL", code=2)
    return url


def scrub(text: str, url: Optional[str]) -> str:
    """Remove the URL and its password from a message before printing it."""
    if not url:
        return text
    secrets = {url}
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.add(parts.password)
            secrets.add(unquote(parts.password))
    except ValueError:
        pass
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def migration_level(url: str) -> Optional[int]:
    """Read dbos.dbos_migrations.version with SQLAlchemy (a DBOS dependency)."""
    import sqlalchemy as sa

    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT max(version) FROM dbos.dbos_migrations")
            ).scalar()
    finally:
        engine.dispose()


def cmd_register(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from dbos import DBOS, DBOSClient

    if args.no_launch:
        DBOS.migrate(url)
        client = DBOSClient(
            system_database_url=url,
            application_name=args.app_name,
            retry_connection_errors=False,  # fail fast instead of waiting forever
        )
        try:
            client.register_queue(
                args.queue,
                worker_concurrency=args.worker_concurrency,
                on_conflict="always_update",
            )
        finally:
            client.destroy()
    else:
        DBOS(
            config={
                "name": args.app_name,
                "system_database_url": url,
                "application_version": APP_VERSION,
                # Unique per run: startup recovery only re-enqueues PENDING work
                # of this executor ID, so a fresh one recovers nothing.
                "executor_id": f"pg-queue-scaler-e2e-register-{uuid.uuid4()}",
                "log_level": args.log_level,
            }
        )
        try:
            # Listen to no user queue: no worker thread is started for the queue
            # registered below, so this process never dequeues its work.
            DBOS.listen_queues([])
            DBOS.launch()
            DBOS.register_queue(
                args.queue,
                worker_concurrency=args.worker_concurrency,
                on_conflict="always_update",
            )
        finally:
            DBOS.destroy(destroy_registry=True)
    return {
        "command": "register",
        "queue": args.queue,
        "worker_concurrency": args.worker_concurrency,
        "application_name": args.app_name,
        "launched": not args.no_launch,
        "migration": migration_level(url),
    }


def cmd_enqueue(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from dbos import DBOSClient, EnqueueOptions

    app_name = None if args.unowned else args.app_name
    client = DBOSClient(
        system_database_url=url,
        application_name=app_name,
        retry_connection_errors=False,  # fail fast instead of waiting forever
    )
    ids: list[str] = []
    try:
        for i in range(args.count):
            options: EnqueueOptions = {
                "workflow_name": args.workflow_name,
                "queue_name": args.queue,
            }
            if args.delay_seconds is not None:
                options["delay_seconds"] = args.delay_seconds
            if args.priority is not None:
                options["priority"] = args.priority
            handle = client.enqueue(options, i)
            ids.append(handle.get_workflow_id())
    finally:
        client.destroy()
    return {
        "command": "enqueue",
        "queue": args.queue,
        "count": len(ids),
        "status": "DELAYED" if args.delay_seconds is not None else "ENQUEUED",
        "application_name": app_name,
        "workflow_ids": ids,
    }


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Real DBOS app for pg-queue-scaler e2e tests ({ENV_URL} must be set)."
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DBOS log level (logs go to stderr; default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    reg = sub.add_parser("register", help="apply migrations and register a queue")
    reg.add_argument("--queue", required=True)
    reg.add_argument("--worker-concurrency", type=positive_int, required=True)
    reg.add_argument("--app-name", default=DEFAULT_APP_NAME)
    reg.add_argument(
        "--no-launch",
        action="store_true",
        help="use DBOS.migrate + DBOSClient.register_queue instead of launching DBOS",
    )

    enq = sub.add_parser("enqueue", help="enqueue workflows with DBOSClient")
    enq.add_argument("--queue", required=True)
    enq.add_argument("--count", type=non_negative_int, required=True)
    enq.add_argument("--delay-seconds", type=positive_float)
    enq.add_argument("--workflow-name", default="work")
    enq.add_argument("--priority", type=non_negative_int)
    owner = enq.add_mutually_exclusive_group()
    owner.add_argument(
        "--app-name",
        default=DEFAULT_APP_NAME,
        help=f"application_name written on the rows (default {DEFAULT_APP_NAME})",
    )
    owner.add_argument(
        "--unowned",
        action="store_true",
        help="leave application_name NULL (unclaimed rows)",
    )
    return parser


def fail(message: str, code: int) -> NoReturn:
    print(f"dbos_app.py: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    url: Optional[str] = None
    try:
        url = system_database_url()
        # DBOS sets up its own handlers at launch; keep third-party noise down.
        logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
        if args.command == "register":
            result = cmd_register(args, url)
        else:
            result = cmd_enqueue(args, url)
    except Failure as e:
        fail(scrub(str(e), url), e.code)
    except Exception as e:  # DBOS / SQLAlchemy / psycopg errors
        detail = scrub(f"{type(e).__name__}: {e}", url).strip().splitlines()
        fail(
            f"{args.command} failed: {detail[0] if detail else type(e).__name__}",
            1,
        )
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
