//! The dashboard's charts: inline SVG drawn on the server, no script and
//! no external asset. Every chart is drawn in a narrow coordinate system
//! (360 units wide, the width of a phone) and scales up on wider screens,
//! at most to 32rem (the stylesheet's `max-width`), so its text (9 to 11
//! units) renders at 8 to 16 CSS px from a 330 px phone to a desktop;
//! labels are shortened to fit, never left to run past the edge, and the
//! labels of one chart never overlap. Text is classed by role for the
//! browser test: `value` (value-axis ticks), `tick` (time-axis ticks),
//! `mark` (labels of marks on the time axis).

use std::fmt::Write;

use maud::{html, Markup, PreEscaped, Render};

use crate::monitoring::views::WorstRequest;

/// Width of every chart's coordinate system.
const W: f64 = 360.0;
/// Font size of labels, in chart units.
const FONT: f64 = 11.0;

/// A conservative width of `c` in em, at least that of DejaVu Sans (the
/// widest common sans-serif, and Debian's default): wide glyphs 1 em,
/// capitals 0.78, digits 0.64, narrow glyphs 0.34, the rest 0.62. The
/// browser test measures the real text and fails on any overflow.
fn char_width(c: char) -> f64 {
    match c {
        'M' | 'W' | 'm' | 'w' | '@' | '%' => 1.0,
        c if c.is_uppercase() => 0.78,
        c if c.is_ascii_digit() => 0.64,
        ' ' | '.' | ',' | ':' | ';' | '\'' | '|' | 'i' | 'l' | 'j' | '!' | '(' | ')' => 0.34,
        _ => 0.62,
    }
}

/// [`char_width`] of all of `text`, at `font` units.
fn text_width(text: &str, font: f64) -> f64 {
    text.chars().map(char_width).sum::<f64>() * font
}

/// `text` shortened (with "...") to at most `width` units at `font`.
pub fn fit(text: &str, width: f64, font: f64) -> String {
    if text_width(text, font) <= width {
        return text.to_string();
    }
    let room = width - text_width("...", font);
    let mut used = 0.0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += char_width(c) * font;
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}...", text[..end].trim_end())
}

/// One series of a [`time_chart`].
pub struct Line<'a> {
    /// Legend text.
    pub name: &'a str,
    /// Stroke or fill colour.
    pub colour: &'a str,
    /// `(unix seconds, value)`, oldest first.
    pub points: Vec<(f64, f64)>,
    /// Drawn as bars a minute wide instead of a line.
    pub bars: bool,
}

