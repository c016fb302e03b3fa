//! This version against the previous one: their figures per route, the
//! previous run's kept between views while its rows stay the same.

use super::*;

/// One route's figures under two versions.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CompareRow {
    /// Route template.
    pub route: String,
    /// Requests, previous and current version.
    pub requests: [u64; 2],
    /// Median ms, previous and current.
    pub p50_ms: [f64; 2],
    /// 99th percentile ms, previous and current.
    pub p99_ms: [f64; 2],
    /// 5xx over all requests, previous and current.
    pub error_rate: [f64; 2],
}

/// The current version against the one before it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Compare {
    /// The version before, and since when it ran (RFC 3339).
    pub previous: String,
    /// The version now.
    pub current: String,
    /// When the current version first started (RFC 3339).
    pub current_since: String,
    /// Per route seen under either, busiest first.
    pub routes: Vec<CompareRow>,
}

pub(super) fn run_figures(name: &str, r: &Merged) -> (u64, f64, f64, f64) {
    let e = endpoint(name, r);
    let rate = if r.counts.count > 0 {
        r.counts.errors_5xx as f64 / r.counts.count as f64
    } else {
        0.0
    };
    (r.counts.count, e.p50_ms, e.p99_ms, rate)
}

/// The previous version's figures, as read from the rows of `pieces`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct PreviousRun {
    pub(super) routes: RunFigures,
    pub(super) damaged: u64,
}

/// What the previous version's figures were read from: the file, the
/// pieces, and the number of route rows in each piece. Its run is closed,
/// so the history changes its rows only by pruning (which moves the
/// pieces' minute part or deletes rows: fewer route rows; the hour rows of
/// routes go after eight days), a late roll-up (a route row more) or a
/// clear (none left); a minute is only ever written or added to at the
/// present, after the run. The counts see each of those changes.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct RunKey {
    pub(super) dir: std::path::PathBuf,
    pub(super) pieces: Vec<Piece>,
    pub(super) route_rows: Vec<i64>,
}

/// The last previous run read, per process (views of several blogs in
/// one process have their own directories, so their own keys).
pub(super) static PREVIOUS_RUN: std::sync::Mutex<Option<(RunKey, PreviousRun)>> =
    std::sync::Mutex::new(None);

/// The previous version's routes over `pieces`: kept from the last view
/// when the key (see [`RunKey`]) is unchanged, else read and kept.
pub(super) fn previous_run(
    store: &Reader<'_>,
    names: &HashMap<i64, SeriesName>,
    layouts: &Layouts,
    pieces: Vec<Piece>,
    kept: Option<&std::path::Path>,
) -> Result<PreviousRun, String> {
    let read = |pieces: &[Piece]| -> Result<PreviousRun, String> {
        let mut g = Gather::new(layouts);
        g.read(store, pieces, Scan::Kind(KIND_ROUTE))?;
        Ok(PreviousRun {
            routes: g
                .of_kind(names, KIND_ROUTE)
                .into_iter()
                .map(|(name, r)| (name.to_string(), run_figures(name, r)))
                .collect(),
            damaged: g.damaged,
        })
    };
    let Some(dir) = kept else {
        return read(&pieces);
    };
    let key = RunKey {
        dir: dir.to_path_buf(),
        route_rows: pieces
            .iter()
            .map(|p| store.count_rows(*p, KIND_ROUTE))
            .collect::<Result<_, _>>()?,
        pieces,
    };
    let lock = || {
        PREVIOUS_RUN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some((k, run)) = lock().as_ref() {
        if *k == key {
            return Ok(run.clone());
        }
    }
    let run = read(&key.pieces)?;
    *lock() = Some((key, run.clone()));
    Ok(run)
}

/// The current version's routes against the previous version's, over
/// the whole history. `kept`: the history's directory, to keep the
/// previous version's figures between views.
pub(super) fn compare(
    store: &Reader<'_>,
    names: &HashMap<i64, SeriesName>,
    layouts: &Layouts,
    starts: &[(i64, String)],
    now: i64,
    kept: Option<&std::path::Path>,
) -> Result<(Option<Compare>, u64), String> {
    let Some((_, current)) = starts.last() else {
        return Ok((None, 0));
    };
    // The current version's run: back to the first of its latest
    // consecutive starts; the previous version's run before that.
    let mut i = starts.len() - 1;
    while i > 0 && starts[i - 1].1 == *current {
        i -= 1;
    }
    if i == 0 {
        return Ok((None, 0));
    }
    let current_from = starts[i].0;
    let previous = starts[i - 1].1.clone();
    let mut j = i - 1;
    while j > 0 && starts[j - 1].1 == previous {
        j -= 1;
    }
    let previous_from = starts[j].0;
    // A minute row is written when its minute ends, by the run that was
    // up then: it belongs to the run its end falls in.
    let ends_in = |from: i64| from - 59;
    let pieces = store.plan_coarse(
        ends_in(previous_from),
        ends_in(current_from),
        Some(KIND_ROUTE),
    )?;
    let before = previous_run(store, names, layouts, pieces, kept)?;
    let mut after = Gather::new(layouts);
    after.read(
        store,
        &store.plan_coarse(ends_in(current_from), now + 60, Some(KIND_ROUTE))?,
        Scan::Kind(KIND_ROUTE),
    )?;
    let damaged = before.damaged + after.damaged;
    let after: RunFigures = after
        .of_kind(names, KIND_ROUTE)
        .into_iter()
        .map(|(name, r)| (name.to_string(), run_figures(name, r)))
        .collect();
    let mut all_names: Vec<&str> = before
        .routes
        .keys()
        .chain(after.keys())
        .map(String::as_str)
        .collect();
    all_names.sort_unstable();
    all_names.dedup();
    let figures = |rows: &RunFigures, name: &str| -> (u64, f64, f64, f64) {
        rows.get(name).copied().unwrap_or((0, 0.0, 0.0, 0.0))
    };
    let mut routes: Vec<CompareRow> = all_names
        .into_iter()
        .map(|name| {
            let (b, a) = (figures(&before.routes, name), figures(&after, name));
            CompareRow {
                route: name.to_string(),
                requests: [b.0, a.0],
                p50_ms: [b.1, a.1],
                p99_ms: [b.2, a.2],
                error_rate: [b.3, a.3],
            }
        })
        .collect();
    routes.sort_by(|x, y| (y.requests[0] + y.requests[1]).cmp(&(x.requests[0] + x.requests[1])));
    Ok((
        Some(Compare {
            previous,
            current: current.clone(),
            current_since: rfc3339((current_from as u64).saturating_mul(1_000_000_000)),
            routes,
        }),
        damaged,
    ))
}
