//! The probe worker: when to probe a container next and which result to publish.
//!
//! Pure: no IO, no clock reads. Times come in as [`Timestamp`]s and outcomes as
//! [`Outcome`]s; the caller runs the probes and acts on the published [`ProbeResult`]s.
//! This is the kubelet's `prober/worker.go` without its goroutine and ticker.
//!
//! One worker serves one container *instance* and one [`ProbeKind`]. When the container is
//! restarted, the caller drops the worker and creates a new one: that is how the kubelet's
//! "on hold until the container ID changes" ends.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use super::Outcome;
use crate::clock::Timestamp;
use crate::pod::ProbeKind;

/// The result published before the first probe of `kind`: a container is not ready until
/// probed, is alive until proven otherwise, and has not started.
pub fn initial_result(kind: ProbeKind) -> ProbeResult {
    match kind {
        ProbeKind::Liveness => ProbeResult::Success,
        ProbeKind::Readiness => ProbeResult::Failure,
        ProbeKind::Startup => ProbeResult::Unknown,
    }
}

/// Whether a container counts as started (`containerStatus.started`): it has no startup probe
/// (`None`), or its startup probe has published [`ProbeResult::Success`].
pub fn container_started(startup: Option<&ProbeWorker>) -> bool {
    startup.is_none_or(|w| w.result() == ProbeResult::Success)
}

/// A published probe result (the kubelet's `results.Result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// Not known yet (a startup probe before its first verdict).
    Unknown,
    /// Healthy, ready or started.
    Success,
    /// Unhealthy, not ready, or failed to start.
    Failure,
}

/// How many probes a worker has recorded, by outcome (for `prober_probe_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    /// Successes, warnings included.
    pub successful: u64,
    /// Failures.
    pub failed: u64,
    /// Probes that could not be run.
    pub unknown: u64,
}

/// The state of one probe of one container instance.
#[derive(Clone, Debug)]
pub struct ProbeWorker {
    kind: ProbeKind,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    due: Timestamp,
    on_hold: bool,
    result: ProbeResult,
    /// The last counted verdict (success or failure) and how many times in a row it came.
    run: Option<(ProbeResult, u32)>,
    last_message: Option<String>,
    last_probe_at: Option<Timestamp>,
    counts: ProbeCounts,
}

