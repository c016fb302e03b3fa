//! Issue 20: a history file written before (a `rows` table, a V2
//! hdrhistogram blob per row, names in every row) is upgraded in place at
//! start with nothing lost, a failed upgrade leaves it as it was, and the
//! new read path (blobs added straight into one accumulator per series)
//! gives the figures the old one gave (a V2 histogram decoded per row and
//! merged): the same counts, p50, p95, p99 and max per series.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use rusqlite::{params, Connection};
use starpunk::config::PerfConfig;
use starpunk::monitoring::ticker::history::{
    schema, Accumulator, History, Piece, ReadOnly, Scan, DAY, FILE, HOUR, HOURS_KEPT, KIND_ALL,
    KIND_PATTERN, KIND_ROUTE, MINUTE, QUARTER, SIX_HOURS,
};
use starpunk::monitoring::views::range::Range;
use starpunk::monitoring::views::DatabaseView;
use starpunk::monitoring::Monitor;

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "starpunk-history-upgrade-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn empty() -> Histogram<u64> {
    starpunk_perf::new_hdr(&starpunk_perf::RecorderConfig::default().layout)
}

/// Unix seconds now, clear of an hour's end: a test writes its old file
/// and opens it within seconds, and an hour completed in between would be
/// rolled up at the open (rows the old file did not have).
fn now() -> i64 {
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let into_hour = unix().rem_euclid(HOUR);
    if into_hour > HOUR - 60 {
        std::thread::sleep(std::time::Duration::from_secs(
            (HOUR - into_hour + 2) as u64,
        ));
    }
    unix()
}

/// The schema of the build before issue 20, as it created it.
const OLD_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS starts (at INTEGER NOT NULL, version TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS rows (
        resolution INTEGER NOT NULL,
        start INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        sum_ns INTEGER NOT NULL,
        errors_5xx INTEGER NOT NULL,
        errors_4xx INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        slow INTEGER NOT NULL,
        rss INTEGER NOT NULL,
        latency BLOB NOT NULL,
        PRIMARY KEY (resolution, start, kind, name)
    ) WITHOUT ROWID;";

/// One old row.
#[derive(Clone, Debug)]
struct OldRow {
    resolution: i64,
    start: i64,
    kind: i64,
    name: String,
    ints: [i64; 8],
    latency: Histogram<u64>,
}

fn v2(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    V2Serializer::new().serialize(h, &mut out).unwrap();
    out
}

fn insert_old(conn: &Connection, r: &OldRow) {
    let i = &r.ints;
    conn.execute(
        "INSERT OR REPLACE INTO rows VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            r.resolution,
            r.start,
            r.kind,
            r.name,
            i[0],
            i[1],
            i[2],
            i[3],
            i[4],
            i[5],
            i[6],
            i[7],
            v2(&r.latency)
        ],
    )
    .unwrap();
}

const SERIES: [(i64, &str); 7] = [
    (KIND_ROUTE, "GET /"),
    (KIND_ROUTE, "GET /notes/{slug}"),
    (KIND_ROUTE, "GET /feed.xml"),
    (KIND_ROUTE, "POST /micropub"),
    (KIND_PATTERN, "SELECT * FROM notes WHERE slug = ?"),
    (KIND_PATTERN, "SELECT count(*) FROM notes"),
    (KIND_PATTERN, "INSERT INTO notes (slug, body) VALUES (?, ?)"),
];

/// A small xorshift, so a run's data are its own but reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A row of `events` random latencies (0.1 ms to 50 ms, skewed fast;
/// now and then a slow one of seconds) and counts.
fn random_row(
    rng: &mut Rng,
    resolution: i64,
    start: i64,
    kind: i64,
    name: &str,
    events: u64,
) -> OldRow {
    let mut h = empty();
    let mut ints = [0i64; 8];
    for _ in 0..events {
        let r = rng.next();
        let ns = if r.is_multiple_of(97) {
            2_000_000_000 + r % 5_000_000_000
        } else {
            100_000 + (r % 1_000) * (r % 1_000) * 50
        };
        h.saturating_record(ns);
        ints[0] += 1;
        ints[1] = ints[1].wrapping_add(ns as i64);
        ints[2] += i64::from(r.is_multiple_of(40));
        ints[3] += i64::from(r % 25 == 1);
        ints[4] += (r % 9_000) as i64;
        ints[5] += (r % 7) as i64;
    }
    OldRow {
        resolution,
        start,
        kind,
        name: name.to_string(),
        ints,
        latency: h,
    }
}

