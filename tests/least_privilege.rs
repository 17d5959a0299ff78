//! `sql/dbos-read-only-role.sql` against real DBOS schemas: the role it creates is enough for
//! the scaler, and it cannot read workflow payloads or change anything.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use common::postgres::{connect, with_dbname};
use common::{
    Fixture, Server, TestScaler, Workflows, is_active, metric_value, per_fixture, scaled_object,
};
use tokio_postgres::error::SqlState;

/// The file as shipped.
const ROLE_SQL: &str = include_str!("../sql/dbos-read-only-role.sql");
/// The password the tests give the role (the file itself never sets one).
const PASSWORD: &str = "scaler-pw-7f3a";

/// A role name no other test (or test process on a shared server) uses.
fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "pgqs_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The file with its two configuration lines edited, as an operator would edit them.
fn role_sql(role: &str, schema: &str) -> String {
    let role_line = "SET pgqs.role = 'queue_scaler';";
    let schema_line = "SET pgqs.schema = 'dbos';";
    assert_eq!(ROLE_SQL.matches(role_line).count(), 1, "one role line");
    assert_eq!(ROLE_SQL.matches(schema_line).count(), 1, "one schema line");
    ROLE_SQL
        .replacen(role_line, &format!("SET pgqs.role = '{role}';"), 1)
        .replacen(schema_line, &format!("SET pgqs.schema = '{schema}';"), 1)
}

/// Sends the whole file as one simple-query batch over a connection to `url`.
async fn apply(url: &str, role: &str, schema: &str) -> Result<(), tokio_postgres::Error> {
    connect(url)
        .await
        .batch_execute(&role_sql(role, schema))
        .await
}

/// `url` with its user and password replaced.
fn url_as(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!(
        "{scheme}://{user}:{password}@{host}{}",
        &rest[authority_end..]
    )
}

/// Applies the file for `role` on `url` (as the URL's role) and sets the role's password.
async fn create_scaler_role(url: &str, role: &str) -> String {
    apply(url, role, "dbos").await.expect("apply the role file");
    connect(url)
        .await
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD '{PASSWORD}'"))
        .await
        .expect("set the password");
    url_as(url, role, PASSWORD)
}

/// The columns the scaler reads that `fixture` has: the grants the file must make.
fn expected_columns(schema: &str, fixture: Fixture) -> BTreeSet<(String, String, String, String)> {
    let mut columns = vec![
        ("workflow_status", "queue_name"),
        ("workflow_status", "status"),
        ("workflow_status", "created_at"),
        ("workflow_status", "application_version"),
        ("workflow_status", "delay_until_epoch_ms"),
        ("workflow_status", "queue_partition_key"),
        ("queues", "name"),
        ("queues", "worker_concurrency"),
        ("queues", "concurrency"),
        ("application_versions", "version_name"),
        ("application_versions", "version_timestamp"),
        ("dbos_migrations", "version"),
    ];
    // Added by DBOS migrations 100 to 108, which py 2.29.0 predates.
    if fixture.has_application_name() {
        columns.extend([
            ("workflow_status", "application_name"),
            ("queues", "application_name"),
            ("queues", "partition_concurrency"),
            ("queues", "partition_worker_concurrency"),
            ("application_versions", "application_name"),
        ]);
    }
    columns
        .into_iter()
        .map(|(table, column)| {
            (
                schema.to_owned(),
                table.to_owned(),
                column.to_owned(),
                "SELECT".to_owned(),
            )
        })
        .collect()
}

/// Every column privilege `role` holds in the database (table-level grants included, as
/// `information_schema.column_privileges` lists them per column).
async fn column_privileges(
    admin: &tokio_postgres::Client,
    role: &str,
) -> BTreeSet<(String, String, String, String)> {
    admin
        .query(
            "SELECT table_schema::text, table_name::text, column_name::text, privilege_type::text \
             FROM information_schema.column_privileges WHERE grantee = $1",
            &[&role],
        )
        .await
        .expect("read column privileges")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

/// Table-level privileges `role` holds anywhere in the database.
async fn table_privileges(admin: &tokio_postgres::Client, role: &str) -> Vec<String> {
    admin
        .query(
            "SELECT table_schema || '.' || table_name || ' ' || privilege_type \
             FROM information_schema.table_privileges WHERE grantee = $1",
            &[&role],
        )
        .await
        .expect("read table privileges")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The name of the database `client` is connected to.
async fn database_name(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT current_database()::text", &[])
        .await
        .expect("current database")
        .get(0)
}

/// The SQLSTATE a statement fails with, or a panic naming the statement if it succeeds.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> SqlState {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("the scaler role could run {sql:?}"),
        Err(error) => error
            .code()
            .cloned()
            .unwrap_or_else(|| panic!("{sql:?} failed without a SQLSTATE: {error}")),
    }
}

