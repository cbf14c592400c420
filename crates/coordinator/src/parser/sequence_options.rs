//! Sequence options as PostgreSQL reads them: in any order.
//!
//! sqlparser reads `CREATE SEQUENCE`'s options only in one fixed order
//! (`INCREMENT`, `MINVALUE`, `MAXVALUE`, `START`, `CACHE`, `CYCLE`) and
//! has no `ALTER SEQUENCE`, but PostgreSQL takes the options in any order
//! and pg_dump writes `START WITH` before `INCREMENT BY`. So the options
//! are read here, into [`SequenceClauses`]:
//!
//! - `CREATE [TEMP] SEQUENCE` and `ALTER SEQUENCE` become slicedb
//!   statements ([`Statement::CreateSequence`], [`Statement::AlterSequence`]);
//! - the options of an identity column (`GENERATED … AS IDENTITY (…)` in
//!   `CREATE TABLE`, `ALTER COLUMN … ADD GENERATED …`) are put back into
//!   the token stream in sqlparser's order ([`identity_options_in_order`]).
//!   pg_dump names the sequence there (`SEQUENCE NAME public.t_id_seq`);
//!   slicedb names an identity column's sequence `<table>_<column>_seq`,
//!   so a `SEQUENCE NAME` is taken out when it is that name and refused
//!   (`0A000`) otherwise.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::tokenizer::Token;
use slicedb_common::{err, Result, SqlType};

use super::{is_blank, Cursor, Statement};

/// The options of a `CREATE SEQUENCE`, an `ALTER SEQUENCE` or an identity
/// column, in the order written; each at most once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SequenceClauses {
    /// `AS smallint | integer | bigint`.
    pub data_type: Option<SqlType>,
    /// `INCREMENT`, `[NO] MINVALUE`, `[NO] MAXVALUE`, `START`, `CACHE`, `[NO] CYCLE`.
    pub options: Vec<ast::SequenceOptions>,
    /// `RESTART` (`Some(None)`) or `RESTART [WITH] n` (`ALTER SEQUENCE` only).
    pub restart: Option<Option<i64>>,
    /// `OWNED BY t.c` or `OWNED BY NONE` (`none` as the one part).
    pub owned_by: Option<ast::ObjectName>,
    /// `SEQUENCE NAME s` (identity columns only).
    pub sequence_name: Option<Vec<String>>,
}

/// What an `ALTER SEQUENCE` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterSequence {
    Options(SequenceClauses),
    /// `OWNER TO role` (`None`: `CURRENT_USER`, `SESSION_USER`, `CURRENT_ROLE`).
    OwnerTo(Option<String>),
}

/// Where the options are written: each place takes a few of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Create,
    Alter,
    Identity,
}

