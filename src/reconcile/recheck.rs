//! Second looks after a container exit event.
//!
//! A runtime may announce an exit before its CRI state shows it: containerd 1.6 publishes
//! `/tasks/exit` and only then reaps the task and marks the container exited. A pass that runs
//! at the event may still see the container RUNNING. Rather than one fixed, long delay, the loop
//! looks again after 5, 10, 20, 40 and 80 ms (cumulative 5 to 155 ms), so the restart follows
//! the runtime's own bookkeeping closely and the cost is a few cheap list calls per exit.

use std::time::Duration;

use tokio::time::Instant;

/// The first second look after an exit event.
pub const FIRST: Duration = Duration::from_millis(5);
/// The last interval between second looks; past it the relist takes over.
pub const LAST: Duration = Duration::from_millis(80);

/// When the next second look is due, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rechecks {
    next: Option<(Instant, Duration)>,
}

impl Rechecks {
    /// An exit was announced at `now`: start the series again.
    pub fn exit_seen(&mut self, now: Instant) {
        self.next = Some((now + FIRST, FIRST));
    }

    /// Called before each pass: a look that is due is used up and the next one scheduled.
    /// Returns the instant the loop must wake by for the next look.
    pub fn due(&mut self, now: Instant) -> Option<Instant> {
        let (at, step) = self.next?;
        if now < at {
            return Some(at);
        }
        let step = step * 2;
        self.next = (step <= LAST).then(|| (now + step, step));
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
    async fn looks_again_at_doubling_intervals_then_stops() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.exit_seen(t0);
        let mut looks = Vec::new();
        let mut now = t0;
        while let Some(at) = r.due(now) {
            assert!(at > now, "a look is due at {at:?}, not after {now:?}");
            assert!(looks.len() < 10, "the looks never stop: {looks:?}");
            now = at;
            looks.push(now - t0);
        }
        assert_eq!(looks, vec![ms(5), ms(15), ms(35), ms(75), ms(155)]);
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
    async fn a_new_exit_restarts_the_series() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.exit_seen(t0);
        assert_eq!(r.due(t0 + ms(5)), Some(t0 + ms(15)));
        r.exit_seen(t0 + ms(6));
        assert_eq!(r.due(t0 + ms(7)), Some(t0 + ms(11)));
    }
}
