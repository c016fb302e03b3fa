//! Test builds only (feature `test-routes`, switched on by this package's
//! own tests): routes that make a request fail, panic, take a chosen time
//! run a slow statement or answer a body of a chosen size, so end-to-end tests can drive a workload with
//! known ground truth. A production build has no such route: `/__test/...`
//! is then an unmatched path (404).

use rouille::Response;

use super::routes::Route;
use super::{App, WebError, WebResult};

fn number(param: &str) -> Result<u64, WebError> {
    param
        .parse()
        .map_err(|_| WebError::BadRequest(format!("not a number: {param:?}")))
}

/// Dispatches the test routes.
pub fn handle(app: &App, route: Route, param: &str) -> WebResult {
    match route {
        Route::TestPanic => panic!("test panic route"),
        Route::TestStatus => {
            let code = number(param)?;
            let code = u16::try_from(code)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| WebError::BadRequest(format!("not a status: {code}")))?;
            Ok(Response::text(format!("status {code}\n")).with_status_code(code))
        }
        Route::TestSleep => {
            let ms = number(param)?.min(10_000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(Response::text(format!("slept {ms} ms\n")))
        }
        Route::TestSlowQuery => {
            let ms = number(param)?.min(10_000);
            app.db.conn()?.test_sleep(ms)?;
            Ok(Response::text(format!("ran a {ms} ms statement\n")))
        }
        Route::TestBytes => {
            let kib = number(param)?.min(16 * 1024) as usize;
            Ok(Response::from_data(
                "application/octet-stream",
                vec![b'x'; kib * 1024],
            ))
        }
        _ => Err(WebError::NotFound),
    }
}
