//! Loading settings from every layer, and every way it can go wrong.

use super::*;
use std::io::Write;
use std::path::PathBuf;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_load_and_validate() {
    let settings = Settings::load(&Flags::default(), &HashMap::new()).unwrap();
    assert_eq!(settings.grpc_listen, "0.0.0.0:9090".parse().unwrap());
    assert_eq!(settings.http_listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(settings.refresh.interval, Duration::from_secs(1));
    assert_eq!(settings.refresh.stale_after, Duration::from_secs(30));
    assert_eq!(settings.refresh.first_read_timeout, Duration::from_secs(2));
    assert_eq!(settings.pool.max_size, 2);
    assert_eq!(settings.log_format, LogFormat::Text);
    assert!(settings.databases.is_empty());
}

#[test]
fn the_default_database_falls_back_to_the_dbos_variable() {
    let settings = Settings::load(
        &Flags::default(),
        &env(&[(DBOS_URL_ENV, "postgres://u:pw@dbos-host/app_sys")]),
    )
    .unwrap();
    assert_eq!(
        settings.databases["default"].label(),
        "dbos-host:5432/app_sys"
    );
    let settings = Settings::load(
        &Flags::default(),
        &env(&[
            (DBOS_URL_ENV, "postgres://u:pw@dbos-host/app_sys"),
            ("PGQS_DATABASE_URL", "postgres://u:pw@pgqs-host/x"),
        ]),
    )
    .unwrap();
    assert_eq!(settings.databases["default"].label(), "pgqs-host:5432/x");
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "grpc_listen: 127.0.0.1:1000\nhttp_listen: 127.0.0.1:2000\nrefresh_interval: 3s\n\
         databases:\n  orders:\n    url: postgres://u:pw@orders-host/orders"
    )
    .unwrap();
    let flags = Flags {
        config: Some(file.path().to_path_buf()),
        grpc_listen: Some("127.0.0.1:3000".into()),
        ..Flags::default()
    };
    let settings = Settings::load(
        &flags,
        &env(&[
            ("PGQS_GRPC_LISTEN", "127.0.0.1:4000"),
            ("PGQS_HTTP_LISTEN", "127.0.0.1:5000"),
            (
                "PGQS_DATABASES__BILLING__URL",
                "postgres://u:pw@billing-host/b",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(settings.grpc_listen.port(), 3000);
    assert_eq!(settings.http_listen.port(), 5000);
    assert_eq!(settings.refresh.interval, Duration::from_secs(3));
    assert_eq!(
        settings.databases["orders"].label(),
        "orders-host:5432/orders"
    );
    assert_eq!(settings.databases["billing"].label(), "billing-host:5432/b");
}

#[test]
fn every_problem_is_listed_at_once_and_no_url_is_shown() {
    let error = Settings::load(
        &Flags::default(),
        &env(&[
            ("PGQS_GRPC_LISTEN", "nowhere"),
            ("PGQS_REFRESH_INTERVAL", "soon"),
            ("PGQS_POOL_MAX_SIZE", "0"),
            ("PGQS_LOG_FORMAT", "xml"),
            ("PGQS_DATABASE_URL", "postgres://u:hunter2@h:port/db"),
        ]),
    )
    .unwrap_err();
    let text = error.to_string();
    assert_eq!(error.problems.len(), 5, "{text}");
    for key in [
        "grpc_listen",
        "refresh_interval",
        "pool_max_size",
        "log_format",
        "database_url",
    ] {
        assert!(text.contains(key), "{key} missing from {text}");
    }
    assert!(!text.contains("hunter2"));
}

#[test]
fn access_rules_and_tls_files_are_read() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "connection_from_env_allowed_hosts: [DB.internal, other]\n\
         databases:\n  orders:\n    allowed_namespaces: [team-a]"
    )
    .unwrap();
    let flags = Flags {
        config: Some(file.path().to_path_buf()),
        ..Flags::default()
    };
    let settings = Settings::load(
        &flags,
        &env(&[
            ("PGQS_DATABASES__ORDERS__URL", "postgres://u:pw@h/orders"),
            ("PGQS_CONNECTION_FROM_ENV_ENABLED", "false"),
            ("PGQS_TLS_CERT_FILE", "/tls/tls.crt"),
            ("PGQS_TLS_KEY_FILE", "/tls/tls.key"),
            ("PGQS_TLS_CLIENT_CA_FILE", "/tls/ca.crt"),
        ]),
    )
    .unwrap();
    assert!(!settings.access.connection_from_env_enabled);
    assert_eq!(
        settings.access.connection_from_env_allowed_hosts,
        ["db.internal", "other"]
    );
    assert_eq!(settings.access.allowed_namespaces["orders"], ["team-a"]);
    let tls = settings.tls.unwrap();
    assert_eq!(tls.client_ca_file, Some(PathBuf::from("/tls/ca.crt")));

    let settings = Settings::load(
        &Flags::default(),
        &env(&[("PGQS_CONNECTION_FROM_ENV_ALLOWED_HOSTS", "a, b")]),
    )
    .unwrap();
    assert!(settings.access.connection_from_env_enabled);
    assert_eq!(
        settings.access.connection_from_env_allowed_hosts,
        ["a", "b"]
    );
    assert!(settings.tls.is_none());
}

#[test]
fn half_a_tls_configuration_is_refused() {
    let error = Settings::load(
        &Flags::default(),
        &env(&[("PGQS_TLS_CLIENT_CA_FILE", "/ca")]),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("tls_client_ca_file needs"),
        "{error}"
    );
    let error =
        Settings::load(&Flags::default(), &env(&[("PGQS_TLS_CERT_FILE", "/c")])).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("tls_cert_file needs tls_key_file"),
        "{error}"
    );
}

#[test]
fn the_default_database_layers_like_the_others() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "database_url: postgres://u:pw@file-host/a\n\
         databases:\n  default:\n    allowed_namespaces: [team-a]"
    )
    .unwrap();
    let flags = Flags {
        config: Some(file.path().to_path_buf()),
        ..Flags::default()
    };
    let from_file = Settings::load(
        &flags,
        &env(&[(DBOS_URL_ENV, "postgres://u:pw@dbos-host/b")]),
    )
    .unwrap();
    assert_eq!(from_file.databases["default"].label(), "file-host:5432/a");
    assert_eq!(from_file.access.allowed_namespaces["default"], ["team-a"]);

    let from_env = Settings::load(
        &flags,
        &env(&[("PGQS_DATABASES__DEFAULT__URL", "postgres://u:pw@env-host/c")]),
    )
    .unwrap();
    assert_eq!(
        from_env.databases["default"].label(),
        "env-host:5432/c",
        "env beats the file"
    );

    let namespaces_only = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        namespaces_only.path(),
        "databases:\n  default:\n    allowed_namespaces: [x]\n",
    )
    .unwrap();
    let flags = Flags {
        config: Some(namespaces_only.path().to_path_buf()),
        ..Flags::default()
    };
    let fallback = Settings::load(
        &flags,
        &env(&[(DBOS_URL_ENV, "postgres://u:pw@dbos-host/b")]),
    )
    .unwrap();
    assert_eq!(fallback.databases["default"].label(), "dbos-host:5432/b");

    let flags = Flags {
        database_url: Some("postgres://u:pw@flag-host/d".into()),
        ..Flags::default()
    };
    let from_flag = Settings::load(
        &flags,
        &env(&[("PGQS_DATABASE_URL", "postgres://u:pw@env-host/c")]),
    )
    .unwrap();
    assert_eq!(
        from_flag.databases["default"].label(),
        "flag-host:5432/d",
        "flags beat env"
    );

    let both = Settings::load(
        &Flags::default(),
        &env(&[
            ("PGQS_DATABASE_URL", "postgres://a/b"),
            ("PGQS_DATABASES__DEFAULT__URL", "postgres://c/d"),
        ]),
    )
    .unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");
}