impl ProbeWorker {
    /// A worker for a container instance that started at `started_at`, with a probe whose
    /// defaults have been applied. Unset or non-positive periods and thresholds count as 1,
    /// a negative initial delay as 0.
    pub fn new(kind: ProbeKind, probe: &Probe, started_at: Timestamp) -> ProbeWorker {
        let seconds =
            |v: Option<i32>, default: u64| v.and_then(|s| u64::try_from(s).ok()).unwrap_or(default);
        let threshold = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).unwrap_or(1).max(1);
        let initial_delay = Duration::from_secs(seconds(probe.initial_delay_seconds, 0));
        ProbeWorker {
            kind,
            period: Duration::from_secs(seconds(probe.period_seconds, 10).max(1)),
            success_threshold: threshold(probe.success_threshold),
            failure_threshold: threshold(probe.failure_threshold),
            due: started_at.plus(initial_delay),
            on_hold: false,
            result: initial_result(kind),
            run: None,
            last_message: None,
            last_probe_at: None,
            counts: ProbeCounts::default(),
        }
    }

    /// Pushes the first probe back by `delay`, before any probe has run. The kubelet waits a
    /// random fraction of the period when it has just started, so that a daemon restart does
    /// not fire every probe at once; the caller picks the fraction.
    pub fn delay_first_probe(&mut self, delay: Duration) {
        if self.last_probe_at.is_none() {
            self.due = self.due.plus(delay);
        }
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The probe period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// When the next probe should run: `started_at + initialDelaySeconds` first, then every
    /// `periodSeconds`. `None` while on hold.
    pub fn next_due(&self) -> Option<Timestamp> {
        (!self.on_hold).then_some(self.due)
    }

    /// Whether a probe should run at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.next_due().is_some_and(|due| due <= now)
    }

    /// Whether the worker has stopped probing: after publishing a liveness failure or any
    /// startup result, until a new worker is created for the next container instance.
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// The published result.
    pub fn result(&self) -> ProbeResult {
        self.result
    }

    /// Successes (warnings included) in a row, up to the latest counted probe.
    pub fn consecutive_successes(&self) -> u32 {
        match self.run {
            Some((ProbeResult::Success, n)) => n,
            _ => 0,
        }
    }

    /// Failures in a row, up to the latest counted probe.
    pub fn consecutive_failures(&self) -> u32 {
        match self.run {
            Some((ProbeResult::Failure, n)) => n,
            _ => 0,
        }
    }

    /// The message of the latest probe, if it had one (failures, warnings, errors).
    pub fn last_message(&self) -> Option<&str> {
        self.last_message.as_deref()
    }

    /// When the latest probe was recorded.
    pub fn last_probe_at(&self) -> Option<Timestamp> {
        self.last_probe_at
    }

    /// Probes recorded so far, by outcome.
    pub fn counts(&self) -> ProbeCounts {
        self.counts
    }

    /// Records the outcome of a probe that finished at `at`, schedules the next one, and
    /// returns the newly published result if it changed.
    ///
    /// A result is published after `failureThreshold` failures or `successThreshold`
    /// successes in a row; warnings count as successes. Like the kubelet (`worker.go`:
    /// "Prober error, throw away the result"), a [`Outcome::Unknown`] that reaches the
    /// worker, i.e. one that stayed unknown through the retries, is counted and remembered
    /// but neither extends nor breaks a run. Outcomes recorded while on hold are ignored.
    pub fn record(&mut self, outcome: &Outcome, at: Timestamp) -> Option<ProbeResult> {
        if self.on_hold {
            return None;
        }
        // A probe that overran its period is followed at once, as a Go ticker would.
        self.due = self.due.plus(self.period).max(at);
        self.last_probe_at = Some(at);
        let message = outcome.message();
        self.last_message = (!message.is_empty()).then(|| message.to_owned());
        let verdict = match outcome {
            Outcome::Success | Outcome::Warning(_) => {
                self.counts.successful += 1;
                ProbeResult::Success
            }
            Outcome::Failure(_) => {
                self.counts.failed += 1;
                ProbeResult::Failure
            }
            Outcome::Unknown(_) => {
                self.counts.unknown += 1;
                return None;
            }
        };
        let streak = match self.run {
            Some((last, n)) if last == verdict => n.saturating_add(1),
            _ => 1,
        };
        self.run = Some((verdict, streak));
        let threshold = match verdict {
            ProbeResult::Success => self.success_threshold,
            _ => self.failure_threshold,
        };
        if streak < threshold {
            return None;
        }
        self.publish(verdict)
    }

    /// The pod is being deleted: liveness and startup report success and stop, so that a
    /// container is not restarted while it shuts down; readiness carries on.
    pub fn pod_terminating(&mut self) -> Option<ProbeResult> {
        match self.kind {
            ProbeKind::Liveness | ProbeKind::Startup => {
                let changed = self.set(ProbeResult::Success);
                self.on_hold = true;
                changed
            }
            ProbeKind::Readiness => None,
        }
    }

    fn publish(&mut self, result: ProbeResult) -> Option<ProbeResult> {
        let changed = self.set(result);
        // The container will be restarted (or has started): stop probing this instance,
        // which also avoids exec-ing into a container while it is being killed.
        if (self.kind == ProbeKind::Liveness && result == ProbeResult::Failure)
            || self.kind == ProbeKind::Startup
        {
            self.on_hold = true;
        }
        changed
    }

    fn set(&mut self, result: ProbeResult) -> Option<ProbeResult> {
        let changed = self.result != result;
        self.result = result;
        changed.then_some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;
    const START: Timestamp = Timestamp(1_000 * SEC);

    fn at(seconds: i64) -> Timestamp {
        Timestamp(START.0 + seconds * SEC)
    }

    fn probe(initial_delay: i32, period: i32, success: i32, failure: i32) -> Probe {
        Probe {
            initial_delay_seconds: Some(initial_delay),
            period_seconds: Some(period),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            timeout_seconds: Some(1),
            ..Probe::default()
        }
    }

    fn defaults() -> Probe {
        probe(0, 10, 1, 3)
    }

    fn fail() -> Outcome {
        Outcome::Failure("HTTP probe failed with statuscode: 500".to_owned())
    }

    fn ok() -> Outcome {
        Outcome::Success
    }

    fn unknown() -> Outcome {
        Outcome::Unknown("runtime unreachable".to_owned())
    }

    /// Records `outcomes` one period apart from `first`, returning what each published.
    fn feed(w: &mut ProbeWorker, first: i64, outcomes: &[Outcome]) -> Vec<Option<ProbeResult>> {
        let period = i64::try_from(w.period().as_secs()).unwrap();
        outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| w.record(o, at(first + period * i64::try_from(i).unwrap())))
            .collect()
    }

    #[test]
    fn initial_results_are_not_ready_alive_and_not_started() {
        let p = defaults();
        assert_eq!(
            ProbeWorker::new(ProbeKind::Readiness, &p, START).result(),
            ProbeResult::Failure
        );
        assert_eq!(
            ProbeWorker::new(ProbeKind::Liveness, &p, START).result(),
            ProbeResult::Success
        );
        assert_eq!(
            ProbeWorker::new(ProbeKind::Startup, &p, START).result(),
            ProbeResult::Unknown
        );
    }

    #[test]
    fn first_probe_is_due_after_the_initial_delay() {
        let w = ProbeWorker::new(ProbeKind::Readiness, &probe(15, 10, 1, 3), START);
        assert_eq!(w.next_due(), Some(at(15)));
        assert!(!w.is_due(at(14)));
        assert!(w.is_due(at(15)));
    }

    #[test]
    fn without_initial_delay_the_first_probe_is_due_at_start() {
        let w = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        assert_eq!(w.next_due(), Some(START));
    }

    #[test]
    fn probes_are_due_every_period_after_the_first() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &probe(5, 10, 1, 3), START);
        w.record(&ok(), at(5));
        assert_eq!(w.next_due(), Some(at(15)));
        // A probe that took a while does not shift the schedule.
        w.record(&ok(), at(16));
        assert_eq!(w.next_due(), Some(at(25)));
    }

    #[test]
    fn a_probe_that_overran_its_period_is_followed_at_once() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &probe(0, 2, 1, 3), START);
        w.record(&fail(), at(5));
        assert_eq!(w.next_due(), Some(at(5)));
    }

    #[test]
    fn the_first_probe_can_be_delayed_but_later_ones_cannot() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        w.delay_first_probe(Duration::from_secs(3));
        assert_eq!(w.next_due(), Some(at(3)));
        w.record(&ok(), at(3));
        w.delay_first_probe(Duration::from_secs(3));
        assert_eq!(w.next_due(), Some(at(13)));
    }

    #[test]
    fn readiness_becomes_ready_after_one_success_by_default() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        assert_eq!(w.record(&ok(), at(0)), Some(ProbeResult::Success));
        assert_eq!(w.result(), ProbeResult::Success);
    }

    #[test]
    fn readiness_needs_success_threshold_successes_in_a_row() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &probe(0, 10, 3, 3), START);
        let published = feed(&mut w, 0, &[ok(), ok(), fail(), ok(), ok(), ok()]);
        assert_eq!(
            published,
            [None, None, None, None, None, Some(ProbeResult::Success)]
        );
    }

    #[test]
    fn readiness_is_lost_after_failure_threshold_failures_in_a_row() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        w.record(&ok(), at(0));
        let published = feed(&mut w, 10, &[fail(), fail(), ok(), fail(), fail(), fail()]);
        assert_eq!(
            published,
            [None, None, None, None, None, Some(ProbeResult::Failure)]
        );
        assert_eq!(w.result(), ProbeResult::Failure);
    }

    #[test]
    fn readiness_keeps_probing_after_publishing() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        feed(&mut w, 0, &[fail(), fail(), fail()]);
        assert!(!w.on_hold());
        assert_eq!(w.next_due(), Some(at(30)));
        assert_eq!(w.record(&ok(), at(30)), Some(ProbeResult::Success));
    }

    #[test]
    fn an_unchanged_result_is_not_published_again() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        assert_eq!(
            feed(&mut w, 0, &[fail(), fail(), fail(), fail()]),
            [None; 4]
        );
        assert_eq!(w.consecutive_failures(), 4);
    }

    #[test]
    fn liveness_fails_after_failure_threshold_failures_and_goes_on_hold() {
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        let published = feed(&mut w, 0, &[fail(), fail(), fail()]);
        assert_eq!(published, [None, None, Some(ProbeResult::Failure)]);
        assert!(w.on_hold());
        assert_eq!(w.next_due(), None);
        assert!(!w.is_due(at(1_000)));
        assert_eq!(w.consecutive_failures(), 3);
    }

    #[test]
    fn liveness_successes_publish_nothing_because_alive_is_the_initial_result() {
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        assert_eq!(feed(&mut w, 0, &[ok(), ok()]), [None, None]);
        assert!(!w.on_hold());
    }

    #[test]
    fn a_success_resets_the_liveness_failure_count() {
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        let published = feed(&mut w, 0, &[fail(), fail(), ok(), fail(), fail()]);
        assert_eq!(published, [None; 5]);
        assert_eq!(w.consecutive_failures(), 2);
        assert_eq!(w.result(), ProbeResult::Success);
    }

    #[test]
    fn outcomes_recorded_on_hold_are_ignored() {
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &probe(0, 10, 1, 1), START);
        assert_eq!(w.record(&fail(), at(0)), Some(ProbeResult::Failure));
        let counts = w.counts();
        assert_eq!(w.record(&ok(), at(10)), None);
        assert_eq!(w.result(), ProbeResult::Failure);
        assert_eq!(w.counts(), counts);
    }

    #[test]
    fn startup_success_is_published_and_puts_the_worker_on_hold() {
        let mut w = ProbeWorker::new(ProbeKind::Startup, &defaults(), START);
        assert_eq!(w.record(&fail(), at(0)), None);
        assert_eq!(w.record(&ok(), at(10)), Some(ProbeResult::Success));
        assert!(w.on_hold());
        assert_eq!(w.next_due(), None);
    }

    #[test]
    fn startup_failure_is_published_after_the_threshold_and_puts_the_worker_on_hold() {
        let mut w = ProbeWorker::new(ProbeKind::Startup, &probe(0, 10, 1, 30), START);
        let mut published = feed(&mut w, 0, &vec![fail(); 30]);
        assert_eq!(published.pop(), Some(Some(ProbeResult::Failure)));
        assert!(published.iter().all(Option::is_none));
        assert!(w.on_hold());
    }

    #[test]
    fn warnings_count_as_successes() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        let warning = Outcome::Warning("probe terminated redirects".to_owned());
        assert_eq!(w.record(&warning, at(0)), Some(ProbeResult::Success));
        assert_eq!(w.last_message(), Some("probe terminated redirects"));
        assert_eq!(w.counts().successful, 1);
    }

    #[test]
    fn unknown_outcomes_neither_extend_nor_break_a_run() {
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        let published = feed(&mut w, 0, &[fail(), unknown(), unknown(), fail()]);
        assert_eq!(published, [None; 4]);
        assert_eq!(w.consecutive_failures(), 2);
        assert_eq!(w.record(&fail(), at(40)), Some(ProbeResult::Failure));
    }

    #[test]
    fn unknown_outcomes_alone_never_fail_liveness() {
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        assert_eq!(feed(&mut w, 0, &vec![unknown(); 10]), [None; 10]);
        assert_eq!(w.result(), ProbeResult::Success);
        assert_eq!(w.counts().unknown, 10);
        assert_eq!(w.last_message(), Some("runtime unreachable"));
        // They still advance the schedule.
        assert_eq!(w.next_due(), Some(at(100)));
    }

    #[test]
    fn counters_and_last_message_follow_the_latest_probe() {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        feed(&mut w, 0, &[ok(), fail()]);
        assert_eq!(w.consecutive_failures(), 1);
        assert_eq!(w.consecutive_successes(), 0);
        assert_eq!(
            w.last_message(),
            Some("HTTP probe failed with statuscode: 500")
        );
        assert_eq!(w.last_probe_at(), Some(at(10)));
        w.record(&ok(), at(20));
        assert_eq!(w.consecutive_successes(), 1);
        assert_eq!(w.last_message(), None);
        assert_eq!(
            w.counts(),
            ProbeCounts {
                successful: 2,
                failed: 1,
                unknown: 0
            }
        );
    }

    #[test]
    fn unset_or_invalid_periods_and_thresholds_count_as_one() {
        let w = ProbeWorker::new(ProbeKind::Readiness, &probe(-5, 0, 0, -1), START);
        assert_eq!(w.period(), Duration::from_secs(1));
        assert_eq!(w.next_due(), Some(START));
        let mut w = w;
        assert_eq!(w.record(&ok(), START), Some(ProbeResult::Success));
        assert_eq!(w.record(&fail(), at(1)), Some(ProbeResult::Failure));
    }

    #[test]
    fn a_terminating_pod_stops_liveness_and_startup_with_success() {
        let mut live = ProbeWorker::new(ProbeKind::Liveness, &defaults(), START);
        feed(&mut live, 0, &[fail(), fail()]);
        assert_eq!(live.pod_terminating(), None);
        assert!(live.on_hold());
        assert_eq!(live.record(&fail(), at(20)), None);

        let mut startup = ProbeWorker::new(ProbeKind::Startup, &defaults(), START);
        assert_eq!(startup.pod_terminating(), Some(ProbeResult::Success));

        let mut ready = ProbeWorker::new(ProbeKind::Readiness, &defaults(), START);
        assert_eq!(ready.pod_terminating(), None);
        assert!(!ready.on_hold());
    }

    #[test]
    fn only_the_startup_probe_runs_until_the_container_has_started() {
        assert!(ProbeKind::Startup.runs_when(false));
        assert!(!ProbeKind::Liveness.runs_when(false));
        assert!(!ProbeKind::Readiness.runs_when(false));
        assert!(!ProbeKind::Startup.runs_when(true));
        assert!(ProbeKind::Liveness.runs_when(true));
        assert!(ProbeKind::Readiness.runs_when(true));
    }

    #[test]
    fn a_container_has_started_without_a_startup_probe_or_once_it_succeeded() {
        assert!(container_started(None));
        let mut w = ProbeWorker::new(ProbeKind::Startup, &defaults(), START);
        assert!(!container_started(Some(&w)));
        w.record(&ok(), at(0));
        assert!(container_started(Some(&w)));
    }

    #[test]
    fn a_failed_startup_probe_does_not_start_the_container() {
        let mut w = ProbeWorker::new(ProbeKind::Startup, &probe(0, 10, 1, 1), START);
        w.record(&fail(), at(0));
        assert!(!container_started(Some(&w)));
    }
}
