#!/usr/bin/env python3
"""A minimal real DBOS (Python SDK, pinned in requirements.txt) application used by
pg-queue-scaler's end-to-end tests.

The system database URL is read from the environment variable
DBOS_SYSTEM_DATABASE_URL and is never printed.

Subcommands
-----------
register [--queue NAME] [--worker-concurrency N] [--concurrency N]
         [--partition-concurrency N] [--partition-worker-concurrency N]
         [--app-name APP] [--app-version V] [--make-latest] [--no-launch]
    Launch DBOS against the system database (this creates or migrates the
    `dbos` schema) as application APP running version V (default
    pg-queue-scaler-e2e-v1), register the queue (if --queue is given) so that
    a row lands in dbos.queues with these limits (each unset flag stores NULL;
    on_conflict="always_update" overwrites an existing row of APP), then
    destroy DBOS and exit.
    Versions: launching makes DBOS insert V into dbos.application_versions if
    APP (or nobody) has no such row yet, with version_timestamp = the
    database's now() in milliseconds; an existing row is left untouched. When
    V is new, this command then makes sure it is STRICTLY the newest row of
    the whole table (all applications): if some other row has a timestamp >=
    V's (same millisecond, or a clock ahead), V's timestamp is set to that
    maximum + 1 with a plain UPDATE. So "register v1; register v2" always makes
    v2 the latest. --make-latest does the same for a V that already existed
    (timestamp = max(database now, newest other row + 1)), like
    DBOS.set_latest_application_version but strictly newer. --no-launch
    registers no version at all.
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
        [--workflow-name work] [--priority P] [--app-version V]
        [--partition-keys N]
    Enqueue K workflows named `work` (argument: their index 0..K-1) on the
    queue with DBOSClient, then destroy the client. Rows appear in
    dbos.workflow_status as ENQUEUED, or DELAYED (with delay_until_epoch_ms
    set) when --delay-seconds is given. --app-version pins every row to V
    (workflow_status.application_version = V; without it the column is NULL,
    i.e. version-less work that only a worker of the latest version runs).
    --partition-keys spreads the K rows round-robin over queue_partition_key
    p0..p{N-1} (row i gets p{i mod N}). Use it on a queue registered with a
    partition_* limit: DBOS 3.4 accepts key-less rows there but its workers
    never dequeue them. Nothing executes the rows unless a `work` process runs.

work --queue NAME --app-version V [--app-name APP] [--seconds S]
     [--work-seconds W] [--until-empty] [--workflow-name work]
    Run a real DBOS worker: launch DBOS as APP with application_version=V and a
    unique executor ID (pg-queue-scaler-e2e-work-<uuid>), listening to queue
    NAME only, with a workflow registered under the name `work` (DBOS runs a
    dequeued row by looking its workflow_status.name up among the functions
    registered with @DBOS.workflow(name=...)). Each run sleeps W seconds
    (default 0.5) and returns its argument. DBOS 3.4 queues live in
    dbos.queues: the worker uses that row's limits as they are (register the
    queue first with `register`); only when no row exists does it create one
    with no limits (on_conflict="never_update"). Launching also registers V
    in dbos.application_versions if it is new (making it the latest), so
    register versions with `register` first.
    The worker stops when S seconds (default 30) have passed since the
    command started, or, with --until-empty, as soon as nothing is left that
    it could run: no row of NAME owned by APP or unowned that is ENQUEUED (or
    DELAYED and already due) with application_version V, or NULL while V is
    APP's latest version (key-less rows of a partitioned queue excluded, see
    enqueue), and no PENDING row of its own executor. (With --until-empty and
    nothing to do it exits at once.) When DBOS claims a version-less row it
    writes V into its application_version. It then stops
    dequeuing and lets running workflows finish (DBOS.destroy with a
    completion timeout of ceil(W)+2 s). A watchdog kills the process (exit 1)
    if it is still alive S + W + 30 s after starting.

Output: one JSON object on stdout describing what was done (keys sorted):
  register: command, queue, worker_concurrency, concurrency,
    partition_concurrency, partition_worker_concurrency, application_name,
    launched, migration, application_version, version_created,
    version_timestamp, version_retimed, latest_version (the version fields are
    null with --no-launch; latest_version is APP's latest after the run)
  enqueue: command, queue, count, status, application_name,
    application_version, partition_keys, partition_counts ({"p0": n, ...} or
    null), workflow_ids
  work: command, queue, application_name, application_version, executor_id,
    queue_created, stopped ("empty" or "deadline"), completed (rows of this
    executor now SUCCESS), ran (workflow bodies finished in this process),
    workflow_ids (the completed rows, sorted), remaining (rows it could still
    run, as above, at exit), left_pending (its own rows still PENDING),
    latest (V was APP's latest at exit), first_start_seconds (null if none
    ran), elapsed_seconds
DBOS's own logs go to stderr (level WARNING unless --log-level says otherwise). On failure a short
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


def sql_engine(url: str) -> Any:
    """A small SQLAlchemy engine (a DBOS dependency) for our own read-backs."""
    import sqlalchemy as sa

    return sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"),
        pool_size=1,
        max_overflow=0,
    )


def version_exists(url: str, version: str, app_name: str) -> bool:
    """Whether APP (or nobody) already has a dbos.application_versions row for V.
    A database that does not exist yet (DBOS creates it at launch) has none."""
    import sqlalchemy as sa

    engine = sql_engine(url)
    try:
        try:
            conn = engine.connect()
        except sa.exc.OperationalError as e:
            if "does not exist" in str(e):
                return False
            raise
        with conn:
            if (
                conn.execute(
                    sa.text("SELECT to_regclass('dbos.application_versions')")
                ).scalar()
                is None
            ):
                return False
            return (
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM dbos.application_versions"
                        " WHERE version_name = :v"
                        " AND (application_name = :app OR application_name IS NULL)"
                    ),
                    {"v": version, "app": app_name},
                ).scalar()
                or 0
            ) > 0
    finally:
        engine.dispose()


def latest_version(conn: Any, app_name: str) -> Optional[str]:
    """APP's latest version as DBOS sees it: newest of its own and unclaimed rows."""
    import sqlalchemy as sa

    return conn.execute(
        sa.text(
            "SELECT version_name FROM dbos.application_versions"
            " WHERE application_name = :app OR application_name IS NULL"
            " ORDER BY version_timestamp DESC LIMIT 1"
        ),
        {"app": app_name},
    ).scalar()


