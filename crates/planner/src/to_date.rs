//! `to_date(text, template)` and `to_timestamp(text, template)` with
//! PostgreSQL's template patterns.
//!
//! DataFusion's functions read chrono's `%Y-%m-%d`, so PostgreSQL's
//! `to_date('2020-01-02', 'YYYY-MM-DD')` failed. [`pg_date_templates`]
//! rewrites a literal template of such a call into chrono's
//! ([`chrono_template`]): `YYYY`, `YY`, `MM`, `DD`, `HH24`, `HH12`, `HH`,
//! `MI`, `SS`, `MS`, `US`, `AM`/`PM`, month and day names (`Month`, `Mon`,
//! `Day`, `Dy`, any case), `FM` (ignored) and `"text"`; other characters
//! stand for themselves. `to_timestamp(text, template)` is a `timestamptz`,
//! as in PostgreSQL (the text is read as UTC, the session's zone). A
//! template already in chrono's form (with a `%`) is left alone.
//!
//! ```
//! use slicedb_planner::to_date::chrono_template;
//! assert_eq!(chrono_template("YYYY-MM-DD"), "%Y-%m-%d");
//! assert_eq!(chrono_template("DD Mon YYYY HH24:MI:SS"), "%d %b %Y %H:%M:%S");
//! assert_eq!(chrono_template("FMMonth DD, YYYY \"at\" HH12 AM"), "%B %d, %Y at %I %p");
//! assert_eq!(chrono_template("100%"), "100%%");
//! ```

use datafusion::sql::sqlparser::ast;

/// PostgreSQL's patterns and chrono's, longest first.
const PATTERNS: &[(&str, &str)] = &[
    ("HH24", "%H"),
    ("HH12", "%I"),
    ("YYYY", "%Y"),
    ("MONTH", "%B"),
    ("Month", "%B"),
    ("month", "%B"),
    ("HH", "%I"),
    ("YY", "%y"),
    ("MM", "%m"),
    ("DD", "%d"),
    ("MI", "%M"),
    ("SS", "%S"),
    ("MS", "%3f"),
    ("US", "%6f"),
    ("AM", "%p"),
    ("PM", "%p"),
    ("am", "%p"),
    ("pm", "%p"),
    ("MON", "%b"),
    ("Mon", "%b"),
    ("mon", "%b"),
    ("DAY", "%A"),
    ("Day", "%A"),
    ("day", "%A"),
    ("DY", "%a"),
    ("Dy", "%a"),
    ("dy", "%a"),
];

/// A PostgreSQL template as chrono's (see the module comment).
pub fn chrono_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    'next: while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            rest = r;
            continue;
        }
        if c == '"' {
            let body = &rest[1..];
            let end = body.find('"').unwrap_or(body.len());
            out.push_str(&body[..end].replace('%', "%%"));
            rest = body.get(end + 1..).unwrap_or("");
            continue;
        }
        for (pg, chrono) in PATTERNS {
            if let Some(r) = rest.strip_prefix(pg) {
                out.push_str(chrono);
                rest = r;
                continue 'next;
            }
        }
        if c == '%' {
            out.push('%');
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Rewrites the literal templates of `to_date` and `to_timestamp` calls in
/// `stmt` into chrono's, and makes `to_timestamp(text, template)` a
/// `timestamptz`; whether anything changed.
pub fn pg_date_templates(stmt: &mut ast::Statement) -> bool {
    let mut changed = false;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        let ast::Expr::Function(f) = e else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        let name = f.name.to_string().to_ascii_lowercase();
        if name != "to_date" && name != "to_timestamp" {
            return std::ops::ControlFlow::Continue(());
        }
        let ast::FunctionArguments::List(list) = &mut f.args else {
            return std::ops::ControlFlow::Continue(());
        };
        if list.args.len() != 2 {
            return std::ops::ControlFlow::Continue(());
        }
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))) = &mut list.args[1] else {
            return std::ops::ControlFlow::Continue(());
        };
        let ast::Value::SingleQuotedString(template) = &mut v.value else {
            return std::ops::ControlFlow::Continue(());
        };
        if template.contains('%') {
            return std::ops::ControlFlow::Continue(());
        }
        *template = chrono_template(template);
        changed = true;
        if name == "to_timestamp" {
            let call = std::mem::replace(e, ast::Expr::Value(ast::Value::Null.with_empty_span()));
            *e = ast::Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(call),
                data_type: ast::DataType::Timestamp(None, ast::TimezoneInfo::Tz),
                array: false,
                format: None,
            };
        }
        std::ops::ControlFlow::Continue(())
    });
    changed
}
