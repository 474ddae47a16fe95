//! Which images to remove (pure), as the kubelet's image garbage collector decides, with one
//! difference that matters on a node that cannot reach its registry.
//!
//! The kubelet's rules (`pkg/kubelet/images/image_gc_manager.go`):
//! * It records, per image, when it first saw it and when it last saw it in use (by any
//!   container, running or not).
//! * Unused, unpinned images are candidates, least recently used first (then first seen).
//! * `imageMaximumGCAge` (off by default): a candidate unused for longer goes, once podvisor
//!   has itself been running for longer.
//! * When the image filesystem is at least `imageGCHighThresholdPercent` full, candidates go
//!   until the bytes freed bring it down to `imageGCLowThresholdPercent`; one first seen less
//!   than `imageMinimumGCAge` ago stays (it may have just been pulled for a container).
//!
//! Better than the kubelet: an image that a current manifest names is never a candidate, even
//! while its pod has no container (stopped, crash-looping before it, waiting on an init
//! container). The kubelet can remove the etcd image while etcd is down, and on a node that
//! cannot pull, etcd then never starts again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::runtime::RuntimeImage;

/// The kubelet's image GC settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// `imageGCHighThresholdPercent`: usage (percent) at which images are removed; 100: never.
    pub high_percent: u8,
    /// `imageGCLowThresholdPercent`: usage (percent) to free down to.
    pub low_percent: u8,
    /// `imageMinimumGCAge`.
    pub min_age: Duration,
    /// `imageMaximumGCAge` (zero: off).
    pub max_age: Duration,
}

impl Default for GcPolicy {
    /// The kubelet's: 85 %, 80 %, 2 minutes, no maximum age.
    fn default() -> GcPolicy {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }
}

/// What is known of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// When podvisor first saw it.
    pub first_detected: Timestamp,
    /// When podvisor last saw it in use (zero: never).
    pub last_used: Timestamp,
    /// Bytes.
    pub size: u64,
    /// Pinned by the runtime.
    pub pinned: bool,
}

/// The image filesystem's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsUsage {
    /// Free.
    pub available: u64,
    /// In all.
    pub capacity: u64,
}

/// Why an image is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Unused for longer than `imageMaximumGCAge`.
    Age,
    /// The filesystem is over the high threshold.
    Space,
}

/// The decision of one collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collection {
    /// Images to remove, in order, with why.
    pub remove: Vec<(String, Why)>,
    /// Bytes the thresholds ask to free (0 when under the high threshold).
    pub wanted: u64,
    /// Bytes the removals for space free.
    pub freed: u64,
    /// Usage in percent, when the filesystem's figures were known.
    pub usage_percent: Option<u64>,
}

impl Collection {
    /// The thresholds asked for more than the candidates hold.
    pub fn fell_short(&self) -> bool {
        self.freed < self.wanted
    }
}

/// The image records, kept across collections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    by_id: BTreeMap<String, Record>,
}