def make_strictly_newest(
    url: str, version: str, app_name: str, promote: bool
) -> dict[str, Any]:
    """Give V's row (APP's or unclaimed) a version_timestamp above every other row.

    Without promote, V keeps the timestamp DBOS wrote unless another row ties or
    beats it; with promote, V moves to at least the database's current time.
    """
    import sqlalchemy as sa

    engine = sql_engine(url)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT version_id, version_timestamp FROM dbos.application_versions"
                    " WHERE version_name = :v"
                    " AND (application_name = :app OR application_name IS NULL)"
                    " ORDER BY application_name NULLS LAST LIMIT 1 FOR UPDATE"
                ),
                {"v": version, "app": app_name},
            ).fetchone()
            if row is None:
                raise Failure(f"application version {version} was not registered")
            version_id, own = row[0], int(row[1])
            newest_other = conn.execute(
                sa.text(
                    "SELECT max(version_timestamp) FROM dbos.application_versions"
                    " WHERE version_id <> :id"
                ),
                {"id": version_id},
            ).scalar()
            target = own
            if promote:
                target = int(
                    conn.execute(
                        sa.text(
                            "SELECT (EXTRACT(epoch FROM clock_timestamp()) * 1000)::bigint"
                        )
                    ).scalar()
                )
            if newest_other is not None:
                target = max(target, int(newest_other) + 1)
            if target != own:
                conn.execute(
                    sa.text(
                        "UPDATE dbos.application_versions SET version_timestamp = :ts"
                        " WHERE version_id = :id"
                    ),
                    {"ts": target, "id": version_id},
                )
            return {
                "version_timestamp": target,
                "version_retimed": target != own,
                "latest_version": latest_version(conn, app_name),
            }
    finally:
        engine.dispose()