/// Writes, as the old build did, six days of history ending two minutes
/// before `now`: a day of minute rows (each series busy about half the
/// minutes), every complete hour rolled up into hour rows, minutes past
/// 25 hours pruned, hour rows before that; all-requests rows with slow
/// statements and RSS; a few starts. Returns every row written.
fn write_old_history(dir: &Path, now: i64) -> Vec<OldRow> {
    write_old_history_days(dir, now, 6)
}

/// As [`write_old_history`], with hour rows from `days` days before.
fn write_old_history_days(dir: &Path, now: i64, days: i64) -> Vec<OldRow> {
    let conn = Connection::open(dir.join(FILE)).unwrap();
    conn.execute_batch(OLD_SCHEMA).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ now as u64);
    let minute_now = now - now.rem_euclid(MINUTE);
    let hour_now = now - now.rem_euclid(HOUR);
    let mut rows: Vec<OldRow> = Vec::new();
    // Hour rows written before the last day's minutes.
    let first_minute = hour_now - 26 * HOUR;
    let mut h = hour_now - days * 24 * HOUR;
    while h < first_minute {
        let mut all = empty();
        let mut all_ints = [0i64; 8];
        for (kind, name) in SERIES {
            if rng.next().is_multiple_of(5) {
                continue;
            }
            let events = 60 + rng.next() % 600;
            let r = random_row(&mut rng, HOUR, h, kind, name, events);
            if kind == KIND_ROUTE {
                all.add(&r.latency).unwrap();
                for (a, x) in all_ints.iter_mut().zip(&r.ints).take(5) {
                    *a = a.wrapping_add(*x);
                }
            }
            rows.push(r);
        }
        all_ints[6] = (rng.next() % 30) as i64;
        all_ints[7] = (40 << 20) + (rng.next() % (8 << 20)) as i64;
        rows.push(OldRow {
            resolution: HOUR,
            start: h,
            kind: KIND_ALL,
            name: String::new(),
            ints: all_ints,
            latency: all,
        });
        h += HOUR;
    }
    // Minute rows, then the roll-up of every complete hour.
    let mut minutes: Vec<OldRow> = Vec::new();
    let mut m = first_minute;
    while m < minute_now - MINUTE {
        let mut all = empty();
        let mut all_ints = [0i64; 8];
        for (kind, name) in SERIES {
            if rng.next().is_multiple_of(2) {
                continue;
            }
            let events = 1 + rng.next() % 20;
            let r = random_row(&mut rng, MINUTE, m, kind, name, events);
            if kind == KIND_ROUTE {
                all.add(&r.latency).unwrap();
                for (a, x) in all_ints.iter_mut().zip(&r.ints).take(5) {
                    *a = a.wrapping_add(*x);
                }
            }
            minutes.push(r);
        }
        all_ints[6] = (rng.next() % 3) as i64;
        all_ints[7] = (40 << 20) + (rng.next() % (8 << 20)) as i64;
        minutes.push(OldRow {
            resolution: MINUTE,
            start: m,
            kind: KIND_ALL,
            name: String::new(),
            ints: all_ints,
            latency: all,
        });
        m += MINUTE;
    }
    let mut hours: Vec<OldRow> = Vec::new();
    for r in &minutes {
        let hour = r.start - r.start.rem_euclid(HOUR);
        // Complete once its last minute was written (the old writer
        // rolled it up then).
        if hour + HOUR > minute_now {
            continue;
        }
        match hours
            .iter_mut()
            .find(|h| h.start == hour && h.kind == r.kind && h.name == r.name)
        {
            Some(h) => {
                for i in 0..8 {
                    h.ints[i] = if i == 1 {
                        h.ints[i].wrapping_add(r.ints[i])
                    } else if i == 7 {
                        if r.ints[7] > 0 {
                            r.ints[7]
                        } else {
                            h.ints[7]
                        }
                    } else {
                        h.ints[i] + r.ints[i]
                    };
                }
                h.latency.add(&r.latency).unwrap();
            }
            None => hours.push(OldRow {
                resolution: HOUR,
                start: hour,
                ..r.clone()
            }),
        }
    }
    rows.extend(hours);
    // Minutes past 25 hours pruned.
    rows.extend(minutes.into_iter().filter(|r| r.start >= now - 25 * HOUR));
    let tx = conn.unchecked_transaction().unwrap();
    for r in &rows {
        insert_old(&tx, r);
    }
    for (at, version) in [
        (hour_now - 5 * 24 * HOUR + 17, "0.9.0"),
        (hour_now - 2 * 24 * HOUR + 1_234, "0.9.1"),
        (now - 3 * HOUR, "0.9.1"),
    ] {
        tx.execute(
            "INSERT INTO starts (at, version) VALUES (?1, ?2)",
            params![at, version],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    rows
}

/// Every row of the old table of `file`, with its V2 blob decoded.
fn old_rows(file: &Path) -> Vec<OldRow> {
    let conn = Connection::open(file).unwrap();
    let mut q = conn
        .prepare("SELECT * FROM rows ORDER BY 1, 2, 3, 4")
        .unwrap();
    let mut de = Deserializer::new();
    let rows = q
        .query_map([], |r| {
            let mut ints = [0i64; 8];
            for (i, v) in ints.iter_mut().enumerate() {
                *v = r.get(4 + i)?;
            }
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                ints,
                r.get::<_, Vec<u8>>(12)?,
            ))
        })
        .unwrap()
        .map(|r| {
            let (resolution, start, kind, name, ints, blob) = r.unwrap();
            OldRow {
                resolution,
                start,
                kind,
                name,
                ints,
                latency: de.deserialize(&mut blob.as_slice()).unwrap(),
            }
        })
        .collect();
    rows
}

