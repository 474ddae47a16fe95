//! The query: a `/containerLogs` URL query decoded and validated as the kubelet does.
//! Pure: no IO.

use thiserror::Error;

use super::time::parse_time;
use crate::clock::Timestamp;

/// The options of a `/containerLogs` request, decoded and validated as the kubelet does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// `follow`: keep streaming new lines until the container stops.
    pub follow: bool,
    /// `previous`: read the previous instance's log. The caller picks the file; a stopped
    /// container ends a `follow` as soon as its file has been read.
    pub previous: bool,
    /// `timestamps`: prefix each line with its time.
    pub timestamps: bool,
    /// `tailLines` (or the legacy `tail`): only the last N lines.
    pub tail_lines: Option<u64>,
    /// `limitBytes`: stop after this many bytes of output (at least 1).
    pub limit_bytes: Option<u64>,
    /// `sinceSeconds` or `sinceTime`: skip older lines.
    pub since: Option<Since>,
}

/// Where a [`LogQuery`] starts in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// `sinceSeconds`: this many seconds before the time the request is served (at least 1).
    Seconds(u64),
    /// `sinceTime`: an instant (RFC 3339 in the query; saturated to `Timestamp`'s range).
    Time(Timestamp),
}

/// A query the kubelet would refuse. Each message names its parameter. The kubelet answers
/// [`LogQueryError::Decode`] with 400 ("Unable to decode query.") and the validation failures
/// with 422 ("Invalid request."); the caller chooses.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LogQueryError {
    /// A value that does not decode as its parameter's type.
    #[error("{param}: cannot decode {value:?} as {expected}")]
    Decode {
        /// The query parameter.
        param: &'static str,
        /// Its (percent-decoded) value.
        value: String,
        /// What the parameter takes.
        expected: &'static str,
    },
    /// `tailLines` below zero.
    #[error("{param}: invalid value {value}: must be greater than or equal to 0")]
    Negative {
        /// The query parameter.
        param: &'static str,
        /// Its value.
        value: i64,
    },
    /// `limitBytes` or `sinceSeconds` below one.
    #[error("{param}: invalid value {value}: must be greater than 0")]
    NotPositive {
        /// The query parameter.
        param: &'static str,
        /// Its value.
        value: i64,
    },
    /// Both `sinceSeconds` and `sinceTime`.
    #[error(
        "sinceSeconds, sinceTime: at most one of `sinceTime` or `sinceSeconds` may be specified"
    )]
    SinceConflict,
    /// A `stream` other than `All`: podvisor serves both streams together, as the kubelet does
    /// without its `PodLogsQuerySplitStreams` feature.
    #[error("stream: unsupported value {value:?}: only \"All\" is served")]
    Stream {
        /// The value asked for.
        value: String,
    },
}

impl LogQuery {
    /// Decodes a URL query string (without the `?`) as the kubelet does: the first value of a
    /// parameter wins, unknown parameters are ignored, a boolean is false only when absent,
    /// `0` or `false` (any case), `tail` overrides `tailLines` (`tail=all` removes it), and a
    /// pair that does not percent-decode is dropped. Then validates it.
    pub fn parse(query: &str) -> Result<LogQuery, LogQueryError> {
        let mut raw = RawQuery::default();
        for (key, value) in query_pairs(query) {
            let slot = match key.as_slice() {
                b"follow" => &mut raw.follow,
                b"previous" => &mut raw.previous,
                b"timestamps" => &mut raw.timestamps,
                b"tailLines" => &mut raw.tail_lines,
                b"tail" => &mut raw.tail,
                b"limitBytes" => &mut raw.limit_bytes,
                b"sinceSeconds" => &mut raw.since_seconds,
                b"sinceTime" => &mut raw.since_time,
                b"stream" => &mut raw.stream,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(String::from_utf8_lossy(&value).into_owned());
            }
        }
        raw.decode()
    }
}

/// The first value of each parameter the kubelet reads.
#[derive(Debug, Default)]
struct RawQuery {
    follow: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    tail_lines: Option<String>,
    tail: Option<String>,
    limit_bytes: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    stream: Option<String>,
}