per_fixture!(the_scaler_reads_queue_depth_as_the_role: Py340, Py2290);

/// On a current schema (3.4.0) and on one from before `application_name` (2.29.0), a
/// scaler logged in as the role the file creates reads the right numbers: ENQUEUED +
/// PENDING + due DELAYED, replicas from `queues.worker_concurrency`, IsActive, and
/// applicationName filtering where the column exists. Its sessions really are the role's.
async fn the_scaler_reads_queue_depth_as_the_role(fixture: Fixture) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let role = unique_name("scaler");
    let role_url = create_scaler_role(&url, &role).await;

    let mut rows = Workflows::new(&url, fixture).await;
    rows.register_queue("idle", None).await;
    rows.register_queue("taskQueue", Some(4)).await;
    rows.enqueue("taskQueue", 5, None).await;
    rows.running("taskQueue", 3, None).await;
    rows.delayed("taskQueue", 2, -1_000).await; // due
    rows.delayed("taskQueue", 7, 3_600_000).await; // not yet due
    rows.other("SUCCESS", Some("taskQueue"), 4).await;
    rows.enqueue("apps", 2, Some("billing")).await;
    rows.enqueue("apps", 5, Some("search")).await;
    rows.enqueue("apps", 1, None).await;

    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", role_url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ])
    .await;
    let mut client = scaler.client().await;

    // depth 5 + 3 + 2 = 10, worker_concurrency 4 (read from dbos.queues) => 3 replicas
    let replicas = scaled_object("w", &[("queue", "taskQueue")]);
    assert_eq!(
        metric_value(&mut client, &replicas).await.unwrap(),
        3,
        "{fixture:?}"
    );
    let depth = scaled_object(
        "w",
        &[
            ("queue", "taskQueue"),
            ("metric", "depth"),
            ("workerConcurrency", "1"),
        ],
    );
    assert_eq!(
        metric_value(&mut client, &depth).await.unwrap(),
        10,
        "{fixture:?}"
    );
    assert!(
        is_active(&mut client, &replicas).await.unwrap(),
        "{fixture:?}"
    );
    let empty = scaled_object("w", &[("queue", "idle"), ("workerConcurrency", "2")]);
    assert!(
        !is_active(&mut client, &empty).await.unwrap(),
        "{fixture:?}"
    );

    // billing 2 + unclaimed 1 where owners are recorded; all 8 before migration 100
    let billing = scaled_object(
        "w",
        &[
            ("queue", "apps"),
            ("applicationName", "billing"),
            ("metric", "depth"),
            ("workerConcurrency", "1"),
        ],
    );
    let expected = if fixture.has_application_name() { 3 } else { 8 };
    assert_eq!(
        metric_value(&mut client, &billing).await.unwrap(),
        expected,
        "{fixture:?}"
    );

    // The numbers above came through the role, not some other login.
    let sessions: Vec<String> = rows
        .client()
        .query(
            "SELECT usename::text FROM pg_stat_activity \
             WHERE application_name = 'pg-queue-scaler' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        !sessions.is_empty(),
        "{fixture:?}: the scaler has a session"
    );
    assert!(
        sessions.iter().all(|user| *user == role),
        "{fixture:?}: {sessions:?}"
    );
    scaler.stop().await.unwrap();
}

per_fixture!(the_role_cannot_read_payloads_or_write: Py340, Py2290);

