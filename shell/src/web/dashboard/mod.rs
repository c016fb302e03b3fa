//! `/admin/performance`: the dashboard (maud, inline SVG, no JavaScript),
//! and its JSON and CSV exports. All three render one `PerfSnapshot`.

use maud::{html, Markup};
use rouille::{Request, Response};

use super::auth::to_login;
use super::charts::{bar_chart, sparkline, time_chart, timeline_chart, Axis, Line, Unit};
use super::ratelimit::RateLimiter;
use super::views;
use super::{App, WebError, WebResult};
use crate::monitoring::ticker::alerts::RuleView;
use crate::monitoring::ticker::trend::{MinutePoint, PeriodFigures};
use crate::monitoring::views::range::{Compare, Range};
use crate::monitoring::views::{
    rfc3339, DatabaseView, EndpointStats, PatternStats, PerfSnapshot, PlanView, RoutePattern,
    RssDelta, SlowPattern, SlowQueryView, WorstRequest,
};

mod exports;
mod format;
mod live;
mod range;
mod sections;

pub use exports::*;
use format::*;
pub use live::*;
use range::*;
use sections::*;

/// Seconds between automatic refreshes of the page.
pub const REFRESH_SECS: u32 = 30;

/// The checks every dashboard route makes: enabled, rate limit, session.
/// `Err` carries the response to send instead.
fn guard(app: &App, req: &Request, html: bool) -> Result<Result<(), Response>, WebError> {
    if !app.monitor.config().dashboard_enabled {
        return Err(WebError::NotFound);
    }
    if let Err(wait) = app.dashboard_limit.check(req.remote_addr().ip()) {
        return Ok(Err(RateLimiter::too_many(wait)));
    }
    if app.session(req)?.is_none() {
        return Ok(Err(if html {
            to_login()
        } else {
            Response::text("Log in at /admin/login\n")
                .with_status_code(401)
                .with_unique_header("WWW-Authenticate", "Cookie realm=\"starpunk admin\"")
        }));
    }
    Ok(Ok(()))
}

/// The live snapshot, with the database layer's figures.
pub fn snapshot(app: &App) -> PerfSnapshot {
    app.monitor.snapshot(database_view(app))
}

/// The database layer's figures.
fn database_view(app: &App) -> DatabaseView {
    let stats = app
        .db
        .conn()
        .map(|c| c.stats(&app.site.data_dir))
        .unwrap_or_default();
    DatabaseView {
        pool_in_use: app.db.pool_in_use(),
        pool_size: app.db.pool_size(),
        queries_per_second: 0.0,
        cache_hit_rate: stats.cache_hit_rate,
        db_bytes: stats.db_bytes,
        wal_bytes: stats.wal_bytes,
    }
}

/// `?range=`, or a 400 naming the accepted values.
fn range_of(req: &Request) -> Result<Range, Response> {
    let v = req.get_param("range");
    Range::parse(v.as_deref()).ok_or_else(|| {
        Response::text("range must be one of 15m, 1h, 24h, 7d, 30d\n").with_status_code(400)
    })
}

/// The snapshot for `range`: live, or from the history (`Err`: why not).
fn snapshot_for(app: &App, range: Range) -> Result<PerfSnapshot, String> {
    match range {
        Range::Live => Ok(snapshot(app)),
        _ => app.monitor.range_snapshot(range, database_view(app)),
    }
}

/// `GET /admin/performance.json?range=`.
pub fn json(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, false)? {
        return Ok(r);
    }
    let range = match range_of(req) {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    Ok(match snapshot_for(app, range) {
        Ok(s) => Response::from_data("application/json", json_body(&s)),
        Err(why) => Response::from_data(
            "application/json",
            serde_json::json!({ "error": why, "range": range.name() }).to_string(),
        )
        .with_status_code(404),
    }
    .with_no_cache())
}