/// The least of `steps` (ascending, ending with 10) times a power of ten
/// that is at least `v`; 1 for a `v` of zero or less.
fn nice_at_least(v: f64, steps: &[f64]) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    steps
        .iter()
        .map(|m| m * p)
        // A hair of slack: 0.3 / 0.1 is 2.9999999999999996.
        .find(|&m| m >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// How a value axis writes its values: `value / scale`, then `suffix`.
#[derive(Clone, Copy)]
pub struct Unit {
    /// Base units per written unit (bytes per MiB; 1 for the rest).
    pub scale: f64,
    /// Written after the number ("/s", " ms", " MiB").
    pub suffix: &'static str,
    /// Counts: ticks on whole numbers.
    pub whole: bool,
}

/// The three ticks of a value axis (low, middle, high, in written units)
/// over values from `lo` to `hi` (written units), and the decimals that
/// tell them apart. From zero (`zero`): 0, half, and a nice top at least
/// `hi`. Otherwise around the values, on multiples of a nice step (so a
/// memory axis over 17.30 to 17.34 MiB reads 17.30, 17.32, 17.34 rather
/// than 17.3 three times).
fn value_ticks(lo: f64, hi: f64, zero: bool, whole: bool) -> ([f64; 3], usize) {
    let steps: &[f64] = if whole {
        &[1.0, 2.0, 5.0, 10.0]
    } else {
        &[0.5, 1.0, 2.5, 5.0, 10.0]
    };
    let step = if zero {
        // Half of a nice top, so the top is 1, 2, 5 times a power of ten
        // (counts: 2, 4, 10).
        let step = nice_at_least(hi / 2.0, steps);
        if whole {
            step.max(1.0)
        } else {
            step
        }
    } else {
        let spread = if hi - lo > 1e-9 * hi.abs().max(1.0) {
            (hi - lo) / 2.0
        } else {
            // One value: an axis of about 2 % around it.
            (hi.abs() * 0.01).max(0.001)
        };
        let mut step = nice_at_least(spread, &[1.0, 2.0, 5.0, 10.0]);
        while (lo / step + 1e-9).floor() * step + 2.0 * step < hi - 1e-9 * hi.abs() {
            step = nice_at_least(step * 1.000_001, &[1.0, 2.0, 5.0, 10.0]);
        }
        step
    };
    let low = if zero {
        0.0
    } else {
        (lo / step + 1e-9).floor() * step
    };
    let decimals = (0..=9)
        .find(|&d| {
            // The step in units of the last decimal: a whole number.
            let v = step * 10f64.powi(d as i32);
            v >= 1.0 - 1e-9 && (v.round() - v).abs() < 1e-6 * v
        })
        .unwrap_or(9);
    ([low, low + step, low + 2.0 * step], decimals)
}

/// A coordinate with one decimal, written straight into the page (digits,
/// a sign and a point need no escaping).
#[derive(Clone, Copy)]
struct N1(f64);

impl Render for N1 {
    fn render_to(&self, w: &mut String) {
        let _ = write!(w, "{:.1}", self.0);
    }
}

/// The `points` attribute of a polyline.
fn polyline_points(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut out = String::new();
    for (x, y) in points {
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.pop();
    out
}

/// The time axis of a [`time_chart`]: the span before `end`, its ticks,
/// and marks (starts of the blog) on it.
pub struct Axis {
    /// Unix seconds at the right edge.
    pub end: f64,
    /// Seconds the axis spans.
    pub span: f64,
    /// Seconds between ticks.
    pub tick: f64,
    /// Seconds per tick-label unit, and the unit's name ("min", "h", "d").
    pub unit: (f64, &'static str),
    /// Seconds one point covers (bar width).
    pub point: f64,
    /// The axis caption.
    pub caption: &'static str,
    /// `(unix seconds, label)` marks drawn as dashed lines.
    pub marks: Vec<(f64, String)>,
    /// What several marks too close to label apart are called, plural
    /// ("starts"): their label becomes "2 starts" (or "start 0.1.0 ×2"
    /// when all say the same).
    pub marks_noun: &'static str,
}

impl Axis {
    /// The live view's axis: 16 minutes, a tick every 5.
    pub fn live(end: f64) -> Axis {
        Axis {
            end,
            span: 16.0 * 60.0,
            tick: 300.0,
            unit: (60.0, "min"),
            point: 60.0,
            caption: "minutes before now, one point per minute",
            marks: Vec::new(),
            marks_noun: "marks",
        }
    }
}

/// Font size of a mark's label, and its widest, in chart units.
const MARK_FONT: f64 = FONT - 2.0;
const MARK_W: f64 = 76.0;

/// Rows of mark labels at the top of a chart.
const MARK_ROWS: usize = 2;

/// The labels of `marks` (x in chart units, label), ascending in x: each
/// label starts just right of its mark (near the right edge it ends just
/// left of it), takes at most [`MARK_W`], and goes in the first of
/// [`MARK_ROWS`] rows where it overlaps no label. A mark whose label would
/// overlap the previous one with the same text, or that finds no row,
/// shares the previous label instead ("start 0.1.0 ×2", or "3 starts"
/// when they differ). So no two labels overlap, whatever the marks. Each
/// label is `(x, text, anchored at its end, row)`.
fn mark_labels(marks: &[(f64, &str)], noun: &str) -> Vec<(f64, String, bool, usize)> {
    let at_end = |x: f64| x > W - MARK_W - 4.0;
    // A label's extent at its widest.
    let extent = |x: f64| {
        if at_end(x) {
            (x - 2.0 - MARK_W, x - 2.0)
        } else {
            (x + 2.0, x + 2.0 + MARK_W)
        }
    };
    let clear_of = |x: f64, other: f64| extent(x).0 >= extent(other).1 + 2.0;
    // (x, labels, row)
    let mut groups: Vec<(f64, Vec<&str>, usize)> = Vec::new();
    for &(x, label) in marks {
        if let Some(last) = groups.last_mut() {
            if !clear_of(x, last.0) && last.1.iter().all(|l| *l == label) {
                last.1.push(label);
                continue;
            }
        }
        let free = (0..MARK_ROWS).find(|&row| {
            groups
                .iter()
                .rev()
                .find(|g| g.2 == row)
                .is_none_or(|g| clear_of(x, g.0))
        });
        match (free, groups.last_mut()) {
            (Some(row), _) => groups.push((x, vec![label], row)),
            // No row is free (so there is a label before): share it.
            (None, Some(last)) => last.1.push(label),
            (None, None) => groups.push((x, vec![label], 0)),
        }
    }
    groups
        .into_iter()
        .map(|(x, labels, row)| {
            let n = labels.len();
            let text = if n == 1 {
                labels[0].to_string()
            } else if labels.iter().all(|l| *l == labels[0]) {
                format!("{} \u{d7}{n}", labels[0])
            } else {
                format!("{n} {noun}")
            };
            (x, fit(&text, MARK_W, MARK_FONT), at_end(x), row)
        })
        .collect()
}

/// A time-series chart over `axis`, with a labelled value axis in `unit`.
/// `zero` starts the value axis at zero (counts and latencies; not
/// memory, whose changes would vanish).
pub fn time_chart(title: &str, lines: &[Line], axis: &Axis, zero: bool, unit: Unit) -> Markup {
    let h = 190.0;
    let (right, top, bottom) = (8.0, 34.0, 34.0);
    let now = axis.end;
    let t0 = now - axis.span;
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1 / unit.scale));
    let (mut lo, mut hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let empty = lines.iter().all(|l| l.points.is_empty());
    if empty {
        (lo, hi) = (0.0, 1.0);
    }
    let (ticks, decimals) = value_ticks(lo, hi, zero, unit.whole);
    let tick_labels = ticks.map(|v| format!("{v:.decimals$}{}", unit.suffix));
    // Room on the left for the widest tick label.
    let left = tick_labels
        .iter()
        .map(|l| text_width(l, FONT - 1.0) + 8.0)
        .fold(58.0, f64::max);
    let (lo, hi) = (ticks[0] * unit.scale, ticks[2] * unit.scale);
    let plot_w = W - left - right;
    let plot_h = h - top - bottom;
    let x_of = |t: f64| left + ((t - t0) / (now - t0).max(1.0)).clamp(0.0, 1.0) * plot_w;
    let y_of = |v: f64| top + (1.0 - ((v - lo) / (hi - lo)).clamp(0.0, 1.0)) * plot_h;
    let minute_w = plot_w * axis.point / axis.span;
    let time_ticks = (axis.span / axis.tick).floor() as u64;
    let bar_lines = lines.iter().filter(|l| l.bars).count().max(1) as f64;
    let bw = (minute_w / bar_lines * 0.8).max(1.0);
    let legend: Vec<f64> = lines
        .iter()
        .scan(0.0, |x, l| {
            let at = *x;
            *x += 22.0 + text_width(l.name, FONT - 1.0);
            Some(at)
        })
        .collect();
    let mut marks: Vec<(f64, &str)> = axis
        .marks
        .iter()
        .filter(|m| m.0 >= t0 && m.0 <= now)
        .map(|m| (x_of(m.0), m.1.as_str()))
        .collect();
    marks.sort_by(|a, b| a.0.total_cmp(&b.0));
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(title) {
            title { (title) }
            text x="0" y="12" font-size=(FONT) font-weight="bold" { (fit(title, W, FONT)) }
            @for (l, x) in lines.iter().zip(&legend) {
                rect x=(x) y="19" width="10" height="8" fill=(l.colour) {}
                text x=(x + 13.0) y="27" font-size=(FONT - 1.0) { (l.name) }
            }
            @for (v, label) in ticks.iter().zip(&tick_labels) {
                @let y = y_of(v * unit.scale);
                line x1=(N1(left)) y1=(N1(y)) x2=(W - right) y2=(N1(y)) stroke="#e4e4e4" {}
                text.value x=(N1(left - 4.0)) y=(N1(y + 4.0)) font-size=(FONT - 1.0) text-anchor="end" { (label) }
            }
            line x1=(N1(left)) y1=(h - bottom) x2=(W - right) y2=(h - bottom) stroke="#999" {}
            @for i in 0..=time_ticks {
                @let back = i as f64 * axis.tick;
                @let x = x_of(now - back);
                line x1=(N1(x)) y1=(h - bottom) x2=(N1(x)) y2=(h - bottom + 4.0) stroke="#999" {}
                text.tick x=(N1(x)) y=(h - bottom + 15.0) font-size=(FONT - 1.0)
                    text-anchor=(if i == 0 { "end" } else if x - left < 20.0 { "start" } else { "middle" }) {
                    @if i == 0 { "now" } @else { "-" ((back / axis.unit.0).round()) " " (axis.unit.1) }
                }
            }
            text x=(N1(left)) y=(h - 3.0) font-size=(FONT - 1.0) { (axis.caption) }
            @for (x, _) in &marks {
                line x1=(N1(*x)) y1=(top) x2=(N1(*x)) y2=(h - bottom) stroke="#6a3d9a" stroke-dasharray="3,3" {}
            }
            @for (x, label, end, row) in mark_labels(&marks, axis.marks_noun) {
                text.mark x=(N1(if end { x - 2.0 } else { x + 2.0 })) y=(top + 9.0 + 11.0 * row as f64) font-size=(MARK_FONT) fill="#6a3d9a"
                    text-anchor=(if end { "end" } else { "start" }) { (label) }
            }
            @if empty {
                text x=(N1(left + 10.0)) y=(top + plot_h / 2.0) font-size=(FONT) { "No data yet" }
            }
            @for (i, l) in lines.iter().enumerate() {
                @if l.bars {
                    @let slot = lines[..i].iter().filter(|l| l.bars).count() as f64;
                    @for &(t, v) in l.points.iter().filter(|p| p.1 > 0.0) {
                        @let x = (x_of(t) - minute_w / 2.0 + slot * minute_w / bar_lines).min(W - right - bw);
                        rect x=(N1(x.max(left))) y=(N1(y_of(v))) width=(N1(bw)) height=(N1(h - bottom - y_of(v))) fill=(l.colour) {}
                    }
                } @else if l.points.len() == 1 {
                    circle cx=(N1(x_of(l.points[0].0))) cy=(N1(y_of(l.points[0].1))) r="2.5" fill=(l.colour) {}
                } @else if !l.points.is_empty() {
                    polyline fill="none" stroke=(l.colour) stroke-width="2"
                        points=(PreEscaped(polyline_points(l.points.iter().map(|&(t, v)| (x_of(t), y_of(v)))))) {}
                }
            }
        }
    }
}

/// A small line without axes for a figure's card; `label` says what it
/// shows (screen readers, tooltips).
pub fn sparkline(label: &str, values: &[f64]) -> Markup {
    let (w, h) = (120.0, 26.0);
    let hi = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let lo = values.iter().copied().fold(f64::MAX, f64::min).min(hi);
    let lo = if lo > hi * 0.5 { lo } else { 0.0 };
    let span = (hi - lo).max(1e-9);
    let step = w / (values.len().max(2) - 1) as f64;
    let pts = polyline_points(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 * step, 2.0 + (1.0 - (v - lo) / span) * (h - 4.0))),
    );
    html! {
        svg.spark xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (h) } preserveAspectRatio="none" role="img" aria-label=(label) {
            title { (label) }
            @if values.len() > 1 {
                polyline fill="none" stroke="#0b5cad" stroke-width="1.5" vector-effect="non-scaling-stroke" points=(PreEscaped(pts)) {}
            }
        }
    }
}

