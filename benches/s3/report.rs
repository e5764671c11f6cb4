//! Medians, ratios against the better peer, and the markdown written to docs/PERFORMANCE.md.

use crate::common::{median, today};

const MIB: f64 = 1024.0 * 1024.0;

/// Selects one figure.
type Pick = fn(&Figures) -> f64;

/// One round's figures for one server.
pub struct Figures {
    pub put_small_ops: f64,
    pub get_small_ops: f64,
    pub put_large_mibs: f64,
    pub get_large_mibs: f64,
    pub list_secs: f64,
}

struct Row {
    name: &'static str,
    medians: Figures,
    run_peak_rss: u64,
    upload_peak_rss: u64,
}

pub struct Report {
    rounds: usize,
    list_keys: usize,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(rounds: usize, list_keys: usize) -> Self {
        Self {
            rounds,
            list_keys,
            rows: Vec::new(),
        }
    }

    /// Adds a server; the first one added is ours, the others are the peers.
    pub fn add(&mut self, name: &'static str, rounds: &[Figures], run_peak_rss: u64, upload_peak_rss: u64) {
        let median_of = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
        self.rows.push(Row {
            name,
            medians: Figures {
                put_small_ops: median_of(|f| f.put_small_ops),
                get_small_ops: median_of(|f| f.get_small_ops),
                put_large_mibs: median_of(|f| f.put_large_mibs),
                get_large_mibs: median_of(|f| f.get_large_mibs),
                list_secs: median_of(|f| f.list_secs),
            },
            run_peak_rss,
            upload_peak_rss,
        });
    }

    pub fn markdown(&self) -> String {
        let (ours, peers) = self.rows.split_first().expect("at least one server");
        let mut out = String::new();
        out.push_str(&format!(
            "Measured {} on {} cores, medians of {} rounds; the same client drove all three servers in the same run.\n\n",
            today(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.rounds
        ));
        out.push_str("| figure |");
        for row in &self.rows {
            out.push_str(&format!(" {} |", row.name));
        }
        out.push_str(" ours ÷ best peer | target | met |\n|---|");
        for _ in &self.rows {
            out.push_str("---:|");
        }
        out.push_str("---:|---|---|\n");

        for (label, pick) in THROUGHPUT {
            let best = peers.iter().map(|r| pick(&r.medians)).fold(f64::MIN, f64::max);
            let ratio = pick(&ours.medians) / best;
            out.push_str(&format!("| {label} |"));
            for row in &self.rows {
                out.push_str(&format!(" {:.0} |", pick(&row.medians)));
            }
            out.push_str(&format!(" {ratio:.2}× | ≥ 1.2× | {} |\n", yes_no(ratio >= 1.2)));
        }

        let best_list = peers.iter().map(|r| r.medians.list_secs).fold(f64::MAX, f64::min);
        let list_ratio = ours.medians.list_secs / best_list;
        out.push_str(&format!("| list {} keys (s) |", self.list_keys));
        for row in &self.rows {
            out.push_str(&format!(" {:.3} |", row.medians.list_secs));
        }
        out.push_str(&format!(
            " {list_ratio:.2}× | ≤ 0.8× | {} |\n",
            yes_no(list_ratio <= 0.8)
        ));

        out.push_str("| peak RSS, 16 × 32 MiB uploads at once (MiB) |");
        for row in &self.rows {
            out.push_str(&format!(" {:.1} |", row.upload_peak_rss as f64 / MIB));
        }
        let ours_upload = ours.upload_peak_rss as f64 / MIB;
        out.push_str(&format!(" — | ≤ 64 MiB | {} |\n", yes_no(ours_upload <= 64.0)));

        out.push_str("| peak RSS over the whole run (MiB) |");
        for row in &self.rows {
            out.push_str(&format!(" {:.1} |", row.run_peak_rss as f64 / MIB));
        }
        out.push_str(" — | — | — |\n");
        out
    }
}

impl Report {
    /// For `--limits-overhead`: the first row with limits, metrics and a quota on, the second
    /// without, as ratios (target: at most 5 % slower).
    pub fn overhead_markdown(&self) -> String {
        let [on, off] = &self.rows[..] else {
            panic!("two rows: limits on, limits off");
        };
        let mut out = format!(
            "`cargo bench --bench s3 -- --limits-overhead --rounds 3 --write docs/PERFORMANCE.md`. \
             Measured {} on {} cores, medians of {} rounds, both relays in the same run: one with \
             `--ops-addr` (scraped every second), `--requests-per-second 1000000`, `--max-storage 1T`, \
             `--max-connections 512` and `--ttl 3650d` (every read and listing checks each \
             object's expiry), one without. A round's listing time is the median of five listings.\n\n",
            today(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.rounds
        );
        out.push_str("| figure | limits off | limits on | on ÷ off | target | met |\n|---|---:|---:|---:|---|---|\n");
        for (label, pick) in THROUGHPUT {
            let (a, b) = (pick(&off.medians), pick(&on.medians));
            let ratio = b / a;
            out.push_str(&format!(
                "| {label} | {a:.0} | {b:.0} | {ratio:.2}× | ≥ 0.95× | {} |\n",
                yes_no(ratio >= 0.95)
            ));
        }
        let (a, b) = (off.medians.list_secs, on.medians.list_secs);
        out.push_str(&format!(
            "| list {} keys (s) | {a:.4} | {b:.4} | {:.2}× | ≤ 1.05× | {} |\n",
            self.list_keys,
            b / a,
            yes_no(b / a <= 1.05)
        ));
        out
    }
}

/// The throughput figures, each with how to read it from a round's figures.
const THROUGHPUT: [(&str, Pick); 4] = [
    ("64 KiB PUT, c=16 (ops/s)", |f| f.put_small_ops),
    ("64 KiB GET, c=16 (ops/s)", |f| f.get_small_ops),
    ("32 MiB PUT, c=4 (MiB/s)", |f| f.put_large_mibs),
    ("32 MiB GET, c=4 (MiB/s)", |f| f.get_large_mibs),
];

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
