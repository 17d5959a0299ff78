-- pg-queue-scaler: a least-privilege login role for reading DBOS queue depth.
--
-- What the scaler reads, and therefore all this file grants:
--   * pg_catalog (pg_class, pg_attribute), to discover which DBOS columns exist and which
--     of them it may read (readable by every role, so no grant is needed for it),
--   * <schema>.workflow_status (queue_name, status, created_at, application_name,
--     application_version, delay_until_epoch_ms, queue_partition_key),
--   * <schema>.queues (name, application_name, worker_concurrency, concurrency,
--     partition_concurrency, partition_worker_concurrency),
--   * <schema>.application_versions (version_name, version_timestamp, application_name),
--   * <schema>.dbos_migrations (version).
-- Nothing else: not workflow inputs, outputs, errors or events, and no write of any kind.
--
-- How to run: connect to the DBOS system database as its owner (the role that owns the DBOS
-- tables; it also needs CREATEROLE, or a superuser, the first time, to create the login
-- role and set its read-only default) and run this whole file, for example
--     psql "$DBOS_SYSTEM_DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/dbos-read-only-role.sql
-- It uses no psql meta-commands, so any client that sends it as one batch works as well.
-- It is idempotent: run it again at any time. Run it again AFTER EVERY DBOS UPGRADE: a
-- column DBOS adds later (application_name came with DBOS migration 100) is not granted
-- until then, and the scaler answers Unavailable for that schema, naming the missing GRANT,
-- rather than count without it.
--
-- This file never sets a password. Set one afterwards (psql's \password does it without
-- the password reaching the server log), for example:
--     ALTER ROLE queue_scaler PASSWORD 'a-long-random-secret';
-- or use your platform's IAM / certificate authentication for the role instead.
--
-- Configuration: edit the two values below. They are session settings (not psql
-- variables) so that the file also works when sent as a single simple-query batch.
-- (Role names may not start with "pg_": Postgres reserves that prefix.)
SET pgqs.schema = 'dbos';
SET pgqs.role = 'queue_scaler';

DO $pgqs$
DECLARE
    target_schema text := coalesce(nullif(current_setting('pgqs.schema', true), ''), 'dbos');
    target_role text := coalesce(nullif(current_setting('pgqs.role', true), ''), 'queue_scaler');
    existing pg_roles%ROWTYPE;
    wanted record;
    granted text[] := '{}';
