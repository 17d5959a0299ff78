//! The metric name `GetMetricSpec` hands to KEDA for a trigger. It must be lowercase and
//! DNS-safe (KEDA ≤ 2.11 lower-cases it, and the HPA needs a valid path segment), stable
//! across restarts and upgrades (the HPA stores it), and distinct for different queues even
//! when their names sanitise alike, so a short hash of the trigger's identity is appended.

use crate::trigger::{ConnectionRef, Trigger, VersionFilter};

/// The longest readable part kept from the queue names.
const MAX_READABLE_LEN: usize = 40;

/// The metric name for `trigger`, e.g. `dbos-taskqueue-6f1d2c3a`.
pub(crate) fn metric_name(trigger: &Trigger) -> String {
    let readable = sanitise(&trigger.queues.join("-"));
    format!(
        "{}-{}-{:08x}",
        trigger.system.as_str(),
        readable,
        fnv1a32(identity(trigger).as_bytes())
    )
}

/// Whether `requested` (from `GetMetrics`) names the metric called `name`. Case-insensitive,
/// because KEDA ≤ 2.11 passed the HPA's lower-cased name.
pub(crate) fn matches(name: &str, requested: &str) -> bool {
    requested.eq_ignore_ascii_case(name)
}

/// Everything that makes two triggers' numbers differ. The URL of a `connectionFromEnv`
/// database is left out on purpose: a hash of a secret does not belong in Kubernetes status.
fn identity(trigger: &Trigger) -> String {
    let database = match &trigger.connection {
        ConnectionRef::Named(name) => name.as_str(),
        ConnectionRef::FromEnv(_) => "\u{0}env",
    };
    let mut identity = [
        trigger.system.as_str(),
        database,
        &trigger.schema,
        &trigger.queues.join("\u{0}"),
        trigger.aggregate.as_str(),
        trigger.metric.as_str(),
        trigger.scope.application.as_deref().unwrap_or(""),
    ]
    .join("\u{1}");
    // Keys added later join the identity only when set, so that the names of triggers
    // without them (stored in HPAs) stay what they were.
    let scope = &trigger.scope;
    let additions = [
        match &scope.version {
            VersionFilter::All => None,
            VersionFilter::Latest => Some("\u{0}latest".to_owned()),
            VersionFilter::Named(name) => Some(format!("version={name}")),
        },
        (!scope.lookahead.is_zero()).then(|| format!("lookahead={}", scope.lookahead.as_millis())),
        (!trigger.apply_limits).then(|| "limits=ignore".to_owned()),
    ];
    for addition in additions.into_iter().flatten() {
        identity.push('\u{1}');
        identity.push_str(&addition);
    }
    identity
}

/// Lowercase ASCII letters and digits, other runs of characters folded into one `-`.
fn sanitise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out
        .trim_matches('-')
        .chars()
        .take(MAX_READABLE_LEN)
        .collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        "queue".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// 32-bit FNV-1a: tiny, and fixed forever, unlike `std`'s hasher whose output may change
/// between Rust releases (metric names must survive upgrades).
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::trigger::from_pairs as trigger;

    fn is_dns_safe(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn names_read_like_the_queue() {
        let name = metric_name(&trigger(&[("queue", "Task_Queue.v2")]));
        assert!(name.starts_with("dbos-task-queue-v2-"), "{name}");
        assert!(is_dns_safe(&name), "{name}");
    }

    #[test]
    fn the_hash_is_stable_across_releases() {
        // Pinned: if this changes, every existing HPA loses its metric after an upgrade.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn queues_that_sanitise_alike_still_get_distinct_names() {
        let a = metric_name(&trigger(&[("queue", "a_b")]));
        let b = metric_name(&trigger(&[("queue", "a.b")]));
        let c = metric_name(&trigger(&[("queue", "A-B")]));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn settings_that_change_the_number_change_the_name() {
        let base = metric_name(&trigger(&[("queue", "q")]));
        for extra in [
            ("database", "orders"),
            ("schema", "other"),
            ("metric", "depth"),
            ("applicationName", "app"),
            ("applicationVersion", "v1"),
            ("applicationVersion", "latest"),
            ("delayedLookahead", "90s"),
            ("concurrencyLimits", "ignore"),
            ("metric", "latency"),
        ] {
            let mut pairs = vec![("queue", "q"), extra];
            if extra == ("metric", "depth") {
                pairs.push(("workerConcurrency", "2"));
            }
            if extra == ("metric", "latency") {
                pairs.push(("targetLatency", "30s"));
            }
            assert_ne!(base, metric_name(&trigger(&pairs)), "{extra:?}");
        }
        assert_eq!(
            base,
            metric_name(&trigger(&[("queue", "q"), ("activationThreshold", "5")]))
        );
    }

    #[test]
    fn names_of_triggers_without_the_newer_keys_do_not_change() {
        // Pinned from the release before applicationVersion, delayedLookahead and
        // concurrencyLimits existed: HPAs created then must keep finding their metric.
        assert_eq!(
            metric_name(&trigger(&[("queue", "taskQueue")])),
            "dbos-taskqueue-aa5fc18f"
        );
        assert_eq!(
            metric_name(&trigger(&[
                ("queue", "taskQueue"),
                ("concurrencyLimits", "apply")
            ])),
            metric_name(&trigger(&[
                ("queue", "taskQueue"),
                ("delayedLookahead", "0s")
            ]))
        );
    }

    #[test]
    fn matching_ignores_case() {
        let t = trigger(&[("queue", "q")]);
        assert!(matches(&metric_name(&t), &metric_name(&t).to_uppercase()));
        assert!(!matches(&metric_name(&t), "dbos-q-00000000"));
    }

    #[test]
    fn names_without_readable_characters_still_work() {
        let name = metric_name(&trigger(&[("queue", "队列")]));
        assert!(name.starts_with("dbos-queue-"));
        assert!(is_dns_safe(&name));
    }

    proptest! {
        #[test]
        fn every_queue_name_gives_a_dns_safe_metric_name(queue in "\\PC{1,200}") {
            prop_assume!(!queue.trim().is_empty() && !queue.contains(','));
            let name = metric_name(&trigger(&[("queue", &queue)]));
            prop_assert!(is_dns_safe(&name), "{}", name);
        }
    }
}