/// Logged in directly as the role: sessions start read-only; the granted columns can be
/// read; workflow inputs, outputs, errors, other DBOS tables and `SELECT *` are refused
/// (42501); and even after switching its own session to read-write, the role cannot
/// INSERT, UPDATE, DELETE, TRUNCATE, create tables or enqueue through DBOS's function.
async fn the_role_cannot_read_payloads_or_write(fixture: Fixture) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let role = unique_name("scaler");
    let role_url = create_scaler_role(&url, &role).await;
    let mut rows = Workflows::new(&url, fixture).await;
    rows.register_queue("q", Some(2)).await;
    rows.enqueue("q", 3, None).await;
    rows.other("SUCCESS", Some("q"), 2).await;
    let admin = rows.client();
    let count_rows = || async {
        admin
            .query_one(
                "SELECT (SELECT count(*) FROM dbos.workflow_status), \
                 (SELECT count(*) FROM dbos.queues), \
                 (SELECT string_agg(status, ',' ORDER BY workflow_uuid) \
                 FROM dbos.workflow_status)",
                &[],
            )
            .await
            .map(|row| {
                (
                    row.get::<_, i64>(0),
                    row.get::<_, i64>(1),
                    row.get::<_, String>(2),
                )
            })
            .unwrap()
    };
    let before = count_rows().await;

    let scaler_role = connect(&role_url).await;
    let user: String = scaler_role
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, role);
    let read_only: String = scaler_role
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(read_only, "on", "{fixture:?}");

    // What the scaler needs is readable.
    let mut allowed = vec![
        "SELECT queue_name, status, delay_until_epoch_ms FROM dbos.workflow_status",
        "SELECT name, worker_concurrency, concurrency FROM dbos.queues",
        "SELECT created_at, application_version, queue_partition_key FROM dbos.workflow_status",
        "SELECT version_name, version_timestamp FROM dbos.application_versions",
        "SELECT max(version) FROM dbos.dbos_migrations",
        "SELECT count(*) FROM dbos.workflow_status WHERE status = 'ENQUEUED'",
    ];
    if fixture.has_application_name() {
        allowed.push("SELECT application_name FROM dbos.workflow_status");
    }
    for sql in allowed {
        scaler_role
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{fixture:?}: {sql}: {error}"));
    }

    // Payloads, results and everything else are not.
    let mut secret = vec![
        "SELECT inputs FROM dbos.workflow_status",
        "SELECT output FROM dbos.workflow_status",
        "SELECT error FROM dbos.workflow_status",
        "SELECT workflow_uuid FROM dbos.workflow_status",
        "SELECT * FROM dbos.workflow_status",
        "SELECT rate_limit_max FROM dbos.queues",
        "SELECT version_id FROM dbos.application_versions",
        "SELECT * FROM dbos.operation_outputs",
        "SELECT * FROM dbos.notifications",
        "SELECT * FROM dbos.workflow_events",
    ];
    if fixture == Fixture::Py340 {
        secret.extend([
            "SELECT inputs FROM dbos.workflow_input",
            "SELECT output FROM dbos.workflow_output",
        ]);
    } else {
        let present: Option<String> = admin
            .query_one("SELECT to_regclass('dbos.workflow_input')::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(present, None, "{fixture:?} has no workflow_input table");
    }
    for sql in secret {
        assert_eq!(
            refused(&scaler_role, sql).await,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{fixture:?}: {sql}"
        );
    }

    // A write is stopped by the read-only default first...
    assert_eq!(
        refused(
            &scaler_role,
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, queue_name) \
             VALUES ('intruder', 'ENQUEUED', 'q')"
        )
        .await,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        "{fixture:?}"
    );
    // ...and, since any session may lift that default, by the missing grants as well.
    scaler_role
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    let mut writes = vec![
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, queue_name) \
         VALUES ('intruder', 'ENQUEUED', 'q')",
        "UPDATE dbos.workflow_status SET status = 'CANCELLED'",
        "UPDATE dbos.workflow_status SET status = 'CANCELLED' WHERE queue_name = 'q'",
        "DELETE FROM dbos.workflow_status",
        "UPDATE dbos.queues SET worker_concurrency = 100",
        "DELETE FROM dbos.queues",
        "INSERT INTO dbos.dbos_migrations (version) VALUES (999999)",
        "TRUNCATE dbos.workflow_status",
        "CREATE TABLE dbos.scaler_was_here (id int)",
        "SELECT * FROM dbos.workflow_status FOR UPDATE",
    ];
    if fixture == Fixture::Py340 {
        writes.push("SELECT dbos.enqueue_workflow('work', 'q')");
    }
    for sql in writes {
        assert_eq!(
            refused(&scaler_role, sql).await,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{fixture:?}: {sql}"
        );
    }
    assert_eq!(count_rows().await, before, "{fixture:?}: nothing changed");
}

