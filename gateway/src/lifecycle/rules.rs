//! Lifecycle rules as the relay keeps them: checked as S3 checks them when they are put,
//! stored as a small JSON bucket document, and asked which day an object expires.
//!
//! What the relay can honour: `Expiration` (`Days` or `Date`) and
//! `AbortIncompleteMultipartUpload`, filtered by prefix and object size. Versioning is never
//! on here, so the noncurrent-version and delete-marker actions have nothing to do; they are
//! kept so that the configuration reads back as written. Transitions (there is one storage
//! class) and tag filters (objects carry no tags) are refused with `NotImplemented`.

use backends::clock::Day;
use s3s::dto::{self, ExpirationStatus};
use s3s::{S3Error, s3_error};
use serde::{Deserialize, Serialize};

const DAY_SECS: i64 = 24 * 60 * 60;
/// S3's limit on rules per configuration.
const MAX_RULES: usize = 1000;
/// Days a rule may count: some 2,700 years, so every expiry day stays a date S3 can write.
pub const MAX_DAYS: u32 = 1_000_000;

/// A bucket's lifecycle configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules(pub Vec<Rule>);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub enabled: bool,
    #[serde(default)]
    pub filter: Filter,
    /// Written with the older top-level `<Prefix>` instead of `<Filter>`: read back that way.
    #[serde(default)]
    pub legacy_prefix: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<Expire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_upload_days: Option<u32>,
    /// `ExpiredObjectDeleteMarker`: nothing to do without versioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_object_delete_marker: Option<bool>,
    /// `NoncurrentVersionExpiration`'s days: nothing to do without versioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub larger_than: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smaller_than: Option<u64>,
    /// Written inside `<And>`: read back that way.
    #[serde(default)]
    pub and: bool,
}

/// When matching objects expire.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expire {
    /// So many days after the object was written, rounded up to the next midnight (UTC).
    Days(u32),
    /// From midnight (UTC) at the start of this day.
    Date(u32),
}

impl Filter {
    fn matches(&self, key: &str, size: Option<u64>) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.larger_than.is_none_or(|n| size.is_some_and(|s| s > n))
            && self.smaller_than.is_none_or(|n| size.is_some_and(|s| s < n))
    }
}

impl Expire {
    /// The last day an object written at `written_ms` is kept: it goes in the 24 hours after
    /// that day ends (see [`Day::expiry_moment_secs`]).
    fn last_day(self, written_ms: i64) -> Day {
        match self {
            // S3 adds the days to the write time and rounds up to the next midnight: the
            // object lives through the day that sum falls on.
            Expire::Days(days) => Day::of_secs(written_ms.div_euclid(1000)).plus(days),
            Expire::Date(day) => Day(day.saturating_sub(1)),
        }
    }
}

impl Rules {
    /// The last day this object is kept, and the rule that decides it; `None`: kept for good.
    pub fn last_day(&self, key: &str, size: u64, written_ms: i64) -> Option<(Day, Option<&str>)> {
        self.0
            .iter()
            .filter(|r| r.enabled && r.filter.matches(key, Some(size)))
            .filter_map(|r| Some((r.expire?.last_day(written_ms), r.id.as_deref())))
            .min_by_key(|(day, _)| *day)
    }

    /// Days after which an unfinished upload of `key` is aborted, if a rule says so.
    pub fn abort_upload_days(&self, key: &str) -> Option<u32> {
        self.0
            .iter()
            .filter(|r| r.enabled && r.filter.matches(key, None))
            .filter_map(|r| r.abort_upload_days)
            .min()
    }

