//! Parsing: standard SQL through sqlparser, plus slicedb's own statements.
//!
//! The input is tokenized once with sqlparser's PostgreSQL tokenizer and
//! split at top-level semicolons. Each statement is then either one of
//! slicedb's cluster statements (`CREATE HASH MAP`, `SHOW SLICES`, …), read
//! from the tokens here, or standard SQL, parsed by sqlparser from the same
//! tokens. A statement
//! that reads the system catalogs (`pg_catalog`, `information_schema`, a
//! `pg_…` relation) is parsed again by datafusion-pg-catalog's PostgreSQL
//! compatibility parser, which rewrites the catalog queries psql and drivers
//! send into forms DataFusion plans; some of those rewrites change what a
//! query means (a correlated subquery in a select list becomes NULL), so
//! every other statement gets only the rewrites that keep its meaning
//! ([`USER_RULES`]), and `NOT IN (subquery)` under `OR` is made
//! NULL-correct ([`crate::not_in`]). Each rewrite that walks the tree runs
//! only when the tokens hold what it rewrites ([`Hints`]), so that short
//! statements pay for no walk. `CREATE TABLE … DISTRIBUTED BY (…) [HASH MAP m]` is
//! split: the standard part goes to sqlparser, the tail is read here.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use slicedb_common::{err, Error, Result};
use slicedb_hashmap::Strategy;

mod sequence_options;
pub use sequence_options::{AlterSequence, SequenceClauses};

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// Standard SQL.
    Sql(Box<ast::Statement>),
    /// `CREATE TABLE` with slicedb's distribution clauses.
    CreateTable {
        create: Box<ast::CreateTable>,
        distributed_by: Option<Vec<String>>,
        hash_map: Option<String>,
    },
    CreateHashMap {
        name: String,
        nodes: Option<Vec<u32>>,
        strategy: Option<Strategy>,
        as_current: bool,
    },
    SetCurrentHashMap(String),
    DropHashMap {
        name: String,
        if_exists: bool,
    },
    ShowHashMaps,
    ShowHashMap(String),
    ShowNodes,
    ShowSlices(Option<String>),
    /// `SHOW SLICE LOAD [FOR t]`.
    ShowSliceLoad(Option<String>),
    /// `ADD NODE 'host:port' [WITHOUT HASH MAP] [STRATEGY s]`
    AddNode {
        address: String,
        new_map: bool,
        strategy: Option<Strategy>,
    },
    /// `REMOVE NODE n`
    RemoveNode(u32),
    /// `REDISTRIBUTE TABLE t [TO HASH MAP m] [WITH (max_rate_mb = N)]`;
    /// `table` is `None` for `REDISTRIBUTE ALL`.
    Redistribute {
        table: Option<String>,
        to_map: Option<String>,
        max_rate_mb: Option<f64>,
    },
    /// `ALTER NODE n SET (capacity_gb = N)`
    AlterNode {
        node: u32,
        capacity_gb: Option<f64>,
    },
    /// `REBALANCE [TABLE t | ALL] [WITH (max_rate_mb = N, threshold_pct = P)] [DRY RUN]`
    Rebalance {
        table: Option<String>,
        max_rate_mb: Option<f64>,
        threshold_pct: Option<f64>,
        dry_run: bool,
    },
    /// `DRAIN NODE n [WITH (max_rate_mb = N)]`
    DrainNode {
        node: u32,
        max_rate_mb: Option<f64>,
    },
    ShowRedistributions,
    /// `CANCEL REDISTRIBUTION job`
    CancelRedistribution(u64),
    /// `VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE] [(options)] [t, …]` or
    /// `ANALYZE [VERBOSE] [t [(columns)], …]`: `command` is the tag.
    Maintenance {
        command: &'static str,
        tables: Vec<String>,
    },
    /// `SET CONSTRAINTS {ALL | name [, …]} {DEFERRED | IMMEDIATE}`:
    /// `names` is `None` for `ALL`.
    SetConstraints {
        names: Option<Vec<String>>,
        deferred: bool,
    },
    /// `CREATE ROLE name [[WITH] option …]`; `CREATE USER` is the same
    /// with `LOGIN` by default.
    CreateRole {
        name: String,
        options: RoleOptions,
    },
    /// `ALTER ROLE name [WITH] option …` (or `ALTER USER`).
    AlterRole {
        name: String,
        options: RoleOptions,
    },
    /// `DROP ROLE [IF EXISTS] name [, …]` (or `DROP USER`).
    DropRole {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `CREATE SEQUENCE [IF NOT EXISTS] name [options]`, the options in any order.
    CreateSequence {
        if_not_exists: bool,
        name: ast::ObjectName,
        clauses: SequenceClauses,
    },
    /// `ALTER SEQUENCE [IF EXISTS] name {options | OWNER TO role}`.
    AlterSequence {
        if_exists: bool,
        name: ast::ObjectName,
        action: AlterSequence,
    },
}

/// The role attributes a `CREATE ROLE` or `ALTER ROLE` sets; `None`
/// leaves one as it is (or at its default).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RoleOptions {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    /// `PASSWORD 'text'` (`Some(Some)`), `PASSWORD NULL` (`Some(None)`).
    pub password: Option<Option<String>>,
}

impl std::fmt::Debug for RoleOptions {
    /// Never a password in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleOptions")
            .field("login", &self.login)
            .field("superuser", &self.superuser)
            .field("password", &self.password.as_ref().map(|p| p.as_ref().map(|_| "…")))
            .finish()
    }
}

/// Parses one or more `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::syntax(e.to_string()))?;
    let chunks: Vec<Vec<TokenWithSpan>> = split_statements(tokens)
        .into_iter()
        .filter(|c| !c.iter().all(|t| is_blank(&t.token)))
        .collect();
    // One statement (what clients send nearly always) is its own text.
    let whole = (chunks.len() == 1).then_some(sql);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Some(stmt) = parse_one(chunk, whole)? {
            out.push(stmt);
        }
    }
    Ok(out)
}

fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut chunks = vec![Vec::new()];
    for mut t in tokens {
        // An E'…' string is its (unescaped) value, as a standard string.
        if let Token::EscapedStringLiteral(v) = &mut t.token {
            t.token = Token::SingleQuotedString(std::mem::take(v));
        }
        if t.token == Token::SemiColon {
            chunks.push(Vec::new());
        } else if let Some(last) = chunks.last_mut() {
            last.push(t);
        }
    }
    chunks
}

fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_) | Token::EOF)
}

/// SQL text that tokenizes back to `tokens` (which hold unescaped values).
fn text_of<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> String {
    let quoted = |q: char, v: &str| {
        let q2: String = [q, q].iter().collect();
        format!("{q}{}{q}", v.replace(q, &q2))
    };
    tokens
        .into_iter()
        .map(|t| match t {
            Token::Whitespace(Whitespace::SingleLineComment { .. }) => " ".to_string(),
            Token::SingleQuotedString(v) => quoted('\'', v),
            Token::NationalStringLiteral(v) => format!("N{}", quoted('\'', v)),
            Token::Word(w) if w.quote_style == Some('"') => quoted('"', &w.value),
            other => other.to_string(),
        })
        .collect()
}

/// The compatibility parser tokenizes its catalog of client queries when
/// built, which costs far more than parsing one statement: build it once.
static COMPATIBILITY_PARSER: LazyLock<PostgresCompatibilityParser> = LazyLock::new(PostgresCompatibilityParser::new);

