//! When to renew a certificate and when to warn about it: pure, "now" and the jitter passed
//! in, as client-go's certificate manager decides (`nextRotationDeadline`, `jitteryDuration`).
//!
//! * The rotation deadline is `notBefore` plus 70 to 90 % of the lifetime, drawn once per
//!   certificate, so nodes that joined together do not all renew together.
//! * A certificate is renewed at once when it does not match what would be requested now
//!   (the serving certificate's names changed) or when none is held.
//! * A warning is due once the certificate is past the point where it should already have been
//!   renewed: 90 % of its lifetime with rotation on (the latest deadline), 80 % with rotation
//!   off (nothing will renew it; the kubelet would have rotated by then). It repeats every
//!   hour until the certificate changes.

use std::time::Duration;

use crate::clock::Timestamp;

/// How often an expiry warning repeats while nothing changes.
pub const WARN_EVERY: Duration = Duration::from_secs(3600);

/// A certificate's validity period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lifetime {
    /// `notBefore`.
    pub not_before: Timestamp,
    /// `notAfter`.
    pub not_after: Timestamp,
}

impl Lifetime {
    fn at_fraction(&self, fraction: f64) -> Timestamp {
        let total = self.not_after.since(self.not_before);
        self.not_before
            .plus(total.mul_f64(fraction.clamp(0.0, 1.0)))
    }

    /// The rotation deadline for a `jitter` in `[0, 1]`: `notBefore` + 70 % of the lifetime
    /// at 0, 90 % at 1 (client-go: `wait.Jitter(total, 0.2) - 0.3 * total`).
    pub fn deadline(&self, jitter: f64) -> Timestamp {
        self.at_fraction(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
    }

    /// When an expiry warning becomes due (see the module docs).
    pub fn warn_at(&self, rotating: bool) -> Timestamp {
        self.at_fraction(if rotating { 0.9 } else { 0.8 })
    }

    /// Whole seconds until `notAfter`, negative once expired (the kubelet's `*_ttl_seconds`).
    pub fn ttl_seconds(&self, now: Timestamp) -> i64 {
        (self.not_after.0.saturating_sub(now.0)) / 1_000_000_000
    }

    /// Whether the certificate is no longer valid at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.not_after
    }

    /// `notAfter` in whole Unix seconds.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after.0.div_euclid(1_000_000_000)
    }
}

/// What a certificate manager does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask for a new certificate now.
    Renew,
    /// Nothing before `until` (the rotation deadline or the next warning, whichever is first).
    Wait {
        /// When to look again.
        until: Timestamp,
    },
    /// Nothing will ever be due: no rotation, and no certificate to warn about.
    Idle,
}

/// The state the decision needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Held {
    /// The certificate in use; `None` when there is none.
    pub lifetime: Option<Lifetime>,
    /// Whether it has what would be requested now (names, subject).
    pub satisfies: bool,
    /// The deadline's jitter, drawn once for this certificate.
    pub jitter: f64,
}

/// What to do at `now`, `rotating` or not, `warned_at` the last expiry warning for the
/// current certificate.
pub fn next(held: &Held, rotating: bool, warned_at: Option<Timestamp>, now: Timestamp) -> Next {
    let Some(lifetime) = held.lifetime else {
        return if rotating { Next::Renew } else { Next::Idle };
    };
    if rotating && (!held.satisfies || now >= lifetime.deadline(held.jitter)) {
        return Next::Renew;
    }
    let warn = next_warning(&lifetime, rotating, warned_at);
    let until = if rotating {
        warn.min(lifetime.deadline(held.jitter))
    } else {
        warn
    };
    Next::Wait { until }
}

/// When the next expiry warning is due, given the last one.
fn next_warning(lifetime: &Lifetime, rotating: bool, warned_at: Option<Timestamp>) -> Timestamp {
    let first = lifetime.warn_at(rotating);
    match warned_at {
        Some(at) if at >= first => at.plus(WARN_EVERY),
        _ => first,
    }
}

