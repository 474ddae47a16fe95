//! Figures and their summaries: median, min and max of the samples, the ratio and difference
//! to a floor figure of the same run, the target, and the markdown table and JSON made of
//! them. Pure: no clock, no IO.

use std::fmt::Write as _;

use serde::Serialize;

/// What a figure counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Milliseconds of wall-clock time.
    Ms,
    /// Milliseconds of CPU time (user + system).
    CpuMs,
    /// Mebibytes.
    MiB,
    /// Percent of one core.
    PercentCore,
    /// Mebibytes per second.
    MiBps,
    /// A plain count.
    Count,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::CpuMs => "CPU ms",
            Unit::MiB => "MiB",
            Unit::PercentCore => "% core",
            Unit::MiBps => "MiB/s",
            Unit::Count => "count",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Unit::Ms | Unit::CpuMs | Unit::MiB | Unit::MiBps => format!("{v:.1}"),
            Unit::PercentCore => format!("{v:.3}"),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

/// Which statistic a target constrains.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// The median of the samples.
    Median,
    /// The largest sample: the bound must hold every time.
    Max,
}

/// A target from the issue, checked against this run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// `stat ≤ bound`.
    AtMost {
        /// Which statistic.
        stat: Stat,
        /// The bound, in the figure's unit.
        bound: f64,
    },
    /// `stat ≤ floor median + slack`.
    FloorPlus {
        /// Which statistic.
        stat: Stat,
        /// The allowed overhead, in the figure's unit.
        slack: f64,
    },
    /// `stat ≥ factor × floor median`: for rates, where more is better.
    FloorTimesAtLeast {
        /// Which statistic.
        stat: Stat,
        /// The fraction of the floor's rate to reach.
        factor: f64,
    },
}

impl Target {
    fn describe(self, unit: Unit) -> String {
        let (stat, text) = match self {
            Target::AtMost { stat, bound } => (stat, format!("≤ {}", unit.format(bound))),
            Target::FloorPlus { stat, slack } => {
                (stat, format!("≤ floor + {}", unit.format(slack)))
            }
            Target::FloorTimesAtLeast { stat, factor } => (stat, format!("≥ {factor:.2} × floor")),
        };
        match stat {
            Stat::Median => format!("{text} (median)"),
            Stat::Max => format!("{text} (every run)"),
        }
    }
}

/// One measured figure with all its samples.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Stable identifier, used in JSON and to name a floor (`create.host`).
    pub id: &'static str,
    /// What the table shows.
    pub title: String,
    /// Unit of every sample.
    pub unit: Unit,
    /// Samples in measurement order.
    pub samples: Vec<f64>,
    /// The id of the floor figure this one is compared with.
    pub floor: Option<&'static str>,
    /// The target, if it sets one.
    pub target: Option<Target>,
}

impl Figure {
    /// A figure without floor or target.
    pub fn new(id: &'static str, title: impl Into<String>, unit: Unit) -> Figure {
        Figure {
            id,
            title: title.into(),
            unit,
            samples: Vec::new(),
            floor: None,
            target: None,
        }
    }

    /// Compares it with the floor figure `floor`.
    pub fn vs(mut self, floor: &'static str) -> Figure {
        self.floor = Some(floor);
        self
    }

    /// Sets its target.
    pub fn target(mut self, target: Target) -> Figure {
        self.target = Some(target);
        self
    }
}

/// Median, min and max of some samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

/// The summary of `samples`, if there are any.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        n,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// A figure as written to JSON, with everything derived from its samples.
#[derive(Debug, Serialize)]
pub struct FigureOut {
    /// Identifier.
    pub id: &'static str,
    /// Title.
    pub title: String,
    /// Unit.
    pub unit: Unit,
    /// Summary, if any sample was taken.
    pub summary: Option<Summary>,
    /// Every sample.
    pub samples: Vec<f64>,
    /// The floor it is compared with.
    pub floor: Option<&'static str>,
    /// The floor's median.
    pub floor_median: Option<f64>,
    /// median / floor median.
    pub ratio: Option<f64>,
    /// median − floor median.
    pub difference: Option<f64>,
    /// The target.
    pub target: Option<Target>,
    /// The target in words.
    pub target_text: Option<String>,
    /// Whether this run met it.
    pub met: Option<bool>,
}