    /// Checks and converts a configuration from PutBucketLifecycleConfiguration.
    pub fn from_s3(config: Option<dto::BucketLifecycleConfiguration>) -> Result<Rules, S3Error> {
        let Some(config) = config else {
            return Err(s3_error!(MalformedXML, "the lifecycle configuration is missing"));
        };
        if config.rules.is_empty() || config.rules.len() > MAX_RULES {
            return Err(s3_error!(
                MalformedXML,
                "a lifecycle configuration holds 1 to 1000 rules"
            ));
        }
        let mut rules = Vec::with_capacity(config.rules.len());
        for rule in config.rules {
            let rule = Rule::from_s3(rule)?;
            if rule.id.is_some() && rules.iter().any(|r: &Rule| r.id == rule.id) {
                return Err(s3_error!(
                    InvalidArgument,
                    "Rule ID must be unique. Found same ID for more than one rule"
                ));
            }
            rules.push(rule);
        }
        Ok(Rules(rules))
    }

    /// The configuration as GetBucketLifecycleConfiguration answers it.
    pub fn to_s3(&self) -> Vec<dto::LifecycleRule> {
        self.0.iter().map(Rule::to_s3).collect()
    }
}

fn positive(value: Option<i32>, what: &str) -> Result<Option<u32>, S3Error> {
    match value {
        None => Ok(None),
        Some(n) if n > 0 && n as u32 <= MAX_DAYS => Ok(Some(n as u32)),
        Some(n) if n > 0 => Err(s3_error!(InvalidArgument, "'{what}' must be at most {MAX_DAYS}")),
        Some(_) => Err(s3_error!(InvalidArgument, "'{what}' must be a positive integer")),
    }
}

fn size_bound(value: Option<i64>, what: &str) -> Result<Option<u64>, S3Error> {
    match value {
        None => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        Some(_) => Err(s3_error!(InvalidArgument, "'{what}' must not be negative")),
    }
}

fn no_tags() -> S3Error {
    s3_error!(
        NotImplemented,
        "lifecycle filters on object tags are not supported: objects on this relay carry no tags"
    )
}

impl Filter {
    fn from_s3(filter: dto::LifecycleRuleFilter) -> Result<Filter, S3Error> {
        if filter.tag.is_some() {
            return Err(no_tags());
        }
        let singles = usize::from(filter.prefix.is_some())
            + usize::from(filter.object_size_greater_than.is_some())
            + usize::from(filter.object_size_less_than.is_some());
        let (prefix, larger, smaller, and) = match filter.and {
            Some(_) if singles > 0 => {
                return Err(s3_error!(MalformedXML, "a Filter holds either one condition or an And"));
            }
            Some(and) => {
                if and.tags.as_ref().is_some_and(|t| !t.is_empty()) {
                    return Err(no_tags());
                }
                (
                    and.prefix,
                    and.object_size_greater_than,
                    and.object_size_less_than,
                    true,
                )
            }
            None if singles > 1 => {
                return Err(s3_error!(
                    MalformedXML,
                    "more than one condition in a Filter needs an And"
                ));
            }
            None => (
                filter.prefix,
                filter.object_size_greater_than,
                filter.object_size_less_than,
                false,
            ),
        };
        let filter = Filter {
            prefix,
            larger_than: size_bound(larger, "ObjectSizeGreaterThan")?,
            smaller_than: size_bound(smaller, "ObjectSizeLessThan")?,
            and,
        };
        if let (Some(gt), Some(lt)) = (filter.larger_than, filter.smaller_than)
            && gt >= lt
        {
            return Err(s3_error!(
                InvalidArgument,
                "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
            ));
        }
        if filter.smaller_than == Some(0) {
            return Err(s3_error!(
                InvalidArgument,
                "'ObjectSizeLessThan' must be a positive integer"
            ));
        }
        Ok(filter)
    }

    fn to_s3(&self) -> dto::LifecycleRuleFilter {
        if self.and {
            return dto::LifecycleRuleFilter {
                and: Some(dto::LifecycleRuleAndOperator {
                    prefix: self.prefix.clone(),
                    object_size_greater_than: self.larger_than.map(|n| n as i64),
                    object_size_less_than: self.smaller_than.map(|n| n as i64),
                    tags: None,
                }),
                ..Default::default()
            };
        }
        dto::LifecycleRuleFilter {
            prefix: self.prefix.clone(),
            object_size_greater_than: self.larger_than.map(|n| n as i64),
            object_size_less_than: self.smaller_than.map(|n| n as i64),
            ..Default::default()
        }
    }
}