/// What a table line shows of a series over a range.
#[derive(Debug, PartialEq)]
struct Figures {
    ints: [i64; 6],
    total: u64,
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
}

/// The rows of the file before that a piece of a rolled-up resolution
/// stands for: a quarter-hour row holds the minutes of its quarter, a
/// six-hour or day row the hours of its six or 24 (every row starting in
/// the piece, whole).
fn as_old_rows(p: Piece) -> Piece {
    let (finer, level) = match p.resolution {
        QUARTER => (MINUTE, QUARTER),
        SIX_HOURS => (HOUR, SIX_HOURS),
        DAY => (HOUR, DAY),
        _ => return p,
    };
    Piece {
        resolution: finer,
        from: p.from,
        to: p.to + (level - p.to.rem_euclid(level)) % level,
    }
}

/// The old read path: per row a V2 histogram decoded, then merged (the
/// first row's copy, the others added), over `pieces`, per series of
/// `kind`. Rolled-up pieces read the old rows they stand for.
fn old_figures(file: &Path, pieces: &[Piece], kind: i64) -> BTreeMap<String, Figures> {
    let conn = Connection::open(file).unwrap();
    let mut de = Deserializer::new();
    let mut merged: BTreeMap<String, ([i64; 6], Histogram<u64>)> = BTreeMap::new();
    for p in pieces.iter().map(|p| as_old_rows(*p)) {
        let mut q = conn
            .prepare(
                "SELECT name, count, sum_ns, errors_5xx, errors_4xx, bytes, rows, latency
                 FROM rows WHERE resolution = ?1 AND start >= ?2 AND start < ?3 AND kind = ?4
                 ORDER BY start",
            )
            .unwrap();
        let rows = q
            .query_map(params![p.resolution, p.from, p.to, kind], |r| {
                let mut ints = [0i64; 6];
                for (i, v) in ints.iter_mut().enumerate() {
                    *v = r.get(1 + i)?;
                }
                Ok((r.get::<_, String>(0)?, ints, r.get::<_, Vec<u8>>(7)?))
            })
            .unwrap();
        for row in rows {
            let (name, ints, blob) = row.unwrap();
            let h: Histogram<u64> = de.deserialize(&mut blob.as_slice()).unwrap();
            match merged.get_mut(&name) {
                Some((i, m)) => {
                    for k in 0..6 {
                        i[k] = i[k].wrapping_add(ints[k]);
                    }
                    m.add(&h).unwrap();
                }
                None => {
                    merged.insert(name, (ints, h));
                }
            }
        }
    }
    merged
        .into_iter()
        .map(|(name, (ints, h))| {
            (
                name,
                Figures {
                    ints,
                    total: h.len(),
                    p50: h.value_at_quantile(0.5),
                    p95: h.value_at_quantile(0.95),
                    p99: h.value_at_quantile(0.99),
                    max: h.max(),
                },
            )
        })
        .collect()
}