/// The compatibility parser's rewrites that keep a user query's meaning:
/// `x = ANY(array)`, `pg_catalog.`-qualified function names,
/// `current_user` and friends, array literals, `COLLATE` (DataFusion has
/// no collations), `OPERATOR(pg_catalog.op)`, and unqualified names in an
/// ORDER BY beside a qualified wildcard.
/// Each with the hint that must hold for it to change anything.
#[allow(clippy::type_complexity)]
static USER_RULES: LazyLock<[(fn(&Hints) -> bool, Box<dyn SqlStatementRewriteRule>); 7]> = LazyLock::new(|| {
    [
        (|_| true, Box::new(rules::ResolveUnqualifiedIdentifier)),
        (|h| h.quantified, Box::new(rules::RewriteArrayAnyAllOperation)),
        (|h| h.qualified_calls, Box::new(rules::StripCallableQualifier)),
        (|h| h.casts, Box::new(rules::FixArrayLiteral)),
        (
            |h| h.special_registers,
            Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
        ),
        (|h| h.collate, Box::new(rules::StripCollate)),
        (|h| h.operator, Box::new(rules::RewritePgCatalogOperator)),
    ]
});

/// Does the statement read the system catalogs?
fn reads_system_catalogs(stmt: &ast::Statement, hints: &Hints) -> bool {
    if !hints.system_names && !hints.casts {
        return false;
    }
    let found = ast::visit_relations(stmt, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        let system = match parts.as_slice() {
            [schema, ..] if schema == "pg_catalog" || schema == "information_schema" => true,
            [.., last] => last.starts_with("pg_"),
            [] => false,
        };
        if system {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if found.is_break() {
        return true;
    }
    // Casts to the catalog's oid types (`'t'::regclass`) are answered from it too.
    let cast = ast::visit_expressions(stmt, |e| match e {
        ast::Expr::Cast { data_type, .. } => {
            let name = data_type.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or_default();
            if ["regclass", "regtype", "regproc", "regnamespace", "oid"].contains(&name) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    });
    cast.is_break()
}

fn syntax_error(e: impl std::fmt::Display) -> Error {
    Error::syntax(e.to_string().trim_start_matches("sql parser error: ").to_string())
}

/// Standard SQL from text.
fn parse_standard(sql: &str) -> Result<Vec<ast::Statement>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(syntax_error)?;
    parse_tokens(tokens, sql)
}

/// Standard SQL from its tokens (`sql` is their text), so that it is
/// tokenized once.
fn parse_tokens(tokens: Vec<TokenWithSpan>, sql: &str) -> Result<Vec<ast::Statement>> {
    let hints = Hints::of(&tokens);
    parse_tokens_with(tokens, sql, &hints)
}

/// What the tokens of a statement may hold. Most rewrites walk the whole
/// tree, and sqlparser checks the stack at every node it visits: a walk
/// costs more than the parse of a short statement. A rewrite runs only
/// when the tokens hold what it rewrites (the hints err on the side of
/// running it), so a point select or a single-row insert is parsed
/// without any walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hints {
    /// `::`, `CAST`, `TRY_CAST` or `SAFE_CAST`: a cast.
    casts: bool,
    /// `(` followed by `SELECT`, `WITH`, `VALUES`, `TABLE` or `FROM`: a
    /// subquery.
    subqueries: bool,
    /// `ANY`, `ALL` or `SOME`.
    quantified: bool,
    /// `. name (`: a schema-qualified function.
    qualified_calls: bool,
    /// `current_user`, `current_catalog` or `current_schema`.
    special_registers: bool,
    /// `COLLATE`.
    collate: bool,
    /// `OPERATOR`.
    operator: bool,
    /// A word starting with `to_reg`.
    to_reg: bool,
    /// A word starting with `pg_`, or `information_schema`.
    system_names: bool,
    /// Both `IN` and `OR`: a `NOT IN` under an `OR` may be there.
    not_in_under_or: bool,
    /// `DISTINCT` and an `AND` or `OR`: see [`distinct_from_binds_tighter`].
    distinct_from: bool,
    /// `generate_series` or `unnest`: see [`name_function_columns`].
    set_functions: bool,
    /// `INTERVAL` and a `*` or `/`: see `slicedb_planner::interval_mul`.
    interval_scaling: bool,
    /// `INTERVAL`: see `slicedb_planner::interval_text`.
    interval_literals: bool,
    /// `to_date` or `to_timestamp`: see `slicedb_planner::to_date`.
    date_templates: bool,
}

impl Hints {
    fn of(tokens: &[TokenWithSpan]) -> Hints {
        let words: Vec<&Token> = tokens.iter().map(|t| &t.token).filter(|t| !is_blank(t)).collect();
        let keyword = |t: &Token, ks: &[Keyword]| matches!(t, Token::Word(w) if ks.contains(&w.keyword));
        let any_keyword = |ks: &[Keyword]| words.iter().any(|t| keyword(t, ks));
        let any_word = |f: &dyn Fn(&str) -> bool| {
            words
                .iter()
                .any(|t| matches!(t, Token::Word(w) if f(&w.value.to_ascii_lowercase())))
        };
        let subqueries = words.windows(2).any(|w| {
            matches!(w[0], Token::LParen)
                && keyword(
                    w[1],
                    &[
                        Keyword::SELECT,
                        Keyword::WITH,
                        Keyword::VALUES,
                        Keyword::TABLE,
                        Keyword::FROM,
                    ],
                )
        });
        Hints {
            casts: words.iter().any(|t| matches!(t, Token::DoubleColon))
                || any_keyword(&[Keyword::CAST, Keyword::TRY_CAST, Keyword::SAFE_CAST]),
            subqueries,
            quantified: any_keyword(&[Keyword::ANY, Keyword::ALL, Keyword::SOME]),
            qualified_calls: words
                .windows(3)
                .any(|w| matches!((w[0], w[1], w[2]), (Token::Period, Token::Word(_), Token::LParen))),
            special_registers: any_word(&|w| ["current_user", "current_catalog", "current_schema"].contains(&w)),
            collate: any_keyword(&[Keyword::COLLATE]),
            operator: any_keyword(&[Keyword::OPERATOR]),
            to_reg: any_word(&|w| w.starts_with("to_reg")),
            system_names: any_word(&|w| w.starts_with("pg_") || w == "information_schema"),
            not_in_under_or: any_keyword(&[Keyword::IN]) && any_keyword(&[Keyword::OR]),
            distinct_from: any_keyword(&[Keyword::DISTINCT]) && any_keyword(&[Keyword::AND, Keyword::OR]),
            set_functions: any_word(&|w| SET_FUNCTIONS.contains(&w)),
            interval_scaling: any_keyword(&[Keyword::INTERVAL])
                && words.iter().any(|t| matches!(t, Token::Mul | Token::Div)),
            interval_literals: any_keyword(&[Keyword::INTERVAL]),
            date_templates: any_word(&|w| w == "to_date" || w == "to_timestamp"),
        }
    }

    /// Every rewrite runs.
    #[cfg(test)]
    fn all() -> Hints {
        Hints {
            casts: true,
            subqueries: true,
            quantified: true,
            qualified_calls: true,
            special_registers: true,
            collate: true,
            operator: true,
            to_reg: true,
            system_names: true,
            not_in_under_or: true,
            distinct_from: true,
            set_functions: true,
            interval_scaling: true,
            interval_literals: true,
            date_templates: true,
        }
    }
}

fn parse_tokens_with(tokens: Vec<TokenWithSpan>, sql: &str, hints: &Hints) -> Result<Vec<ast::Statement>> {
    let mut hints = *hints;
    let mut plain = Parser::new(&PostgreSqlDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statements();
    // `to_regtype(x)` and friends are casts that give NULL for an unknown
    // name: the compatibility parser answers such casts from the catalog.
    // A scalar subquery that returns a plain expression aggregates it, so
    // that DataFusion plans it when it is correlated.
    let rewritten = match &mut plain {
        Ok(stmts) => {
            stmts
                .iter_mut()
                .map(|s| {
                    if hints.distinct_from {
                        distinct_from_binds_tighter(s);
                    }
                    if hints.set_functions {
                        name_function_columns(s);
                    }
                    // `to_regclass(x)` becomes a cast, which the later steps see.
                    let to_reg = hints.to_reg && to_reg_casts(s);
                    hints.casts |= to_reg;
                    to_reg
                        | (hints.interval_literals && slicedb_planner::interval_text::interval_literals(s))
                        | (hints.date_templates && slicedb_planner::to_date::pg_date_templates(s))
                        | (hints.interval_scaling && slicedb_planner::interval_mul::interval_arithmetic(s))
                        | (hints.subqueries && slicedb_planner::single_value::aggregate_scalar_subqueries(s))
                        | (hints.casts && crate::sequence::literal_regclass_arguments(s))
                        | (hints.casts && slicedb_planner::text_types::casts_as_functions(s))
                })
                .filter(|c| *c)
                .count()
                > 0
        }
        Err(_) => false,
    };
    let sql = match (&plain, rewritten) {
        (Ok(stmts), true) => stmts.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "),
        _ => sql.to_string(),
    };
    let sql = sql.as_str();
    match plain {
        Ok(stmts) if !stmts.iter().any(|s| reads_system_catalogs(s, &hints)) => stmts
            .into_iter()
            .map(|s| {
                let mut s = USER_RULES
                    .iter()
                    .filter(|(applies, _)| applies(&hints))
                    .fold(s, |s, (_, rule)| rule.rewrite(s));
                if hints.not_in_under_or {
                    crate::not_in::rewrite(&mut s)?;
                }
                Ok(s)
            })
            .collect(),
        // Catalog queries, and what only the compatibility parser reads.
        _ => match crate::pg_catalog::client_query_replacement(sql) {
            Some(replacement) => Ok(Parser::parse_sql(&PostgreSqlDialect {}, replacement).map_err(syntax_error)?),
            None => {
                let patched = crate::pg_catalog::client_query_patch(sql);
                let sql = patched.as_deref().unwrap_or(sql);
                let mut stmts = COMPATIBILITY_PARSER.parse(sql).map_err(syntax_error)?;
                for s in &mut stmts {
                    crate::pg_catalog::name_regclass_outputs(s);
                    crate::information_schema::rewrite_relations(s);
                    crate::pg_catalog::qualify_pg_indexes(s);
                }
                Ok(stmts)
            }
        },
    }
}

/// The set-returning functions whose one column [`name_function_columns`]
/// names.
const SET_FUNCTIONS: [&str; 2] = ["generate_series", "unnest"];

/// Names the one column of a set-returning function in `FROM` as
/// PostgreSQL does: after the table alias (`generate_series(1, 3) AS g`
/// reads as `AS g(g)`, so `SELECT g …` finds it), or after the function
/// when there is none (`generate_series`, `unnest`). DataFusion names it
/// `value` (or after the unnested expression), so `SELECT g FROM
/// generate_series(1, 3) g`, a common idiom, failed.
fn name_function_columns(stmt: &mut ast::Statement) {
    struct Names;
    impl ast::VisitorMut for Names {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &mut ast::TableFactor) -> ControlFlow<()> {
            let (function, alias) = match t {
                ast::TableFactor::Table {
                    name,
                    args: Some(_),
                    alias,
                    ..
                } => {
                    let function = match name.0.as_slice() {
                        [f] | [_, f] => f.as_ident().map(|i| i.value.to_ascii_lowercase()),
                        _ => None,
                    };
                    match function {
                        Some(f) if f == "generate_series" => (f, alias),
                        _ => return ControlFlow::Continue(()),
                    }
                }
                ast::TableFactor::UNNEST {
                    alias,
                    array_exprs,
                    with_offset: false,
                    ..
                } if array_exprs.len() == 1 => ("unnest".to_string(), alias),
                _ => return ControlFlow::Continue(()),
            };
            match alias {
                Some(a) if a.columns.is_empty() => {
                    a.columns = vec![ast::TableAliasColumnDef {
                        name: a.name.clone(),
                        data_type: None,
                    }]
                }
                Some(_) => {}
                None => {
                    *alias = Some(ast::TableAlias {
                        explicit: true,
                        name: ast::Ident::new(function.clone()),
                        columns: vec![ast::TableAliasColumnDef::from_name(function)],
                        at: None,
                    })
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(stmt, &mut Names);
}

/// sqlparser 0.62 reads the right side of `IS [NOT] DISTINCT FROM` as a
/// whole expression, so `a IS DISTINCT FROM b AND c` comes out as `a IS
/// DISTINCT FROM (b AND c)`: a type error, or with booleans a wrong answer.
/// PostgreSQL binds `IS` tighter than `AND` and `OR` (and looser than
/// comparisons, which sqlparser gets right). This puts such trees back:
/// `(a IS DISTINCT FROM b) AND c`. A parenthesized right side is a
/// `Nested` expression and stays as written.
fn distinct_from_binds_tighter(stmt: &mut ast::Statement) {
    use ast::{BinaryOperator, Expr};
    fn rotate(e: &mut Expr) {
        let right = match e {
            Expr::IsDistinctFrom(_, r) | Expr::IsNotDistinctFrom(_, r) => r,
            _ => return,
        };
        if !matches!(
            right.as_ref(),
            Expr::BinaryOp {
                op: BinaryOperator::And | BinaryOperator::Or,
                ..
            }
        ) {
            return;
        }
        let placeholder = Expr::Value(ast::Value::Null.into());
        let (negated, left, right) = match std::mem::replace(e, placeholder) {
            Expr::IsDistinctFrom(l, r) => (false, l, r),
            Expr::IsNotDistinctFrom(l, r) => (true, l, r),
            _ => unreachable!("matched above"),
        };
        let Expr::BinaryOp {
            left: first,
            op,
            right: rest,
        } = *right
        else {
            unreachable!("matched above")
        };
        let mut inner = match negated {
            false => Expr::IsDistinctFrom(left, first),
            true => Expr::IsNotDistinctFrom(left, first),
        };
        rotate(&mut inner);
        *e = Expr::BinaryOp {
            left: Box::new(inner),
            op,
            right: rest,
        };
    }
    let _ = ast::visit_expressions_mut(stmt, |e| {
        rotate(e);
        ControlFlow::<()>::Continue(())
    });
}

/// Rewrites `to_regclass(x)`, `to_regtype(x)`, `to_regnamespace(x)` and
/// `to_regproc(x)` as casts of `x` to the oid type (which the
/// compatibility parser resolves by a subquery of the catalog, NULL when
/// nothing has the name, as these functions answer). Returns whether it
/// changed anything.
fn to_reg_casts(stmt: &mut ast::Statement) -> bool {
    use std::ops::ControlFlow;
    let mut changed = false;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase());
            let target = match name.as_deref() {
                Some("to_regclass") => "regclass",
                Some("to_regtype") => "regtype",
                Some("to_regnamespace") => "regnamespace",
                Some("to_regproc") => "regproc",
                _ => return ControlFlow::<()>::Continue(()),
            };
            if let ast::FunctionArguments::List(list) = &f.args {
                if let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] = list.args.as_slice() {
                    *e = ast::Expr::Cast {
                        kind: ast::CastKind::DoubleColon,
                        expr: Box::new(arg.clone()),
                        data_type: ast::DataType::Custom(ast::ObjectName::from(vec![ast::Ident::new(target)]), vec![]),
                        array: false,
                        format: None,
                    };
                    changed = true;
                }
            }
        }
        ControlFlow::Continue(())
    });
    changed
}