/// A horizontal bar chart: each bar under its label, under a title and a
/// `subtitle` (what the bars cover); `fmt` writes each value.
pub fn bar_chart(
    title: &str,
    subtitle: &str,
    bars: &[(String, f64)],
    fmt: impl Fn(f64) -> String,
) -> Markup {
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let (row, head) = (30.0, 34.0);
    let height = row * bars.len().max(1) as f64 + head + 2.0;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (height) } role="img" aria-label=(title) {
            title { (title) " (" (subtitle) ")" }
            text x="0" y="12" font-size=(FONT) font-weight="bold" { (fit(title, W, FONT)) }
            text x="0" y="27" font-size=(FONT - 1.0) { (fit(subtitle, W, FONT - 1.0)) }
            @for (i, (label, value)) in bars.iter().enumerate() {
                @let y = head + row * i as f64;
                @let value_text = fmt(*value);
                @let room = W - text_width(&value_text, FONT) - 8.0;
                @let w = (room * value / max).max(1.0);
                text x="0" y=(y + 11.0) font-size=(FONT) { (fit(label, W, FONT)) }
                rect x="0" y=(y + 14.0) width=(N1(w)) height="11" fill="#0b5cad" {}
                text x=(N1(w + 4.0)) y=(y + 24.0) font-size=(FONT) { (value_text) }
            }
        }
    }
}