impl Cursor<'_> {
    /// A possibly qualified name (`s`, `public.s`), as an object name whose
    /// parts are already folded (quoted, so that nothing folds them again).
    pub(super) fn object_name(&mut self) -> Result<ast::ObjectName> {
        let mut parts = vec![self.ident()?];
        while self.eat(&Token::Period) {
            parts.push(self.ident()?);
        }
        Ok(ast::ObjectName::from(
            parts
                .into_iter()
                .map(|p| ast::Ident::with_quote('"', p))
                .collect::<Vec<_>>(),
        ))
    }

    /// A signed integer.
    fn signed(&mut self) -> Result<i64> {
        let negative = if self.eat(&Token::Minus) {
            true
        } else {
            self.eat(&Token::Plus);
            false
        };
        match self.tokens.get(self.pos) {
            Some(Token::Number(n, _)) => {
                self.pos += 1;
                let text = if negative { format!("-{n}") } else { n.clone() };
                text.parse().map_err(|_| {
                    err!(
                        NumericValueOutOfRange,
                        "value \"{text}\" is out of range for type bigint"
                    )
                })
            }
            _ => Err(self.unexpected("an integer")),
        }
    }

    /// Sequence options until the end of the tokens or a `)`.
    fn sequence_clauses(&mut self, place: Place) -> Result<SequenceClauses> {
        let mut c = SequenceClauses::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut once = |name: &'static str| {
            if seen.contains(&name) {
                return Err(err!(SyntaxError, "conflicting or redundant options ({name})"));
            }
            seen.push(name);
            Ok(())
        };
        let number = |v: i64| ast::Expr::value(ast::Value::Number(v.to_string(), false));
        while self.pos < self.tokens.len() && self.tokens[self.pos] != &Token::RParen {
            if self.eat_words(&["AS"]) {
                once("AS")?;
                let word = self.ident()?;
                c.data_type = Some(match word.as_str() {
                    "smallint" | "int2" => SqlType::SmallInt,
                    "integer" | "int" | "int4" => SqlType::Integer,
                    "bigint" | "int8" => SqlType::BigInt,
                    _ => {
                        return Err(err!(
                            InvalidParameterValue,
                            "sequence type must be smallint, integer, or bigint"
                        ))
                    }
                });
            } else if self.eat_words(&["INCREMENT"]) {
                once("INCREMENT")?;
                let by = self.eat_words(&["BY"]);
                c.options
                    .push(ast::SequenceOptions::IncrementBy(number(self.signed()?), by));
            } else if self.eat_words(&["MINVALUE"]) {
                once("MINVALUE")?;
                c.options
                    .push(ast::SequenceOptions::MinValue(Some(number(self.signed()?))));
            } else if self.eat_words(&["MAXVALUE"]) {
                once("MAXVALUE")?;
                c.options
                    .push(ast::SequenceOptions::MaxValue(Some(number(self.signed()?))));
            } else if self.eat_words(&["NO", "MINVALUE"]) {
                once("MINVALUE")?;
                c.options.push(ast::SequenceOptions::MinValue(None));
            } else if self.eat_words(&["NO", "MAXVALUE"]) {
                once("MAXVALUE")?;
                c.options.push(ast::SequenceOptions::MaxValue(None));
            } else if self.eat_words(&["START"]) {
                once("START")?;
                let with = self.eat_words(&["WITH"]);
                c.options
                    .push(ast::SequenceOptions::StartWith(number(self.signed()?), with));
            } else if self.eat_words(&["CACHE"]) {
                once("CACHE")?;
                c.options.push(ast::SequenceOptions::Cache(number(self.signed()?)));
            } else if self.eat_words(&["NO", "CYCLE"]) {
                once("CYCLE")?;
                c.options.push(ast::SequenceOptions::Cycle(true));
            } else if self.eat_words(&["CYCLE"]) {
                once("CYCLE")?;
                c.options.push(ast::SequenceOptions::Cycle(false));
            } else if place == Place::Alter && self.eat_words(&["RESTART"]) {
                once("RESTART")?;
                let with = self.eat_words(&["WITH"]);
                let at_number = matches!(
                    self.tokens.get(self.pos),
                    Some(Token::Number(..) | Token::Minus | Token::Plus)
                );
                c.restart = Some(if with || at_number { Some(self.signed()?) } else { None });
            } else if place != Place::Identity && self.eat_words(&["OWNED", "BY"]) {
                once("OWNED BY")?;
                c.owned_by = Some(self.object_name()?);
            } else if place == Place::Identity && self.eat_words(&["SEQUENCE", "NAME"]) {
                once("SEQUENCE NAME")?;
                let mut parts = vec![self.ident()?];
                while self.eat(&Token::Period) {
                    parts.push(self.ident()?);
                }
                c.sequence_name = Some(parts);
            } else if self.peek_words(&["RENAME"]) || self.peek_words(&["SET"]) {
                return Err(err!(
                    FeatureNotSupported,
                    "ALTER SEQUENCE … {} is not supported",
                    self.word_at(self.pos).unwrap_or_default().to_ascii_uppercase()
                ));
            } else {
                return Err(self.unexpected("a sequence option"));
            }
        }
        Ok(c)
    }

    /// `CREATE [TEMP] SEQUENCE …` or `ALTER SEQUENCE …`, if that is what
    /// the statement is.
    pub(super) fn sequence_statement(&mut self) -> Result<Option<Statement>> {
        if self.eat_words(&["ALTER", "SEQUENCE"]) {
            let if_exists = self.eat_words(&["IF", "EXISTS"]);
            let name = self.object_name()?;
            let action = if self.eat_words(&["OWNER", "TO"]) {
                let role = self.ident()?;
                let current = ["current_user", "session_user", "current_role"].contains(&role.as_str());
                AlterSequence::OwnerTo((!current).then_some(role))
            } else {
                let clauses = self.sequence_clauses(Place::Alter)?;
                if clauses == SequenceClauses::default() {
                    return Err(self.unexpected("a sequence option"));
                }
                AlterSequence::Options(clauses)
            };
            self.end()?;
            return Ok(Some(Statement::AlterSequence {
                if_exists,
                name,
                action,
            }));
        }
        let temporary = ["TEMP", "TEMPORARY"]
            .iter()
            .any(|t| self.peek_words(&["CREATE", t, "SEQUENCE"]));
        if !temporary && !self.peek_words(&["CREATE", "SEQUENCE"]) {
            return Ok(None);
        }
        if temporary {
            return Err(err!(FeatureNotSupported, "temporary sequences are not supported"));
        }
        self.pos += 2;
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        let name = self.object_name()?;
        let clauses = self.sequence_clauses(Place::Create)?;
        self.end()?;
        Ok(Some(Statement::CreateSequence {
            if_not_exists,
            name,
            clauses,
        }))
    }
}