/// Holds a lock on `server` for as long as the returned connection lives, so that test
/// cases sharing a server (`TEST_DATABASE_URL`) do not change the file's default role,
/// which belongs to the whole server, at the same time.
async fn lock_default_role(server: &Server) -> tokio_postgres::Client {
    let admin = connect(&server.admin_url()).await;
    admin
        .batch_execute("SELECT pg_advisory_lock(hashtext('pgqs queue_scaler role'))")
        .await
        .expect("lock the default role");
    admin
}

per_fixture!(grants_are_exactly_the_columns_read_and_reruns_converge: Py340, Py2290);

/// What the file as shipped (default role `queue_scaler`, schema `dbos`) grants, read
/// back from the catalog: exactly SELECT on the scaler's columns that exist (no
/// application_name on 2.29.0), no table-level privilege, CONNECT and schema USAGE but no
/// CREATE, a plain LOGIN role, read-only by default, no password. Running it again
/// succeeds and changes nothing, a re-run also takes away rights added by hand since, and
/// a second database reuses the role the first created.
async fn grants_are_exactly_the_columns_read_and_reruns_converge(fixture: Fixture) {
    let server = Server::from_env_or_private();
    let _lock = lock_default_role(&server).await;
    let role = "queue_scaler";
    let apply_shipped =
        |url: String| async move { connect(&url).await.batch_execute(ROLE_SQL).await };
    // The role belongs to the server: the first database's run creates it (on a private
    // server), the second database's run reuses it.
    for _database in ["first", "second"] {
        let url = server.dbos_database(fixture).await;
        apply_shipped(url.clone()).await.expect("first run");
        let admin = connect(&url).await;
        let expected = expected_columns("dbos", fixture);
        assert_eq!(
            column_privileges(&admin, role).await,
            expected,
            "{fixture:?}"
        );
        assert_eq!(
            table_privileges(&admin, role).await,
            Vec::<String>::new(),
            "{fixture:?}"
        );

        let row = admin
            .query_one(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, \
                 rolbypassrls, rolinherit, rolconfig, \
                 has_database_privilege($1, current_database(), 'CONNECT'), \
                 has_database_privilege($1, current_database(), 'CREATE'), \
                 has_schema_privilege($1, 'dbos', 'USAGE'), \
                 has_schema_privilege($1, 'dbos', 'CREATE') \
                 FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap();
        let attributes: Vec<bool> = (0..7).map(|i| row.get(i)).collect();
        assert_eq!(
            attributes,
            [true, false, false, false, false, false, false],
            "{fixture:?}: LOGIN and nothing else (NOINHERIT)"
        );
        let config: Vec<String> = row.get(7);
        assert_eq!(config, ["default_transaction_read_only=on"], "{fixture:?}");
        let rights: Vec<bool> = (8..12).map(|i| row.get(i)).collect();
        assert_eq!(
            rights,
            [true, false, true, false],
            "{fixture:?}: CONNECT, no CREATE on the database; USAGE, no CREATE on the schema"
        );
        let superuser: bool = admin
            .query_one("SELECT current_setting('is_superuser') = 'on'", &[])
            .await
            .unwrap()
            .get(0);
        if superuser {
            let no_password: bool = admin
                .query_one(
                    "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = $1",
                    &[&role],
                )
                .await
                .unwrap()
                .get(0);
            assert!(no_password, "{fixture:?}: the file sets no password");
        }

        apply_shipped(url.clone()).await.expect("second run");
        assert_eq!(column_privileges(&admin, role).await, expected);

        // Rights added by hand are taken away by the next run.
        admin
            .batch_execute(&format!(
                "GRANT SELECT ON dbos.workflow_status TO {role}; \
                 GRANT INSERT (name) ON dbos.queues TO {role}; \
                 GRANT CREATE ON SCHEMA dbos TO {role}; \
                 GRANT CREATE ON DATABASE \"{}\" TO {role}",
                database_name(&admin).await
            ))
            .await
            .unwrap();
        assert_ne!(column_privileges(&admin, role).await, expected);
        apply_shipped(url.clone()).await.expect("third run");
        assert_eq!(column_privileges(&admin, role).await, expected);
        assert_eq!(table_privileges(&admin, role).await, Vec::<String>::new());
        let widened: bool = admin
            .query_one(
                "SELECT has_schema_privilege($1, 'dbos', 'CREATE') \
                 OR has_database_privilege($1, current_database(), 'CREATE')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!widened, "{fixture:?}");
    }
}

/// The file refuses a schema that does not exist, naming it and the database.
#[tokio::test]
async fn an_unknown_schema_is_refused() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let error = apply(&url, &unique_name("scaler"), "nope")
        .await
        .expect_err("an unknown schema is refused");
    let expected = format!(
        "schema \"nope\" does not exist in database \"{}\"",
        database_name(&connect(&url).await).await
    );
    assert_eq!(
        error.as_db_error().map(|e| e.message()),
        Some(expected.as_str()),
        "{error}"
    );
}

/// Without superuser: the owner of a DBOS database (with CREATEROLE, as managed Postgres
/// admin users have) applies the file to a schema it renamed, and the scaler reads that
/// schema as the new role. An existing role with CREATEROLE (the owner itself) is refused.
#[tokio::test]
async fn a_non_superuser_owner_applies_it_to_a_custom_schema() {
    let server = Server::from_env_or_private();
    let admin_url = server.admin_url();
    let admin = connect(&admin_url).await;
    let owner = unique_name("owner");
    let dbname = unique_name("db");
    for sql in [
        format!("CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD '{PASSWORD}'"),
        format!("CREATE DATABASE {dbname} OWNER {owner}"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let owner_url = url_as(&with_dbname(&admin_url, &dbname), &owner, PASSWORD);
    let fixture_sql = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbos/py-3.4.0.sql"),
    )
    .unwrap();
    let as_owner = connect(&owner_url).await;
    as_owner.batch_execute(&fixture_sql).await.unwrap();
    let mut rows = Workflows::new(&owner_url, Fixture::Py340).await;
    rows.register_queue("jobs", Some(2)).await;
    rows.enqueue("jobs", 3, Some("billing")).await;
    rows.delayed("jobs", 2, -1_000).await;
    as_owner
        .batch_execute("ALTER SCHEMA dbos RENAME TO dbos_jobs")
        .await
        .unwrap();

    let role = unique_name("scaler");
    apply(&owner_url, &role, "dbos_jobs")
        .await
        .expect("the owner may apply the file");
    assert_eq!(
        column_privileges(&as_owner, &role).await,
        expected_columns("dbos_jobs", Fixture::Py340)
    );
    as_owner
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD '{PASSWORD}'"))
        .await
        .unwrap();

    let role_url = url_as(&owner_url, &role, PASSWORD);
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", role_url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ])
    .await;
    let mut client = scaler.client().await;
    let trigger = scaled_object(
        "w",
        &[
            ("queue", "jobs"),
            ("schema", "dbos_jobs"),
            ("applicationName", "billing"),
        ],
    );
    // 3 enqueued (billing) + 2 due delayed (unclaimed) = 5, worker_concurrency 2 => 3
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 3);
    scaler.stop().await.unwrap();

    // The owner's own role has CREATEROLE: the file will not hand it out as the scaler's.
    let error = apply(&owner_url, &owner, "dbos_jobs")
        .await
        .expect_err("a role with CREATEROLE is not reused");
    assert!(
        error
            .as_db_error()
            .is_some_and(|e| e.message().contains("already exists with SUPERUSER")),
        "{error}"
    );
}

/// A column DBOS added after the role was set up (here: `application_name` not granted, as
/// after a DBOS upgrade without re-running the file) must not silently change the numbers:
/// the scaler answers Unavailable and names the GRANT that is missing.
#[tokio::test]
async fn a_column_that_exists_but_is_not_granted_is_named() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let role = unique_name("stale");
    let role_url = create_scaler_role(&url, &role).await;
    connect(&url)
        .await
        .batch_execute(&format!(
            "REVOKE SELECT (application_name) ON dbos.workflow_status FROM {role}"
        ))
        .await
        .unwrap();
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.enqueue("apps", 2, Some("billing")).await;
    rows.enqueue("apps", 5, Some("search")).await;
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", role_url.as_str())]).await;
    let mut client = scaler.client().await;
    let billing = scaled_object(
        "w",
        &[
            ("queue", "apps"),
            ("applicationName", "billing"),
            ("workerConcurrency", "1"),
        ],
    );
    let status = metric_value(&mut client, &billing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status
            .message()
            .contains("GRANT SELECT (application_name) ON dbos.workflow_status"),
        "{}",
        status.message()
    );
    scaler.stop().await.unwrap();
}
