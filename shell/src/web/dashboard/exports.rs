//! The JSON and CSV exports (`/admin/performance.json`, `.csv`): the same
//! snapshot the page renders, serialised.

use super::*;

/// The JSON export's body.
pub fn json_body(s: &PerfSnapshot) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

/// Quotes a CSV field when needed (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The routes and patterns of a range view, one line each.
pub(super) fn range_csv(s: &PerfSnapshot) -> String {
    let mut out = String::from(
        "kind,name,count,errors_5xx,errors_4xx,mean_ms,p50_ms,p95_ms,p99_ms,max_ms,total_ms,rows\n",
    );
    for e in &s.endpoints {
        out.push_str(&format!(
            "route,{},{},{},{},{},{},{},{},{},{},\n",
            csv_field(&e.name),
            e.count,
            e.errors_5xx,
            e.client_errors_4xx,
            e.mean_ms,
            e.p50_ms,
            e.p95_ms,
            e.p99_ms,
            e.max_ms,
            round3(e.mean_ms * e.count as f64),
        ));
    }
    for q in &s.query_patterns {
        out.push_str(&format!(
            "pattern,{},{},,,{},,,{},,{},{}\n",
            csv_field(&q.pattern),
            q.calls,
            q.mean_ms,
            q.p99_ms,
            q.total_ms,
            q.rows,
        ));
    }
    out
}

/// `GET /admin/performance.csv`: the ring's records, oldest first; with
/// `?range=` (other than `15m`), the routes and patterns over the range
/// from the history.
pub fn csv(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, false)? {
        return Ok(r);
    }
    let range = match range_of(req) {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    if range != Range::Live {
        return Ok(match snapshot_for(app, range) {
            Ok(s) => Response::from_data("text/csv; charset=utf-8", range_csv(&s))
                .with_content_disposition_attachment(&format!(
                    "starpunk-performance-{}.csv",
                    range.name()
                )),
            Err(why) => Response::text(format!("{why}\n")).with_status_code(404),
        }
        .with_no_cache());
    }
    // `kept`: "sampled" (chosen by the sampler) or "forced" (left out by
    // it but kept because it failed or ran a slow statement).
    let mut out = String::from(
        "timestamp,category,operation,parent,duration_ms,status,bytes,rows,memory_delta,request_id,kept\n",
    );
    if let Some(inner) = app.monitor.inner() {
        let reg = inner.recorder.registry();
        let anchor = inner.recorder.anchor();
        let name = |op| reg.get(op).map_or("", |e| e.name.as_str());
        for r in inner.records() {
            out.push_str(&format!(
                "{},{},{},{},{:.3},{},{},{},{},{},{}\n",
                rfc3339(anchor.to_unix_ns(r.timestamp_ns)),
                r.category,
                csv_field(name(r.operation)),
                csv_field(name(r.parent)),
                r.duration_ns as f64 / 1e6,
                r.status,
                r.bytes,
                r.rows,
                r.memory_delta,
                r.request_id,
                if r.forced { "forced" } else { "sampled" },
            ));
        }
    }
    Ok(Response::from_data("text/csv; charset=utf-8", out)
        .with_content_disposition_attachment("starpunk-performance.csv")
        .with_no_cache())
}