#[test]
fn a_misplaced_url_is_refused_without_showing_it() {
    let error = Settings::load(
        &Flags::default(),
        &env(&[("PGQS_DATABASES__ORDERS", "postgres://u:hunter2@h/db")]),
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("databases.orders"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn absurd_durations_are_refused_not_overflowed() {
    let error = Settings::load(
        &Flags::default(),
        &env(&[
            ("PGQS_REFRESH_INTERVAL", "18446744073709551615s"),
            ("PGQS_STATEMENT_TIMEOUT", "30days"),
            ("PGQS_IDLE_AFTER", "1s"),
            ("PGQS_STALE_AFTER", "3s"),
        ]),
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("refresh_interval must be a positive duration of at most 24h"),
        "{text}"
    );
    assert!(text.contains("statement_timeout"), "{text}");
    let error = Settings::load(&Flags::default(), &env(&[("PGQS_IDLE_AFTER", "1s")])).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("idle_after (1s) must be at least twice"),
        "{error}"
    );
}

#[test]
fn unknown_settings_are_refused() {
    let error =
        Settings::load(&Flags::default(), &env(&[("PGQS_REFRESH_INTERVALL", "1s")])).unwrap_err();
    assert!(error.to_string().contains("refresh_intervall"), "{error}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let flags = Flags {
        config: Some("/nonexistent/pgqs.yaml".into()),
        ..Flags::default()
    };
    let error = Settings::load(&flags, &HashMap::new()).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/pgqs.yaml"),
        "{error}"
    );
}

#[test]
fn debug_output_hides_database_passwords() {
    let settings = Settings::load(
        &Flags::default(),
        &env(&[("PGQS_DATABASE_URL", "postgres://u:hunter2@h/db")]),
    )
    .unwrap();
    assert!(!format!("{settings:?}").contains("hunter2"));
}
