//! Database faults: a write lock held by another process, private files,
//! a corrupted database.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_held_write_lock_stalls_no_reader_and_writers_get_503() {
    let blog = start("locked");
    blog.micropub_form("before the lock");
    // Another process (a backup, the sqlite3 shell) takes the write lock.
    let other = rusqlite::Connection::open(blog.dir.join("starpunk.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let blog = &blog;
                s.spawn(move || {
                    let t = Instant::now();
                    let r = blog
                        .agent()
                        .post(&blog.url("/micropub"))
                        .set("Authorization", &format!("Bearer {TOKEN}"))
                        .send_form(&[("h", "entry"), ("content", &format!("locked out {i}"))]);
                    let r = match r {
                        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                        Err(e) => panic!("{e}"),
                    };
                    (
                        r.status(),
                        r.header("Retry-After").map(String::from),
                        t.elapsed(),
                    )
                })
            })
            .collect();
        // Meanwhile readers answer at once.
        std::thread::sleep(Duration::from_millis(300));
        for path in ["/", "/feed.xml", "/health", "/notes/before-the-lock"] {
            let t = Instant::now();
            let (code, _) = blog.get(path);
            let took = t.elapsed();
            assert!(code == 200 || code == 404, "{path}: {code}");
            assert!(
                took < Duration::from_millis(1_000),
                "{path} took {took:?} behind a writer"
            );
        }
        for w in writers {
            let (status, retry, took) = w.join().unwrap();
            assert_eq!(status, 503, "a locked database is busy, not broken");
            assert!(retry.is_some(), "503 without Retry-After");
            assert!(took < Duration::from_secs(12), "{took:?}");
        }
    });
    other.execute_batch("ROLLBACK").unwrap();
    blog.micropub_form("after the lock");
    assert_eq!(blog.get("/health").0, 200);
}

#[test]
fn the_database_and_its_journal_are_private() {
    let blog = start("private");
    blog.micropub_form("a note");
    let mode = |name: &str| {
        std::fs::metadata(blog.dir.join(name))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert_eq!(mode("starpunk.db"), 0o600);
    assert_eq!(mode("starpunk.db-wal"), 0o600);
    assert_eq!(mode("starpunk.db-shm"), 0o600);
    assert_eq!(
        std::fs::metadata(&blog.dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_corrupted_database_is_reported_by_health() {
    let dir = temp_dir("corrupt");
    {
        let mut cfg = config("corrupt", monitoring());
        cfg.data_dir = dir.clone();
        let (app, _) = starpunk::app::build(cfg).unwrap();
        let w = app.db.writer().unwrap();
        for i in 0..200 {
            w.create_note(&format!("note {i} {}", "filler ".repeat(50)), None)
                .unwrap();
        }
        w.query("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    // Scribble over three pages of notes past the middle of the file
    // (the schema and settings pages come first).
    let path = dir.join("starpunk.db");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    let at = (bytes.len() * 3 / 5) / 4096 * 4096;
    for b in &mut bytes[at..at + 3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let mut cfg = config("corrupt-again", monitoring());
    cfg.data_dir = dir.clone();
    let (app, generated) = starpunk::app::build(cfg).unwrap();
    let health = app.db.health();
    assert_ne!(health.integrity, "ok", "{health:?}");
    let running = starpunk::app::serve(app, generated).unwrap();
    let base = format!("http://{}", running.server.addr());
    let r = ureq::get(&format!("{base}/health")).call();
    let (code, body) = into_parts(r);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"database\":\"corrupt\""), "{body}");
    // SQLite's own words (pages, b-tree errors) are not for anyone who asks.
    assert!(body.contains("\"integrity\":\"failed\""), "{body}");
    for internal in ["page", "Tree", "error code", "btree"] {
        assert!(!body.contains(internal), "{internal} in {body}");
    }
    running.server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_writer_never_goes_back_inside_a_transaction() {
    let blog = start("abandoned-tx");
    let db = &blog.app().db;
    {
        // A handler that began a transaction and then failed (or panicked)
        // before COMMIT or ROLLBACK.
        let w = db.writer().unwrap();
        w.execute("BEGIN IMMEDIATE", []).unwrap();
        w.execute(
            "INSERT INTO notes (slug, content, published_at, updated_at) \
             VALUES ('never-committed', 'x', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    }
    // The next write is its own, committed: readers see it, not the other.
    blog.micropub_form("committed");
    let conn = db.conn().unwrap();
    assert_eq!(conn.count_notes().unwrap(), 1);
    assert!(conn.note_by_slug("never-committed").unwrap().is_none());
}

#[test]
fn a_full_disk_is_reported_as_a_full_disk_and_nothing_stored_is_lost() {
    let blog = start("disk-full");
    blog.micropub_form("before the disk filled");
    // SQLite's own ceiling stands in for the device's: past it, a write
    // gets SQLITE_FULL, as on a full disk.
    {
        let w = blog.app().db.writer().unwrap();
        let pages: i64 = w
            .query("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
            .pop()
            .unwrap();
        w.query(
            &*format!("PRAGMA max_page_count = {pages}").leak(),
            [],
            |_| Ok(()),
        )
        .unwrap();
    }
    let big = "a long note that needs new pages ".repeat(2_500);
    let r = blog
        .agent()
        .post(&blog.url("/micropub"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_form(&[("h", "entry"), ("content", &big)]);
    let r = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.status(), 503);
    assert!(r.header("Retry-After").is_some());
    let body = r.into_string().unwrap();
    assert!(body.contains("disk is full"), "{body}");
    assert!(!body.contains("busy"), "{body}");
    // What was stored before is still there, and readers are served.
    assert_eq!(blog.app().db.conn().unwrap().count_notes().unwrap(), 1);
    assert_eq!(blog.get("/").0, 200);
}
