//! How figures read on the page: bytes, durations, counts, percentages,
//! statement text that can break, code locations.

use super::*;

pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Mebibytes with one decimal.
pub(super) fn mib(n: f64) -> String {
    format!("{:.1} MiB", n / (1024.0 * 1024.0))
}

/// A signed change of memory in MiB with one decimal: "+3.1 MiB",
/// "-0.4 MiB", and "0.0 MiB" for a change that rounds to nothing (never
/// "-0.0").
pub(super) fn mib_change(bytes: f64) -> String {
    let tenths = (bytes / (1024.0 * 1024.0) * 10.0).round();
    if tenths == 0.0 {
        "0.0 MiB".into()
    } else {
        format!("{:+.1} MiB", tenths / 10.0)
    }
}

/// A signed change of memory, in KiB (a request's change is small).
pub(super) fn kib_signed(n: f64) -> String {
    format!("{:+.1} KiB", n / 1024.0)
}

/// An integer with thousands separators.
pub(super) fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

pub(super) fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h {} min", s / 86_400, s / 3600 % 24, s / 60 % 60),
    }
}

/// `text` with a line-break opportunity (`<wbr>`) after each of `after`:
/// long SQL tokens, paths and times wrap there on a narrow screen rather
/// than widen their column (a table cell that may wrap is `td.wrap`).
pub(super) fn breakable(text: &str, after: &[char]) -> Markup {
    html! {
        @for (i, piece) in text.split_inclusive(after).enumerate() {
            @if i > 0 { wbr; }
            (piece)
        }
    }
}

/// A code location ("shell/src/db/notes.rs:42"), breakable after each `/`.
pub(super) fn path(location: &str) -> Markup {
    html! { code { (breakable(location, &['/'])) } }
}

/// An RFC 3339 time, breakable between its date and its time.
pub(super) fn time_at(at: &str) -> Markup {
    breakable(at, &['T'])
}

/// A SQL pattern: whole when short, otherwise its beginning (cut between
/// words) with the full text on demand.
pub(super) fn sql(pattern: &str) -> Markup {
    counted_sql("", pattern)
}

/// [`sql`] after a `prefix` ("3 x ") that stays on the pattern's line.
pub(super) fn counted_sql(prefix: &str, pattern: &str) -> Markup {
    const SHORT: usize = 48;
    if pattern.chars().count() <= SHORT {
        return html! { div.sql { (prefix) code { (breakable(pattern, SQL_BREAKS)) } } };
    }
    let head: String = pattern.chars().take(SHORT).collect();
    let head = match head.rfind(' ') {
        Some(i) if i > SHORT / 3 => &head[..i],
        _ => &head[..],
    };
    html! {
        details.sql { summary { (prefix) code { (breakable(head, SQL_BREAKS)) " ..." } } code { (breakable(pattern, SQL_BREAKS)) } }
    }
}

/// `n` and a noun, plural when `n` is not one.
pub(super) fn count_of(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", int(n), if n == 1 { "" } else { "s" })
}

pub(super) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A setting's name (and value) as code that a narrow screen may break
/// after an underscore or before the `=`, never inside a word: names such
/// as `STARPUNK_PERF_SLOW_QUERY_THRESHOLD` are wider than a phone's card.
pub(super) fn setting(text: &str) -> Markup {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['_', '=']) {
        let cut = if rest.as_bytes()[i] == b'_' { i + 1 } else { i };
        let cut = if cut == 0 { 1 } else { cut };
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    html! {
        code.setting {
            @for (i, piece) in pieces.iter().enumerate() {
                @if i > 0 { wbr; }
                (piece)
            }
        }
    }
}

/// A rule's value or threshold with its unit ("12 ms", "0/s", "1.5 %").
pub(super) fn with_unit(v: f64, unit: &str) -> String {
    if unit.starts_with('/') {
        format!("{v}{unit}")
    } else {
        format!("{v} {unit}")
    }
}

/// Where SQL may wrap inside a token ("coalesce(max(updated_at),").
pub(super) const SQL_BREAKS: &[char] = &[',', '('];

/// Where a query plan's step may wrap inside a token
/// ("sqlite_autoindex_sessions_1").
pub(super) const PLAN_BREAKS: &[char] = &['_', ',', '('];
