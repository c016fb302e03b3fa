//! Stored rows merged into one accumulator per series, and a series'
//! figures from it.

use super::*;

pub(super) fn ms(ns: f64) -> f64 {
    (ns / 1e3).round() / 1e3
}

/// A series' rows of a range merged: what a table line shows. Rows are
/// added straight from their stored blobs (no histogram per row).
#[derive(Clone, Debug, Default)]
pub(super) struct Merged {
    pub(super) counts: Counts,
    pub(super) slow: u64,
    /// The latest RSS known (rows after the first one replace it when
    /// they know it).
    pub(super) rss: u64,
    pub(super) first_start: Option<i64>,
    pub(super) latency: Accumulator,
}

impl Merged {
    /// Adds a row; a damaged blob adds nothing (and says so).
    pub(super) fn add(&mut self, h: &Head, blob: &[u8], layouts: &Layouts) -> Result<(), Damaged> {
        self.latency.add_blob(blob, layouts)?;
        self.add_head(h);
        Ok(())
    }

    /// Adds a row's figures but its distribution.
    pub(super) fn add_head(&mut self, h: &Head) {
        self.counts.add(&h.counts);
        self.slow = self.slow.saturating_add(h.slow);
        match self.first_start {
            None => {
                self.first_start = Some(h.start);
                self.rss = h.rss;
            }
            Some(first) => {
                if h.rss > 0 && h.start >= first {
                    self.rss = h.rss;
                }
            }
        }
    }
}

/// The figures of merged rows of one series.
pub(super) fn endpoint(name: &str, r: &Merged) -> EndpointStats {
    let h = &r.latency;
    let q = |q: f64| ms(h.value_at_quantile(q) as f64);
    let mut status = BTreeMap::new();
    let ok = r
        .counts
        .count
        .saturating_sub(r.counts.errors_5xx + r.counts.errors_4xx);
    for (k, n) in [
        ("1xx-3xx", ok),
        ("4xx", r.counts.errors_4xx),
        ("5xx", r.counts.errors_5xx),
    ] {
        if n > 0 {
            status.insert(k.to_string(), n);
        }
    }
    EndpointStats {
        name: name.to_string(),
        count: r.counts.count,
        mean_ms: if r.counts.count > 0 {
            ms(r.counts.sum_ns as f64 / r.counts.count as f64)
        } else {
            0.0
        },
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: ms(h.max() as f64),
        bytes_mean: if r.counts.count > 0 {
            (r.counts.bytes as f64 / r.counts.count as f64).round()
        } else {
            0.0
        },
        status,
        errors_5xx: r.counts.errors_5xx,
        client_errors_4xx: r.counts.errors_4xx,
        rss_delta: None,
    }
}

/// What reading a range's rows gathers: per series their merged figures,
/// the span the rows cover, rows skipped as damaged.
pub(super) struct Gather<'a> {
    pub(super) layouts: &'a Layouts,
    pub(super) series: BTreeMap<i64, Merged>,
    pub(super) rows: Rows,
    pub(super) damaged: u64,
}

impl<'a> Gather<'a> {
    pub(super) fn new(layouts: &'a Layouts) -> Gather<'a> {
        Gather {
            layouts,
            series: BTreeMap::new(),
            rows: Rows::default(),
            damaged: 0,
        }
    }

    /// Reads `pieces` of the series `which` selects into `self.series`.
    pub(super) fn read(
        &mut self,
        store: &Reader<'_>,
        pieces: &[Piece],
        which: Scan,
    ) -> Result<(), String> {
        for &p in pieces {
            store.scan(p, which, &mut |h, blob| {
                let m = self.series.entry(h.series).or_default();
                match m.add(h, blob, self.layouts) {
                    Ok(()) => self.rows.see(h),
                    Err(_) => self.damaged += 1,
                }
            })?;
        }
        Ok(())
    }

    /// The merged series of `kind`, with their names.
    pub(super) fn of_kind<'n>(
        &self,
        names: &'n HashMap<i64, SeriesName>,
        kind: i64,
    ) -> Vec<(&'n str, &Merged)> {
        self.series
            .iter()
            .filter_map(|(id, m)| {
                let n = names.get(id)?;
                (n.kind == kind).then_some((n.name.as_str(), m))
            })
            .collect()
    }
}