/// The tokens of a `CREATE TABLE` or `ALTER TABLE` with the options of each
/// `AS IDENTITY (…)` in the order sqlparser reads, and each `SEQUENCE NAME`
/// checked and taken out (see the module comment). Other statements come
/// back unchanged.
pub fn identity_options_in_order(tokens: Vec<Token>) -> Result<Vec<Token>> {
    let identity_list = |i: usize| {
        let mut next = tokens[i + 1..].iter().filter(|t| !is_blank(t));
        matches!(&tokens[i], Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("IDENTITY"))
            && next.next() == Some(&Token::LParen)
    };
    if !(0..tokens.len()).any(identity_list) {
        return Ok(tokens);
    }
    let (table, columns) = table_and_columns(&tokens);
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if !identity_list(i) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        out.push(tokens[i].clone());
        let open = i + 1 + tokens[i + 1..].iter().position(|t| *t == Token::LParen).unwrap_or(0);
        let close = open
            + tokens[open..]
                .iter()
                .position(|t| *t == Token::RParen)
                .ok_or_else(|| err!(SyntaxError, "syntax error at end of input: expected )"))?;
        let inner: Vec<&Token> = tokens[open + 1..close].iter().filter(|t| !is_blank(t)).collect();
        let mut c = Cursor { tokens: inner, pos: 0 };
        let clauses = c.sequence_clauses(Place::Identity)?;
        c.end()?;
        if let Some(parts) = &clauses.sequence_name {
            let column = columns.iter().rev().find(|(at, _)| *at < i).map(|(_, c)| c.as_str());
            let expected = column.map(|c| crate::ddl::owned_sequence_name(&table, c));
            let given = parts.last().map(String::as_str);
            let schema_ok = parts.len() == 1 || (parts.len() == 2 && parts[0] == crate::SCHEMA);
            if !schema_ok || expected.as_deref() != given {
                return Err(err!(
                    FeatureNotSupported,
                    "SEQUENCE NAME {} is not supported: an identity column's sequence is named {}",
                    parts.join("."),
                    expected.unwrap_or_else(|| "<table>_<column>_seq".to_string())
                ));
            }
        }
        out.push(Token::LParen);
        for o in canonical_order(&clauses.options) {
            out.extend(option_tokens(o));
        }
        out.push(Token::RParen);
        i = close + 1;
    }
    Ok(out)
}

