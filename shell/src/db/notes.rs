//! Notes: markdown source, slug, published/updated times, soft delete.

use rusqlite::Row;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Conn, DbError};

/// A stored note.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Row id.
    pub id: i64,
    /// URL slug, unique.
    pub slug: String,
    /// Markdown source.
    pub content: String,
    /// RFC 3339, UTC.
    pub published_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

fn note(r: &Row<'_>) -> rusqlite::Result<Note> {
    Ok(Note {
        id: r.get(0)?,
        slug: r.get(1)?,
        content: r.get(2)?,
        published_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// The current time as stored (RFC 3339, UTC, whole seconds).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// A slug from Micropub's `mp-slug` or a title: lower-case ASCII letters,
/// digits and single dashes, at most 64 characters. `None` if nothing is left.
pub fn sanitize_slug(wanted: &str) -> Option<String> {
    let mut out = String::new();
    for c in wanted.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 64 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

// The list of statements is fixed: every one is a `&'static str` so the
// monitor can key its pattern cache by address.
impl Conn<'_> {
    /// Published notes, newest first.
    pub fn published_notes(&self, limit: i64, offset: i64) -> Result<Vec<Note>, DbError> {
        const SQL: &str = "SELECT id, slug, content, published_at, updated_at FROM notes
             WHERE deleted_at IS NULL ORDER BY published_at DESC, id DESC LIMIT ?1 OFFSET ?2";
        self.query(SQL, [limit, offset], note)
    }

    /// Number of published notes.
    pub fn count_notes(&self) -> Result<i64, DbError> {
        Ok(self
            .query_opt(
                "SELECT count(*) FROM notes WHERE deleted_at IS NULL",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// The newest `updated_at` and the count: a cheap feed validator.
    pub fn feed_version(&self) -> Result<(String, i64), DbError> {
        Ok(self
            .query_opt(
                "SELECT coalesce(max(updated_at), ''), count(*) FROM notes WHERE deleted_at IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or_default())
    }

    /// A published note by slug.
    pub fn note_by_slug(&self, slug: &str) -> Result<Option<Note>, DbError> {
        self.query_opt(
            "SELECT id, slug, content, published_at, updated_at FROM notes
             WHERE slug = ?1 AND deleted_at IS NULL",
            [slug],
            note,
        )
    }

    /// A published note by id.
    pub fn note_by_id(&self, id: i64) -> Result<Option<Note>, DbError> {
        self.query_opt(
            "SELECT id, slug, content, published_at, updated_at FROM notes
             WHERE id = ?1 AND deleted_at IS NULL",
            [id],
            note,
        )
    }

    /// Creates a note with a unique slug derived from `wanted` (or from
    /// the time).
    pub fn create_note(&self, content: &str, wanted_slug: Option<&str>) -> Result<Note, DbError> {
        let now = now_rfc3339();
        let base = wanted_slug.and_then(sanitize_slug).unwrap_or_else(|| {
            now.replace([':', '-'], "")
                .replace('T', "-")
                .trim_end_matches('Z')
                .to_lowercase()
        });
        self.transaction(|c| {
            let mut slug = base.clone();
            let mut n = 1;
            while c
                .query_opt("SELECT 1 FROM notes WHERE slug = ?1", [&slug], |r| r.get::<_, i64>(0))?
                .is_some()
            {
                n += 1;
                slug = format!("{base}-{n}");
            }
            c.execute(
                "INSERT INTO notes (slug, content, published_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                [&slug, content, &now],
            )?;
            let id = c.last_insert_rowid();
            Ok(Note {
                id,
                slug,
                content: content.to_string(),
                published_at: now.clone(),
                updated_at: now.clone(),
            })
        })
    }

    /// Replaces a note's content; false if there is no such note.
    pub fn update_note(&self, id: i64, content: &str) -> Result<bool, DbError> {
        let n = self.execute(
            "UPDATE notes SET content = ?1, updated_at = ?2 WHERE id = ?3 AND deleted_at IS NULL",
            rusqlite::params![content, now_rfc3339(), id],
        )?;
        Ok(n == 1)
    }

    /// Soft-deletes a note; false if there is no such note.
    pub fn delete_note(&self, id: i64) -> Result<bool, DbError> {
        let n = self.execute(
            "UPDATE notes SET deleted_at = ?1 WHERE id = ?2 AND deleted_at IS NULL",
            rusqlite::params![now_rfc3339(), id],
        )?;
        Ok(n == 1)
    }

    /// Full-text search; `terms` are matched as quoted FTS5 strings, so no
    /// user input is ever read as FTS5 syntax.
    pub fn search_notes(&self, terms: &str, limit: i64) -> Result<Vec<Note>, DbError> {
        let query = fts_query(terms);
        if query.is_empty() {
            return Ok(Vec::new());
        }
        self.query(
            "SELECT n.id, n.slug, n.content, n.published_at, n.updated_at
             FROM notes_fts JOIN notes n ON n.id = notes_fts.rowid
             WHERE notes_fts MATCH ?1 AND n.deleted_at IS NULL
             ORDER BY rank LIMIT ?2",
            rusqlite::params![query, limit],
            note,
        )
    }
}

/// `hello "world` becomes `"hello" "world"""` (each term quoted, inner
/// quotes doubled): an implicit AND of literal terms.
pub fn fts_query(terms: &str) -> String {
    terms
        .split_whitespace()
        .take(16)
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a stored time.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_sanitized() {
        assert_eq!(
            sanitize_slug("Hello, World!").as_deref(),
            Some("hello-world")
        );
        assert_eq!(
            sanitize_slug("../../etc/passwd").as_deref(),
            Some("etc-passwd")
        );
        assert_eq!(sanitize_slug("ü <script>").as_deref(), Some("script"));
        assert_eq!(sanitize_slug("---"), None);
    }

    #[test]
    fn fts_terms_are_quoted() {
        assert_eq!(fts_query("a \"b OR c*"), "\"a\" \"\"\"b\" \"OR\" \"c*\"");
        assert_eq!(fts_query("   "), "");
    }
}