/// Where one request spent its time: each SQL statement and named
/// function on the request's own time axis.
pub fn timeline_chart(w: &WorstRequest) -> Markup {
    let total = w.duration_ms.max(1e-6);
    let (left, right, row) = (2.0, 2.0, 28.0);
    let span_w = W - left - right;
    let x_of = |ms: f64| left + (ms / total).clamp(0.0, 1.0) * span_w;
    let height = row * (w.timeline.len() + 1) as f64 + 30.0;
    let font = FONT - 1.0;
    // The file name and line of the code that ran a span (its whole path
    // is in the table below the chart).
    let label = |name: &str, ms: f64, offset: f64, location: &str, depth: u8| {
        let file = location.rsplit('/').next().unwrap_or(location);
        let tail = format!("  {ms:.3} ms at +{offset:.3} ms  {file}");
        let indent = "\u{2003}".repeat(usize::from(depth));
        let room = span_w - text_width(&tail, font) - text_width(&indent, font);
        format!("{indent}{}{tail}", fit(name, room, font))
    };
    let title = format!("Timeline of {} at {} ({} ms)", w.route, w.at, w.duration_ms);
    let head = format!("{}  {} ms, status {}", w.route, w.duration_ms, w.status);
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (height) } role="img" aria-label=(title) {
            title { (title) }
            text x=(left) y="10" font-size=(font) { (fit(&head, span_w, font)) }
            rect x=(left) y="13" width=(N1(span_w)) height="10" fill="#999" {}
            @for (i, s) in w.timeline.iter().enumerate() {
                @let y = row * (i + 1) as f64;
                @let x = x_of(s.offset_ms);
                @let bar = (s.duration_ms / total * span_w).max(1.5).min(W - right - x);
                text x=(left) y=(y + 10.0) font-size=(font) { (label(&s.name, s.duration_ms, s.offset_ms, &s.location, s.depth)) }
                rect x=(N1(x)) y=(y + 13.0) width=(N1(bar)) height="10"
                    fill=(if s.kind == "sql" { "#0b5cad" } else { "#c05a00" }) {}
            }
            @let axis = height - 22.0;
            line x1=(left) y1=(axis) x2=(W - right) y2=(axis) stroke="#999" {}
            @for q in [0.0, 0.5, 1.0] {
                @let x = left + q * span_w;
                line x1=(N1(x)) y1=(axis) x2=(N1(x)) y2=(axis + 4.0) stroke="#999" {}
                text x=(N1(x)) y=(axis + 15.0) font-size=(font)
                    text-anchor=(if q == 0.0 { "start" } else if q < 1.0 { "middle" } else { "end" }) {
                    (format!("{:.2}", q * total)) " ms"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_shortens_only_what_does_not_fit() {
        assert_eq!(fit("GET /", 100.0, 11.0), "GET /");
        let long =
            "SELECT id, slug, content FROM notes WHERE published = ? ORDER BY created_at DESC";
        let short = fit(long, 200.0, 11.0);
        assert!(
            short.ends_with("...") && short.len() < long.len(),
            "{short}"
        );
        assert!(text_width(&short, 11.0) <= 200.0);
        assert!(long.starts_with(short.trim_end_matches("...")));
        // Multi-byte characters are cut between characters.
        assert!(fit(&"é".repeat(100), 50.0, 11.0).ends_with("..."));
    }

    #[test]
    fn nice_axis_bounds() {
        let nice = |v| nice_at_least(v, &[1.0, 2.0, 5.0, 10.0]);
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(0.7), 1.0);
        assert_eq!(nice(13.0), 20.0);
        assert_eq!(nice(450.0), 500.0);
        assert_eq!(nice(5000.0), 5000.0);
    }

    #[test]
    fn time_chart_places_points_on_the_time_axis() {
        let now = 10_000.0;
        let svg = time_chart(
            "Requests per second",
            &[Line {
                name: "requests/s",
                colour: "#0b5cad",
                points: vec![(now - 14.5 * 60.0, 2.0), (now - 30.0, 4.0)],
                bars: false,
            }],
            &Axis::live(now),
            true,
            Unit {
                scale: 1.0,
                suffix: "/s",
                whole: false,
            },
        )
        .into_string();
        // Time axis 58..352 over 16 minutes; value axis 0..5 over 156..34.
        assert!(svg.contains("points=\"85.6,107.2 342.8,58.4\""), "{svg}");
        for label in [
            "-15 min",
            "-10 min",
            "-5 min",
            "now",
            ">5.0/s<",
            ">2.5/s<",
            ">0.0/s<",
            "minutes before now",
        ] {
            assert!(svg.contains(label), "missing {label}: {svg}");
        }
    }

    #[test]
    fn value_ticks_differ_with_the_decimals_they_need() {
        let mib = 1024.0 * 1024.0;
        // A week of memory between 17.30 and 17.34 MiB: not "17.3" thrice.
        let (t, d) = value_ticks(17.30, 17.34, false, false);
        assert_eq!((t.map(|v| format!("{v:.d$}"))), ["17.30", "17.32", "17.34"]);
        // One value: an axis around it.
        let (t, d) = value_ticks(17.3, 17.3, false, false);
        assert_eq!(t.map(|v| format!("{v:.d$}")), ["17.2", "17.4", "17.6"]);
        assert!(t[0] <= 17.3 && 17.3 <= t[2]);
        // From zero: a rate of one request in two hours.
        let (t, d) = value_ticks(0.0, 1.0 / 7200.0, true, false);
        assert_eq!(
            t.map(|v| format!("{v:.d$}")),
            ["0.0000", "0.0001", "0.0002"]
        );
        // Counts on whole numbers.
        let (t, d) = value_ticks(0.0, 1.0, true, true);
        assert_eq!(t.map(|v| format!("{v:.d$}")), ["0", "1", "2"]);
        let (t, _) = value_ticks(0.0, 3.0, true, true);
        assert_eq!(t, [0.0, 2.0, 4.0]);
        // Any spread, any place: three different ticks around the values.
        let cases: [(f64, f64); 5] = [
            (0.0, 0.0),
            (1e-7, 2e-7),
            (100.0, 100.004),
            (5.0 * mib, 5.1 * mib),
            (-3.0, 2.0),
        ];
        for (lo, hi) in cases {
            for zero in [false, true] {
                let (lo, hi) = if zero { (0.0, hi.max(0.0)) } else { (lo, hi) };
                let (t, d) = value_ticks(lo, hi, zero, false);
                let text = t.map(|v| format!("{v:.d$}"));
                assert!(
                    text[0] != text[1] && text[1] != text[2],
                    "{lo} {hi}: {text:?}"
                );
                assert!(t[0] <= lo + 1e-9 && hi <= t[2] + 1e-9, "{lo} {hi}: {t:?}");
            }
        }
    }

    #[test]
    fn mark_labels_never_overlap() {
        // Two starts of one version a second apart share one label; two
        // versions two hours apart on a day's axis take a row each.
        let labels = mark_labels(
            &[
                (100.0, "start 0.1.0"),
                (100.4, "start 0.1.0"),
                (327.5, "start 0.0.9"),
                (352.0, "start 0.1.0"),
            ],
            "starts",
        );
        assert_eq!(
            labels,
            [
                (100.0, "start 0.1.0 \u{d7}2".to_string(), false, 0),
                (327.5, "start 0.0.9".to_string(), true, 0),
                (352.0, "start 0.1.0".to_string(), true, 1),
            ]
        );
        // No row left: the last label counts them.
        let crowded = mark_labels(
            &[
                (60.0, "start 0.1.0"),
                (70.0, "start 0.2.0"),
                (80.0, "start 0.3.0"),
            ],
            "starts",
        );
        assert_eq!(crowded[1].1, "2 starts");
        // Marks every few units over the whole axis: in each row, the
        // labels' extents, at their widest, are apart.
        for gap in [1.0, 9.8, 24.5, 40.0, 77.0, 81.0, 150.0] {
            for alternate in [false, true] {
                let marks: Vec<(f64, &str)> = (0..)
                    .map(|i| 58.0 + gap * i as f64)
                    .take_while(|x| *x <= 352.0)
                    .enumerate()
                    .map(|(i, x)| {
                        (
                            x,
                            if alternate && i % 2 == 1 {
                                "start 0.2.0"
                            } else {
                                "start 0.1.0"
                            },
                        )
                    })
                    .collect();
                let labels = mark_labels(&marks, "starts");
                for row in 0..MARK_ROWS {
                    let extents: Vec<(f64, f64)> = labels
                        .iter()
                        .filter(|l| l.3 == row)
                        .map(|(x, text, end, _)| {
                            let w = text_width(text, MARK_FONT);
                            assert!(w <= MARK_W, "{text}");
                            if *end {
                                (x - 2.0 - w, x - 2.0)
                            } else {
                                (x + 2.0, x + 2.0 + w)
                            }
                        })
                        .collect();
                    for pair in extents.windows(2) {
                        assert!(pair[0].1 < pair[1].0, "{gap}: {extents:?}");
                    }
                    assert!(
                        extents.iter().all(|e| e.0 >= 0.0 && e.1 <= W),
                        "{extents:?}"
                    );
                }
            }
        }
    }
}