/// The new read path: blobs added straight into one accumulator per
/// series.
fn new_figures(dir: &Path, pieces: &[Piece], kind: i64) -> BTreeMap<String, Figures> {
    let read = ReadOnly::open(dir).unwrap();
    let store = read.reader();
    let layouts = store.layouts().unwrap();
    let names = store.series().unwrap();
    let mut merged: BTreeMap<i64, ([i64; 6], Accumulator)> = BTreeMap::new();
    for p in pieces {
        store
            .scan(*p, Scan::Kind(kind), &mut |h, blob| {
                let (ints, acc) = merged.entry(h.series).or_default();
                acc.add_blob(blob, &layouts).unwrap();
                let c = &h.counts;
                for (k, v) in [
                    c.count,
                    c.sum_ns,
                    c.errors_5xx,
                    c.errors_4xx,
                    c.bytes,
                    c.rows,
                ]
                .into_iter()
                .enumerate()
                {
                    ints[k] = ints[k].wrapping_add(v as i64);
                }
            })
            .unwrap();
    }
    assert_eq!(store.damaged(), 0);
    merged
        .into_iter()
        .map(|(id, (ints, acc))| {
            (
                names[&id].name.clone(),
                Figures {
                    ints,
                    total: acc.total(),
                    p50: acc.value_at_quantile(0.5),
                    p95: acc.value_at_quantile(0.95),
                    p99: acc.value_at_quantile(0.99),
                    max: acc.max(),
                },
            )
        })
        .collect()
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

#[test]
fn an_old_history_is_upgraded_in_place_and_reads_exactly_as_before() {
    let dir = fresh_dir("exact");
    let now = now();
    let written = write_old_history(&dir, now);
    assert!(written.len() > 5_000, "{}", written.len());
    // The old file, kept aside for the old read path.
    let old_dir = fresh_dir("exact-old");
    std::fs::copy(dir.join(FILE), old_dir.join(FILE)).unwrap();
    let old_file = old_dir.join(FILE);
    let before = old_rows(&old_file);
    assert_eq!(before.len(), written.len());
    let old_bytes = History::bytes(&dir);

    // Opened by this build (as the blog opens it at start): upgraded.
    let monitor = Monitor::new(&PerfConfig {
        monitoring_enabled: true,
        history_days: 30,
        ..PerfConfig::default()
    });
    monitor.open_history(&dir);
    {
        let h = monitor.history().unwrap();
        assert!(h.store.is_some(), "{:?}", h.error);
    }
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    // Every row, every figure: the integers as they were, the
    // distribution the same counters (same max, min, total).
    let read = ReadOnly::open(&dir).unwrap();
    let store = read.reader();
    let mut after = Vec::new();
    for resolution in [MINUTE, HOUR] {
        after.extend(store.rows_between(resolution, 0, i64::MAX, None).unwrap());
    }
    assert_eq!(store.damaged(), 0);
    assert_eq!(after.len(), before.len());
    let mut after: Vec<_> = after
        .into_iter()
        .map(|r| ((r.resolution, r.start, r.kind, r.name.clone()), r))
        .collect();
    after.sort_by(|a, b| a.0.cmp(&b.0));
    for (old, (_, new)) in before.iter().zip(&after) {
        assert_eq!(
            (old.resolution, old.start, old.kind, &old.name),
            (new.resolution, new.start, new.kind, &new.name)
        );
        let c = &new.counts;
        assert_eq!(
            old.ints,
            [
                c.count as i64,
                c.sum_ns as i64,
                c.errors_5xx as i64,
                c.errors_4xx as i64,
                c.bytes as i64,
                c.rows as i64,
                new.slow as i64,
                new.rss as i64
            ],
            "{} {}",
            old.start,
            old.name
        );
        assert_eq!(new.latency.to_histogram(), old.latency, "{}", old.name);
    }
    // The starts too; and the old table's columns still answer through
    // the view of the same name.
    assert_eq!(store.starts(0).unwrap().len(), 4);
    let (minute_total, kinds): (i64, i64) = conn
        .query_row(
            "SELECT sum(count), count(DISTINCT kind) FROM rows WHERE resolution = 60",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let expected: i64 = before
        .iter()
        .filter(|r| r.resolution == MINUTE)
        .map(|r| r.ints[0])
        .sum();
    assert_eq!((minute_total, kinds), (expected, 3));
    // Smaller: the old pages given back (and the rows the open rolled up
    // added: quarter-hours, six hours and days).
    let new_bytes = History::bytes(&dir);
    assert!(new_bytes * 5 < old_bytes * 3, "{new_bytes} vs {old_bytes}");

    // The same figures by both read paths, over the ranges the views
    // read and some odd ones.
    let to = now + 60;
    let ranges = [
        (now - HOUR, to),
        (now - 86_400, to),
        (now - 7 * 86_400, to),
        (now - 30 * HOUR - 17 * MINUTE, now - 3 * HOUR + 5 * MINUTE),
        (now - 4 * 86_400 + 1_111, now - 2 * 86_400 - 2_222),
    ];
    let mut compared = 0;
    let mut rolled_up = std::collections::BTreeSet::new();
    for (from, to) in ranges {
        for kind in [KIND_ALL, KIND_ROUTE, KIND_PATTERN] {
            let mut plans = vec![
                store.plan_coarse(from, to, Some(kind)).unwrap(),
                store.plan_hours(from, to, Some(kind)).unwrap(),
            ];
            if kind == KIND_ALL {
                let fine = store.plan_fine(from, to).unwrap();
                plans.push(store.refine(fine.clone(), QUARTER, Some(kind)).unwrap());
                plans.push(fine);
            }
            for pieces in plans {
                rolled_up.extend(pieces.iter().map(|p| p.resolution));
                let old = old_figures(&old_file, &pieces, kind);
                let new = new_figures(&dir, &pieces, kind);
                assert!(!old.is_empty(), "{from}..{to} {kind}");
                assert_eq!(new, old, "{from}..{to} kind {kind} {pieces:?}");
                compared += old.len();
            }
        }
    }
    assert!(compared > 30, "{compared}");
    // Quarter-hour, six-hour and day rows were among them (rolled up as
    // the upgraded file opened), each the merge of the old rows it holds.
    assert!(
        [QUARTER, SIX_HOURS, DAY]
            .iter()
            .all(|r| rolled_up.contains(r)),
        "{rolled_up:?}"
    );

    // The 7-day view end to end: each route's line as the old merge of
    // the same rows gives it.
    let snap = monitor
        .range_snapshot(Range::Week, DatabaseView::default())
        .unwrap();
    let range = snap.range.as_ref().unwrap();
    assert_eq!(range.damaged_rows, 0);
    let pieces = store
        .plan_coarse(range.from_unix, range.to_unix + 60, Some(KIND_ROUTE))
        .unwrap();
    let old = old_figures(&old_file, &pieces, KIND_ROUTE);
    assert_eq!(snap.endpoints.len(), old.len());
    for e in &snap.endpoints {
        let o = &old[&e.name];
        assert_eq!(e.count as i64, o.ints[0], "{}", e.name);
        assert_eq!(e.errors_5xx as i64, o.ints[2]);
        assert_eq!(
            (e.p50_ms, e.p95_ms, e.p99_ms, e.max_ms),
            (ms(o.p50), ms(o.p95), ms(o.p99), ms(o.max)),
            "{}",
            e.name
        );
    }
    let compare = range.compare.as_ref().unwrap();
    assert_eq!(
        (compare.previous.as_str(), compare.current.as_str()),
        ("0.9.1", env!("CARGO_PKG_VERSION"))
    );
    // The previous version's side, as the old merge of its run's rows
    // gives it; kept between views (the next view the same), and read
    // again when the rows of its run change (a rolled-up hour of it
    // deleted here: the figures follow).
    let starts = store.starts(0).unwrap();
    let (previous_from, current_from) = (starts[1].0, starts[3].0);
    let before_side = |snap: &starpunk::monitoring::views::PerfSnapshot| {
        let c = snap.range.as_ref().unwrap().compare.clone().unwrap();
        c.routes
            .iter()
            .filter(|r| r.requests[0] > 0)
            .map(|r| (r.route.clone(), (r.requests[0], r.p50_ms[0], r.p99_ms[0])))
            .collect::<BTreeMap<_, _>>()
    };
    let expected = |old: Option<&Path>| {
        // A reader of its own: a reader keeps where rows are rolled up
        // (read once, as a view does), and rows are deleted below.
        let pieces = read
            .reader()
            .plan_coarse(previous_from - 59, current_from - 59, Some(KIND_ROUTE))
            .unwrap();
        let figures = match old {
            Some(file) => old_figures(file, &pieces, KIND_ROUTE),
            None => new_figures(&dir, &pieces, KIND_ROUTE),
        };
        figures
            .into_iter()
            .map(|(name, f)| (name, (f.ints[0] as u64, ms(f.p50), ms(f.p99))))
            .collect::<BTreeMap<_, _>>()
    };
    let first = before_side(&snap);
    assert_eq!(first, expected(Some(&old_file)));
    assert!(first.len() >= 3, "{first:?}");
    let again = monitor
        .range_snapshot(Range::Day, DatabaseView::default())
        .unwrap();
    assert_eq!(before_side(&again), first);
    // An hour of the run and the six hours and day holding it (whichever
    // the previous side reads).
    let deleted = previous_from - previous_from.rem_euclid(HOUR) + 5 * HOUR;
    conn.execute(
        "DELETE FROM aggregates WHERE (resolution = 3600 AND start = ?1)
         OR (resolution = 21600 AND start = ?1 - ?1 % 21600)
         OR (resolution = 86400 AND start = ?1 - ?1 % 86400)",
        [deleted],
    )
    .unwrap();
    let changed = monitor
        .range_snapshot(Range::Day, DatabaseView::default())
        .unwrap();
    let now_expected = expected(None);
    assert_ne!(now_expected, first);
    assert_eq!(before_side(&changed), now_expected);
    drop(monitor);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&old_dir);
}

#[test]
fn a_failed_upgrade_leaves_the_old_file_as_it_was() {
    let dir = fresh_dir("failed");
    let now = now();
    let written = write_old_history(&dir, now);
    // Something in the way halfway through the upgrade: a table of the
    // new name with other columns (the copy of the rows fails).
    Connection::open(dir.join(FILE))
        .unwrap()
        .execute_batch("CREATE TABLE aggregates (x);")
        .unwrap();
    let before = old_rows(&dir.join(FILE));
    let err = History::open(&dir, 30, "new", now, empty())
        .err()
        .expect("the upgrade fails");
    assert!(err.contains("left as it was"), "{err}");
    // The old table whole, the version unchanged: the old build reads it.
    let after = old_rows(&dir.join(FILE));
    assert_eq!(after.len(), written.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((a.start, &a.name, a.ints), (b.start, &b.name, b.ints));
        assert_eq!(a.latency, b.latency);
    }
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let (version, tables): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_master WHERE name IN ('series', 'layouts'))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((version, tables), (0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_rows_are_kept_aside_or_skipped_and_counted_never_a_panic() {
    let dir = fresh_dir("damaged");
    let now = now();
    let written = write_old_history(&dir, now);
    // An old row whose V2 blob is junk.
    let conn = Connection::open(dir.join(FILE)).unwrap();
    conn.execute(
        "UPDATE rows SET latency = x'1c849303deadbeef'
         WHERE (resolution, start, kind, name) = (SELECT resolution, start, kind, name FROM rows
             WHERE resolution = 3600 AND kind = 1 ORDER BY start, name LIMIT 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let h = History::open(&dir, 30, "new", now, empty()).unwrap();
    drop(h);
    // Kept as it was, beside the upgraded rows.
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let (aside, upgraded): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM damaged_rows WHERE latency = x'1c849303deadbeef'),
                    (SELECT count(*) FROM aggregates WHERE resolution IN (60, 3600))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((aside, upgraded), (1, written.len() as i64 - 1));
    // Blobs of the new form damaged (the newest minute and quarter-hour
    // of all requests), and a count gone negative (the newest hour of all
    // requests): each row skipped and counted; the view is served. (The
    // 1-hour view reads the minute, the 24-hour one the quarter-hour or
    // the minute, the 7-day one the hour.)
    conn.execute_batch(
        "UPDATE aggregates SET figures = x'0001ffffffff'
         WHERE resolution IN (60, 900) AND series = (SELECT id FROM series WHERE kind = 0)
         AND start = (SELECT max(start) FROM aggregates a WHERE a.resolution = aggregates.resolution);
         UPDATE aggregates SET count = -5
         WHERE resolution = 3600 AND start = (SELECT max(start) FROM aggregates WHERE resolution = 3600)
         AND series = (SELECT id FROM series WHERE kind = 0);",
    )
    .unwrap();
    drop(conn);
    let monitor = Monitor::new(&PerfConfig {
        monitoring_enabled: true,
        history_days: 30,
        ..PerfConfig::default()
    });
    monitor.open_history(&dir);
    for range in [Range::Hour, Range::Day, Range::Week] {
        let snap = monitor
            .range_snapshot(range, DatabaseView::default())
            .unwrap();
        let damaged = snap.range.as_ref().unwrap().damaged_rows;
        assert!(damaged >= 1, "{range:?}: {damaged}");
    }
    drop(monitor);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The figures of `pieces` of `dir`'s history per series of `kind`, each
/// row's distribution decoded into an hdrhistogram and merged by
/// hdrhistogram (not by the views' accumulators).
fn hdr_figures(dir: &Path, pieces: &[Piece], kind: i64) -> BTreeMap<String, Figures> {
    let read = ReadOnly::open(dir).unwrap();
    let store = read.reader();
    let mut merged: BTreeMap<String, ([i64; 6], Histogram<u64>)> = BTreeMap::new();
    for p in pieces {
        for r in store
            .rows_between(p.resolution, p.from, p.to, Some(kind))
            .unwrap()
        {
            let (ints, h) = merged
                .entry(r.name.clone())
                .or_insert_with(|| ([0; 6], empty()));
            let c = &r.counts;
            for (k, v) in [
                c.count,
                c.sum_ns,
                c.errors_5xx,
                c.errors_4xx,
                c.bytes,
                c.rows,
            ]
            .into_iter()
            .enumerate()
            {
                ints[k] = ints[k].wrapping_add(v as i64);
            }
            h.add(r.latency.to_histogram()).unwrap();
        }
    }
    assert_eq!(store.damaged(), 0);
    merged
        .into_iter()
        .map(|(name, (ints, h))| {
            (
                name,
                Figures {
                    ints,
                    total: h.len(),
                    p50: h.value_at_quantile(0.5),
                    p95: h.value_at_quantile(0.95),
                    p99: h.value_at_quantile(0.99),
                    max: h.max(),
                },
            )
        })
        .collect()
}

/// A file of version 2 (minute and hour rows only, the hour rows of
/// every series kept for the whole retention) is upgraded to version 3 in
/// place as the blog opens it: its quarter-hours and six hours rolled up,
/// the hour rows of routes and patterns past eight days pruned only once
/// six-hour rows hold them, and every range reads the figures the
/// version 2 file gave for the same rows (counts, sums, p50, p95, p99 and
/// max per series, merged by hdrhistogram). A range starting more than
/// eight days back reads from its first six hours: the six hours it starts
/// in belong to the range before, as a pruned hour always did.
#[test]
fn a_version_2_file_is_upgraded_in_place_and_loses_nothing() {
    let dir = fresh_dir("v2");
    let now = now();
    let days = 12;
    write_old_history_days(&dir, now, days);
    // Version 2 as its build left the file: the upgrade from before
    // issue 20 (the same tables), and no rolled-up rows but hours.
    {
        let mut conn = Connection::open(dir.join(FILE)).unwrap();
        schema::open(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        let rolled: i64 = conn
            .query_row(
                "SELECT count(*) FROM aggregates WHERE resolution IN (900, 21600, 86400)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rolled, 0);
    }
    let v2_dir = fresh_dir("v2-kept");
    std::fs::copy(dir.join(FILE), v2_dir.join(FILE)).unwrap();
    let v2_rows = |file: &Path| -> i64 {
        Connection::open(file)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM aggregates WHERE resolution IN (60, 3600)",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };

    // Opened by this build (as the blog opens it at start).
    drop(History::open(&dir, 30, "new", now, empty()).unwrap());
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let (version, quarters, sixes, old_route_hours, old_all_hours): (i64, i64, i64, i64, i64) =
        conn.query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM aggregates WHERE resolution = 900),
                    (SELECT count(*) FROM aggregates WHERE resolution IN (21600, 86400)),
                    (SELECT count(*) FROM aggregates WHERE resolution = 3600 AND start < ?1
                     AND series IN (SELECT id FROM series WHERE kind != 0)),
                    (SELECT count(*) FROM aggregates WHERE resolution = 3600 AND start < ?1
                     AND series IN (SELECT id FROM series WHERE kind = 0))",
            [now - HOURS_KEPT],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(version, 3);
    assert!(quarters > 90, "{quarters}");
    assert!(sixes > 40, "{sixes}");
    // Hours of routes and patterns past eight days: gone (their six
    // hours hold them); all requests' kept.
    assert_eq!(old_route_hours, 0);
    assert!(old_all_hours >= (days - 8) * 24 - 1, "{old_all_hours}");
    assert!(v2_rows(&dir.join(FILE)) < v2_rows(&v2_dir.join(FILE)));

    let read = ReadOnly::open(&dir).unwrap();
    let store = read.reader();
    let six = |t: i64| t - t.rem_euclid(SIX_HOURS);
    let to = now + 60;
    let ranges = [
        // Everything.
        (six(now - (days + 1) * 86_400), to, None),
        (now - 7 * 86_400, to, None),
        (now - 86_400, to, None),
        // Ending where the hours are pruned: the six hours it ends in
        // counted whole.
        (six(now - 11 * 86_400), now - 9 * 86_400 - 2_222, None),
        // Starting there: from its first six hours.
        (
            now - 10 * 86_400 + 1_111,
            now - 3 * 86_400 + 77,
            Some(six(now - 10 * 86_400 + 1_111) + SIX_HOURS),
        ),
    ];
    let mut compared = 0;
    for (from, to, read_from) in ranges {
        for kind in [KIND_ALL, KIND_ROUTE, KIND_PATTERN] {
            let pieces = store.plan_coarse(from, to, Some(kind)).unwrap();
            assert!(
                pieces.iter().any(|p| p.resolution == SIX_HOURS),
                "{pieces:?}"
            );
            // All requests keep their hours: read from the range's start.
            let v2_from = match read_from {
                Some(f) if kind != KIND_ALL => f,
                _ => from,
            };
            let as_v2: Vec<Piece> = store
                .plan_coarse(v2_from, to, Some(kind))
                .unwrap()
                .into_iter()
                .map(as_old_rows)
                .collect();
            let new = hdr_figures(&dir, &pieces, kind);
            let old = hdr_figures(&v2_dir, &as_v2, kind);
            assert!(!old.is_empty(), "{from}..{to} {kind}");
            assert_eq!(new, old, "{from}..{to} kind {kind} {pieces:?}");
            compared += old.len();
        }
    }
    assert!(compared > 20, "{compared}");
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&v2_dir);
}
