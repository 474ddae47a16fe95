//! Image garbage collection settings, by the kubelet's names: `imageGCHighThresholdPercent`,
//! `imageGCLowThresholdPercent`, `imageMinimumGCAge`, `imageMaximumGCAge` (file keys), and
//! the flags `--image-gc-high-threshold`, `--image-gc-low-threshold`,
//! `--image-minimum-gc-age`, `--image-maximum-gc-age`.

use std::time::Duration;

use super::{ConfigError, ConfigFile, duration};
use crate::cli::ImageGcArgs;
use crate::images::GcPolicy;

/// The settings from the flags and the file (flags win), checked as the kubelet checks them.
pub fn image_gc(args: &ImageGcArgs, file: &ConfigFile) -> Result<GcPolicy, ConfigError> {
    let d = GcPolicy::default();
    let high = args
        .image_gc_high_threshold
        .or(file.image_gc_high_threshold_percent)
        .unwrap_or(d.high_percent);
    let low = args
        .image_gc_low_threshold
        .or(file.image_gc_low_threshold_percent)
        .unwrap_or(d.low_percent);
    let bad = |m: String| ConfigError::ImageGc(m);
    if high > 100 {
        return Err(bad(format!(
            "imageGCHighThresholdPercent: {high} must be between 0 and 100"
        )));
    }
    if low > 100 {
        return Err(bad(format!(
            "imageGCLowThresholdPercent: {low} must be between 0 and 100"
        )));
    }
    if low >= high && high != 100 {
        return Err(bad(format!(
            "imageGCLowThresholdPercent: {low} must be less than imageGCHighThresholdPercent ({high})"
        )));
    }
    let year = Duration::from_secs(365 * 24 * 3600);
    let min_age = duration(
        "imageMinimumGCAge",
        args.image_minimum_gc_age
            .clone()
            .or_else(|| file.image_minimum_gc_age.clone()),
        d.min_age,
        Duration::ZERO,
        year,
    )?;
    let max_age = duration(
        "imageMaximumGCAge",
        args.image_maximum_gc_age
            .clone()
            .or_else(|| file.image_maximum_gc_age.clone()),
        d.max_age,
        Duration::ZERO,
        year,
    )?;
    if !max_age.is_zero() && max_age < min_age {
        return Err(bad(format!(
            "imageMaximumGCAge: {max_age:?} must not be less than imageMinimumGCAge ({min_age:?})"
        )));
    }
    Ok(GcPolicy {
        high_percent: high,
        low_percent: low,
        min_age,
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kubelets() {
        let p = image_gc(&ImageGcArgs::default(), &ConfigFile::default()).expect("defaults");
        assert_eq!(p, GcPolicy::default());
        assert_eq!((p.high_percent, p.low_percent), (85, 80));
        assert_eq!(p.min_age, Duration::from_secs(120));
        assert!(p.max_age.is_zero());
    }

    #[test]
    fn flags_beat_the_file() {
        let file = ConfigFile {
            image_gc_high_threshold_percent: Some(90),
            image_gc_low_threshold_percent: Some(70),
            image_maximum_gc_age: Some("168h".into()),
            ..ConfigFile::default()
        };
        let args = ImageGcArgs {
            image_gc_low_threshold: Some(60),
            image_minimum_gc_age: Some("0s".into()),
            ..ImageGcArgs::default()
        };
        let p = image_gc(&args, &file).expect("valid");
        assert_eq!((p.high_percent, p.low_percent), (90, 60));
        assert_eq!(p.min_age, Duration::ZERO);
        assert_eq!(p.max_age, Duration::from_secs(168 * 3600));
    }

    #[test]
    fn thresholds_out_of_order_or_range_name_the_setting() {
        for (high, low, key) in [
            (80, 85, "imageGCLowThresholdPercent"),
            (80, 80, "imageGCLowThresholdPercent"),
            (101, 80, "imageGCHighThresholdPercent"),
        ] {
            let args = ImageGcArgs {
                image_gc_high_threshold: Some(high),
                image_gc_low_threshold: Some(low),
                ..ImageGcArgs::default()
            };
            let e = image_gc(&args, &ConfigFile::default()).expect_err(key);
            assert!(e.to_string().starts_with(key), "{e}");
        }
        // 100 turns collection for space off, whatever the low threshold
        let args = ImageGcArgs {
            image_gc_high_threshold: Some(100),
            image_gc_low_threshold: Some(100),
            ..ImageGcArgs::default()
        };
        assert!(image_gc(&args, &ConfigFile::default()).is_ok());
    }
}
