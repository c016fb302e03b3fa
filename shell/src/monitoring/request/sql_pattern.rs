//! SQL text to its normalised pattern, as pg_stat_statements shows it:
//! literals become `?`, `IN (...)` lists and multi-row `VALUES` fold,
//! comments go, whitespace and keyword case fold. The text with values is
//! never kept.

/// Longest pattern kept, in bytes; longer ones end in `...`.
pub const MAX_PATTERN_LEN: usize = 512;

#[derive(Debug, PartialEq, Clone)]
enum Token {
    Word(String),
    /// A quoted identifier, kept with its quotes.
    Quoted(String),
    /// A literal or a bind parameter.
    Value,
    Punct(String),
}

const KEYWORDS: &[&str] = &[
    "ABORT",
    "ALL",
    "ALTER",
    "AND",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "COMMIT",
    "CONFLICT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "DROP",
    "ELSE",
    "END",
    "ESCAPE",
    "EXISTS",
    "EXPLAIN",
    "FROM",
    "FULL",
    "GLOB",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATCH",
    "NOT",
    "NOTHING",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PRAGMA",
    "REPLACE",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "TABLE",
    "THEN",
    "TRANSACTION",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Functions written without a space before their parenthesis.
const FUNCTIONS: &[&str] = &[
    "abs",
    "avg",
    "coalesce",
    "count",
    "group_concat",
    "ifnull",
    "instr",
    "json",
    "json_extract",
    "length",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "printf",
    "random",
    "replace",
    "round",
    "rtrim",
    "substr",
    "sum",
    "total",
    "trim",
    "typeof",
    "upper",
    "date",
    "datetime",
    "strftime",
    "highlight",
    "snippet",
    "bm25",
];

fn tokenize(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            b'\'' => {
                // String literal; '' is an escaped quote. Unterminated: to the end.
                i += 1;
                while i < b.len() {
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token::Value);
            }
            b'x' | b'X' if b.get(i + 1) == Some(&b'\'') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token::Value);
            }
            b'"' | b'`' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                let start = i;
                i += 1;
                while i < b.len() && b[i] != close {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token::Quoted(
                    String::from_utf8_lossy(&b[start..i]).into_owned(),
                ));
            }
            b'?' | b':' | b'@' | b'$' => {
                // Bind parameters: ?, ?NNN, :name, @name, $name.
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Token::Value);
            }
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || ((b[i] == b'+' || b[i] == b'-') && matches!(b[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                out.push(Token::Value);
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                let w = String::from_utf8_lossy(&b[start..i]);
                let upper = w.to_ascii_uppercase();
                out.push(Token::Word(if KEYWORDS.contains(&upper.as_str()) {
                    upper
                } else {
                    w.to_ascii_lowercase()
                }));
            }
            _ => {
                let two = b.get(i..i + 2).unwrap_or(&[]);
                let op = if matches!(
                    two,
                    b"<=" | b">=" | b"<>" | b"!=" | b"==" | b"||" | b"<<" | b">>"
                ) {
                    2
                } else {
                    1
                };
                let s = String::from_utf8_lossy(&b[i..i + op]).into_owned();
                i += op;
                out.push(Token::Punct(s));
            }
        }
    }
    out
}

