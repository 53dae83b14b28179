//! Humane durations in specs (`"120ms"`, `"2s"`, `"1.5s"`, `"1m"`) and
//! delays that may be fixed or drawn from a seeded distribution.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::seeded::{unit, StableHasher};

/// Longest delay a distribution may produce; keeps a mistyped spec from
/// stalling a run for days.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Parses `"<number><unit>"` where unit is `us`, `ms`, `s`, `m` or `h`
/// (`"0"` alone is allowed). Fractions are allowed: `"1.5s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let ms = parse_signed_ms_f64(text)?;
    if ms < 0.0 {
        return Err(format!("duration {text:?} must not be negative"));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn parse_signed_ms_f64(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if t == "0" || t == "-0" {
        return Ok(0.0);
    }
    let split = t.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(|| {
        format!("duration {text:?} needs a unit: us, ms, s, m or h (e.g. \"120ms\")")
    })?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("duration {text:?}: {num:?} is not a number"))?;
    if !value.is_finite() {
        return Err(format!("duration {text:?} is not finite"));
    }
    let factor = match unit {
        "us" | "µs" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => {
            return Err(format!(
                "duration {text:?}: unknown unit {unit:?}, expected us, ms, s, m or h"
            ))
        }
    };
    let ms = value * factor;
    if ms.abs() > 1e12 {
        return Err(format!("duration {text:?} is too large"));
    }
    Ok(ms)
}

/// Formats a duration the way specs write it (`"1500ms"`, `"2s"`, `"250us"`).
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0s".to_owned()
    } else if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// A non-negative duration written as a humane string in specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const ZERO: Self = Self(Duration::ZERO);

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"120ms\", \"2s\" or \"1.5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                if v == 0 {
                    Ok(HumanDuration::ZERO)
                } else {
                    Err(E::custom(format!(
                        "duration {v} needs a unit: write \"{v}ms\" or \"{v}s\""
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                self.visit_u64(u64::try_from(v).unwrap_or(1))
            }
        }
        d.deserialize_any(V)
    }
}

/// A possibly negative duration, in whole milliseconds (`"-5s"` is allowed):
/// used for `retry-after` HTTP-dates in the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignedDuration {
    pub millis: i64,
}

impl Serialize for SignedDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let abs = format_duration(Duration::from_millis(self.millis.unsigned_abs()));
        if self.millis < 0 {
            s.serialize_str(&format!("-{abs}"))
        } else {
            s.serialize_str(&abs)
        }
    }
}

impl<'de> Deserialize<'de> for SignedDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let ms = parse_signed_ms_f64(&text).map_err(de::Error::custom)?;
        Ok(Self {
            millis: ms.round() as i64,
        })
    }
}

/// A delay: fixed (`"2s"`) or a seeded distribution
/// (`{uniform: {min: 100ms, max: 2s}}`, `{normal: {mean: 1s, stddev: 200ms}}`,
/// `{exponential: {mean: 500ms}}`). Samples are clamped to `[0, 1h]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    Fixed(HumanDuration),
    Uniform {
        min: HumanDuration,
        max: HumanDuration,
    },
    Normal {
        mean: HumanDuration,
        stddev: HumanDuration,
    },
    Exponential {
        mean: HumanDuration,
    },
}

impl Default for Delay {
    fn default() -> Self {
        Self::Fixed(HumanDuration::ZERO)
    }
}

