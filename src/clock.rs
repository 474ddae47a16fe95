//! Wall-clock time as the runtime reports it, and a clock the tests can pause.
//!
//! CRI reports container start and finish times as nanoseconds since the Unix epoch, and the
//! kubelet's backoff compares those with "now". [`Clock`] yields the same kind of value, either
//! from the system clock or derived from tokio's clock, so that tests running under
//! `#[tokio::test(start_paused = true)]` control time completely.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, as CRI reports times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// This timestamp plus a duration, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is; zero when it is not later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Converts a system time.
    pub fn from_system(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(_) => Timestamp(0),
        }
    }

    /// RFC 3339 in UTC with nanoseconds, the format of `kubernetes.io/config.seen`.
    pub fn rfc3339_nanos(self) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339_nanos())
    }
}

/// Howard Hinnant's days-to-civil algorithm: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where "now" comes from.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The system's wall clock: what production uses, comparable with containerd's times.
    System,
    /// Wall time derived from tokio's clock: `base` at `origin`, advancing as tokio's clock
    /// does. Under a paused tokio runtime, time moves only when the test advances it.
    Tokio {
        /// The wall time at `origin`.
        base: Timestamp,
        /// The tokio instant that corresponds to `base`.
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock following tokio's time, starting at `base`.
    pub fn tokio(base: Timestamp) -> Clock {
        Clock::Tokio {
            base,
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::from_system(SystemTime::now()),
            Clock::Tokio { base, origin } => base.plus(origin.elapsed()),
        }
    }

    /// The tokio instant at which this clock will read `at` (or now, if `at` has passed).
    pub fn instant_at(&self, at: Timestamp) -> tokio::time::Instant {
        tokio::time::Instant::now() + at.since(self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(
            Timestamp(0).rfc3339_nanos(),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            Timestamp(1_700_000_000_123_456_789).rfc3339_nanos(),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000_000_000).rfc3339_nanos(),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn since_is_zero_for_earlier_times() {
        assert_eq!(Timestamp(5).since(Timestamp(10)), Duration::ZERO);
        assert_eq!(Timestamp(10).since(Timestamp(4)), Duration::from_nanos(6));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::tokio(Timestamp(1_000));
        assert_eq!(clock.now(), Timestamp(1_000));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(clock.now(), Timestamp(1_000 + 2_000_000_000));
    }
}