/// The options in sqlparser's order.
fn canonical_order(options: &[ast::SequenceOptions]) -> Vec<&ast::SequenceOptions> {
    use ast::SequenceOptions as O;
    let rank = |o: &O| match o {
        O::IncrementBy(..) => 0,
        O::MinValue(_) => 1,
        O::MaxValue(_) => 2,
        O::StartWith(..) => 3,
        O::Cache(_) => 4,
        O::Cycle(_) => 5,
    };
    let mut sorted: Vec<&O> = options.iter().collect();
    sorted.sort_by_key(|o| rank(o));
    sorted
}

/// The tokens of one option, as sqlparser reads them.
fn option_tokens(o: &ast::SequenceOptions) -> Vec<Token> {
    use ast::SequenceOptions as O;
    let kw = |w: &str| Token::make_keyword(w);
    let value = |e: &ast::Expr| -> Vec<Token> {
        let text = e.to_string();
        match text.strip_prefix('-') {
            Some(n) => vec![Token::Minus, Token::Number(n.to_string(), false)],
            None => vec![Token::Number(text, false)],
        }
    };
    let ws = Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space);
    let mut out = match o {
        O::IncrementBy(e, _) => [vec![kw("INCREMENT"), ws.clone(), kw("BY"), ws.clone()], value(e)].concat(),
        O::MinValue(Some(e)) => [vec![kw("MINVALUE"), ws.clone()], value(e)].concat(),
        O::MinValue(None) => vec![kw("NO"), ws.clone(), kw("MINVALUE")],
        O::MaxValue(Some(e)) => [vec![kw("MAXVALUE"), ws.clone()], value(e)].concat(),
        O::MaxValue(None) => vec![kw("NO"), ws.clone(), kw("MAXVALUE")],
        O::StartWith(e, _) => [vec![kw("START"), ws.clone(), kw("WITH"), ws.clone()], value(e)].concat(),
        O::Cache(e) => [vec![kw("CACHE"), ws.clone()], value(e)].concat(),
        O::Cycle(true) => vec![kw("NO"), ws.clone(), kw("CYCLE")],
        O::Cycle(false) => vec![kw("CYCLE")],
    };
    out.push(ws);
    out
}