impl From<Duration> for Delay {
    fn from(d: Duration) -> Self {
        Self::Fixed(HumanDuration(d))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum DelayDist {
    Fixed(HumanDuration),
    Uniform {
        min: HumanDuration,
        max: HumanDuration,
    },
    Normal {
        mean: HumanDuration,
        stddev: HumanDuration,
    },
    Exponential {
        mean: HumanDuration,
    },
}

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Delay;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration (\"2s\") or a distribution ({uniform: {min, max}}, \
                     {normal: {mean, stddev}}, {exponential: {mean}})",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Delay, E> {
                parse_duration(v)
                    .map(|d| Delay::Fixed(HumanDuration(d)))
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Delay, E> {
                HumanDuration::deserialize(de::value::U64Deserializer::<E>::new(v))
                    .map(Delay::Fixed)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Delay, E> {
                self.visit_u64(u64::try_from(v).unwrap_or(1))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Delay, A::Error> {
                let dist = DelayDist::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(match dist {
                    DelayDist::Fixed(d) => Delay::Fixed(d),
                    DelayDist::Uniform { min, max } => Delay::Uniform { min, max },
                    DelayDist::Normal { mean, stddev } => Delay::Normal { mean, stddev },
                    DelayDist::Exponential { mean } => Delay::Exponential { mean },
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Delay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct MinMax {
            min: HumanDuration,
            max: HumanDuration,
        }
        #[derive(Serialize)]
        struct MeanStd {
            mean: HumanDuration,
            stddev: HumanDuration,
        }
        #[derive(Serialize)]
        struct Mean {
            mean: HumanDuration,
        }
        match *self {
            Delay::Fixed(d) => d.serialize(s),
            Delay::Uniform { min, max } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("uniform", &MinMax { min, max })?;
                m.end()
            }
            Delay::Normal { mean, stddev } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("normal", &MeanStd { mean, stddev })?;
                m.end()
            }
            Delay::Exponential { mean } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("exponential", &Mean { mean })?;
                m.end()
            }
        }
    }
}

impl Delay {
    /// Checks the parameters; returns a human message on error.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Delay::Uniform { min, max } if min > max => Err(format!(
                "uniform delay has min {min} greater than max {max}"
            )),
            _ => Ok(()),
        }
    }

    /// Whether every sample is zero (lets the hot path skip timers).
    pub fn is_zero(&self) -> bool {
        matches!(self, Delay::Fixed(d) if d.0.is_zero())
    }

    /// Draws a sample; `key` makes the draw reproducible (same key, same
    /// sample).
    pub(crate) fn sample(&self, key: StableHasher) -> Duration {
        let u1 = unit(key.u64(1).finish());
        let ms = match *self {
            Delay::Fixed(d) => return d.0.min(MAX_DELAY),
            Delay::Uniform { min, max } => {
                let lo = min.0.as_secs_f64();
                let hi = max.0.as_secs_f64();
                (lo + (hi - lo) * u1) * 1000.0
            }
            Delay::Normal { mean, stddev } => {
                // Box-Muller; 1 - u keeps ln away from 0.
                let u2 = unit(key.u64(2).finish());
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (mean.0.as_secs_f64() + z * stddev.0.as_secs_f64()) * 1000.0
            }
            Delay::Exponential { mean } => -(1.0 - u1).ln() * mean.0.as_secs_f64() * 1000.0,
        };
        let ms = ms.clamp(0.0, MAX_DELAY.as_secs_f64() * 1000.0);
        Duration::from_secs_f64(ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humane_durations() {
        assert_eq!(parse_duration("120ms").unwrap(), Duration::from_millis(120));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("12").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("3 fortnights")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["0s", "2s", "1500ms", "250us"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn signed_duration_allows_negative() {
        let d: SignedDuration = serde_yaml::from_str("\"-5s\"").unwrap();
        assert_eq!(d.millis, -5000);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"-5s\"");
    }

    #[test]
    fn delay_forms_deserialize() {
        let d: Delay = serde_yaml::from_str("2s").unwrap();
        assert_eq!(d, Delay::Fixed(HumanDuration(Duration::from_secs(2))));
        let d: Delay = serde_yaml::from_str("{uniform: {min: 10ms, max: 20ms}}").unwrap();
        assert!(matches!(d, Delay::Uniform { .. }));
        let back: Delay = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        let err = serde_yaml::from_str::<Delay>("{gamma: {k: 1}}").unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn samples_are_reproducible_and_bounded() {
        let d = Delay::Uniform {
            min: HumanDuration::from_millis(10),
            max: HumanDuration::from_millis(20),
        };
        for i in 0..1000 {
            let key = StableHasher::new(1).u64(i);
            let a = d.sample(key);
            assert_eq!(a, d.sample(key));
            assert!(a >= Duration::from_millis(10) && a <= Duration::from_millis(20));
        }
        let n = Delay::Normal {
            mean: HumanDuration::from_millis(5),
            stddev: HumanDuration::from_millis(50),
        };
        for i in 0..1000 {
            assert!(n.sample(StableHasher::new(2).u64(i)) <= MAX_DELAY);
        }
        let bad = Delay::Uniform {
            min: HumanDuration::from_millis(20),
            max: HumanDuration::from_millis(10),
        };
        assert!(bad.validate().is_err());
    }
}