def queue_limits(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "worker_concurrency": args.worker_concurrency,
        "global_concurrency": args.concurrency,
        "partition_concurrency": args.partition_concurrency,
        "partition_worker_concurrency": args.partition_worker_concurrency,
    }


def cmd_register(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from dbos import DBOS, DBOSClient

    limits = queue_limits(args)
    if args.queue is None and any(v is not None for v in limits.values()):
        raise Failure("queue limits need --queue", code=2)
    if args.no_launch and (args.app_version is not None or args.make_latest):
        raise Failure(
            "--no-launch registers no application version;"
            " drop --app-version/--make-latest",
            code=2,
        )
    if args.queue is not None:
        from dbos._queue import Queue

        try:  # DBOS's own checks, before anything is launched or written
            Queue._validate_queue(
                name=args.queue,
                concurrency=None,
                polling_interval_sec=1.0,
                limiter=None,
                **limits,
            )
        except ValueError as e:
            raise Failure(str(e), code=2)
    version = args.app_version if args.app_version is not None else APP_VERSION
    version_info: dict[str, Any] = {
        "application_version": None,
        "version_created": None,
        "version_timestamp": None,
        "version_retimed": None,
        "latest_version": None,
    }
    if args.no_launch:
        DBOS.migrate(url)
        if args.queue is not None:
            client = DBOSClient(
                system_database_url=url,
                application_name=args.app_name,
                retry_connection_errors=False,  # fail fast instead of waiting forever
            )
            try:
                client.register_queue(
                    args.queue, on_conflict="always_update", **limits
                )
            finally:
                client.destroy()
    else:
        existed = version_exists(url, version, args.app_name)
        DBOS(
            config={
                "name": args.app_name,
                "system_database_url": url,
                "application_version": version,
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
            if args.queue is not None:
                DBOS.register_queue(
                    args.queue, on_conflict="always_update", **limits
                )
        finally:
            DBOS.destroy(destroy_registry=True)
        version_info["application_version"] = version
        version_info["version_created"] = not existed
        if not existed or args.make_latest:
            version_info.update(
                make_strictly_newest(url, version, args.app_name, args.make_latest)
            )
        else:
            version_info.update(version_report(url, version, args.app_name))
    return {
        "command": "register",
        "queue": args.queue,
        "worker_concurrency": args.worker_concurrency,
        "concurrency": args.concurrency,
        "partition_concurrency": args.partition_concurrency,
        "partition_worker_concurrency": args.partition_worker_concurrency,
        "application_name": args.app_name,
        "launched": not args.no_launch,
        "migration": migration_level(url),
        **version_info,
    }


def version_report(
    url: str, version: str, app_name: str
) -> dict[str, Any]:
    """Report V's timestamp and APP's latest version without changing anything."""
    import sqlalchemy as sa

    engine = sql_engine(url)
    try:
        with engine.connect() as conn:
            ts = conn.execute(
                sa.text(
                    "SELECT version_timestamp FROM dbos.application_versions"
                    " WHERE version_name = :v"
                    " AND (application_name = :app OR application_name IS NULL)"
                    " ORDER BY application_name NULLS LAST LIMIT 1"
                ),
                {"v": version, "app": app_name},
            ).scalar()
            return {
                "version_timestamp": None if ts is None else int(ts),
                "version_retimed": False,
                "latest_version": latest_version(conn, app_name),
            }
    finally:
        engine.dispose()


def cmd_enqueue(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from dbos import DBOSClient, EnqueueOptions

    app_name = None if args.unowned else args.app_name
    client = DBOSClient(
        system_database_url=url,
        application_name=app_name,
        retry_connection_errors=False,  # fail fast instead of waiting forever
    )
    ids: list[str] = []
    partitions: dict[str, int] = {}
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
            if args.app_version is not None:
                options["app_version"] = args.app_version
            if args.partition_keys is not None:
                key = f"p{i % args.partition_keys}"
                options["queue_partition_key"] = key
                partitions[key] = partitions.get(key, 0) + 1
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
        "application_version": args.app_version,
        "partition_keys": args.partition_keys,
        "partition_counts": partitions if args.partition_keys is not None else None,
        "workflow_ids": ids,
    }


# What a worker of version :v (APP :app, executor :exec) could still run on queue :q:
# ENQUEUED or already-due DELAYED rows of its version (or version-less ones while :v is
# APP's latest), except key-less rows of a partitioned queue, plus PENDING rows it has
# claimed itself.
RUNNABLE_SQL = """
SELECT count(*) FILTER (WHERE status <> 'PENDING') AS waiting,
       count(*) FILTER (WHERE status = 'PENDING') AS own_pending
FROM dbos.workflow_status
WHERE queue_name = :q
  AND (application_name = :app OR application_name IS NULL)
  AND (
        (
          (status = 'ENQUEUED'
           OR (status = 'DELAYED'
               AND delay_until_epoch_ms <= (EXTRACT(epoch FROM clock_timestamp()) * 1000)::bigint))
          AND (application_version = :v
               OR (CAST(:latest AS boolean) AND application_version IS NULL))
          -- DBOS never dequeues a row without a partition key from a partitioned queue.
          AND (queue_partition_key IS NOT NULL
               OR NOT EXISTS (
                 SELECT 1 FROM dbos.queues
                 WHERE name = :q
                   AND (partition_concurrency IS NOT NULL
                        OR partition_worker_concurrency IS NOT NULL
                        OR partition_rate_limit_max IS NOT NULL)))
        )
        OR (status = 'PENDING' AND executor_id = :exec)
      )
"""


def cmd_work(args: argparse.Namespace, url: str) -> dict[str, Any]:
    import math
    import threading
    import time

    import sqlalchemy as sa
    from dbos import DBOS

    started = time.monotonic()
    deadline = started + args.seconds

    def watchdog() -> None:
        print(
            "dbos_app.py: error: work did not shut down in time; killed by its watchdog",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    dog = threading.Timer(args.seconds + args.work_seconds + 30.0, watchdog)
    dog.daemon = True
    dog.start()

    lock = threading.Lock()
    ran: list[str] = []
    first_start: list[float] = []

    @DBOS.workflow(name=args.workflow_name)
    def work(i: Any = None) -> Any:
        with lock:
            if not first_start:
                first_start.append(time.monotonic() - started)
        time.sleep(args.work_seconds)
        with lock:
            ran.append(DBOS.workflow_id or "")
        return i

    executor_id = f"pg-queue-scaler-e2e-work-{uuid.uuid4()}"
    engine = sql_engine(url)

    def runnable(conn: Any) -> tuple[int, int, bool]:
        latest = latest_version(conn, args.app_name) == args.app_version
        row = conn.execute(
            sa.text(RUNNABLE_SQL),
            {
                "q": args.queue,
                "app": args.app_name,
                "v": args.app_version,
                "latest": latest,
                "exec": executor_id,
            },
        ).one()
        return int(row[0]), int(row[1]), latest

    queue_created = False
    stopped = "deadline"
    try:
        DBOS(
            config={
                "name": args.app_name,
                "system_database_url": url,
                "application_version": args.app_version,
                "executor_id": executor_id,
                "log_level": args.log_level,
            }
        )
        try:
            DBOS.listen_queues([args.queue])
            DBOS.launch()
            if DBOS.retrieve_queue(args.queue) is None:
                # DBOS 3.4 only dequeues queues that have a dbos.queues row; create
                # one without limits, never touching a row someone else wrote.
                DBOS.register_queue(args.queue, on_conflict="never_update")
                queue_created = True
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if args.until_empty:
                    with engine.connect() as conn:
                        waiting, own_pending, _ = runnable(conn)
                    if waiting == 0 and own_pending == 0:
                        stopped = "empty"
                        break
                time.sleep(min(0.25, max(0.0, deadline - now)))
        finally:
            # Stops dequeuing first, then waits for running workflows to finish.
            DBOS.destroy(
                destroy_registry=True,
                workflow_completion_timeout_sec=int(math.ceil(args.work_seconds)) + 2,
            )
        elapsed = time.monotonic() - started
        with engine.connect() as conn:
            waiting, own_pending, latest = runnable(conn)
            done = [
                r[0]
                for r in conn.execute(
                    sa.text(
                        "SELECT workflow_uuid FROM dbos.workflow_status"
                        " WHERE queue_name = :q AND executor_id = :exec"
                        " AND status = 'SUCCESS' ORDER BY workflow_uuid"
                    ),
                    {"q": args.queue, "exec": executor_id},
                )
            ]
    finally:
        engine.dispose()
        dog.cancel()
    return {
        "command": "work",
        "queue": args.queue,
        "application_name": args.app_name,
        "application_version": args.app_version,
        "executor_id": executor_id,
        "queue_created": queue_created,
        "stopped": stopped,
        "completed": len(done),
        "ran": len(ran),
        "workflow_ids": done,
        "remaining": waiting,
        "left_pending": own_pending,
        "latest": latest,
        "first_start_seconds": round(first_start[0], 3) if first_start else None,
        "elapsed_seconds": round(elapsed, 3),
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


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
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

    reg = sub.add_parser(
        "register", help="apply migrations, register a version and optionally a queue"
    )
    reg.add_argument("--queue", help="queue to register (omit to register only a version)")
    reg.add_argument("--worker-concurrency", type=positive_int)
    reg.add_argument(
        "--concurrency", type=positive_int, help="global concurrency (queues.concurrency)"
    )
    reg.add_argument("--partition-concurrency", type=positive_int)
    reg.add_argument("--partition-worker-concurrency", type=positive_int)
    reg.add_argument("--app-name", default=DEFAULT_APP_NAME)
    reg.add_argument(
        "--app-version",
        help=f"application_version to launch with (default {APP_VERSION})",
    )
    reg.add_argument(
        "--make-latest",
        action="store_true",
        help="make the version strictly the newest even if it was registered before",
    )
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
    enq.add_argument("--app-version", help="pin the rows to this application_version")
    enq.add_argument(
        "--partition-keys",
        type=positive_int,
        help="spread the rows round-robin over partition keys p0..p{N-1}",
    )
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

    work = sub.add_parser("work", help="run a real DBOS worker on one queue")
    work.add_argument("--queue", required=True)
    work.add_argument("--app-version", required=True)
    work.add_argument("--app-name", default=DEFAULT_APP_NAME)
    work.add_argument(
        "--seconds",
        type=positive_float,
        default=30.0,
        help="stop after this many seconds at the latest (default 30)",
    )
    work.add_argument(
        "--work-seconds",
        type=non_negative_float,
        default=0.5,
        help="how long each workflow run sleeps (default 0.5)",
    )
    work.add_argument(
        "--until-empty",
        action="store_true",
        help="stop as soon as nothing this worker could run is left",
    )
    work.add_argument("--workflow-name", default="work")
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
        elif args.command == "enqueue":
            result = cmd_enqueue(args, url)
        else:
            result = cmd_work(args, url)
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
