//! Time: Go's lenient RFC 3339 parse and its fixed-width nanosecond format, in the line's
//! zone. Pure.

use super::STAMP_MAX;
use crate::clock::Timestamp;

/// A log line's time: the instant, and the zone offset it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LogTime {
    /// Seconds since the Unix epoch.
    secs: i64,
    nanos: u32,
    /// Seconds east of UTC.
    offset: i32,
}

impl LogTime {
    pub(super) fn unix_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    pub(super) fn timestamp(self) -> Timestamp {
        let nanos = self
            .unix_nanos()
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Timestamp(i64::try_from(nanos).unwrap_or_default())
    }
}

/// Parses an RFC 3339 time at the start of `s` as Go's `time.Parse` does with `RFC3339Nano`
/// (which also covers `RFC3339`); returns it and the bytes it took.
pub(super) fn parse_time(s: &[u8]) -> Option<(LogTime, usize)> {
    TimeCache::default().parse(s)
}

/// Remembers the last date-time parsed and formatted: consecutive log lines mostly share
/// their second.
#[derive(Debug, Default)]
pub(super) struct TimeCache {
    /// The last `2006-01-02T15:04:05` parsed, and its wall-clock seconds since the epoch.
    parsed: Option<([u8; 19], i64)>,
    formatted_wall: Option<i64>,
    formatted_text: [u8; 19],
}

impl TimeCache {
    /// Parses the time at the start of `s`; returns it and the bytes it took.
    #[inline(always)]
    pub(super) fn parse(&mut self, s: &[u8]) -> Option<(LogTime, usize)> {
        let (wall, at) = match (self.parsed, s.first_chunk::<19>()) {
            (Some((text, wall)), Some(head)) if *head == text => (wall, 19),
            _ => {
                let (wall, n) = parse_date_time(s)?;
                // Only the usual two-digit hour is remembered: then the text is 19 bytes.
                if let Some(head) = s.first_chunk::<19>().filter(|_| n == 19) {
                    self.parsed = Some((*head, wall));
                }
                (wall, n)
            }
        };
        let (nanos, offset, n) = parse_fraction_and_zone(s.get(at..)?)?;
        let time = LogTime {
            secs: wall - i64::from(offset),
            nanos,
            offset,
        };
        Some((time, at + n))
    }

    /// Writes `2006-01-02T15:04:05.000000000Z07:00 ` into `buf`; returns its length.
    pub(super) fn format(&mut self, t: LogTime, buf: &mut [u8; STAMP_MAX]) -> usize {
        let wall = t.secs + i64::from(t.offset);
        if self.formatted_wall != Some(wall) {
            self.formatted_text = format_date_time(wall);
            self.formatted_wall = Some(wall);
        }
        buf[..19].copy_from_slice(&self.formatted_text);
        buf[19] = b'.';
        put_digits(&mut buf[20..29], u64::from(t.nanos));
        let mut n = 29;
        if t.offset == 0 {
            buf[n] = b'Z';
            n += 1;
        } else {
            let minutes = t.offset.unsigned_abs() / 60;
            buf[n] = if t.offset < 0 { b'-' } else { b'+' };
            put_digits(&mut buf[n + 1..n + 3], u64::from(minutes / 60));
            buf[n + 3] = b':';
            put_digits(&mut buf[n + 4..n + 6], u64::from(minutes % 60));
            n += 6;
        }
        buf[n] = b' ';
        n + 1
    }
}

/// Go's `time.Parse` for `2006-01-02T15:04:05`: a four-digit year, two-digit month (1–12),
/// day (within the month), minute and second (0–59), and a one- or two-digit hour (0–23).
/// Returns wall-clock seconds since the epoch and the bytes taken.
#[inline(never)]
fn parse_date_time(s: &[u8]) -> Option<(i64, usize)> {
    let year = i64::from(digits(s.get(0..4)?)?);
    let month = digits(s.get(5..7)?)?;
    let day = digits(s.get(8..10)?)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') || s.get(10) != Some(&b'T') {
        return None;
    }
    let (hour, at) = match s.get(12) {
        Some(b) if b.is_ascii_digit() => (digits(s.get(11..13)?)?, 13),
        _ => (digits(s.get(11..12)?)?, 12),
    };
    let minute = digits(s.get(at + 1..at + 3)?)?;
    let second = digits(s.get(at + 4..at + 6)?)?;
    if s.get(at) != Some(&b':') || s.get(at + 3) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((secs, at + 6))
}