/// One statement from its tokens; `whole` is its text when it was the
/// whole input.
fn parse_one(chunk: Vec<TokenWithSpan>, whole: Option<&str>) -> Result<Option<Statement>> {
    let words: Vec<&Token> = chunk.iter().map(|t| &t.token).filter(|t| !is_blank(t)).collect();
    if words.is_empty() {
        return Ok(None);
    }
    let mut c = Cursor { tokens: words, pos: 0 };
    if c.peek_words(&["CREATE", "HASH", "MAP"]) {
        c.pos += 3;
        return c.create_hash_map().map(Some);
    }
    if c.peek_words(&["SET", "CURRENT", "HASH", "MAP"]) {
        c.pos += 4;
        let name = c.ident()?;
        c.end()?;
        return Ok(Some(Statement::SetCurrentHashMap(name)));
    }
    if c.peek_words(&["DROP", "HASH", "MAP"]) {
        c.pos += 3;
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        let name = c.ident()?;
        c.end()?;
        return Ok(Some(Statement::DropHashMap { name, if_exists }));
    }
    if c.peek_words(&["SHOW", "HASH", "MAPS"]) {
        c.pos += 3;
        c.end()?;
        return Ok(Some(Statement::ShowHashMaps));
    }
    if c.peek_words(&["SHOW", "HASH", "MAP"]) {
        c.pos += 3;
        let name = c.ident()?;
        c.end()?;
        return Ok(Some(Statement::ShowHashMap(name)));
    }
    if c.peek_words(&["ADD", "NODE"]) {
        c.pos += 2;
        let address = c.string()?;
        let (mut new_map, mut strategy) = (true, None);
        loop {
            if c.eat_words(&["WITHOUT", "HASH", "MAP"]) {
                new_map = false;
            } else if c.eat_words(&["STRATEGY"]) {
                strategy = Some(Strategy::parse(&c.ident()?)?);
            } else {
                break;
            }
        }
        c.end()?;
        if !new_map && strategy.is_some() {
            return Err(err!(SyntaxError, "ADD NODE … WITHOUT HASH MAP takes no STRATEGY"));
        }
        return Ok(Some(Statement::AddNode {
            address,
            new_map,
            strategy,
        }));
    }
    if c.peek_words(&["REMOVE", "NODE"]) {
        c.pos += 2;
        let node = c.number()?;
        c.end()?;
        return Ok(Some(Statement::RemoveNode(node)));
    }
    if c.eat_words(&["REDISTRIBUTE"]) {
        let table = if c.eat_words(&["ALL"]) {
            None
        } else {
            c.expect_word("TABLE")?;
            Some(c.ident()?)
        };
        let to_map = if c.eat_words(&["TO", "HASH", "MAP"]) {
            Some(c.ident()?)
        } else {
            None
        };
        let max_rate_mb = c.max_rate_option("REDISTRIBUTE")?;
        c.end()?;
        return Ok(Some(Statement::Redistribute {
            table,
            to_map,
            max_rate_mb,
        }));
    }
    if c.peek_words(&["ALTER", "NODE"]) {
        c.pos += 2;
        let node = c.number()?;
        c.expect_word("SET")?;
        let options = c.option_list("ALTER NODE", &["capacity_gb"])?;
        c.end()?;
        return Ok(Some(Statement::AlterNode {
            node,
            capacity_gb: options.get("capacity_gb").copied(),
        }));
    }
    if c.eat_words(&["REBALANCE"]) {
        let table = if c.eat_words(&["TABLE"]) {
            Some(c.ident()?)
        } else {
            c.eat_words(&["ALL"]);
            None
        };
        let options = c.with_options("REBALANCE", &["max_rate_mb", "threshold_pct"])?;
        let dry_run = c.eat_words(&["DRY", "RUN"]);
        c.end()?;
        return Ok(Some(Statement::Rebalance {
            table,
            max_rate_mb: options.get("max_rate_mb").copied(),
            threshold_pct: options.get("threshold_pct").copied(),
            dry_run,
        }));
    }
    if c.peek_words(&["DRAIN", "NODE"]) {
        c.pos += 2;
        let node = c.number()?;
        let max_rate_mb = c.max_rate_option("DRAIN NODE")?;
        c.end()?;
        return Ok(Some(Statement::DrainNode { node, max_rate_mb }));
    }
    if c.peek_words(&["SHOW", "REDISTRIBUTIONS"]) {
        c.pos += 2;
        c.end()?;
        return Ok(Some(Statement::ShowRedistributions));
    }
    if c.peek_words(&["CANCEL", "REDISTRIBUTION"]) {
        c.pos += 2;
        let job = c.number()?;
        c.end()?;
        return Ok(Some(Statement::CancelRedistribution(job as u64)));
    }
    if let Some(stmt) = c.role_statement()? {
        return Ok(Some(stmt));
    }
    if let Some(stmt) = c.sequence_statement()? {
        return Ok(Some(stmt));
    }
    if c.eat_words(&["SET", "CONSTRAINTS"]) {
        let names = if c.eat_words(&["ALL"]) {
            None
        } else {
            let mut names = vec![c.ident()?];
            while c.eat(&Token::Comma) {
                names.push(c.ident()?);
            }
            Some(names)
        };
        let deferred = if c.eat_words(&["DEFERRED"]) {
            true
        } else {
            c.expect_word("IMMEDIATE")?;
            false
        };
        c.end()?;
        return Ok(Some(Statement::SetConstraints { names, deferred }));
    }
    if c.peek_words(&["VACUUM"]) || c.peek_words(&["ANALYZE"]) || c.peek_words(&["ANALYSE"]) {
        return c.maintenance().map(Some);
    }
    if c.peek_words(&["SHOW", "NODES"]) {
        c.pos += 2;
        c.end()?;
        return Ok(Some(Statement::ShowNodes));
    }
    if c.peek_words(&["SHOW", "SLICE", "LOAD"]) {
        c.pos += 3;
        let table = if c.eat_words(&["FOR"]) { Some(c.ident()?) } else { None };
        c.end()?;
        return Ok(Some(Statement::ShowSliceLoad(table)));
    }
    if c.peek_words(&["SHOW", "SLICES"]) {
        c.pos += 2;
        let table = if c.eat_words(&["FOR"]) { Some(c.ident()?) } else { None };
        c.end()?;
        return Ok(Some(Statement::ShowSlices(table)));
    }
    let create_table = c.peek_words(&["CREATE", "TABLE"]) || c.peek_words(&["CREATE", "UNLOGGED", "TABLE"]);
    let copy = c.peek_words(&["COPY"]);
    let alter_identity = c.peek_words(&["ALTER", "TABLE"])
        && c.tokens.iter().any(
            |t| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("IDENTITY")),
        );
    drop(c);
    let mut stmts = if create_table {
        let tokens: Vec<Token> = chunk.into_iter().map(|t| t.token).collect();
        let tokens = sequence_options::identity_options_in_order(tokens)?;
        return parse_create_table(&tokens).map(Some);
    } else if alter_identity {
        let tokens: Vec<Token> = chunk.into_iter().map(|t| t.token).collect();
        let tokens = sequence_options::identity_options_in_order(tokens)?;
        parse_standard(&text_of(&tokens))?
    } else if copy {
        let tokens = copy_booleans(chunk.into_iter().map(|t| t.token).collect());
        parse_standard(&text_of(&tokens))?
    } else {
        match whole {
            Some(sql) => parse_tokens(chunk, sql)?,
            None => {
                let sql = text_of(chunk.iter().map(|t| &t.token));
                parse_tokens(chunk, &sql)?
            }
        }
    };
    match stmts.len() {
        0 => Ok(None),
        1 => Ok(Some(Statement::Sql(Box::new(stmts.remove(0))))),
        _ => Err(Error::syntax("expected one statement")),
    }
}