/// Whether an expiry warning is due at `now`.
pub fn warning_due(
    lifetime: &Lifetime,
    rotating: bool,
    warned_at: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    now >= next_warning(lifetime, rotating, warned_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    /// A 10-hour certificate from t=0.
    fn ten_hours() -> Lifetime {
        Lifetime {
            not_before: Timestamp(0),
            not_after: Timestamp(10 * HOUR),
        }
    }

    fn held(jitter: f64) -> Held {
        Held {
            lifetime: Some(ten_hours()),
            satisfies: true,
            jitter,
        }
    }

    #[test]
    fn the_deadline_falls_between_70_and_90_percent_of_the_lifetime() {
        let l = ten_hours();
        assert_eq!(l.deadline(0.0), Timestamp(7 * HOUR));
        assert_eq!(l.deadline(0.5), Timestamp(8 * HOUR));
        assert_eq!(l.deadline(1.0), Timestamp(9 * HOUR));
        assert_eq!(l.deadline(7.0), Timestamp(9 * HOUR), "jitter is clamped");
    }

    #[test]
    fn a_fresh_certificate_waits_for_its_deadline_and_is_renewed_from_it() {
        let h = held(0.5);
        assert_eq!(
            next(&h, true, None, Timestamp(HOUR)),
            Next::Wait {
                until: Timestamp(8 * HOUR)
            }
        );
        assert_eq!(next(&h, true, None, Timestamp(8 * HOUR)), Next::Renew);
        assert_eq!(next(&h, true, None, Timestamp(11 * HOUR)), Next::Renew);
    }

    #[test]
    fn without_rotation_a_certificate_is_never_renewed_but_warned_about_at_80_percent() {
        let h = held(0.0);
        assert_eq!(
            next(&h, false, None, Timestamp(7 * HOUR + 1)),
            Next::Wait {
                until: Timestamp(8 * HOUR)
            }
        );
        let l = ten_hours();
        assert!(!warning_due(&l, false, None, Timestamp(8 * HOUR - 1)));
        assert!(warning_due(&l, false, None, Timestamp(8 * HOUR)));
    }

    #[test]
    fn with_rotation_the_warning_waits_for_the_latest_deadline_then_repeats_hourly() {
        let l = ten_hours();
        assert!(!warning_due(&l, true, None, Timestamp(9 * HOUR - 1)));
        assert!(warning_due(&l, true, None, Timestamp(9 * HOUR)));
        let warned = Some(Timestamp(9 * HOUR));
        assert!(!warning_due(
            &l,
            true,
            warned,
            Timestamp(9 * HOUR + HOUR / 2)
        ));
        assert!(warning_due(&l, true, warned, Timestamp(10 * HOUR)));
        // A warning about an older certificate does not hold back the first one.
        assert!(warning_due(
            &l,
            true,
            Some(Timestamp(HOUR)),
            Timestamp(9 * HOUR)
        ));
    }

    #[test]
    fn no_certificate_is_requested_at_once_with_rotation_and_left_alone_without() {
        let none = Held {
            lifetime: None,
            satisfies: false,
            jitter: 0.5,
        };
        assert_eq!(next(&none, true, None, Timestamp(0)), Next::Renew);
        assert_eq!(next(&none, false, None, Timestamp(0)), Next::Idle);
    }

    #[test]
    fn a_certificate_that_no_longer_matches_the_request_is_renewed_at_once() {
        let h = Held {
            satisfies: false,
            ..held(1.0)
        };
        assert_eq!(next(&h, true, None, Timestamp(HOUR)), Next::Renew);
    }

    #[test]
    fn ttl_counts_whole_seconds_and_goes_negative_after_expiry() {
        let l = ten_hours();
        assert_eq!(l.ttl_seconds(Timestamp(9 * HOUR)), 3600);
        assert_eq!(l.ttl_seconds(Timestamp(11 * HOUR)), -3600);
        assert!(l.expired(Timestamp(10 * HOUR)));
        assert!(!l.expired(Timestamp(10 * HOUR - 1)));
    }
}