impl Records {
    /// The kubelet's `detectImages`: records images first seen now, marks those in use as used
    /// now, and forgets images that are gone.
    pub fn detect(&mut self, images: &[RuntimeImage], in_use: &BTreeSet<String>, now: Timestamp) {
        let present: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.by_id.retain(|id, _| present.contains(id.as_str()));
        for image in images {
            let r = self.by_id.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: Timestamp(0),
                size: image.size,
                pinned: image.pinned,
            });
            r.size = image.size;
            r.pinned = image.pinned;
            if in_use.contains(&image.id) {
                r.last_used = now;
            }
        }
    }

    /// The record of an image.
    pub fn get(&self, id: &str) -> Option<&Record> {
        self.by_id.get(id)
    }

    /// Forgets a removed image.
    pub fn forget(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// What to remove now. `in_use`: images of the runtime's containers and its sandbox
    /// image; `named`: images a current manifest names; `began`: when podvisor started
    /// collecting; `fs`: the image filesystem's figures, if they could be read.
    pub fn collect(
        &self,
        in_use: &BTreeSet<String>,
        named: &BTreeSet<String>,
        fs: Option<FsUsage>,
        policy: GcPolicy,
        began: Timestamp,
        now: Timestamp,
    ) -> Collection {
        let mut candidates = self.candidates(in_use, named);
        let mut out = Collection::default();
        if !policy.max_age.is_zero() && now.since(began) > policy.max_age {
            candidates.retain(|(id, r)| {
                let old = now.since(r.last_used) > policy.max_age;
                if old {
                    out.remove.push(((*id).clone(), Why::Age));
                }
                !old
            });
        }
        let Some(fs) = fs.filter(|f| f.capacity > 0) else {
            return out;
        };
        let available = fs.available.min(fs.capacity);
        let usage = 100 - available.saturating_mul(100) / fs.capacity;
        out.usage_percent = Some(usage);
        if usage < u64::from(policy.high_percent) || policy.high_percent >= 100 {
            return out;
        }
        self.free(candidates, policy, now, Some(fs), &mut out);
        out
    }

    /// Under disk pressure, as the kubelet's eviction manager reclaims: every candidate old
    /// enough goes, whatever the thresholds.
    pub fn reclaim(
        &self,
        in_use: &BTreeSet<String>,
        named: &BTreeSet<String>,
        policy: GcPolicy,
        now: Timestamp,
    ) -> Collection {
        let mut out = Collection {
            wanted: u64::MAX,
            ..Collection::default()
        };
        self.free(self.candidates(in_use, named), policy, now, None, &mut out);
        out.wanted = out.freed;
        out
    }

    /// Unused, unnamed, unpinned images, least recently used first, then first seen.
    fn candidates<'a>(
        &'a self,
        in_use: &BTreeSet<String>,
        named: &BTreeSet<String>,
    ) -> Vec<(&'a String, &'a Record)> {
        let mut candidates: Vec<(&String, &Record)> = self
            .by_id
            .iter()
            .filter(|(id, r)| !in_use.contains(*id) && !named.contains(*id) && !r.pinned)
            .collect();
        candidates.sort_by_key(|(id, r)| (r.last_used, r.first_detected, (*id).clone()));
        candidates
    }

    /// Removes candidates old enough until `out.wanted` bytes are freed (all of them without
    /// `fs`), or, with `fs`, until the low threshold is reached.
    fn free(
        &self,
        candidates: Vec<(&String, &Record)>,
        policy: GcPolicy,
        now: Timestamp,
        fs: Option<FsUsage>,
        out: &mut Collection,
    ) {
        if let Some(fs) = fs {
            let available = fs.available.min(fs.capacity);
            let low = u128::from(policy.low_percent.min(100));
            let target_free =
                u64::try_from(u128::from(fs.capacity) * (100 - low) / 100).unwrap_or(u64::MAX);
            out.wanted = target_free.saturating_sub(available);
        }
        for (id, r) in candidates {
            if out.freed >= out.wanted {
                break;
            }
            if r.last_used >= now || now.since(r.first_detected) < policy.min_age {
                continue;
            }
            out.remove.push((id.clone(), Why::Space));
            out.freed += r.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60 * 1_000_000_000;

    fn at(minutes: u64) -> Timestamp {
        Timestamp(i64::try_from(minutes * MIN).expect("fits"))
    }

    fn image(id: &str, size: u64) -> RuntimeImage {
        RuntimeImage {
            id: id.to_owned(),
            tags: vec![format!("example.org/{id}:1")],
            digests: Vec::new(),
            size,
            pinned: false,
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn removed(c: &Collection) -> Vec<&str> {
        c.remove.iter().map(|(id, _)| id.as_str()).collect()
    }

    const FULL: FsUsage = FsUsage {
        available: 10,
        capacity: 100,
    };

    #[test]
    fn under_the_high_threshold_nothing_is_removed() {
        let mut r = Records::default();
        r.detect(&[image("a", 50)], &set(&[]), at(0));
        let fs = FsUsage {
            available: 16,
            capacity: 100,
        };
        let c = r.collect(
            &set(&[]),
            &set(&[]),
            Some(fs),
            GcPolicy::default(),
            at(0),
            at(10),
        );
        assert_eq!(c.usage_percent, Some(84));
        assert!(c.remove.is_empty() && c.wanted == 0);
    }

    #[test]
    fn over_it_the_least_recently_used_go_until_the_low_threshold_is_reached() {
        let mut r = Records::default();
        let images = [
            image("old", 5),
            image("older", 4),
            image("recent", 30),
            image("busy", 1),
        ];
        r.detect(&images, &set(&["old", "older", "recent"]), at(0));
        r.detect(&images, &set(&["old", "recent"]), at(1));
        r.detect(&images, &set(&["recent", "busy"]), at(2));
        // 90 % used; down to 80 % wants 10 bytes: older (last used at 0) and old (at 1) free
        // 9, so recent (at 2) goes too.
        let c = r.collect(
            &set(&["busy"]),
            &set(&[]),
            Some(FULL),
            GcPolicy::default(),
            at(0),
            at(10),
        );
        assert_eq!(c.wanted, 10);
        assert_eq!(removed(&c), ["older", "old", "recent"]);
        assert_eq!(c.freed, 39);
        assert!(!c.fell_short());
    }

    #[test]
    fn images_in_use_pinned_named_by_a_manifest_or_too_new_are_never_removed() {
        let mut r = Records::default();
        let mut pinned = image("pause", 1);
        pinned.pinned = true;
        let images = [
            image("used", 10),
            pinned,
            image("etcd", 10),
            image("spare", 1),
        ];
        r.detect(&images, &set(&["used"]), at(0));
        r.detect(
            &[images.to_vec(), vec![image("new", 10)]].concat(),
            &set(&["used"]),
            at(9),
        );
        let c = r.collect(
            &set(&["used"]),
            &set(&["etcd"]),
            Some(FULL),
            GcPolicy::default(),
            at(0),
            at(10),
        );
        assert_eq!(
            removed(&c),
            ["spare"],
            "new was first seen 1 minute ago, under the 2m minimum"
        );
        assert!(c.fell_short(), "wanted {} freed {}", c.wanted, c.freed);
    }

    #[test]
    fn with_a_maximum_age_images_unused_that_long_go_whatever_the_usage() {
        let policy = GcPolicy {
            max_age: Duration::from_secs(60 * 60),
            ..GcPolicy::default()
        };
        let mut r = Records::default();
        let images = [image("stale", 1), image("fresh", 1)];
        r.detect(&images, &set(&["stale", "fresh"]), at(0));
        r.detect(&images, &set(&["fresh"]), at(50));
        // podvisor itself must have run longer than the maximum age first
        let c = r.collect(&set(&[]), &set(&[]), None, policy, at(0), at(59));
        assert!(c.remove.is_empty());
        let c = r.collect(&set(&[]), &set(&[]), None, policy, at(0), at(70));
        assert_eq!(c.remove, [("stale".to_owned(), Why::Age)]);
    }

    #[test]
    fn a_high_threshold_of_100_turns_collection_for_space_off() {
        let policy = GcPolicy {
            high_percent: 100,
            ..GcPolicy::default()
        };
        let mut r = Records::default();
        r.detect(&[image("a", 1)], &set(&[]), at(0));
        let full = FsUsage {
            available: 0,
            capacity: 100,
        };
        assert!(
            r.collect(&set(&[]), &set(&[]), Some(full), policy, at(0), at(10))
                .remove
                .is_empty()
        );
    }

    #[test]
    fn images_gone_from_the_runtime_are_forgotten() {
        let mut r = Records::default();
        r.detect(&[image("a", 1), image("b", 1)], &set(&[]), at(0));
        r.detect(&[image("b", 1)], &set(&[]), at(1));
        assert!(r.get("a").is_none());
        assert_eq!(r.get("b").map(|x| x.first_detected), Some(at(0)));
    }

    #[test]
    fn under_disk_pressure_every_candidate_old_enough_goes_whatever_the_thresholds() {
        let mut r = Records::default();
        let images = [
            image("a", 1),
            image("b", 2),
            image("used", 3),
            image("named", 4),
        ];
        r.detect(&images, &set(&["used"]), at(0));
        r.detect(
            &[images.to_vec(), vec![image("new", 5)]].concat(),
            &set(&["used"]),
            at(9),
        );
        let c = r.reclaim(
            &set(&["used"]),
            &set(&["named"]),
            GcPolicy::default(),
            at(10),
        );
        assert_eq!(removed(&c), ["a", "b"]);
        assert_eq!((c.freed, c.wanted), (3, 3));
        assert!(!c.fell_short());
    }
}
