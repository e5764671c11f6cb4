//! Lifetimes as people write them: `30d`, `2w`, or a plain number of days. Expiry is kept to
//! the day (see `gateway::lifecycle`), so hours and minutes are refused rather than rounded.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::Deserialize;

/// A whole number of days, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub NonZeroU32);

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a lifetime: write days, such as 30d, 2w or 30 (expiry is kept to the day; at most 1000000 days)")]
pub struct BadLifetime(String);

impl FromStr for Lifetime {
    type Err = BadLifetime;

    fn from_str(text: &str) -> Result<Self, BadLifetime> {
        let bad = || BadLifetime(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let scale = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "d" | "day" | "days" => 1,
            "w" | "week" | "weeks" => 7,
            _ => return Err(bad()),
        };
        let days = number
            .parse::<u32>()
            .map_err(|_| bad())?
            .checked_mul(scale)
            .ok_or_else(bad)?;
        if days > gateway::lifecycle::rules::MAX_DAYS {
            return Err(bad());
        }
        NonZeroU32::new(days).map(Lifetime).ok_or_else(bad)
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}d", self.0)
    }
}

/// relay.json takes a number of days or a string such as "30d".
impl<'de> Deserialize<'de> for Lifetime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Days(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Days(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Lifetime;

    #[test]
    fn lifetimes_read_as_people_write_them() {
        let parse = |s: &str| s.parse::<Lifetime>().map(|l| l.0.get()).ok();
        assert_eq!(parse("30d"), Some(30));
        assert_eq!(parse("30"), Some(30));
        assert_eq!(parse("2w"), Some(14));
        assert_eq!(parse(" 7 days "), Some(7));
        assert_eq!(parse("1000000d"), Some(1_000_000));
        for bad in [
            "",
            "0",
            "0d",
            "12h",
            "1.5d",
            "-3d",
            "d",
            "99999999999w",
            "1000001d",
            "3000000d",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