impl Rule {
    fn from_s3(rule: dto::LifecycleRule) -> Result<Rule, S3Error> {
        if rule.id.as_ref().is_some_and(|id| id.len() > 255) {
            return Err(s3_error!(
                InvalidArgument,
                "ID length should not exceed allowed limit of 255"
            ));
        }
        let enabled = match rule.status.as_str() {
            ExpirationStatus::ENABLED => true,
            ExpirationStatus::DISABLED => false,
            _ => return Err(s3_error!(MalformedXML, "a rule's Status is Enabled or Disabled")),
        };
        if rule.transitions.as_ref().is_some_and(|t| !t.is_empty())
            || rule
                .noncurrent_version_transitions
                .as_ref()
                .is_some_and(|t| !t.is_empty())
        {
            return Err(s3_error!(
                NotImplemented,
                "lifecycle transitions are not supported: this relay has one storage class"
            ));
        }
        let (filter, legacy_prefix) = match (rule.filter, rule.prefix) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(MalformedXML, "a rule has a Filter or a Prefix, not both"));
            }
            (Some(filter), None) => (Filter::from_s3(filter)?, false),
            (None, Some(prefix)) => (
                Filter {
                    prefix: Some(prefix),
                    ..Default::default()
                },
                true,
            ),
            (None, None) => (Filter::default(), false),
        };
        let (expire, expired_object_delete_marker) = match rule.expiration {
            None => (None, None),
            Some(e) => {
                let marker = e.expired_object_delete_marker;
                let expire = match (e.days, e.date) {
                    (Some(_), Some(_)) => {
                        return Err(s3_error!(MalformedXML, "an Expiration has Days or a Date, not both"));
                    }
                    (Some(days), None) => Some(Expire::Days(
                        positive(Some(days), "Days' for Expiration action")?.expect("some"),
                    )),
                    (None, Some(date)) => Some(Expire::Date(midnight_day(date)?)),
                    (None, None) if marker.is_some() => None,
                    (None, None) => {
                        return Err(s3_error!(
                            MalformedXML,
                            "an Expiration needs Days, a Date or ExpiredObjectDeleteMarker"
                        ));
                    }
                };
                if expire.is_some() && marker.is_some() {
                    return Err(s3_error!(
                        MalformedXML,
                        "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy"
                    ));
                }
                (expire, marker)
            }
        };
        let abort_upload_days = positive(
            rule.abort_incomplete_multipart_upload
                .and_then(|a| a.days_after_initiation),
            "DaysAfterInitiation' for AbortIncompleteMultipartUpload action",
        )?;
        if abort_upload_days.is_some() && (filter.larger_than.is_some() || filter.smaller_than.is_some()) {
            return Err(s3_error!(
                InvalidRequest,
                "AbortIncompleteMultipartUpload cannot be specified with an object size filter"
            ));
        }
        let noncurrent_days = positive(
            rule.noncurrent_version_expiration.and_then(|n| n.noncurrent_days),
            "NoncurrentDays' for NoncurrentVersionExpiration action",
        )?;
        if expire.is_none()
            && expired_object_delete_marker.is_none()
            && abort_upload_days.is_none()
            && noncurrent_days.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "At least one action needs to be specified in a rule"
            ));
        }
        Ok(Rule {
            id: rule.id,
            enabled,
            filter,
            legacy_prefix,
            expire,
            abort_upload_days,
            expired_object_delete_marker,
            noncurrent_days,
        })
    }

    fn to_s3(&self) -> dto::LifecycleRule {
        let expiration =
            (self.expire.is_some() || self.expired_object_delete_marker.is_some()).then(|| dto::LifecycleExpiration {
                days: match self.expire {
                    Some(Expire::Days(d)) => Some(d as i32),
                    _ => None,
                },
                date: match self.expire {
                    Some(Expire::Date(day)) => day_timestamp(day),
                    _ => None,
                },
                expired_object_delete_marker: self.expired_object_delete_marker,
            });
        let (filter, prefix) = if self.legacy_prefix {
            (None, Some(self.filter.prefix.clone().unwrap_or_default()))
        } else {
            (Some(self.filter.to_s3()), None)
        };
        dto::LifecycleRule {
            abort_incomplete_multipart_upload: self.abort_upload_days.map(|d| dto::AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }),
            expiration,
            filter,
            id: self.id.clone(),
            noncurrent_version_expiration: self.noncurrent_days.map(|d| dto::NoncurrentVersionExpiration {
                noncurrent_days: Some(d as i32),
                newer_noncurrent_versions: None,
            }),
            noncurrent_version_transitions: None,
            prefix,
            status: ExpirationStatus::from_static(if self.enabled {
                ExpirationStatus::ENABLED
            } else {
                ExpirationStatus::DISABLED
            }),
            transitions: None,
        }
    }
}

