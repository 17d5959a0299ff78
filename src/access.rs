//! Who may read what: whether triggers may bring their own database URL
//! (`connectionFromEnv`) and to which hosts, and which ScaledObject namespaces may use each
//! configured database. Pure; checked before any other work on a request.

use std::collections::HashMap;

use crate::error::Error;
use crate::trigger::{ConnectionRef, Trigger, keys};

/// The access rules from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Whether `connectionFromEnv` is accepted at all.
    pub connection_from_env_enabled: bool,
    /// Hosts a `connectionFromEnv` URL may point at (lowercase); empty means any.
    pub connection_from_env_allowed_hosts: Vec<String>,
    /// Per configured database, the namespaces allowed to use it; absent or empty means any.
    pub allowed_namespaces: HashMap<String, Vec<String>>,
}

impl AccessPolicy {
    /// Everything allowed: the default when the configuration sets no rule.
    pub fn open() -> Self {
        Self {
            connection_from_env_enabled: true,
            ..Self::default()
        }
    }

    /// Refuses, with `PermissionDenied` and a reason, what the rules do not allow.
    pub fn check(&self, trigger: &Trigger, namespace: &str) -> Result<(), Error> {
        match &trigger.connection {
            ConnectionRef::FromEnv(url) => {
                if !self.connection_from_env_enabled {
                    return Err(Error::PermissionDenied(format!(
                        "{} is disabled on this scaler: use database with a name from the scaler's configuration",
                        keys::CONNECTION_FROM_ENV
                    )));
                }
                let host = url.host().unwrap_or_default().to_ascii_lowercase();
                let allowed = &self.connection_from_env_allowed_hosts;
                if !allowed.is_empty() && !allowed.contains(&host) {
                    return Err(Error::PermissionDenied(format!(
                        "{} points at host {host:?}, which is not in this scaler's allowed hosts",
                        keys::CONNECTION_FROM_ENV
                    )));
                }
            }
            ConnectionRef::Named(name) => {
                let allowed = self
                    .allowed_namespaces
                    .get(name)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if !allowed.is_empty() && !allowed.iter().any(|known| known == namespace) {
                    return Err(Error::PermissionDenied(format!(
                        "database {name:?} may not be used from namespace {namespace:?}"
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
        let elsewhere = trigger(&[
            ("queue", "q"),
            ("connectionFromEnv", "postgres://u:secret@evil/d"),
        ]);
        let error = limited.check(&elsewhere, "ns").unwrap_err();
        assert!(error.to_string().contains("\"evil\""), "{error}");
        assert!(!error.to_string().contains("secret"));
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