/// An optional `.123` or `,123` (any number of digits, the first nine count), then `Z` or
/// `±hh:mm` (Go accepts up to 24:60). Returns nanoseconds, offset seconds, bytes taken.
#[inline(always)]
fn parse_fraction_and_zone(s: &[u8]) -> Option<(u32, i32, usize)> {
    let mut i = 0;
    let mut nanos = 0u32;
    if matches!(s.first(), Some(b'.' | b',')) && s.get(1).is_some_and(u8::is_ascii_digit) {
        i = 1;
        let mut kept = 0;
        while let Some(&d) = s.get(i).filter(|d| d.is_ascii_digit()) {
            if kept < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
                kept += 1;
            }
            i += 1;
        }
        nanos *= 10u32.pow(9 - kept);
    }
    match s.get(i)? {
        b'Z' => Some((nanos, 0, i + 1)),
        &sign @ (b'+' | b'-') => {
            let zone = s.get(i..i + 6)?;
            let hours = digits(&zone[1..3])?;
            let minutes = digits(&zone[4..6])?;
            if zone[3] != b':' || hours > 24 || minutes > 60 {
                return None;
            }
            let offset = i32::try_from((hours * 60 + minutes) * 60).ok()?;
            Some((nanos, if sign == b'-' { -offset } else { offset }, i + 6))
        }
        _ => None,
    }
}

/// The value of a run of ASCII digits (at most four, so no overflow).
#[inline(always)]
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `00` to `99`, for writing two digits at a time.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Writes `value` as `buf.len()` zero-padded decimal digits.
#[inline]
fn put_digits(buf: &mut [u8], mut value: u64) {
    let mut end = buf.len();
    while end >= 2 {
        let pair = (value % 100) as usize * 2;
        buf[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        end -= 2;
    }
    if end == 1 {
        buf[0] = b'0' + (value % 10) as u8;
    }
}

fn format_date_time(wall: i64) -> [u8; 19] {
    let (year, month, day) = civil_from_days(wall.div_euclid(86_400));
    let secs = wall.rem_euclid(86_400).unsigned_abs();
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], year.clamp(0, 9999).unsigned_abs());
    put_digits(&mut text[5..7], u64::from(month));
    put_digits(&mut text[8..10], u64::from(day));
    put_digits(&mut text[11..13], secs / 3600);
    put_digits(&mut text[14..16], secs % 3600 / 60);
    put_digits(&mut text[17..19], secs % 60);
    text
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days: days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil (as in `clock`, which keeps its copy private).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_go_parses_rfc3339_nano() {
        let parse = |s: &str| {
            parse_time(s.as_bytes())
                .filter(|(_, n)| *n == s.len())
                .map(|(t, _)| t)
        };
        let t = parse("2024-02-29T23:59:59.123456789123Z").expect("leap day, long fraction");
        assert_eq!((t.secs, t.nanos, t.offset), (1_709_251_199, 123_456_789, 0));
        assert_eq!(
            parse("2024-05-01T9:00:00,5Z").map(|t| t.nanos),
            Some(500_000_000)
        );
        assert_eq!(
            parse("1970-01-01T00:00:00+24:60").map(|t| t.secs),
            Some(-90_000)
        );
        assert_eq!(parse("1969-12-31T23:59:59Z").map(|t| t.secs), Some(-1));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-05-01t10:00:00Z",
            "2024-05-01T10:00:00",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:60:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+2:00",
            "2024-13-01T10:00:00Z",
            "24-05-01T10:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
