//! Second looks after a container exit event.
//!
//! A runtime may announce an exit before its CRI state shows it: containerd 1.6 publishes
//! `/tasks/exit` and only then reaps the task and marks the container exited, about 35 ms
//! after the SIGKILL on the machine the benchmark ran on. A pass that runs at the event may
//! still see the container RUNNING. The loop looks again every 5 ms for 150 ms, so a restart
//! follows the runtime's own bookkeeping within 5 ms; each look is two list calls, and the
//! series only runs after an exit.

use std::time::Duration;

use tokio::time::Instant;

/// Time between two second looks.
pub const STEP: Duration = Duration::from_millis(5);
/// How long after an exit event the loop keeps looking; past it the relist takes over.
pub const WINDOW: Duration = Duration::from_millis(150);

/// When the next second look is due, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rechecks {
    /// The next look, and the end of the series.
    next: Option<(Instant, Instant)>,
}

impl Rechecks {
    /// An exit was announced at `now`: look again from now on.
    pub fn exit_seen(&mut self, now: Instant) {
        self.next = Some((now + STEP, now + WINDOW));
    }

    /// Called after each pass: a look that is due is used up and the next one scheduled.
    /// Returns the instant the loop must wake by for the next look.
    pub fn due(&mut self, now: Instant) -> Option<Instant> {
        let (at, until) = self.next?;
        if now < at {
            return Some(at);
        }
        let next = now + STEP;
        self.next = (next <= until).then_some((next, until));
        self.next.map(|(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn no_exit_means_no_second_look() {
        let mut r = Rechecks::default();
        assert_eq!(r.due(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn looks_again_every_5_ms_for_150_ms_then_stops() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.exit_seen(t0);
        let mut looks = Vec::new();
        let mut now = t0;
        while let Some(at) = r.due(now) {
            assert!(at > now, "a look is due at {at:?}, not after {now:?}");
            assert!(looks.len() < 100, "the looks never stop: {looks:?}");
            now = at;
            looks.push(now - t0);
        }
        let expected: Vec<Duration> = (1..=30).map(|i| ms(5 * i)).collect();
        assert_eq!(looks, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_before_the_look_is_due_keeps_it() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.exit_seen(t0);
        assert_eq!(r.due(t0 + ms(1)), Some(t0 + ms(5)));
        assert_eq!(r.due(t0 + ms(2)), Some(t0 + ms(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_pass_schedules_the_next_look_from_itself() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.exit_seen(t0);
        assert_eq!(r.due(t0 + ms(12)), Some(t0 + ms(17)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_exit_extends_the_series() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.exit_seen(t0);
        r.exit_seen(t0 + ms(140));
        assert_eq!(r.due(t0 + ms(150)), Some(t0 + ms(155)));
        assert_eq!(r.due(t0 + ms(285)), Some(t0 + ms(290)));
        assert_eq!(r.due(t0 + ms(290)), None);
    }
}