/// COPY's boolean options take PostgreSQL's spellings (`FREEZE on`,
/// `HEADER off`, as pgbench sends them); sqlparser reads only `true` and
/// `false`.
fn copy_booleans(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for t in tokens {
        let option_before = out
            .iter()
            .rev()
            .find(|t| !is_blank(t))
            .is_some_and(|p| matches!(p, Token::Word(w) if w.quote_style.is_none() && ["FREEZE", "HEADER"].iter().any(|k| w.value.eq_ignore_ascii_case(k))));
        match &t {
            Token::Word(w) if option_before && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("on") => {
                out.push(Token::make_keyword("TRUE"))
            }
            Token::Word(w) if option_before && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("off") => {
                out.push(Token::make_keyword("FALSE"))
            }
            _ => out.push(t),
        }
    }
    out
}

/// Splits `CREATE TABLE …` at a top-level `DISTRIBUTED BY` or `HASH MAP`.
fn parse_create_table(tokens: &[Token]) -> Result<Statement> {
    // `CREATE TABLE t (a, b) AS …` names the query's columns; sqlparser
    // wants types there, so the list is taken off and put back as names.
    let (tokens, names) = take_column_names(tokens);
    let tokens = &tokens[..];
    let mut depth = 0i32;
    let mut seen_columns = false;
    let mut split = tokens.len();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LParen => {
                depth += 1;
                seen_columns = true;
            }
            Token::RParen => depth -= 1,
            Token::Word(w)
                if depth == 0
                    && seen_columns
                    && w.quote_style.is_none()
                    && (w.value.eq_ignore_ascii_case("DISTRIBUTED") || w.value.eq_ignore_ascii_case("HASH")) =>
            {
                split = i;
                break;
            }
            _ => {}
        }
    }
    let mut stmts = parse_standard(&text_of(&tokens[..split]))?;
    let mut create = match stmts.pop() {
        Some(ast::Statement::CreateTable(ct)) if stmts.is_empty() => ct,
        _ => return Err(Error::syntax("expected CREATE TABLE")),
    };
    if let Some(names) = names {
        create.columns = names
            .into_iter()
            .map(|name| ast::ColumnDef {
                name,
                data_type: ast::DataType::Unspecified,
                options: vec![],
            })
            .collect();
    }
    let tail: Vec<&Token> = tokens[split..].iter().filter(|t| !is_blank(t)).collect();
    let mut c = Cursor { tokens: tail, pos: 0 };
    let mut distributed_by = None;
    let mut hash_map = None;
    if c.eat_words(&["DISTRIBUTED"]) {
        c.expect_word("BY")?;
        c.expect(&Token::LParen)?;
        let mut cols = vec![c.ident()?];
        while c.eat(&Token::Comma) {
            cols.push(c.ident()?);
        }
        c.expect(&Token::RParen)?;
        distributed_by = Some(cols);
    }
    if c.eat_words(&["HASH"]) {
        c.expect_word("MAP")?;
        hash_map = Some(c.ident()?);
    }
    c.end()?;
    Ok(Statement::CreateTable {
        create: Box::new(create),
        distributed_by,
        hash_map,
    })
}