/// `GET /admin/performance?range=`.
pub fn page(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, true)? {
        return Ok(r);
    }
    let range = match range_of(req) {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let html = match snapshot_for(app, range) {
        Ok(s) => render(&app.site.name, &s),
        Err(why) => {
            let body = html! {
                h2 { "Performance" }
                (range_nav(range))
                p { "No " (range.label()) " view: " (why) "." }
            };
            views::page(&app.site.name, "Performance", None, body).into_string()
        }
    };
    Ok(Response::html(html).with_no_cache())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::ticker::trend::PeriodFigures;

    #[test]
    fn a_setting_breaks_only_after_an_underscore_or_at_its_value() {
        assert_eq!(
            setting("STARPUNK_PERF_ALERTS").into_string(),
            "<code class=\"setting\">STARPUNK_<wbr>PERF_<wbr>ALERTS</code>"
        );
        assert_eq!(
            setting("A_B=c").into_string(),
            "<code class=\"setting\">A_<wbr>B<wbr>=<wbr>c</code>"
        );
    }

    fn period(seconds: f64, requests: u64, p99_ms: f64) -> PeriodFigures {
        PeriodFigures {
            seconds,
            requests,
            requests_per_second: requests as f64 / seconds,
            p99_ms,
            ..PeriodFigures::default()
        }
    }

    #[test]
    fn what_changed_names_a_slower_period_and_slower_routes() {
        let mut s = PerfSnapshot {
            enabled: true,
            window_seconds: 900.0,
            ..PerfSnapshot::default()
        };
        s.overview.before = period(600.0, 600, 4.0);
        s.overview.last_5_minutes = period(300.0, 300, 12.0);
        let route = |count, p99_ms| EndpointStats {
            name: "GET /".into(),
            count,
            p99_ms,
            ..EndpointStats::default()
        };
        s.endpoints = vec![route(5_000, 3.0)];
        s.endpoints_recent = vec![route(900, 12.0)];
        let c = changes(&s);
        assert!(
            c.iter().any(|l| l
                == "p99 response time: 12 ms in the last 5 min, up 200 % on the 10 min before (4 ms)."),
            "{c:?}"
        );
        assert!(
            !c.iter().any(|l| l.starts_with("Requests per second")),
            "steady: {c:?}"
        );
        assert!(
            c.iter()
                .any(|l| l.starts_with("GET / is slower now: p99 12 ms")),
            "{c:?}"
        );
        // The same figures in both periods: nothing to say.
        s.overview.last_5_minutes = period(300.0, 300, 4.0);
        s.endpoints_recent = vec![route(900, 3.0)];
        assert!(changes(&s).is_empty());
        assert!(render("Blog", &s).contains("Nothing worth a look"));
    }

    #[test]
    fn a_cards_trend_shows_the_figure_it_compares() {
        let before = period(600.0, 600, 4.0);
        let now = period(300.0, 300, 12.0);
        assert_eq!(
            card_trend(&now, &before, (now.p99_ms, before.p99_ms), " ms", true),
            "Last 5 min: 12 ms, up 200 % on the 10 min before (4 ms)."
        );
        // Ten requests' p99 is not compared; their rate is.
        let few = period(300.0, 10, 40.0);
        assert_eq!(
            card_trend(&few, &before, (few.p99_ms, before.p99_ms), " ms", true),
            ""
        );
        assert!(card_trend(&few, &before, (0.033, 1.0), "/s", false)
            .starts_with("Last 5 min: 0.033/s, down 97 %"));
    }

    #[test]
    fn the_banner_says_what_state_each_rule_is_in() {
        let rule = |state, state_seconds| RuleView {
            rule: "request_rate > 5/s for 1m".into(),
            state,
            value: 0.0,
            threshold: 5.0,
            unit: "/s",
            since: Some("2026-05-01T10:00:00Z".into()),
            for_seconds: 60.0,
            state_seconds,
        };
        let mut s = PerfSnapshot {
            enabled: true,
            ..PerfSnapshot::default()
        };
        s.alerts.rules = vec![
            rule("resolving", 40.0),
            rule("firing", 125.0),
            rule("pending", 20.0),
        ];
        let banner = firing(&s).into_string();
        let code = "<code>request_rate &gt; 5/s for 1m</code>";
        for wanted in [
            format!(
                "<b>Alert resolving: </b>{code} — below the threshold for 40 s of 1 min; \
                     last minute 0/s, threshold 5/s; firing since 2026-05-01T10:00:00Z."
            ),
            format!(
                "<b>Alert firing: </b>{code} — above the threshold, firing since \
                     2026-05-01T10:00:00Z (2 min 5 s); last minute 0/s, threshold 5/s."
            ),
        ] {
            assert!(banner.contains(&wanted), "{banner}");
        }
        // A pending rule is in the table only; no banner says "now".
        assert!(
            !banner.contains("pending") && !banner.contains("now"),
            "{banner}"
        );
        let table = alerts_section(&s).into_string();
        assert!(
            table.contains("pending<br><small>20 s of 1 min</small>"),
            "{table}"
        );
    }

    #[test]
    fn long_tables_fold_and_stop_at_a_hundred_rows() {
        let rows: Vec<u32> = (0..150).collect();
        let head = html! { tr { th { "n" } } };
        let page = long_table(
            &head,
            &rows,
            10,
            "rows",
            |n| html! { tr { td { "row " (n) } } },
        )
        .into_string();
        assert!(page.contains("Show 90 more rows"), "{page}");
        assert!(page.contains("row 99<") && !page.contains("row 100<"));
        assert!(page.contains("And 50 more in the"));
        let short = long_table(
            &head,
            &rows[..3],
            10,
            "rows",
            |n| html! { tr { td { (n) } } },
        )
        .into_string();
        assert!(!short.contains("<details"));
    }

    #[test]
    fn long_sql_is_cut_between_words_with_the_whole_on_demand() {
        let long = "SELECT id, slug, content, published_at FROM notes WHERE deleted_at IS NULL ORDER BY published_at DESC";
        let m = sql(long).into_string();
        assert!(m.starts_with("<details class=\"sql\"><summary><code>SELECT id,<wbr> slug,<wbr> content,<wbr> published_at FROM ..."), "{m}");
        // Whole, with a break opportunity after each comma.
        assert!(m.contains(&format!("<code>{}</code>", long.replace(',', ",<wbr>"))));
        assert_eq!(
            sql("SELECT 1").into_string(),
            "<div class=\"sql\"><code>SELECT 1</code></div>"
        );
    }
}
