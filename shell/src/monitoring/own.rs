//! The owner's own traffic (`STARPUNK_PERF_OWN_TRAFFIC`): requests to
//! `/admin` and everything under it, and to `/metrics`. With `apart` (the
//! default) they are counted exactly and shown in a group of their own, but
//! left out of the headline figures, the overview charts, the slowest lists
//! and alert rules that name no route; exports keep every route.
//!
//! Told from the series name (`METHOD /path/template`), so the live views
//! and the history's (which keep names only) decide alike.

use serde::Serialize;

/// How the owner's own requests are shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnTraffic {
    /// In a group of their own, out of the headline figures.
    #[default]
    Apart,
    /// Like readers' requests.
    Include,
}

impl OwnTraffic {
    /// Parses `apart` or `include` (any case, trimmed).
    pub fn parse(v: &str) -> Option<OwnTraffic> {
        match v.trim().to_ascii_lowercase().as_str() {
            "apart" => Some(OwnTraffic::Apart),
            "include" => Some(OwnTraffic::Include),
            _ => None,
        }
    }

    /// True when the series `name` is left out of the headline figures.
    pub fn sets_apart(self, name: &str) -> bool {
        self == OwnTraffic::Apart && is_own(name)
    }
}

/// True for a route series of the owner's own pages: `/admin`, anything
/// under it, `/metrics`.
pub fn is_own(name: &str) -> bool {
    let path = name.split_once(' ').map_or(name, |(_, p)| p);
    path == "/admin" || path.starts_with("/admin/") || path == "/metrics"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owners_pages_are_told_by_path() {
        for own in [
            "GET /admin",
            "POST /admin/login",
            "GET /admin/performance.json",
            "POST /admin/notes/{id}/delete",
            "GET /metrics",
        ] {
            assert!(is_own(own), "{own}");
        }
        for reader in [
            "GET /",
            "GET /administrator",
            "GET /notes/{slug}",
            "GET /metricsx",
            "(unmatched)",
        ] {
            assert!(!is_own(reader), "{reader}");
        }
        assert!(OwnTraffic::Apart.sets_apart("GET /admin"));
        assert!(!OwnTraffic::Include.sets_apart("GET /admin"));
        assert_eq!(OwnTraffic::parse(" Include "), Some(OwnTraffic::Include));
        assert_eq!(OwnTraffic::parse("yes"), None);
    }
}
