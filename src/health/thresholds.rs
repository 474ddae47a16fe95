//! The kubelet's hard eviction thresholds (`evictionHard`, `--eviction-hard`): which figure
//! of the node, under what amount, puts it under memory, disk or PID pressure. podvisor
//! evicts nothing (static pods are never evicted, under the kubelet either); the thresholds
//! only decide the Node's pressure conditions, for the scheduler and the operator.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::quantity;

/// A node figure a threshold is set on, named as the kubelet names its eviction signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `memory.available`: memory not in the working set.
    MemoryAvailable,
    /// `nodefs.available`: free bytes on the filesystem of the root dir.
    NodefsAvailable,
    /// `nodefs.inodesFree`: free inodes there.
    NodefsInodesFree,
    /// `imagefs.available`: free bytes on the runtime's image filesystem, when it is not the
    /// nodefs.
    ImagefsAvailable,
    /// `imagefs.inodesFree`: free inodes there.
    ImagefsInodesFree,
    /// `pid.available`: process IDs left.
    PidAvailable,
}

/// The node conditions the signals feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pressure {
    /// `MemoryPressure`.
    Memory,
    /// `DiskPressure`.
    Disk,
    /// `PIDPressure`.
    Pid,
}

impl Pressure {
    /// All three, in the order the kubelet lists their conditions.
    pub const ALL: [Pressure; 3] = [Pressure::Memory, Pressure::Disk, Pressure::Pid];
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
        Signal::PidAvailable,
    ];

    /// The kubelet's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn named(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The condition it puts the node under.
    pub fn pressure(self) -> Pressure {
        match self {
            Signal::MemoryAvailable => Pressure::Memory,
            Signal::PidAvailable => Pressure::Pid,
            _ => Pressure::Disk,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold's amount: absolute (bytes, inodes, PIDs) or a share of the capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// `100Mi`, `1000`.
    Absolute(u64),
    /// `10%`, kept as a fraction (0.10).
    Share(f64),
}

impl Amount {
    /// The amount against a capacity.
    pub fn of(self, capacity: u64) -> u64 {
        match self {
            Amount::Absolute(n) => n,
            Amount::Share(f) => (capacity as f64 * f) as u64,
        }
    }
}

/// One threshold: the node is under pressure while `signal` is below `amount`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// Below what.
    pub amount: Amount,
}

/// A threshold that cannot be read, naming it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ThresholdError {
    /// Not an eviction signal the kubelet knows.
    #[error(
        "evictionHard: unknown signal {0:?} (known: memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree, pid.available)"
    )]
    UnknownSignal(String),
    /// Not `<signal><amount>` with `<`.
    #[error("evictionHard: {0:?} is not of the form signal<amount (e.g. memory.available<100Mi)")]
    Form(String),
    /// Not a quantity or a percentage in 0–100.
    #[error(
        "evictionHard: {signal}: {amount:?} is neither a quantity nor a percentage from 0% to 100%"
    )]
    Amount {
        /// The signal.
        signal: String,
        /// What was given.
        amount: String,
    },
}

/// The hard eviction thresholds in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds(Vec<Threshold>);

impl Default for Thresholds {
    /// The kubelet's defaults on Linux: `memory.available<100Mi`, `nodefs.available<10%`,
    /// `nodefs.inodesFree<5%`, `imagefs.available<15%`, `imagefs.inodesFree<5%`.
    fn default() -> Thresholds {
        let pairs = [
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("nodefs.inodesFree", "5%"),
            ("imagefs.available", "15%"),
            ("imagefs.inodesFree", "5%"),
        ];
        Thresholds::from_pairs(pairs).expect("the kubelet's defaults parse")
    }
}

