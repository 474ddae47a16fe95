//! The kubelet's graceful node shutdown settings as one list of priority groups: either
//! `shutdownGracePeriodByPodPriority` as given, or `shutdownGracePeriod` and
//! `shutdownGracePeriodCriticalPods` turned into two groups, as the kubelet's
//! `migrateConfig` does. Pure.

use std::time::Duration;

use crate::pod::priority::SYSTEM_CRITICAL;

/// podvisor's `shutdownGracePeriod` when no shutdown key is set (the kubelet's is 0: off,
/// since its shutdown manager runs unasked; `podvisor shutdown` runs only when called).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// podvisor's `shutdownGracePeriodCriticalPods` when no shutdown key is set.
pub const DEFAULT_CRITICAL_PODS: Duration = Duration::from_secs(10);

/// One `shutdownGracePeriodByPodPriority` entry: pods from `priority` up to the next entry's
/// priority get `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriorityPeriod {
    /// The lowest priority of the group.
    pub priority: i32,
    /// How long the group may take (`shutdownGracePeriodSeconds`), and the most any of its
    /// pods is given.
    pub period: Duration,
}

/// The priority groups, lowest priority first; none: graceful shutdown is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownPolicy {
    periods: Vec<PriorityPeriod>,
}

impl ShutdownPolicy {
    /// `shutdownGracePeriodByPodPriority`, in any order.
    pub fn by_priority(mut periods: Vec<PriorityPeriod>) -> ShutdownPolicy {
        periods.sort();
        ShutdownPolicy { periods }
    }

    /// `shutdownGracePeriod` and `shutdownGracePeriodCriticalPods` as the kubelet migrates
    /// them: pods from priority 0 get the first minus the second, critical pods (from
    /// 2000000000) the second, in whole seconds. Off when the total is 0 or the critical
    /// part exceeds it.
    pub fn migrate(total: Duration, critical: Duration) -> ShutdownPolicy {
        let (total, critical) = (total.as_secs(), critical.as_secs());
        if total == 0 || critical > total {
            return ShutdownPolicy::default();
        }
        ShutdownPolicy::by_priority(vec![
            PriorityPeriod {
                priority: 0,
                period: Duration::from_secs(total - critical),
            },
            PriorityPeriod {
                priority: SYSTEM_CRITICAL,
                period: Duration::from_secs(critical),
            },
        ])
    }

    /// podvisor's default: 30 s in all, the last 10 s for critical pods.
    pub fn podvisor_default() -> ShutdownPolicy {
        ShutdownPolicy::migrate(DEFAULT_GRACE_PERIOD, DEFAULT_CRITICAL_PODS)
    }

    /// The groups, lowest priority first.
    pub fn periods(&self) -> &[PriorityPeriod] {
        &self.periods
    }

    /// Whether graceful shutdown is off: no group at all.
    pub fn is_off(&self) -> bool {
        self.periods.is_empty()
    }

    /// The group a pod of `priority` falls in, as the kubelet's `groupByPriority` finds it:
    /// the highest group whose priority it reaches; pods below the lowest group go in the
    /// lowest. `None` when there is no group.
    pub fn group_of(&self, priority: i32) -> Option<usize> {
        let last = self.periods.len().checked_sub(1)?;
        let reached = self.periods.partition_point(|g| g.priority <= priority);
        Some(reached.saturating_sub(1).min(last))
    }

    /// The sum of the groups' periods (the kubelet's `periodRequested`).
    pub fn total(&self) -> Duration {
        self.periods.iter().map(|g| g.period).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(priority: i32, seconds: u64) -> PriorityPeriod {
        PriorityPeriod {
            priority,
            period: Duration::from_secs(seconds),
        }
    }

    fn migrate(total: u64, critical: u64) -> Vec<PriorityPeriod> {
        ShutdownPolicy::migrate(Duration::from_secs(total), Duration::from_secs(critical))
            .periods()
            .to_vec()
    }

    #[test]
    fn the_two_durations_migrate_to_two_groups_as_the_kubelets_test_says() {
        assert_eq!(
            migrate(300, 120),
            [group(0, 180), group(2_000_000_000, 120)]
        );
        assert_eq!(migrate(100, 0), [group(0, 100), group(2_000_000_000, 0)]);
        assert_eq!(migrate(0, 0), [], "empty configuration: off");
        assert_eq!(migrate(1, 100), [], "wrong configuration: off");
    }

    #[test]
    fn podvisors_default_is_thirty_seconds_the_last_ten_for_critical_pods() {
        let p = ShutdownPolicy::podvisor_default();
        assert_eq!(p.periods(), [group(0, 20), group(2_000_000_000, 10)]);
        assert_eq!(p.total(), Duration::from_secs(30));
    }

    #[test]
    fn pods_fall_in_the_highest_group_they_reach_as_the_kubelets_group_by_priority() {
        // the kubelet's "pod priority" case: groups 1..4, pods 0..5
        let p = ShutdownPolicy::by_priority(vec![
            group(4, 40),
            group(2, 20),
            group(1, 10),
            group(3, 30),
        ]);
        let groups: Vec<Option<usize>> = (0..=5).map(|prio| p.group_of(prio)).collect();
        assert_eq!(
            groups,
            [Some(0), Some(0), Some(1), Some(2), Some(3), Some(3)]
        );
        assert_eq!(p.group_of(i32::MIN), Some(0));
        assert_eq!(p.group_of(i32::MAX), Some(3));
        assert_eq!(ShutdownPolicy::default().group_of(0), None);
        assert_eq!(p.total(), Duration::from_secs(100));
    }
}