/// Takes a column-name list off `CREATE TABLE t (a, b) AS …`.
fn take_column_names(tokens: &[Token]) -> (Vec<Token>, Option<Vec<ast::Ident>>) {
    let unchanged = || (tokens.to_vec(), None);
    let Some(open) = tokens.iter().position(|t| *t == Token::LParen) else {
        return unchanged();
    };
    let Some(close) = tokens[open..]
        .iter()
        .position(|t| *t == Token::RParen)
        .map(|i| open + i)
    else {
        return unchanged();
    };
    let mut names = Vec::new();
    for t in &tokens[open + 1..close] {
        match t {
            Token::Word(w) => names.push(match w.quote_style {
                Some(q) => ast::Ident::with_quote(q, w.value.clone()),
                None => ast::Ident::new(w.value.clone()),
            }),
            Token::Comma => {}
            t if is_blank(t) => {}
            _ => return unchanged(),
        }
    }
    let after = tokens[close + 1..].iter().find(|t| !is_blank(t));
    let is_as = matches!(after, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("AS"));
    if names.is_empty() || !is_as {
        return unchanged();
    }
    let mut out = tokens[..open].to_vec();
    out.extend_from_slice(&tokens[close + 1..]);
    (out, Some(names))
}

/// `CREATE TABLE name AS query`, for `SELECT … INTO name`.
pub fn create_table_as(name: &ast::ObjectName, query: &ast::Query) -> Result<Box<ast::CreateTable>> {
    match parse_standard(&format!("CREATE TABLE {name} AS {query}"))?.pop() {
        Some(ast::Statement::CreateTable(ct)) => Ok(Box::new(ct)),
        _ => Err(Error::syntax("expected CREATE TABLE … AS")),
    }
}

/// A cursor over the non-blank tokens of one statement.
struct Cursor<'a> {
    tokens: Vec<&'a Token>,
    pos: usize,
}