BEGIN
    -- Refuse early, with a clear message, rather than granting on the wrong thing.
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = target_schema) THEN
        RAISE EXCEPTION 'schema "%" does not exist in database "%"', target_schema, current_database()
            USING HINT = 'Set pgqs.schema at the top of this file to the DBOS system schema.';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = target_schema AND table_name = 'workflow_status'
          AND column_name IN ('queue_name', 'status')
        HAVING count(*) = 2
    ) THEN
        RAISE EXCEPTION 'schema "%" has no DBOS workflow_status table that % can see', target_schema, current_user
            USING HINT = 'Run this file in the DBOS system database, as the owner of its tables.';
    END IF;

    -- The login role. Created without any attribute beyond LOGIN: no superuser, no
    -- CREATEDB/CREATEROLE, no replication, no RLS bypass, and NOINHERIT so that a later
    -- membership in some other role does not silently widen what the scaler can do.
    SELECT * INTO existing FROM pg_roles WHERE rolname = target_role;
    IF NOT FOUND THEN
        EXECUTE format(
            'CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS',
            target_role);
    ELSE
        -- An existing role is reused, but never one that can read or change everything
        -- regardless of grants: that would defeat the purpose of this file.
        IF existing.rolsuper OR existing.rolbypassrls OR existing.rolcreaterole
           OR existing.rolreplication THEN
            RAISE EXCEPTION 'role "%" already exists with SUPERUSER, BYPASSRLS, CREATEROLE or REPLICATION', target_role
                USING HINT = 'Use a dedicated role for the scaler (set pgqs.role).';
        END IF;
        IF NOT existing.rolcanlogin THEN
            -- The scaler connects as this role, so it must be able to log in.
            EXECUTE format('ALTER ROLE %I LOGIN', target_role);
        END IF;
    END IF;

    -- Every session of the role starts read-only: a second fence behind the grants, in
    -- case a privilege is ever granted to the role (or to PUBLIC) by mistake. The scaler
    -- also sets this itself for each session; this covers any other client using the role.
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', target_role);

    -- Start from nothing in this database and schema, so that a re-run after a DBOS
    -- upgrade, or over an older hand-made setup, ends with exactly the grants below.
    -- (Revoking table privileges revokes column privileges too.) Privileges PUBLIC holds
    -- (by default: CONNECT and TEMPORARY on databases, EXECUTE on functions) are PUBLIC's
    -- and are left alone; DBOS's functions run with the caller's rights, so they cannot
    -- write for this role, and the role's sessions are read-only anyway.
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', target_schema, target_role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', target_schema, target_role);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', target_schema, target_role);
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), target_role);

    -- CONNECT: the scaler opens sessions to this database (PUBLIC usually has it already,
    -- but hardened servers revoke it from PUBLIC).
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), target_role);

    -- USAGE on the schema: needed to name any table in it. Not CREATE.
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', target_schema, target_role);

    -- Column-level SELECT, only on the columns the scaler's statements read, and only those
    -- this DBOS version has (older versions lack application_name, delay_until_epoch_ms or
    -- the queues table). Column grants also make exactly these columns visible in
    -- information_schema.columns, which is how the scaler discovers the schema's layout.
    FOR wanted IN
        SELECT needed.table_name, needed.column_name, needed.why
        FROM (VALUES
            -- which queue a workflow is on: the depth is counted per queue
            ('workflow_status', 'queue_name', 'depth per queue'),
            -- ENQUEUED / PENDING / DELAYED: what counts as queue work
            ('workflow_status', 'status', 'which workflows are waiting or running'),
            -- the owning application (DBOS migration 100+): the applicationName filter
            ('workflow_status', 'application_name', 'applicationName filter'),
            -- when a DELAYED workflow becomes due (DBOS migration 16+): due work counts
            ('workflow_status', 'delay_until_epoch_ms', 'due delayed workflows'),
            -- when a workflow was enqueued: the age of the oldest waiting one (latency)
            ('workflow_status', 'created_at', 'oldest waiting workflow'),
            -- the version a workflow is pinned to: the applicationVersion filter
            ('workflow_status', 'application_version', 'applicationVersion filter'),
            -- the partition a workflow belongs to: partition concurrency limits
            ('workflow_status', 'queue_partition_key', 'partition limits'),
            -- queue names, to match the configuration to the counted queues
            ('queues', 'name', 'queue configuration'),
            -- the application owning a queue (DBOS migration 101+): whose limits apply
            ('queues', 'application_name', 'queue owner'),
            -- per-worker concurrency: replicas = ceil(depth / worker_concurrency)
            ('queues', 'worker_concurrency', 'replica target per queue'),
            -- global and per-partition concurrency: how much work can run at once
            ('queues', 'concurrency', 'global concurrency limit'),
            ('queues', 'partition_concurrency', 'partition concurrency limit'),
            ('queues', 'partition_worker_concurrency', 'partition worker concurrency limit'),
            -- registered versions (DBOS migration 13+; owners from 103): which is the latest
            ('application_versions', 'version_name', 'latest application version'),
            ('application_versions', 'version_timestamp', 'latest application version'),
            ('application_versions', 'application_name', 'latest application version'),
            -- the DBOS schema version, logged at discovery
            ('dbos_migrations', 'version', 'schema version')
        ) AS needed (table_name, column_name, why)
        JOIN information_schema.columns AS present
          ON present.table_schema = target_schema
         AND present.table_name = needed.table_name
         AND present.column_name = needed.column_name
        ORDER BY 1, 2
    LOOP
        EXECUTE format('GRANT SELECT (%I) ON TABLE %I.%I TO %I',
            wanted.column_name, target_schema, wanted.table_name, target_role);
        granted := granted || format('%s.%s (%s)', wanted.table_name, wanted.column_name, wanted.why);
    END LOOP;

    RAISE NOTICE 'role "%" may read, in schema "%" of database "%": %',
        target_role, target_schema, current_database(), array_to_string(granted, ', ');
END
$pgqs$;

-- Leave the session's settings as they were.
RESET pgqs.schema;
RESET pgqs.role;