fn amount(signal: &str, text: &str) -> Result<Amount, ThresholdError> {
    let bad = || ThresholdError::Amount {
        signal: signal.to_owned(),
        amount: text.to_owned(),
    };
    let text = text.trim();
    if let Some(pct) = text.strip_suffix('%') {
        let f: f64 = pct.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&f) {
            return Err(bad());
        }
        return Ok(Amount::Share(f / 100.0));
    }
    let n = quantity::value(text).map_err(|_| bad())?;
    u64::try_from(n).map(Amount::Absolute).map_err(|_| bad())
}

impl Thresholds {
    /// From `(signal, amount)` pairs, as the config file's `evictionHard` map gives them.
    /// As under the kubelet, a map replaces the defaults as a whole: a signal left out has
    /// no threshold.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Thresholds, ThresholdError> {
        let mut out = Vec::new();
        for (name, value) in pairs {
            let signal = Signal::named(name.trim())
                .ok_or_else(|| ThresholdError::UnknownSignal(name.trim().to_owned()))?;
            out.push(Threshold {
                signal,
                amount: amount(name, value)?,
            });
        }
        // one order whatever the source's (a map's keys sort differently)
        out.sort_by_key(|t| t.signal);
        Ok(Thresholds(out))
    }

    /// From the config file's `evictionHard` map.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Thresholds, ThresholdError> {
        Thresholds::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// From the `--eviction-hard` flag: `memory.available<100Mi,nodefs.available<10%`.
    pub fn parse_flag(flag: &str) -> Result<Thresholds, ThresholdError> {
        let mut pairs = Vec::new();
        for part in flag.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('<')
                .ok_or_else(|| ThresholdError::Form(part.to_owned()))?;
            pairs.push((name, value));
        }
        Thresholds::from_pairs(pairs)
    }

    /// Each threshold.
    pub fn iter(&self) -> impl Iterator<Item = &Threshold> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_thresholds_are_the_kubelets_on_linux() {
        let t = Thresholds::default();
        let got: Vec<_> = t.iter().map(|t| (t.signal, t.amount)).collect();
        assert_eq!(
            got,
            [
                (Signal::MemoryAvailable, Amount::Absolute(100 * 1024 * 1024)),
                (Signal::NodefsAvailable, Amount::Share(0.10)),
                (Signal::NodefsInodesFree, Amount::Share(0.05)),
                (Signal::ImagefsAvailable, Amount::Share(0.15)),
                (Signal::ImagefsInodesFree, Amount::Share(0.05)),
            ]
        );
    }

    #[test]
    fn the_flag_reads_the_kubelets_form_and_replaces_the_defaults() {
        let t = Thresholds::parse_flag("memory.available<1Gi, pid.available<10%").expect("flag");
        let got: Vec<_> = t.iter().map(|t| (t.signal, t.amount)).collect();
        assert_eq!(
            got,
            [
                (Signal::MemoryAvailable, Amount::Absolute(1 << 30)),
                (Signal::PidAvailable, Amount::Share(0.10)),
            ]
        );
        assert_eq!(Amount::Share(0.10).of(1000), 100);
    }

    #[test]
    fn a_bad_threshold_is_refused_naming_what_is_wrong() {
        assert_eq!(
            Thresholds::parse_flag("memory.free<1Gi"),
            Err(ThresholdError::UnknownSignal("memory.free".into()))
        );
        assert_eq!(
            Thresholds::parse_flag("memory.available=1Gi"),
            Err(ThresholdError::Form("memory.available=1Gi".into()))
        );
        let e = Thresholds::parse_flag("nodefs.available<120%").unwrap_err();
        assert!(e.to_string().contains("nodefs.available"), "{e}");
        assert!(Thresholds::parse_flag("memory.available<lots").is_err());
    }

    #[test]
    fn signals_feed_the_kubelets_three_pressure_conditions() {
        assert_eq!(Signal::MemoryAvailable.pressure(), Pressure::Memory);
        assert_eq!(Signal::ImagefsInodesFree.pressure(), Pressure::Disk);
        assert_eq!(Signal::NodefsAvailable.pressure(), Pressure::Disk);
        assert_eq!(Signal::PidAvailable.pressure(), Pressure::Pid);
    }
}