impl Cursor<'_> {
    fn word_at(&self, i: usize) -> Option<&str> {
        match self.tokens.get(i) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.as_str()),
            _ => None,
        }
    }

    fn peek_words(&self, words: &[&str]) -> bool {
        words
            .iter()
            .enumerate()
            .all(|(i, w)| self.word_at(self.pos + i).is_some_and(|v| v.eq_ignore_ascii_case(w)))
    }

    fn eat_words(&mut self, words: &[&str]) -> bool {
        let ok = self.peek_words(words);
        if ok {
            self.pos += words.len();
        }
        ok
    }

    fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.eat_words(&[word]) {
            Ok(())
        } else {
            Err(self.unexpected(word))
        }
    }

    fn eat(&mut self, t: &Token) -> bool {
        let ok = self.tokens.get(self.pos) == Some(&t);
        if ok {
            self.pos += 1;
        }
        ok
    }

    fn expect(&mut self, t: &Token) -> Result<()> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected(&t.to_string()))
        }
    }

    fn unexpected(&self, wanted: &str) -> Error {
        match self.tokens.get(self.pos) {
            Some(t) => err!(SyntaxError, "syntax error at or near \"{t}\": expected {wanted}"),
            None => err!(SyntaxError, "syntax error at end of input: expected {wanted}"),
        }
    }

    /// An identifier, folded to lower case unless quoted (as PostgreSQL does).
    fn ident(&mut self) -> Result<String> {
        match self.tokens.get(self.pos) {
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(if w.quote_style.is_some() {
                    w.value.clone()
                } else {
                    w.value.to_lowercase()
                })
            }
            _ => Err(self.unexpected("an identifier")),
        }
    }

    /// A single-quoted string literal.
    fn string(&mut self) -> Result<String> {
        match self.tokens.get(self.pos) {
            Some(Token::SingleQuotedString(s)) => {
                self.pos += 1;
                Ok(s.replace("''", "'"))
            }
            _ => Err(self.unexpected("a quoted string")),
        }
    }

    fn number(&mut self) -> Result<u32> {
        match self.tokens.get(self.pos) {
            Some(Token::Number(n, _)) => {
                self.pos += 1;
                n.parse().map_err(|_| err!(SyntaxError, "invalid node id {n}"))
            }
            _ => Err(self.unexpected("a number")),
        }
    }

    /// A numeric literal such as `50` or `0.5`.
    fn decimal(&mut self) -> Result<f64> {
        match self.tokens.get(self.pos) {
            Some(Token::Number(n, _)) => {
                self.pos += 1;
                n.parse().map_err(|_| err!(SyntaxError, "invalid number {n}"))
            }
            _ => Err(self.unexpected("a number")),
        }
    }

    /// `[WITH (name = N, …)]` after a statement that moves buckets: each
    /// option one of `allowed`, each value a positive number.
    fn with_options(&mut self, statement: &str, allowed: &[&str]) -> Result<BTreeMap<String, f64>> {
        if !self.eat_words(&["WITH"]) {
            return Ok(BTreeMap::new());
        }
        self.option_list(statement, allowed)
    }

    /// `(name = N, …)`: each option one of `allowed`, each value a
    /// positive number.
    fn option_list(&mut self, statement: &str, allowed: &[&str]) -> Result<BTreeMap<String, f64>> {
        let mut options = BTreeMap::new();
        self.expect(&Token::LParen)?;
        loop {
            let option = self.ident()?;
            self.expect(&Token::Eq)?;
            let value = self.decimal()?;
            if !allowed.contains(&option.as_str()) {
                return Err(err!(
                    InvalidParameterValue,
                    "unknown {statement} option \"{option}\" (use {})",
                    allowed.join(", ")
                ));
            }
            if !(value > 0.0 && value.is_finite()) {
                return Err(err!(InvalidParameterValue, "{option} must be positive"));
            }
            options.insert(option, value);
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        Ok(options)
    }

    /// `[WITH (max_rate_mb = N)]`.
    fn max_rate_option(&mut self, statement: &str) -> Result<Option<f64>> {
        Ok(self
            .with_options(statement, &["max_rate_mb"])?
            .get("max_rate_mb")
            .copied())
    }

    fn end(&self) -> Result<()> {
        if self.pos == self.tokens.len() {
            Ok(())
        } else {
            Err(self.unexpected("end of statement"))
        }
    }

    /// `CREATE`, `ALTER` or `DROP` of a `ROLE` (or `USER`), if that is
    /// what the statement is.
    fn role_statement(&mut self) -> Result<Option<Statement>> {
        let verb = ["CREATE", "ALTER", "DROP"]
            .into_iter()
            .find(|v| ["ROLE", "USER"].iter().any(|o| self.peek_words(&[v, o])));
        let Some(verb) = verb else {
            return Ok(None);
        };
        let user = self
            .word_at(self.pos + 1)
            .is_some_and(|w| w.eq_ignore_ascii_case("USER"));
        self.pos += 2;
        if verb == "DROP" {
            let if_exists = self.eat_words(&["IF", "EXISTS"]);
            let mut names = vec![self.ident()?];
            while self.eat(&Token::Comma) {
                names.push(self.ident()?);
            }
            self.end()?;
            return Ok(Some(Statement::DropRole { names, if_exists }));
        }
        let name = self.ident()?;
        if verb == "CREATE"
            && ["public", "none", "current_user", "session_user", "current_role"].contains(&name.as_str())
        {
            return Err(err!(ReservedName, "role name \"{name}\" is reserved"));
        }
        self.eat_words(&["WITH"]);
        let mut options = RoleOptions {
            login: (verb == "CREATE" && user).then_some(true),
            ..RoleOptions::default()
        };
        while self.pos < self.tokens.len() {
            let word = self.ident()?.to_ascii_uppercase();
            match word.as_str() {
                "LOGIN" => options.login = Some(true),
                "NOLOGIN" => options.login = Some(false),
                "SUPERUSER" => options.superuser = Some(true),
                "NOSUPERUSER" => options.superuser = Some(false),
                "ENCRYPTED" | "PASSWORD" => {
                    if word == "ENCRYPTED" {
                        self.expect_word("PASSWORD")?;
                    }
                    options.password = Some(if self.eat_words(&["NULL"]) {
                        None
                    } else {
                        Some(self.string()?)
                    });
                }
                // What every role without SUPERUSER is in slicedb: it can
                // create neither databases nor roles, nor replicate, nor
                // bypass row security (there is none); it inherits nothing
                // (there are no role memberships).
                "NOCREATEDB" | "NOCREATEROLE" | "NOREPLICATION" | "NOBYPASSRLS" | "INHERIT" | "NOINHERIT" => {}
                other => {
                    return Err(err!(
                        FeatureNotSupported,
                        "role option {other} is not supported (slicedb has LOGIN, SUPERUSER and PASSWORD)"
                    ))
                }
            }
        }
        Ok(Some(if verb == "CREATE" {
            Statement::CreateRole { name, options }
        } else {
            if options == RoleOptions::default() {
                return Err(self.unexpected("a role option"));
            }
            Statement::AlterRole { name, options }
        }))
    }

    /// `VACUUM …` or `ANALYZE …` (PostgreSQL's forms).
    fn maintenance(&mut self) -> Result<Statement> {
        let command = if self.eat_words(&["VACUUM"]) {
            "VACUUM"
        } else {
            self.pos += 1;
            "ANALYZE"
        };
        if self.eat(&Token::LParen) {
            // Options: words, each with an optional value.
            while !self.eat(&Token::RParen) {
                if self.pos >= self.tokens.len() {
                    return Err(self.unexpected(")"));
                }
                self.pos += 1;
            }
        }
        while ["FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE", "SKIP_LOCKED"]
            .iter()
            .any(|w| self.peek_words(&[w]))
        {
            self.pos += 1;
        }
        let mut tables = Vec::new();
        while self.pos < self.tokens.len() {
            let mut name = self.ident()?;
            if self.eat(&Token::Period) {
                let schema = name;
                name = self.ident()?;
                if schema != "public" {
                    return Err(err!(UndefinedTable, "relation \"{schema}.{name}\" does not exist"));
                }
            }
            tables.push(name);
            if self.eat(&Token::LParen) {
                self.ident()?;
                while self.eat(&Token::Comma) {
                    self.ident()?;
                }
                self.expect(&Token::RParen)?;
            }
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.end()?;
        Ok(Statement::Maintenance { command, tables })
    }

    /// `CREATE HASH MAP name [ON NODES (1, 2)] [STRATEGY s] [AS CURRENT]`
    fn create_hash_map(&mut self) -> Result<Statement> {
        let name = self.ident()?;
        let (mut nodes, mut strategy, mut as_current) = (None, None, false);
        loop {
            if self.eat_words(&["ON", "NODES"]) {
                self.expect(&Token::LParen)?;
                let mut list = vec![self.number()?];
                while self.eat(&Token::Comma) {
                    list.push(self.number()?);
                }
                self.expect(&Token::RParen)?;
                nodes = Some(list);
            } else if self.eat_words(&["STRATEGY"]) {
                strategy = Some(Strategy::parse(&self.ident()?)?);
            } else if self.eat_words(&["AS", "CURRENT"]) {
                as_current = true;
            } else {
                break;
            }
        }
        self.end()?;
        Ok(Statement::CreateHashMap {
            name,
            nodes,
            strategy,
            as_current,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements for each rewrite the hints may skip.
    const REWRITTEN: &[&str] = &[
        "SELECT * FROM t WHERE a = ANY('{1,2}')",
        "SELECT * FROM t WHERE a <> ALL(ARRAY[1, 2])",
        "SELECT * FROM t WHERE a = SOME(ARRAY[1, 2])",
        "SELECT pg_catalog.upper('a'), public . lower ('B')",
        "SELECT * FROM pg_catalog.generate_series(1, 3)",
        "SELECT '{1,2}'::int[], '{a}'::text[]",
        "SELECT current_user, current_catalog, current_schema, CURRENT_SCHEMA()",
        "SELECT a COLLATE \"C\" FROM t ORDER BY b COLLATE pg_catalog.default",
        "SELECT 'a' OPERATOR(pg_catalog.~) 'b'",
        "SELECT to_regclass('t'), to_regtype('int4'), TO_REGPROC('now')",
        "SELECT (SELECT b FROM u WHERE u.a = t.a) FROM t",
        "UPDATE t SET b = ((SELECT b FROM u WHERE u.a = t.a))",
        "SELECT a FROM t WHERE b = (WITH x AS (SELECT 1 AS y) SELECT y FROM x)",
        "SELECT 'x'::uuid, CAST('{}' AS jsonb), '1'::json",
        "SELECT * FROM t WHERE a NOT IN (SELECT b FROM u) OR a IS NULL",
        "SELECT t.* FROM t AS t WHERE a = 1 ORDER BY b",
        "SELECT 't'::regclass, c.relname FROM pg_class c",
        "SELECT * FROM information_schema.tables",
        "SELECT v FROM bench_kv WHERE id = 42",
        "INSERT INTO t VALUES (1, 'a'), (2, (SELECT 'b'))",
        "SELECT * FROM t WHERE a IS DISTINCT FROM b AND c OR a IS NOT DISTINCT FROM b OR d",
        "SELECT g FROM generate_series(1, 3) g JOIN unnest(ARRAY[2]) AS u ON g = u",
        "SELECT * FROM GENERATE_SERIES(1, 2), unnest(ARRAY['a'])",
        "SELECT now() - interval '1 day' * 2, 3 * '1 hour'::interval, INTERVAL '1 month' / 4",
    ];

    /// The SQL of every record of the sqllogictest files.
    fn slt_statements() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql");
        let mut files = vec![];
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "slt") {
                    files.push(path);
                }
            }
        }
        let mut out = vec![];
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.starts_with("statement ") || line.starts_with("query ") {
                    let sql: Vec<&str> = lines
                        .by_ref()
                        .take_while(|l| !l.trim().is_empty() && *l != "----")
                        .collect();
                    out.push(sql.join("\n"));
                }
            }
        }
        out
    }

    /// `IS [NOT] DISTINCT FROM` binds tighter than AND and OR, as in
    /// PostgreSQL; a parenthesized right side stays.
    #[test]
    fn distinct_from_binds_tighter_than_and_and_or() {
        use ast::Expr;
        /// The expression with every grouping explicit.
        fn shape(e: &Expr) -> String {
            match e {
                Expr::BinaryOp { left, op, right } => format!("({} {op} {})", shape(left), shape(right)),
                Expr::IsDistinctFrom(l, r) => format!("({} IDF {})", shape(l), shape(r)),
                Expr::IsNotDistinctFrom(l, r) => format!("({} INDF {})", shape(l), shape(r)),
                Expr::Nested(inner) => shape(inner),
                other => other.to_string(),
            }
        }
        let first_item = |sql: &str| {
            let Some(ast::Statement::Query(q)) = parse_standard(sql).unwrap().into_iter().next() else {
                panic!("{sql} is not a query")
            };
            let ast::SetExpr::Select(select) = *q.body else {
                panic!("{sql} is not a SELECT")
            };
            match &select.projection[0] {
                ast::SelectItem::UnnamedExpr(e) => shape(e),
                other => panic!("{other}"),
            }
        };
        let cases = [
            ("SELECT a IS DISTINCT FROM b AND c", "((a IDF b) AND c)"),
            (
                "SELECT a IS NOT DISTINCT FROM b AND c OR d AND e",
                "(((a INDF b) AND c) OR (d AND e))",
            ),
            ("SELECT a IS DISTINCT FROM b OR c AND d", "((a IDF b) OR (c AND d))"),
            ("SELECT a IS DISTINCT FROM (b AND c)", "(a IDF (b AND c))"),
            ("SELECT a IS DISTINCT FROM b = c", "(a IDF (b = c))"),
        ];
        for (sql, grouped) in cases {
            assert_eq!(first_item(sql), grouped, "{sql}");
        }
    }

    #[test]
    fn skipping_the_rewrites_the_hints_rule_out_changes_no_statement() {
        let statements = slt_statements();
        assert!(statements.len() > 500, "only {} statements found", statements.len());
        let mut hinted = 0;
        for sql in statements.iter().map(String::as_str).chain(REWRITTEN.iter().copied()) {
            let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
                continue;
            };
            let hints = Hints::of(&tokens);
            hinted += usize::from(hints != Hints::all());
            let with_all = parse_tokens_with(tokens.clone(), sql, &Hints::all()).map_err(|e| e.to_string());
            let with_hints = parse_tokens_with(tokens, sql, &hints).map_err(|e| e.to_string());
            assert!(with_hints == with_all, "{sql}\nhints: {hints:?}");
        }
        assert!(hinted > 300, "only {hinted} statements skip a rewrite");
        // The statements written for the rewrites are rewritten (the test
        // above compares something).
        let unchanged: Vec<&str> = REWRITTEN
            .iter()
            .copied()
            .filter(|sql| {
                let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
                    .tokenize_with_location()
                    .unwrap();
                let plain = Parser::new(&PostgreSqlDialect {})
                    .with_tokens_with_locations(tokens.clone())
                    .parse_statements()
                    .unwrap();
                parse_tokens(tokens, sql).ok() == Some(plain)
            })
            .collect();
        assert_eq!(
            unchanged,
            [
                "SELECT a FROM t WHERE b = (WITH x AS (SELECT 1 AS y) SELECT y FROM x)",
                "SELECT * FROM information_schema.tables",
                "SELECT v FROM bench_kv WHERE id = 42"
            ]
        );
    }

    #[test]
    fn cluster_statements() {
        assert_eq!(
            parse("CREATE HASH MAP hm2 ON NODES (1, 2,3) STRATEGY minimal_move AS CURRENT;").unwrap(),
            vec![Statement::CreateHashMap {
                name: "hm2".into(),
                nodes: Some(vec![1, 2, 3]),
                strategy: Some(Strategy::MinimalMove),
                as_current: true
            }]
        );
        assert_eq!(
            parse("show slices for T").unwrap(),
            vec![Statement::ShowSlices(Some("t".into()))]
        );
        assert_eq!(parse("show slice load").unwrap(), vec![Statement::ShowSliceLoad(None)]);
        assert_eq!(
            parse("SHOW SLICE LOAD FOR T;").unwrap(),
            vec![Statement::ShowSliceLoad(Some("t".into()))]
        );
        assert_eq!(
            parse("SHOW HASH MAPS; SHOW NODES").unwrap(),
            vec![Statement::ShowHashMaps, Statement::ShowNodes]
        );
        assert!(parse("CREATE HASH MAP").is_err());
        assert_eq!(
            parse("ADD NODE '10.0.0.4:7100' STRATEGY minimal_move").unwrap(),
            vec![Statement::AddNode {
                address: "10.0.0.4:7100".into(),
                new_map: true,
                strategy: Some(Strategy::MinimalMove)
            }]
        );
        assert_eq!(
            parse("add node 'h:1' without hash map").unwrap(),
            vec![Statement::AddNode {
                address: "h:1".into(),
                new_map: false,
                strategy: None
            }]
        );
        assert_eq!(parse("REMOVE NODE 4").unwrap(), vec![Statement::RemoveNode(4)]);
        assert_eq!(
            parse("DRAIN NODE 3 WITH (max_rate_mb = 2)").unwrap(),
            vec![Statement::DrainNode {
                node: 3,
                max_rate_mb: Some(2.0)
            }]
        );
        assert!(parse("DRAIN NODE 3 WITH (speed = 2)").is_err());
        assert_eq!(
            parse("ALTER NODE 2 SET (capacity_gb = 1.5)").unwrap(),
            vec![Statement::AlterNode {
                node: 2,
                capacity_gb: Some(1.5)
            }]
        );
        assert!(parse("ALTER NODE 2 SET (capacity_gb = 0)").is_err());
        assert_eq!(
            parse("REBALANCE TABLE t WITH (threshold_pct = 5) DRY RUN").unwrap(),
            vec![Statement::Rebalance {
                table: Some("t".into()),
                max_rate_mb: None,
                threshold_pct: Some(5.0),
                dry_run: true
            }]
        );
        assert_eq!(
            parse("REBALANCE").unwrap(),
            vec![Statement::Rebalance {
                table: None,
                max_rate_mb: None,
                threshold_pct: None,
                dry_run: false
            }]
        );
        assert_eq!(
            parse("redistribute table T to hash map hm2 with (max_rate_mb = 0.5)").unwrap(),
            vec![Statement::Redistribute {
                table: Some("t".into()),
                to_map: Some("hm2".into()),
                max_rate_mb: Some(0.5),
            }]
        );
        assert_eq!(
            parse("REDISTRIBUTE ALL").unwrap(),
            vec![Statement::Redistribute {
                table: None,
                to_map: None,
                max_rate_mb: None,
            }]
        );
        assert_eq!(
            parse("SHOW REDISTRIBUTIONS").unwrap(),
            vec![Statement::ShowRedistributions]
        );
        assert_eq!(
            parse("CANCEL REDISTRIBUTION 3").unwrap(),
            vec![Statement::CancelRedistribution(3)]
        );
        assert_eq!(
            parse("REDISTRIBUTE TABLE t WITH (speed = 1)").unwrap_err().state.code(),
            "22023"
        );
        assert_eq!(parse("REDISTRIBUTE t").unwrap_err().state.code(), "42601");
        assert_eq!(parse("ADD NODE h").unwrap_err().state.code(), "42601");
        assert_eq!(
            parse("vacuum analyze pgbench_branches").unwrap(),
            vec![Statement::Maintenance {
                command: "VACUUM",
                tables: vec!["pgbench_branches".into()]
            }]
        );
        assert_eq!(
            parse("ANALYZE VERBOSE public.a (x, y), b").unwrap(),
            vec![Statement::Maintenance {
                command: "ANALYZE",
                tables: vec!["a".into(), "b".into()]
            }]
        );
    }

    #[test]
    fn create_table_with_distribution() {
        let s = parse("CREATE TABLE t (id bigint PRIMARY KEY, v text) DISTRIBUTED BY (id) HASH MAP hm1").unwrap();
        match &s[0] {
            Statement::CreateTable {
                distributed_by,
                hash_map,
                create,
            } => {
                assert_eq!(distributed_by.as_deref(), Some(&["id".to_string()][..]));
                assert_eq!(hash_map.as_deref(), Some("hm1"));
                assert_eq!(create.columns.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &parse("CREATE TABLE hash (distributed int)").unwrap()[0],
            Statement::CreateTable { .. }
        ));
        match &parse("INSERT INTO t VALUES ('O''Brien', E'a\\'b')").unwrap()[0] {
            Statement::Sql(s) => assert!(s.to_string().contains("'O''Brien', 'a''b'"), "{s}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &parse("create table u (a int)").unwrap()[0],
            Statement::CreateTable {
                distributed_by: None,
                ..
            }
        ));
    }

    /// Statements are parsed from the tokens of the input, once; what is
    /// read back as text (a CREATE TABLE's standard part, the catalog
    /// queries' compatibility parser) keeps quotes and escapes intact.
    #[test]
    fn quotes_survive_one_tokenization() {
        let s = parse("SELECT 'a''b', E'c\\'d', \"x\"\"y\" FROM t; CREATE TABLE \"q\"\"t\" (v text DEFAULT 'it''s')")
            .unwrap();
        assert_eq!(s.len(), 2);
        match &s[0] {
            Statement::Sql(q) => assert_eq!(q.to_string(), "SELECT 'a''b', 'c''d', \"x\"\"y\" FROM t"),
            other => panic!("{other:?}"),
        }
        match &s[1] {
            Statement::CreateTable { create, .. } => {
                assert_eq!(create.name.to_string(), "\"q\"\"t\"");
                assert!(
                    create.columns[0].to_string().contains("DEFAULT 'it''s'"),
                    "{}",
                    create.columns[0]
                );
            }
            other => panic!("{other:?}"),
        }
        let e = parse("SELECT 1 +").unwrap_err();
        assert_eq!(e.state.code(), "42601");
    }

    #[test]
    fn user_queries_keep_their_subqueries() {
        let sql = |s: &str| match &parse(s).unwrap()[0] {
            Statement::Sql(s) => s.to_string(),
            other => panic!("{other:?}"),
        };
        let q = "SELECT c, (SELECT count(*) FROM t1 AS x WHERE x.c > o.c) AS n FROM t1 AS o";
        assert_eq!(sql(q), q, "a correlated subquery is not replaced by NULL");
        assert!(
            !sql("SELECT (SELECT max(c) FROM t1)").contains("LIMIT"),
            "nor is a scalar subquery limited to one row"
        );
        assert!(sql("SELECT 1 WHERE 2 = ANY(ARRAY[1, 2])").contains("array_contains"));
        assert!(sql("SELECT relname FROM pg_class").contains("pg_catalog.pg_class"));
    }

    #[test]
    fn standard_sql_and_errors() {
        assert!(matches!(
            &parse("SELECT 1; SELECT 'a;b'").unwrap()[..],
            [Statement::Sql(_), Statement::Sql(_)]
        ));
        assert_eq!(parse("SELEC 1").unwrap_err().state.code(), "42601");
    }
}
