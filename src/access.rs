//! Who may read what: whether triggers may bring their own database URL
//! (`connectionFromEnv`) and to which hosts, and which ScaledObject namespaces may use each
//! configured database. Pure; checked before any other work on a request.

use std::collections::HashMap;

use crate::error::Error;
use crate::quote::Quoted;
use crate::trigger::{ConnectionRef, Trigger, keys};

/// The access rules from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccessPolicy {
    /// Whether `connectionFromEnv` is accepted at all.
    pub connection_from_env_enabled: bool,
    /// Hosts a `connectionFromEnv` URL may point at (lowercase); empty means any.
    pub connection_from_env_allowed_hosts: Vec<String>,
    /// Per configured database, the namespaces allowed to use it; absent or empty means any.
    pub allowed_namespaces: HashMap<String, Vec<String>>,
}

impl AccessPolicy {
    /// Everything allowed: what a configuration without rules builds (see `config`).
    #[cfg(test)]
    pub(crate) fn open() -> Self {
        Self {
            connection_from_env_enabled: true,
            ..Self::default()
        }
    }

    /// With an allowlist, every host the URL may try must be on it, and `hostaddr` (which
    /// would connect elsewhere than the names say) is refused. Entries are `host` or
    /// `host:port`.
    fn check_hosts(&self, url: &crate::connection_url::ConnectionUrl) -> Result<(), Error> {
        let allowed = &self.connection_from_env_allowed_hosts;
        if allowed.is_empty() {
            return Ok(());
        }
        if url.has_hostaddr() {
            return Err(Error::PermissionDenied(format!(
                "{} URLs may not use hostaddr on this scaler (its hosts are restricted)",
                keys::CONNECTION_FROM_ENV
            )));
        }
        for (host, port) in url.endpoints() {
            let host = host.to_ascii_lowercase();
            let listed = allowed.iter().any(|entry| match entry.rsplit_once(':') {
                Some((name, listed_port)) => *name == host && listed_port == port.to_string(),
                None => *entry == host,
            });
            if !listed {
                return Err(Error::PermissionDenied(format!(
                    "{} points at {}, which is not in this scaler's allowed hosts",
                    keys::CONNECTION_FROM_ENV,
                    Quoted::new(&format!("{host}:{port}"))
                )));
            }
        }
        Ok(())
    }

    /// Whether ScaledObjects in `namespace` may use the configured database `name`.
    pub(crate) fn may_use(&self, name: &str, namespace: &str) -> bool {
        let allowed = self
            .allowed_namespaces
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        allowed.is_empty() || allowed.iter().any(|known| known == namespace)
    }

    /// Refuses, with `PermissionDenied` and a reason, what the rules do not allow.
    pub(crate) fn check(&self, trigger: &Trigger, namespace: &str) -> Result<(), Error> {
        match &trigger.connection {
            ConnectionRef::FromEnv(url) => {
                if !self.connection_from_env_enabled {
                    return Err(Error::PermissionDenied(format!(
                        "{} is disabled on this scaler: use database with a name from the \
                         scaler's configuration",
                        keys::CONNECTION_FROM_ENV
                    )));
                }
                // A file path would let any trigger probe the scaler's file system.
                if url
                    .root_cert()
                    .is_some_and(|path| path.as_os_str() != "system")
                {
                    return Err(Error::PermissionDenied(format!(
                        "{} URLs may not name an sslrootcert file on the scaler: use \
                         sslrootcert=system, or a database from the scaler's configuration",
                        keys::CONNECTION_FROM_ENV
                    )));
                }
                self.check_hosts(url)?;
            }
            ConnectionRef::Named(name) => {
                if !self.may_use(name, namespace) {
                    return Err(Error::PermissionDenied(format!(
                        "database {name:?} may not be used from namespace {}",
                        Quoted::new(namespace)
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::trigger::from_pairs as trigger;

    #[test]
    fn open_policy_allows_everything() {
        let policy = AccessPolicy::open();
        assert!(policy.check(&trigger(&[("queue", "q")]), "any").is_ok());
        assert!(
            policy
                .check(
                    &trigger(&[("queue", "q"), ("connectionFromEnv", "postgres://u:p@h/d")]),
                    "any"
                )
                .is_ok()
        );
    }

    #[test]
    fn connection_from_env_can_be_turned_off_or_limited_to_hosts() {
        let from_env = trigger(&[
            ("queue", "q"),
            ("connectionFromEnv", "postgres://u:secret@DB.internal/d"),
        ]);
        let off = AccessPolicy::default();
        let error = off.check(&from_env, "ns").unwrap_err();
        assert!(matches!(error, Error::PermissionDenied(_)));
        assert!(error.to_string().contains("disabled"));

        let limited = AccessPolicy {
            connection_from_env_enabled: true,
            connection_from_env_allowed_hosts: vec!["db.internal".into()],
            ..AccessPolicy::default()
        };
        assert!(
            limited.check(&from_env, "ns").is_ok(),
            "host match ignores case"
        );
        for sneaky in [
            "postgres://u:secret@evil/d",
            "postgres://u:secret@db.internal,evil/d",
            "postgres://u:secret@db.internal/d?hostaddr=10.9.9.9",
        ] {
            let error = limited
                .check(
                    &trigger(&[("queue", "q"), ("connectionFromEnv", sneaky)]),
                    "ns",
                )
                .unwrap_err();
            assert!(matches!(error, Error::PermissionDenied(_)), "{sneaky}");
            assert!(!error.to_string().contains("secret"));
        }
        let with_port = AccessPolicy {
            connection_from_env_enabled: true,
            connection_from_env_allowed_hosts: vec!["db.internal:6432".into()],
            ..AccessPolicy::default()
        };
        let pooled = trigger(&[
            ("queue", "q"),
            ("connectionFromEnv", "postgres://u:p@db.internal:6432/d"),
        ]);
        assert!(with_port.check(&pooled, "ns").is_ok());
        let other_port = trigger(&[
            ("queue", "q"),
            ("connectionFromEnv", "postgres://u:p@db.internal:22/d"),
        ]);
        let error = with_port.check(&other_port, "ns").unwrap_err();
        assert!(error.to_string().contains("db.internal:22"), "{error}");
    }

    #[test]
    fn connection_from_env_urls_cannot_read_files_on_the_scaler() {
        let policy = AccessPolicy::open();
        let probe = trigger(&[
            ("queue", "q"),
            (
                "connectionFromEnv",
                "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=/etc/shadow",
            ),
        ]);
        let error = policy.check(&probe, "ns").unwrap_err();
        assert!(error.to_string().contains("sslrootcert"), "{error}");
        let system = trigger(&[
            ("queue", "q"),
            (
                "connectionFromEnv",
                "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=system",
            ),
        ]);
        assert!(policy.check(&system, "ns").is_ok());
    }

    #[test]
    fn a_database_can_be_limited_to_namespaces() {
        let policy = AccessPolicy {
            connection_from_env_enabled: true,
            allowed_namespaces: HashMap::from([("orders".to_owned(), vec!["team-a".to_owned()])]),
            ..AccessPolicy::default()
        };
        let orders = trigger(&[("queue", "q"), ("database", "orders")]);
        assert!(policy.check(&orders, "team-a").is_ok());
        let error = policy.check(&orders, "team-b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "database \"orders\" may not be used from namespace \"team-b\""
        );
        assert!(policy.check(&trigger(&[("queue", "q")]), "team-b").is_ok());
    }
}