/// Derives ratios, differences and verdicts for every figure.
pub fn evaluate(figures: &[Figure]) -> Vec<FigureOut> {
    let median_of = |id: &str| {
        figures
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| summarize(&f.samples))
            .map(|s| s.median)
    };
    figures
        .iter()
        .map(|f| {
            let summary = summarize(&f.samples);
            let floor_median = f.floor.and_then(median_of);
            let (ratio, difference) = match (summary, floor_median) {
                (Some(s), Some(fl)) if fl > 0.0 => (Some(s.median / fl), Some(s.median - fl)),
                (Some(s), Some(fl)) => (None, Some(s.median - fl)),
                _ => (None, None),
            };
            let met = f.target.and_then(|t| {
                let s = summary?;
                let pick = |stat: Stat| match stat {
                    Stat::Median => s.median,
                    Stat::Max => s.max,
                };
                match t {
                    Target::AtMost { stat, bound } => Some(pick(stat) <= bound),
                    Target::FloorPlus { stat, slack } => Some(pick(stat) <= floor_median? + slack),
                    Target::FloorTimesAtLeast { stat, factor } => {
                        Some(pick(stat) >= floor_median? * factor)
                    }
                }
            });
            FigureOut {
                id: f.id,
                title: f.title.clone(),
                unit: f.unit,
                summary,
                samples: f.samples.clone(),
                floor: f.floor,
                floor_median,
                ratio,
                difference,
                target: f.target,
                target_text: f.target.map(|t| t.describe(f.unit)),
                met,
            }
        })
        .collect()
}

/// The markdown table of `figures`.
pub fn markdown(figures: &[FigureOut]) -> String {
    let mut out = String::new();
    out.push_str("| figure | unit | n | median | min | max | floor (median) | × floor | − floor | target | met |\n");
    out.push_str("|---|---|--:|--:|--:|--:|---|--:|--:|---|---|\n");
    for f in figures {
        let u = f.unit;
        let (n, med, min, max) = match f.summary {
            Some(s) => (
                s.n.to_string(),
                u.format(s.median),
                u.format(s.min),
                u.format(s.max),
            ),
            None => ("0".into(), "—".into(), "—".into(), "—".into()),
        };
        let floor = match (f.floor, f.floor_median) {
            (Some(id), Some(m)) => format!("{id} ({})", u.format(m)),
            (Some(id), None) => format!("{id} (—)"),
            _ => "—".into(),
        };
        let ratio = f.ratio.map_or("—".into(), |r| format!("{r:.2}"));
        let diff = f.difference.map_or("—".into(), |d| format!("{d:+.1}"));
        let target = f.target_text.clone().unwrap_or_else(|| "—".into());
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {n} | {med} | {min} | {max} | {floor} | {ratio} | {diff} | {target} | {met} |",
            f.title,
            u.label()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        let s = summarize(&[4.0, 1.0, 3.0, 2.0]).expect("samples");
        assert_eq!((s.n, s.median, s.min, s.max), (4, 2.5, 1.0, 4.0));
    }

    #[test]
    fn floor_target_uses_the_floor_median() {
        let mut floor = Figure::new("floor.up", "floor", Unit::Ms);
        floor.samples = vec![100.0, 102.0, 98.0];
        let mut create = Figure::new("create", "create", Unit::Ms)
            .vs("floor.up")
            .target(Target::FloorPlus {
                stat: Stat::Median,
                slack: 10.0,
            });
        create.samples = vec![111.0, 109.0, 120.0];
        let out = evaluate(&[floor, create]);
        assert_eq!(out[1].floor_median, Some(100.0));
        assert_eq!(out[1].difference, Some(11.0));
        assert_eq!(out[1].met, Some(false));
    }

    #[test]
    fn a_rate_target_is_a_fraction_of_the_floor() {
        let mut floor = Figure::new("floor.read", "floor", Unit::MiBps);
        floor.samples = vec![1000.0, 1200.0, 800.0];
        let mut api = Figure::new("api", "api", Unit::MiBps)
            .vs("floor.read")
            .target(Target::FloorTimesAtLeast {
                stat: Stat::Median,
                factor: 0.8,
            });
        api.samples = vec![790.0, 810.0, 805.0];
        let out = evaluate(&[floor, api.clone()]);
        assert_eq!(out[1].met, Some(true));
        assert_eq!(
            out[1].target_text.as_deref(),
            Some("≥ 0.80 × floor (median)")
        );
        api.samples = vec![790.0, 795.0, 805.0];
        let mut floor = Figure::new("floor.read", "floor", Unit::MiBps);
        floor.samples = vec![1000.0];
        assert_eq!(evaluate(&[floor, api])[1].met, Some(false));
    }
}
