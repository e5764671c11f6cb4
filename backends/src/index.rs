//! The in-memory, sorted listing index of one bucket.
//!
//! The stored objects are the source of truth; a store rebuilds this index from them on start and
//! updated under the per-key commit lock on every write. It makes a listing page cost
//! O(log n + page size) whatever the bucket size, with no disk I/O.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::model::{ListPage, ListQuery, ObjectSummary};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: i64,
    /// The blob directory of a multipart object, to delete with it.
    pub blob: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: BTreeMap<String, Entry>,
    /// The sum of the entries' sizes, kept as they change: the storage quota asks on every write.
    bytes: u64,
}

impl Index {
    /// Objects and their bytes.
    pub fn usage(&self) -> (u64, u64) {
        (self.entries.len() as u64, self.bytes)
    }
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }
    pub fn insert(&mut self, key: String, entry: Entry) -> Option<Entry> {
        self.bytes += entry.size;
        let replaced = self.entries.insert(key, entry);
        if let Some(old) = &replaced {
            self.bytes -= old.size;
        }
        replaced
    }
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let removed = self.entries.remove(key);
        if let Some(old) = &removed {
            self.bytes -= old.size;
        }
        removed
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        self.entries.values().filter_map(|e| e.blob.as_deref())
    }

    /// One page of a listing. Keys under a common prefix are skipped with a single range
    /// seek, so a "folder" of a million keys costs one entry on the page, not a million.
    pub fn list(&self, q: &ListQuery) -> ListPage {
        let prefix = q.prefix.as_str();
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut lower: Bound<String> = Bound::Included(prefix.to_owned());
        if let Some(after) = q.start_after.as_deref().filter(|a| *a >= prefix) {
            lower = Bound::Excluded(after.to_owned());
            // Resuming after a common prefix: skip everything under it.
            if let Some(cp) = delimiter.and_then(|d| common_prefix(after, prefix, d)) {
                if let Some(next) = successor(cp) {
                    lower = Bound::Included(next);
                } else {
                    return ListPage::default();
                }
            }
        }

        let mut page = ListPage::default();
        let mut count = 0usize;
        'seek: loop {
            let range = self
                .entries
                .range::<str, _>((lower.as_ref().map(String::as_str), Bound::Unbounded));
            for (key, entry) in range {
                if !key.starts_with(prefix) {
                    break 'seek;
                }
                if count >= q.max_keys {
                    page.truncated = true;
                    break 'seek;
                }
                count += 1;
                if let Some(cp) = delimiter.and_then(|d| common_prefix(key, prefix, d)) {
                    page.common_prefixes.push(cp.to_owned());
                    page.last = Some(cp.to_owned());
                    match successor(cp) {
                        Some(next) => {
                            lower = Bound::Included(next);
                            continue 'seek;
                        }
                        None => break 'seek,
                    }
                }
                page.objects.push(ObjectSummary {
                    key: key.clone(),
                    size: entry.size,
                    etag: entry.etag.clone(),
                    last_modified_ms: entry.last_modified_ms,
                });
                page.last = Some(key.clone());
            }
            break;
        }
        page
    }
}

/// The common prefix `key` rolls up into: `prefix` + everything up to and including the first
/// `delimiter` after it.
fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    let rest = key.strip_prefix(prefix)?;
    rest.find(delimiter)
        .map(|pos| &key[..prefix.len() + pos + delimiter.len()])
}

/// The smallest string greater than every string that starts with `s`.
fn successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(c) = chars.pop() {
        let mut next = c as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(n) = char::from_u32(next) {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(keys: &[&str]) -> Index {
        let mut idx = Index::default();
        for k in keys {
            idx.insert(
                k.to_string(),
                Entry {
                    size: 1,
                    etag: "e".into(),
                    last_modified_ms: 0,
                    blob: None,
                },
            );
        }
        idx
    }

    fn q(prefix: &str, delimiter: Option<&str>, start_after: Option<&str>, max_keys: usize) -> ListQuery {
        ListQuery {
            prefix: prefix.into(),
            delimiter: delimiter.map(Into::into),
            start_after: start_after.map(Into::into),
            max_keys,
        }
    }

    #[test]
    fn the_byte_count_follows_inserts_overwrites_and_removals() {
        let mut idx = index(&["a", "b"]);
        assert_eq!(idx.usage(), (2, 2));
        let big = Entry {
            size: 10,
            etag: "e".into(),
            last_modified_ms: 0,
            blob: None,
        };
        idx.insert("a".into(), big);
        assert_eq!(idx.usage(), (2, 11));
        idx.remove("a");
        idx.remove("missing");
        assert_eq!(idx.usage(), (1, 1));
    }

    fn keys(page: &ListPage) -> Vec<&str> {
        page.objects.iter().map(|o| o.key.as_str()).collect()
    }

    #[test]
    fn delimiter_rolls_up_and_pages_resume_after_prefixes() {
        let idx = index(&["a", "b/1", "b/2", "b/3", "c", "d/x/y", "e"]);
        let p1 = idx.list(&q("", Some("/"), None, 3));
        assert_eq!(keys(&p1), ["a", "c"]);
        assert_eq!(p1.common_prefixes, ["b/"]);
        assert!(p1.truncated);
        let p2 = idx.list(&q("", Some("/"), p1.last.as_deref(), 3));
        assert_eq!(keys(&p2), ["e"]);
        assert_eq!(p2.common_prefixes, ["d/"]);
        assert!(!p2.truncated);
        // Resuming after a common prefix must not repeat it.
        let p = idx.list(&q("", Some("/"), Some("b/"), 10));
        assert_eq!(keys(&p), ["c", "e"]);
    }

    #[test]
    fn prefix_and_start_after() {
        let idx = index(&["x/1", "x/2", "x/3", "y/1"]);
        let p = idx.list(&q("x/", None, Some("x/1"), 10));
        assert_eq!(keys(&p), ["x/2", "x/3"]);
        let p = idx.list(&q("x/", None, Some("a"), 10));
        assert_eq!(keys(&p), ["x/1", "x/2", "x/3"]);
        let p = idx.list(&q("", None, None, 2));
        assert!(p.truncated);
        assert_eq!(p.last.as_deref(), Some("x/2"));
    }

    #[test]
    fn unicode_orders_by_code_point_and_successor_skips_surrogates() {
        let idx = index(&["é/1", "z", "\u{D7FF}/a", "\u{E000}"]);
        let p = idx.list(&q("", Some("/"), None, 10));
        assert_eq!(keys(&p), ["z", "\u{E000}"]);
        assert_eq!(p.common_prefixes, ["é/", "\u{D7FF}/"]);
        assert_eq!(successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(successor("\u{10FFFF}"), None);
    }
}