/// The day an expiration `Date` starts; S3 accepts only midnight UTC.
fn midnight_day(date: dto::Timestamp) -> Result<u32, S3Error> {
    let secs = time::OffsetDateTime::from(date).unix_timestamp();
    if secs.rem_euclid(DAY_SECS) != 0 || secs < 0 {
        return Err(s3_error!(InvalidArgument, "'Date' must be at midnight GMT"));
    }
    Ok((secs / DAY_SECS) as u32)
}

/// Midnight UTC at the start of `day`; `None` past what a date can hold (year 9999).
pub fn day_timestamp(day: u32) -> Option<dto::Timestamp> {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::from(day) * DAY_SECS).ok()?;
    (at.year() <= 9999).then(|| dto::Timestamp::from(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(filter: Filter, expire: Expire) -> Rule {
        Rule {
            id: None,
            enabled: true,
            filter,
            legacy_prefix: false,
            expire: Some(expire),
            abort_upload_days: None,
            expired_object_delete_marker: None,
            noncurrent_days: None,
        }
    }

    const DAY_MS: i64 = DAY_SECS * 1000;

    #[test]
    fn days_round_up_to_the_next_midnight() {
        let rules = Rules(vec![rule(Filter::default(), Expire::Days(1))]);
        // Written at 23:59 on day 100: kept through day 101, gone after its end.
        let written = 100 * DAY_MS + DAY_MS - 60_000;
        assert_eq!(rules.last_day("k", 1, written).unwrap().0, Day(101));
        assert_eq!(rules.last_day("k", 1, 100 * DAY_MS).unwrap().0, Day(101));
    }

    #[test]
    fn a_date_keeps_objects_through_the_day_before() {
        let rules = Rules(vec![rule(Filter::default(), Expire::Date(200))]);
        assert_eq!(rules.last_day("k", 1, 0).unwrap().0, Day(199));
        assert_eq!(Day(199).end_secs(), 200 * DAY_SECS);
    }

    #[test]
    fn the_earliest_matching_enabled_rule_decides() {
        let logs = Filter {
            prefix: Some("logs/".into()),
            ..Default::default()
        };
        let big = Filter {
            larger_than: Some(1000),
            ..Default::default()
        };
        let mut off = rule(Filter::default(), Expire::Days(1));
        off.enabled = false;
        let rules = Rules(vec![rule(logs, Expire::Days(30)), rule(big, Expire::Days(7)), off]);
        assert_eq!(rules.last_day("logs/a", 10, 0).unwrap().0, Day(30));
        assert_eq!(rules.last_day("logs/a", 5000, 0).unwrap().0, Day(7));
        assert_eq!(rules.last_day("other", 1000, 0), None, "not larger than 1000");
        assert_eq!(rules.last_day("other", 1001, 0).unwrap().0, Day(7));
    }

    fn s3_rule(xml_like: impl FnOnce(&mut dto::LifecycleRule)) -> Result<Rules, S3Error> {
        let mut r = dto::LifecycleRule {
            abort_incomplete_multipart_upload: None,
            expiration: Some(dto::LifecycleExpiration {
                days: Some(3),
                date: None,
                expired_object_delete_marker: None,
            }),
            filter: None,
            id: Some("r".into()),
            noncurrent_version_expiration: None,
            noncurrent_version_transitions: None,
            prefix: None,
            status: ExpirationStatus::from_static(ExpirationStatus::ENABLED),
            transitions: None,
        };
        xml_like(&mut r);
        Rules::from_s3(Some(dto::BucketLifecycleConfiguration { rules: vec![r] }))
    }

    #[test]
    fn what_s3_refuses_is_refused() {
        let code = |r: Result<Rules, S3Error>| r.unwrap_err().code().as_str().to_owned();
        assert!(s3_rule(|_| {}).is_ok());
        assert_eq!(
            code(s3_rule(|r| r.expiration.as_mut().unwrap().days = Some(0))),
            "InvalidArgument"
        );
        assert_eq!(
            code(s3_rule(|r| r.expiration.as_mut().unwrap().date = day_timestamp(5))),
            "MalformedXML"
        );
        assert_eq!(
            code(s3_rule(|r| {
                r.expiration.as_mut().unwrap().days = None;
                r.expiration.as_mut().unwrap().date = Some(dto::Timestamp::from(
                    time::OffsetDateTime::from_unix_timestamp(DAY_SECS + 1).unwrap(),
                ));
            })),
            "InvalidArgument"
        );
        assert_eq!(code(s3_rule(|r| r.expiration = None)), "InvalidRequest");
        assert_eq!(
            code(s3_rule(|r| r.expiration.as_mut().unwrap().days = Some(i32::MAX))),
            "InvalidArgument",
            "a lifetime past any date"
        );
        // The longest lifetime allowed still has an expiry date S3 can write.
        let longest = Day(20_000).plus(MAX_DAYS).plus(1);
        assert!(day_timestamp(longest.0).is_some());
        assert_eq!(day_timestamp(u32::MAX), None);
        assert_eq!(
            code(s3_rule(|r| r.status = ExpirationStatus::from_static("On"))),
            "MalformedXML"
        );
        assert_eq!(
            code(s3_rule(|r| {
                r.filter = Some(dto::LifecycleRuleFilter {
                    tag: Some(dto::Tag {
                        key: Some("a".into()),
                        value: Some("b".into()),
                    }),
                    ..Default::default()
                })
            })),
            "NotImplemented"
        );
        assert_eq!(
            code(s3_rule(|r| {
                r.filter = Some(dto::LifecycleRuleFilter {
                    object_size_greater_than: Some(10),
                    object_size_less_than: Some(5),
                    ..Default::default()
                })
            })),
            "MalformedXML",
            "two conditions need an And"
        );
        assert_eq!(
            code(s3_rule(|r| {
                r.filter = Some(dto::LifecycleRuleFilter {
                    and: Some(dto::LifecycleRuleAndOperator {
                        object_size_greater_than: Some(10),
                        object_size_less_than: Some(5),
                        prefix: None,
                        tags: None,
                    }),
                    ..Default::default()
                })
            })),
            "InvalidArgument"
        );
        assert_eq!(
            code(s3_rule(|r| {
                r.filter = Some(dto::LifecycleRuleFilter::default());
                r.prefix = Some("a".into());
            })),
            "MalformedXML"
        );
    }

    #[test]
    fn a_configuration_reads_back_as_written() {
        let written = s3_rule(|r| {
            r.filter = Some(dto::LifecycleRuleFilter {
                and: Some(dto::LifecycleRuleAndOperator {
                    object_size_greater_than: Some(10),
                    object_size_less_than: Some(500),
                    prefix: Some("logs/".into()),
                    tags: None,
                }),
                ..Default::default()
            });
            r.abort_incomplete_multipart_upload = None;
        })
        .unwrap();
        let json = serde_json::to_vec(&written).unwrap();
        let read: Rules = serde_json::from_slice(&json).unwrap();
        assert_eq!(read, written);
        let back = Rules::from_s3(Some(dto::BucketLifecycleConfiguration { rules: read.to_s3() })).unwrap();
        assert_eq!(back, written);
    }
}