/// The table a `CREATE TABLE` or `ALTER TABLE` names (its last part,
/// folded), and the columns it names with the position of each: in
/// `CREATE TABLE`, the first word of each element of the column list; in
/// `ALTER TABLE`, the word after `ALTER [COLUMN]`.
fn table_and_columns(tokens: &[Token]) -> (String, Vec<(usize, String)>) {
    let fold = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_lowercase()),
        _ => None,
    };
    let is = |t: &Token, word: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    let words: Vec<(usize, &Token)> = tokens.iter().enumerate().filter(|(_, t)| !is_blank(t)).collect();
    let create = words.first().is_some_and(|(_, t)| is(t, "CREATE"));
    let mut table = String::new();
    let mut columns = Vec::new();
    // The name: after TABLE and its IF [NOT] EXISTS / ONLY.
    let mut k = words
        .iter()
        .position(|(_, t)| is(t, "TABLE"))
        .map_or(words.len(), |p| p + 1);
    while k < words.len() && ["IF", "NOT", "EXISTS", "ONLY"].iter().any(|w| is(words[k].1, w)) {
        k += 1;
    }
    while k < words.len() {
        if let Some(name) = fold(words[k].1) {
            table = name;
        }
        if words.get(k + 1).is_some_and(|(_, t)| *t == &Token::Period) {
            k += 2;
        } else {
            k += 1;
            break;
        }
    }
    let mut depth = 0;
    let mut element_start = false;
    for j in k..words.len() {
        let (at, t) = words[j];
        match t {
            Token::LParen => {
                depth += 1;
                element_start = create && depth == 1;
                continue;
            }
            Token::RParen => depth -= 1,
            Token::Comma if create && depth == 1 => {
                element_start = true;
                continue;
            }
            _ if element_start => {
                if let Some(c) = fold(t) {
                    columns.push((at, c));
                }
            }
            _ if !create && depth == 0 && is(t, "ALTER") => {
                let mut n = j + 1;
                if words.get(n).is_some_and(|(_, t)| is(t, "COLUMN")) {
                    n += 1;
                }
                if let Some(c) = words.get(n).and_then(|(_, t)| fold(t)) {
                    columns.push((at, c));
                }
            }
            _ => {}
        }
        element_start = false;
    }
    (table, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{parse, Statement};

    fn one(sql: &str) -> Statement {
        let mut v = parse(sql).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn create_sequence_reads_options_in_any_order() {
        let a = one("CREATE SEQUENCE public.s START WITH 5 INCREMENT BY -1 NO MINVALUE MAXVALUE 9 CACHE 1");
        let b = one("CREATE SEQUENCE s INCREMENT -1 MAXVALUE 9 START 5 CACHE 1 NO MINVALUE");
        let options = |s: &Statement| match s {
            Statement::CreateSequence { clauses, .. } => {
                let mut o: Vec<String> = canonical_order(&clauses.options)
                    .iter()
                    .map(|o| o.to_string().replace(" WITH", "").replace(" BY", ""))
                    .collect();
                o.sort();
                o
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(options(&a), options(&b));
        let Statement::CreateSequence { clauses, .. } = one("CREATE SEQUENCE s AS integer OWNED BY t.id") else {
            panic!()
        };
        assert_eq!(clauses.data_type, Some(SqlType::Integer));
        assert_eq!(clauses.owned_by.unwrap().to_string(), "\"t\".\"id\"");
    }

    #[test]
    fn repeated_or_misplaced_options_are_refused() {
        for sql in [
            "CREATE SEQUENCE s START 1 START 2",
            "CREATE SEQUENCE s RESTART 1",
            "CREATE SEQUENCE s SEQUENCE NAME x",
            "ALTER SEQUENCE s",
        ] {
            assert!(parse(sql).is_err(), "{sql}");
        }
        let e = parse("ALTER SEQUENCE s RENAME TO t").unwrap_err();
        assert_eq!(e.state.code(), "0A000");
    }

    #[test]
    fn alter_sequence_restart() {
        let Statement::AlterSequence {
            action: AlterSequence::Options(c),
            ..
        } = one("ALTER SEQUENCE IF EXISTS s RESTART WITH 10 INCREMENT 2")
        else {
            panic!()
        };
        assert_eq!(c.restart, Some(Some(10)));
        let Statement::AlterSequence {
            action: AlterSequence::Options(c),
            ..
        } = one("ALTER SEQUENCE s RESTART")
        else {
            panic!()
        };
        assert_eq!(c.restart, Some(None));
    }

    #[test]
    fn identity_options_of_pg_dump_reach_sqlparser() {
        let sql = "ALTER TABLE public.orders ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
            SEQUENCE NAME public.orders_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1)";
        let Statement::Sql(s) = one(sql) else { panic!() };
        let text = s.to_string();
        assert!(
            text.contains("INCREMENT BY 1 NO MINVALUE NO MAXVALUE START WITH 1 CACHE 1"),
            "{text}"
        );
        let other = sql.replace("orders_id_seq", "other_seq");
        assert_eq!(parse(&other).unwrap_err().state.code(), "0A000");
        let create = "CREATE TABLE t (a int, id bigint GENERATED ALWAYS AS IDENTITY (START WITH 3 SEQUENCE NAME t_id_seq INCREMENT BY 2))";
        let Statement::CreateTable { create, .. } = one(create) else {
            panic!()
        };
        let text = create.to_string();
        assert!(text.contains("INCREMENT BY 2 START WITH 3"), "{text}");
        let wrong = "CREATE TABLE t (a int, id bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME t_a_seq))";
        assert_eq!(parse(wrong).unwrap_err().state.code(), "0A000");
    }
}
