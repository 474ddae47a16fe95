//! Pure: which pressure conditions hold, from the figures, the thresholds and time. As the
//! kubelet's eviction manager: a threshold is met while its figure is below its amount, and a
//! condition stays on for the pressure transition period after its last threshold was met,
//! so that a figure hovering at a threshold does not make the condition flap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::figures::NodeFigures;
use super::thresholds::{Pressure, Signal, Thresholds};
use crate::clock::Timestamp;

/// The kubelet's default `evictionPressureTransitionPeriod`.
pub const TRANSITION_PERIOD: Duration = Duration::from_secs(5 * 60);

/// The signals whose thresholds are met now. A figure that could not be read meets none.
pub fn met(figures: &NodeFigures, thresholds: &Thresholds) -> BTreeSet<Signal> {
    thresholds
        .iter()
        .filter(|t| {
            figures
                .of(t.signal)
                .is_some_and(|f| f.available < t.amount.of(f.capacity))
        })
        .map(|t| t.signal)
        .collect()
}

/// When each condition's thresholds were last met.
#[derive(Clone, Debug, Default)]
pub struct PressureTracker {
    last_met: BTreeMap<Pressure, Timestamp>,
}

impl PressureTracker {
    /// Records the signals met at `now`; returns the conditions that hold: those met now or
    /// within the last `period` (a zero period: only those met now; the kubelet would then
    /// report none at all).
    pub fn observe(
        &mut self,
        met: &BTreeSet<Signal>,
        now: Timestamp,
        period: Duration,
    ) -> BTreeSet<Pressure> {
        for signal in met {
            self.last_met.insert(signal.pressure(), now);
        }
        self.last_met
            .iter()
            .filter(|(_, at)| **at == now || now.since(**at) < period)
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::figures::{Figure, FsFigures};

    const MI: u64 = 1024 * 1024;

    fn figures(memory_free_mi: u64, disk_free_pct: u64) -> NodeFigures {
        NodeFigures {
            memory: Some(Figure {
                available: memory_free_mi * MI,
                capacity: 8192 * MI,
            }),
            nodefs: Some(FsFigures {
                bytes: Figure {
                    available: disk_free_pct,
                    capacity: 100,
                },
                inodes: Some(Figure {
                    available: 50,
                    capacity: 100,
                }),
            }),
            imagefs: None,
            pids: Some(Figure {
                available: 10,
                capacity: 32768,
            }),
        }
    }

    #[test]
    fn a_figure_below_its_default_threshold_is_met_and_no_other() {
        let t = Thresholds::default();
        assert!(met(&figures(4096, 50), &t).is_empty());
        assert_eq!(
            met(&figures(99, 50), &t),
            BTreeSet::from([Signal::MemoryAvailable])
        );
        assert_eq!(
            met(&figures(4096, 9), &t),
            BTreeSet::from([Signal::NodefsAvailable])
        );
        // pid.available has no default threshold: 10 PIDs left is no pressure by default
        let pid = Thresholds::parse_flag("pid.available<5%").expect("flag");
        assert_eq!(
            met(&figures(4096, 50), &pid),
            BTreeSet::from([Signal::PidAvailable])
        );
    }

    #[test]
    fn an_unread_figure_meets_no_threshold() {
        assert!(met(&NodeFigures::default(), &Thresholds::default()).is_empty());
    }

    #[test]
    fn pressure_holds_for_the_transition_period_after_the_last_time_it_was_met() {
        let mut p = PressureTracker::default();
        let t0 = Timestamp(1_000_000_000);
        let disk = BTreeSet::from([Signal::NodefsAvailable]);
        assert_eq!(
            p.observe(&disk, t0, TRANSITION_PERIOD),
            BTreeSet::from([Pressure::Disk])
        );
        let later = |s| t0.plus(Duration::from_secs(s));
        assert_eq!(
            p.observe(&BTreeSet::new(), later(299), TRANSITION_PERIOD),
            BTreeSet::from([Pressure::Disk]),
            "still within five minutes of the last time it was met"
        );
        assert!(
            p.observe(&BTreeSet::new(), later(300), TRANSITION_PERIOD)
                .is_empty()
        );
        let both = BTreeSet::from([Signal::MemoryAvailable, Signal::ImagefsAvailable]);
        assert_eq!(
            p.observe(&both, later(301), Duration::ZERO),
            BTreeSet::from([Pressure::Memory, Pressure::Disk]),
            "with no transition period a condition holds while met"
        );
        assert!(
            p.observe(&BTreeSet::new(), later(302), Duration::ZERO)
                .is_empty()
        );
    }
}