/// Folds `( ? , ? , ... )` after `IN` into `(...)`, and repeated value
/// tuples after `VALUES` into one.
fn fold_lists(tokens: Vec<Token>) -> Vec<Token> {
    let is = |t: &Token, p: &str| matches!(t, Token::Punct(s) if s == p);
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        // A `( ? (, ?)* )` run.
        let value_tuple_end = |at: usize| -> Option<usize> {
            if !is(tokens.get(at)?, "(") {
                return None;
            }
            let mut j = at + 1;
            loop {
                if !matches!(tokens.get(j)?, Token::Value) {
                    return None;
                }
                j += 1;
                match tokens.get(j)? {
                    t if is(t, ",") => j += 1,
                    t if is(t, ")") => return Some(j + 1),
                    _ => return None,
                }
            }
        };
        let after_in = matches!(out.last(), Some(Token::Word(w)) if w == "IN");
        if after_in {
            if let Some(end) = value_tuple_end(i) {
                out.push(Token::Punct("(".into()));
                out.push(Token::Punct("...".into()));
                out.push(Token::Punct(")".into()));
                i = end;
                continue;
            }
        }
        let after_values = matches!(out.last(), Some(Token::Word(w)) if w == "VALUES");
        if after_values {
            if let Some(mut end) = value_tuple_end(i) {
                out.extend(tokens[i..end].iter().cloned());
                // Skip further `, ( ... )` tuples.
                while tokens.get(end).is_some_and(|t| is(t, ",")) {
                    match value_tuple_end(end + 1) {
                        Some(e) => end = e,
                        None => break,
                    }
                }
                i = end;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// The normalised pattern of `sql`.
pub fn normalize(sql: &str) -> String {
    let tokens = fold_lists(tokenize(sql));
    let mut out = String::with_capacity(sql.len().min(MAX_PATTERN_LEN));
    let mut prev: Option<&Token> = None;
    for t in &tokens {
        let text = match t {
            Token::Word(s) | Token::Quoted(s) | Token::Punct(s) => s.as_str(),
            Token::Value => "?",
        };
        let call = matches!(t, Token::Punct(s) if s == "(")
            && matches!(prev, Some(Token::Word(w)) if FUNCTIONS.contains(&w.as_str()));
        let glue_left = call
            || matches!(t, Token::Punct(s) if s == "," || s == ")" || s == ";" || s == ".")
            || matches!(prev, Some(Token::Punct(s)) if s == "(" || s == ".");
        if prev.is_some() && !glue_left {
            out.push(' ');
        }
        out.push_str(text);
        prev = Some(t);
        if out.len() > MAX_PATTERN_LEN {
            let mut cut = MAX_PATTERN_LEN - 3;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    while out.ends_with(';') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            normalize("select * from notes where slug = 'secret-marker' and id > 42"),
            "SELECT * FROM notes WHERE slug = ? AND id > ?"
        );
        assert_eq!(
            normalize("SELECT 1.5e-3, .5, X'ABCD', -7"),
            "SELECT ?, ?, ?, - ?"
        );
        assert_eq!(
            normalize("SELECT 'it''s' || :name || @x || $y || ?12"),
            "SELECT ? || ? || ? || ? || ?"
        );
    }

    #[test]
    fn comments_whitespace_and_case_fold() {
        assert_eq!(
            normalize("  SeLeCt  id,\n\tslug -- the slug\n FROM /* c */ Notes ;"),
            "SELECT id, slug FROM notes"
        );
        assert_eq!(
            normalize("select count(*) from t"),
            "SELECT count(*) FROM t"
        );
    }

    #[test]
    fn in_lists_and_values_fold() {
        assert_eq!(
            normalize("DELETE FROM s WHERE id IN (1, 2, 3)"),
            normalize("delete from s where id in (?)")
        );
        assert_eq!(
            normalize("SELECT * FROM t WHERE a IN (1,2)"),
            "SELECT * FROM t WHERE a IN (...)"
        );
        assert_eq!(
            normalize("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')"),
            "INSERT INTO t (a, b) VALUES (?, ?)"
        );
        // A subquery after IN is kept.
        assert_eq!(
            normalize("SELECT 1 FROM t WHERE a IN (SELECT b FROM u WHERE c = 'v')"),
            "SELECT ? FROM t WHERE a IN (SELECT b FROM u WHERE c = ?)"
        );
    }

    #[test]
    fn quoted_identifiers_are_kept_and_garbage_does_not_panic() {
        assert_eq!(
            normalize("SELECT \"Weird Col\" FROM [t]"),
            "SELECT \"Weird Col\" FROM [t]"
        );
        for s in [
            "'",
            "\"",
            "/*",
            "--",
            "x'",
            "?",
            "(((",
            "é'ü",
            "",
            "1e+",
            "IN (",
            "VALUES (1,",
        ] {
            let p = normalize(s);
            assert!(p.len() <= super::MAX_PATTERN_LEN);
        }
        let long = format!("SELECT {}", vec!["a"; 1000].join(", "));
        assert!(normalize(&long).ends_with("..."));
    }

    #[test]
    fn unterminated_literal_never_leaks() {
        let p = normalize("SELECT * FROM t WHERE a = 'marker-xyz");
        assert!(!p.contains("marker"), "{p}");
    }
}
