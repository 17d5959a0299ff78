//! Which rows of a queue a trigger counts: the application, the application version and the
//! lookahead for delayed work (`applicationName`, `applicationVersion` or
//! `applicationVersionFromEnv` with `requireApplicationVersion`, `delayedLookahead`).

use std::time::Duration;

use super::values::{choice, duration, invalid};
use super::{MAX_DURATION, keys};
use crate::error::Error;

/// Which application version's work a trigger counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionFilter {
    /// Every version's (no `applicationVersion`).
    All,
    /// The application's latest version, resolved on every refresh.
    Latest,
    /// One version, by name.
    Named(String),
}

/// Which rows of a queue a trigger counts: the work its workers may run. Triggers with the
/// same scope share what the refresh statement computes for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Only this application's (and unclaimed) work counts.
    pub application: Option<String>,
    /// Only work a worker of this version would dequeue counts.
    pub version: VersionFilter,
    /// Delayed work due within this window counts (zero: only work already due).
    pub lookahead: Duration,
}

/// The application, version and lookahead keys. A version may be written in the trigger
/// or arrive from the workload's environment (`applicationVersionFromEnv`, which KEDA drops
/// when the variable is empty, hence `requireApplicationVersion`).
pub(super) fn parse<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Scope, Error> {
    let application = match get(keys::APPLICATION_NAME) {
        None => None,
        Some(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        Some(other) => return Err(invalid(keys::APPLICATION_NAME, "must not be empty", other)),
    };
    let version = match (
        get(keys::APPLICATION_VERSION),
        get(keys::APPLICATION_VERSION_FROM_ENV),
    ) {
        (Some(_), Some(_)) => {
            return Err(Error::ConflictingMetadata(
                keys::APPLICATION_VERSION,
                keys::APPLICATION_VERSION_FROM_ENV,
            ));
        }
        (Some(value), None) => parse_version(keys::APPLICATION_VERSION, value)?,
        (None, Some(value)) => parse_version(keys::APPLICATION_VERSION_FROM_ENV, value)?,
        (None, None) => VersionFilter::All,
    };
    let required = choice(
        keys::REQUIRE_APPLICATION_VERSION,
        get(keys::REQUIRE_APPLICATION_VERSION),
        false,
        &[("true", true), ("false", false)],
        "must be \"true\" or \"false\"",
    )?;
    if required && version == VersionFilter::All {
        return Err(Error::MissingMetadata(
            "no application version arrived: requireApplicationVersion is \"true\" but neither \
             applicationVersion nor applicationVersionFromEnv is set (KEDA drops \
             applicationVersionFromEnv when the workload's variable is empty or missing)",
        ));
    }
    let lookahead = match get(keys::DELAYED_LOOKAHEAD) {
        None => Duration::ZERO,
        Some(value) => match duration(value) {
            Some(window) if window <= MAX_DURATION => window,
            Some(_) => {
                return Err(invalid(
                    keys::DELAYED_LOOKAHEAD,
                    "must be at most 24h",
                    value,
                ));
            }
            None => {
                return Err(invalid(
                    keys::DELAYED_LOOKAHEAD,
                    "must be a duration like 90s",
                    value,
                ));
            }
        },
    };
    Ok(Scope {
        application,
        version,
        lookahead,
    })
}

fn parse_version(key: &'static str, value: &str) -> Result<VersionFilter, Error> {
    match value.trim() {
        "" => Err(invalid(key, "must be a version name or \"latest\"", value)),
        "latest" => Ok(VersionFilter::Latest),
        name => Ok(VersionFilter::Named(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::Trigger;
    use crate::trigger::tests::{error_of, metadata};

    #[test]
    fn versions_come_from_the_trigger_or_the_workload() {
        let latest = Trigger::parse(&metadata(&[
            ("queue", "q"),
            ("applicationVersion", "latest"),
        ]));
        assert_eq!(latest.unwrap().scope.version, VersionFilter::Latest);
        let from_env = Trigger::parse(&metadata(&[
            ("queue", "q"),
            ("applicationVersionFromEnv", " 1f2e3d "),
            ("requireApplicationVersion", "true"),
        ]));
        assert_eq!(
            from_env.unwrap().scope.version,
            VersionFilter::Named("1f2e3d".into())
        );
        assert_eq!(
            error_of(&[
                ("queue", "q"),
                ("applicationVersion", "v1"),
                ("applicationVersionFromEnv", "v2")
            ]),
            "set either applicationVersion or applicationVersionFromEnv, not both"
        );
        assert!(
            error_of(&[("queue", "q"), ("requireApplicationVersion", "true")])
                .starts_with("no application version arrived"),
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("requireApplicationVersion", "yes")]),
            r#"requireApplicationVersion must be "true" or "false", got "yes""#
        );
        assert!(
            error_of(&[("queue", "q"), ("applicationVersion", " ")])
                .starts_with("applicationVersion must be")
        );
    }

    #[test]
    fn lookahead_is_a_bounded_duration() {
        assert_eq!(
            error_of(&[("queue", "q"), ("delayedLookahead", "soon")]),
            r#"delayedLookahead must be a duration like 90s, got "soon""#
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("delayedLookahead", "25h")]),
            r#"delayedLookahead must be at most 24h, got "25h""#
        );
        let zero = Trigger::parse(&metadata(&[("queue", "q"), ("delayedLookahead", "0s")]));
        assert_eq!(zero.unwrap().scope.lookahead, Duration::ZERO);
    }
}