impl RawQuery {
    fn decode(self) -> Result<LogQuery, LogQueryError> {
        // server.go: "backwards compatibility for the tail query parameter".
        let (tail_param, tail_value) = match self.tail {
            Some(t) if t == "all" => ("tail", None),
            Some(t) if !t.is_empty() => ("tail", Some(t)),
            _ => ("tailLines", self.tail_lines),
        };
        let tail_lines = decode_int(tail_param, tail_value)?;
        let limit_bytes = decode_int("limitBytes", self.limit_bytes)?;
        let since_seconds = decode_int("sinceSeconds", self.since_seconds)?;
        // metav1.Time: empty and "null" decode to the zero time, which filters nothing.
        let since_time = match self.since_time {
            None => None,
            Some(s) if s.is_empty() || s == "null" => Some(None),
            Some(s) => match parse_time(s.as_bytes()) {
                Some((time, n)) if n == s.len() => Some(Some(time)),
                _ => {
                    return Err(LogQueryError::Decode {
                        param: "sinceTime",
                        value: s,
                        expected: "an RFC 3339 time",
                    });
                }
            },
        };

        // ValidatePodLogOptions, in its order.
        if let Some(value) = tail_lines.filter(|v| *v < 0) {
            return Err(LogQueryError::Negative {
                param: tail_param,
                value,
            });
        }
        if let Some(value) = limit_bytes.filter(|v| *v < 1) {
            return Err(LogQueryError::NotPositive {
                param: "limitBytes",
                value,
            });
        }
        let since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err(LogQueryError::SinceConflict),
            (Some(value), None) if value < 1 => {
                return Err(LogQueryError::NotPositive {
                    param: "sinceSeconds",
                    value,
                });
            }
            (Some(value), None) => Some(Since::Seconds(value.unsigned_abs())),
            (None, Some(Some(time))) => Some(Since::Time(time.timestamp())),
            (None, _) => None,
        };
        if let Some(value) = self.stream.filter(|s| s != "All") {
            return Err(LogQueryError::Stream { value });
        }
        Ok(LogQuery {
            follow: flag(self.follow.as_deref()),
            previous: flag(self.previous.as_deref()),
            timestamps: flag(self.timestamps.as_deref()),
            tail_lines: tail_lines.map(i64::unsigned_abs),
            limit_bytes: limit_bytes.map(i64::unsigned_abs),
            since,
        })
    }
}

/// apimachinery's `Convert_Slice_string_To_bool`: only "0" and "false" (any case) are false.
fn flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Go's `strconv.ParseInt(v, 10, 64)`, which Rust's `i64::from_str` matches (sign, no spaces).
fn decode_int(param: &'static str, value: Option<String>) -> Result<Option<i64>, LogQueryError> {
    match value {
        None => Ok(None),
        Some(v) => match v.parse() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(LogQueryError::Decode {
                param,
                value: v,
                expected: "an integer",
            }),
        },
    }
}

/// Go's `url.ParseQuery`: `&`-separated pairs; a pair holding `;` or failing to unescape is
/// dropped; `+` is a space.
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((unescape(key)?, unescape(value)?))
        })
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeapi::logs::tests::{T5, at, query};

    #[test]
    fn query_decodes_parameters_as_the_kubelet_does() {
        let q = query(
            "follow=true&timestamps=1&previous=false&tailLines=10&limitBytes=100\
             &sinceTime=2024-05-01T10%3A00%3A05Z&container=ignored&unknown=x",
        );
        assert_eq!(
            q,
            LogQuery {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(10),
                limit_bytes: Some(100),
                since: Some(Since::Time(at(T5))),
            }
        );
        assert_eq!(query(""), LogQuery::default());
        // apimachinery booleans: false only when absent, "0" or "false" in any case.
        assert!(query("follow").follow);
        assert!(query("follow=yes").follow);
        assert!(!query("follow=FALSE").follow);
        assert!(!query("follow=0").follow);
        // The first value wins; the legacy `tail` overrides tailLines, `tail=all` drops it.
        assert_eq!(query("tailLines=3&tailLines=-1").tail_lines, Some(3));
        assert_eq!(query("tailLines=3&tail=7").tail_lines, Some(7));
        assert_eq!(query("tailLines=3&tail=all").tail_lines, None);
        assert_eq!(query("tailLines=3&tail=").tail_lines, Some(3));
        // A pair that does not unescape, or holds a semicolon, is dropped.
        assert_eq!(query("tailLines=%zz").tail_lines, None);
        assert_eq!(query("tailLines=4;x").tail_lines, None);
        assert_eq!(query("sinceSeconds=%2B30").since, Some(Since::Seconds(30)));
        assert_eq!(query("sinceTime=").since, None);
        assert_eq!(query("sinceTime=null").since, None);
        assert_eq!(query("stream=All").since, None);
    }

    #[test]
    fn invalid_query_values_are_errors_naming_the_parameter() {
        let cases: [(&str, &str); 10] = [
            ("tailLines=-1", "tailLines"),
            ("tail=-3", "tail"),
            ("limitBytes=0", "limitBytes"),
            ("sinceSeconds=0", "sinceSeconds"),
            ("sinceSeconds=-5", "sinceSeconds"),
            ("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z", "sinceTime"),
            ("tailLines=ten", "tailLines"),
            ("limitBytes=99999999999999999999", "limitBytes"),
            ("sinceTime=yesterday", "sinceTime"),
            ("stream=Stdout", "stream"),
        ];
        for (q, param) in cases {
            let err = LogQuery::parse(q).expect_err(q);
            assert!(err.to_string().contains(param), "{q}: {err}");
        }
        assert!(matches!(
            LogQuery::parse("tailLines=-1"),
            Err(LogQueryError::Negative {
                param: "tailLines",
                value: -1
            })
        ));
        assert!(matches!(
            LogQuery::parse("limitBytes=0"),
            Err(LogQueryError::NotPositive {
                param: "limitBytes",
                value: 0
            })
        ));
        assert!(matches!(
            LogQuery::parse("sinceSeconds=1&sinceTime="),
            Err(LogQueryError::SinceConflict)
        ));
        assert!(matches!(
            LogQuery::parse("sinceTime=2024-05-01"),
            Err(LogQueryError::Decode {
                param: "sinceTime",
                ..
            })
        ));
    }
}
