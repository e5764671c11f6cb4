//! Sizes as people write them: `500M`, `2G`, `1.5T`, `2GB`, or plain bytes.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A number of bytes. `K`, `M`, `G`, `T` (and `KiB`…`TiB`) are powers of 1024, as `df -h`
/// shows disks; `KB`, `MB`, `GB`, `TB` are powers of 1000, as disks are sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a size: write bytes, or a number with K, M, G or T (powers of 1024) or KB, MB, GB or TB")]
pub struct BadSize(String);

impl FromStr for ByteSize {
    type Err = BadSize;

    fn from_str(text: &str) -> Result<Self, BadSize> {
        let bad = || BadSize(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let unit = unit.trim().to_ascii_uppercase();
        let scale: u64 = match unit.as_str() {
            "" | "B" => 1,
            "K" | "KIB" => 1 << 10,
            "M" | "MIB" => 1 << 20,
            "G" | "GIB" => 1 << 30,
            "T" | "TIB" => 1 << 40,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole.checked_mul(scale).map(ByteSize).ok_or_else(bad);
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let bytes = value * scale as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// relay.json takes a number of bytes or a string with a unit.
impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_read_as_people_write_them() {
        let parse = |s: &str| s.parse::<ByteSize>().map(|b| b.0).ok();
        assert_eq!(parse("1048576"), Some(1 << 20));
        assert_eq!(parse("500M"), Some(500 << 20));
        assert_eq!(parse("2g"), Some(2 << 30));
        assert_eq!(parse("2GiB"), Some(2 << 30));
        assert_eq!(parse("2GB"), Some(2_000_000_000));
        assert_eq!(parse("1.5T"), Some(3 << 39));
        assert_eq!(parse(" 10 K "), Some(10 << 10));
        for bad in ["", "M", "-1G", "2X", "1e3", "99999999999999999999T"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
