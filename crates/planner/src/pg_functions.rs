//! PostgreSQL functions that applications call and DataFusion lacks:
//!
//! - `mod(a, b)`: the remainder, as `a % b` (22012 for a zero divisor);
//! - `quote_literal(text)` and `quote_nullable(text)`: the text as a SQL
//!   string literal (`'it''s'`; with a backslash, `E'a\\b'`), NULL as NULL
//!   and `NULL` respectively;
//! - `format(template, args…)`: `%s` (the value as text, NULL as nothing),
//!   `%I` (an identifier, quoted when it must be), `%L` (a literal, as
//!   `quote_nullable`), `%%`, argument positions (`%2$s`) and widths
//!   (`%-10s`, `%5s`), as PostgreSQL's;
//! - `shobj_description(oid, catalog)`: NULL, since slicedb keeps no
//!   comments on shared objects (databases, roles); psql's `\l+` asks;
//!
//! and [`ALIASES`], PostgreSQL's names for functions DataFusion has under
//! another (`sign` is `signum`, `variance` is `var_samp`).
//!
//! ```
//! use slicedb_planner::pg_functions::{format, quote_literal};
//! assert_eq!(quote_literal("it's"), "'it''s'");
//! assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
//! let args = [Some("users".to_string()), Some("O'Neil".to_string()), None];
//! assert_eq!(
//!     format("SELECT * FROM %I WHERE a = %L AND b = %L", &args).unwrap(),
//!     "SELECT * FROM users WHERE a = 'O''Neil' AND b = NULL"
//! );
//! // After `%1$s`, the next plain `%s` takes the second argument.
//! assert_eq!(format("%2$s-%1$s|%-4s|", &[Some("a".into()), Some("b".into())]).unwrap(), "b-a|b   |");
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::numeric::rem;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    ColumnarValue, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use slicedb_common::Error;

/// PostgreSQL's name of a function, and DataFusion's (a scalar or an
/// aggregate function).
pub const ALIASES: &[(&str, &str)] = &[("sign", "signum"), ("variance", "var_samp")];

/// `text` as a SQL string literal, as PostgreSQL's `quote_literal`.
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `name` as an identifier, quoted unless it is one as written (lower
/// case letters, digits, `_` and `$`, not starting with a digit or `$`).
fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    match plain {
        true => name.to_string(),
        false => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn format_error(message: impl Into<String>) -> Error {
    Error::new(slicedb_common::SqlState::InvalidParameterValue, message)
}

/// PostgreSQL's `format(template, args…)` of values already as text (see
/// the module comment).
pub fn format(template: &str, args: &[Option<String>]) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // [position$][-][width]type
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let mut position = None;
        if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            let n: usize = digits
                .parse()
                .map_err(|_| format_error("invalid argument number in format()"))?;
            if n == 0 {
                return Err(format_error(
                    "format specifies argument 0, but arguments are numbered from 1",
                ));
            }
            position = Some(n - 1);
            digits.clear();
        }
        let mut left = false;
        if digits.is_empty() && chars.peek() == Some(&'-') {
            chars.next();
            left = true;
        }
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let width: usize = match digits.is_empty() {
            true => 0,
            false => digits.parse().map_err(|_| format_error("invalid width in format()"))?,
        };
        let kind = chars
            .next()
            .ok_or_else(|| format_error("unterminated format() type specifier"))?;
        let index = position.unwrap_or(next);
        next = index + 1;
        let arg = args
            .get(index)
            .ok_or_else(|| format_error("too few arguments for format()"))?;
        let text = match (kind, arg) {
            ('s', Some(v)) => v.clone(),
            ('s', None) => String::new(),
            ('I', Some(v)) => quote_ident(v),
            ('I', None) => {
                return Err(Error::new(
                    slicedb_common::SqlState::InvalidParameterValue,
                    "null values cannot be formatted as an SQL identifier",
                ))
            }
            ('L', Some(v)) => quote_literal(v),
            ('L', None) => "NULL".to_string(),
            (other, _) => {
                return Err(format_error(format!(
                    "unrecognized format() type specifier \"{other}\""
                )))
            }
        };
        let pad = width.saturating_sub(text.chars().count());
        if !left {
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(&text);
        if left {
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    Ok(out)
}

/// Which function a [`PgFunction`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Mod,
    QuoteLiteral,
    QuoteNullable,
    Format,
    ShobjDescription,
}

/// One of the module's functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgFunction {
    kind: Kind,
    signature: Signature,
}

impl PgFunction {
    fn new(kind: Kind) -> PgFunction {
        let signature = match kind {
            Kind::Mod => Signature::user_defined(Volatility::Immutable),
            Kind::QuoteLiteral | Kind::QuoteNullable => Signature::any(1, Volatility::Immutable),
            Kind::Format => Signature::variadic_any(Volatility::Immutable),
            Kind::ShobjDescription => Signature::any(2, Volatility::Stable),
        };
        PgFunction { kind, signature }
    }
}

/// The module's functions, to register.
pub fn functions() -> Vec<ScalarUDF> {
    [
        Kind::Mod,
        Kind::QuoteLiteral,
        Kind::QuoteNullable,
        Kind::Format,
        Kind::ShobjDescription,
    ]
    .into_iter()
    .map(|k| ScalarUDF::new_from_impl(PgFunction::new(k)))
    .collect()
}

fn as_text(a: &ArrayRef) -> DfResult<StringArray> {
    let t = cast(a, &DataType::Utf8)?;
    Ok(t.as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::internal("text expected").into_datafusion())?
        .clone())
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Mod => "mod",
            Kind::QuoteLiteral => "quote_literal",
            Kind::QuoteNullable => "quote_nullable",
            Kind::Format => "format",
            Kind::ShobjDescription => "shobj_description",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [l, r] => {
                let (l, r) = BinaryTypeCoercer::new(l, &Operator::Modulo, r).get_input_types()?;
                Ok(vec![l, r])
            }
            _ => Err(Error::new(
                slicedb_common::SqlState::UndefinedFunction,
                "function mod takes two arguments",
            )
            .into_datafusion()),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match self.kind {
            Kind::Mod => BinaryTypeCoercer::new(&arg_types[0], &Operator::Modulo, &arg_types[1]).get_result_type(),
            _ => Ok(DataType::Utf8),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, n, scalar) = crate::udf::arguments(&args)?;
        let array: ArrayRef = match self.kind {
            Kind::Mod => rem(&arrays[0], &arrays[1]).map_err(|e| Error::from(e).into_datafusion())?,
            Kind::QuoteLiteral | Kind::QuoteNullable => {
                let text = as_text(&arrays[0])?;
                let mut out = StringBuilder::with_capacity(n, text.value_data().len() + 3 * n);
                for v in text.iter() {
                    match (v, self.kind) {
                        (Some(v), _) => out.append_value(quote_literal(v)),
                        (None, Kind::QuoteNullable) => out.append_value("NULL"),
                        (None, _) => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            Kind::ShobjDescription => Arc::new(StringArray::new_null(n)),
            Kind::Format => {
                let texts = arrays.iter().map(as_text).collect::<DfResult<Vec<_>>>()?;
                let Some((template, values)) = texts.split_first() else {
                    return Err(Error::new(
                        slicedb_common::SqlState::UndefinedFunction,
                        "function format() needs a template",
                    )
                    .into_datafusion());
                };
                let mut out = StringBuilder::with_capacity(n, template.value_data().len() * n);
                for row in 0..n {
                    if template.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    let row_args: Vec<Option<String>> = values
                        .iter()
                        .map(|v| v.is_valid(row).then(|| v.value(row).to_string()))
                        .collect();
                    out.append_value(format(template.value(row), &row_args).map_err(Error::into_datafusion)?);
                }
                Arc::new(out.finish())
            }
        };
        crate::udf::result(array, scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_reads_postgres_templates() {
        let args = |v: &[Option<&str>]| v.iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>();
        assert_eq!(format("%s-%s", &args(&[Some("a"), Some("1")])).unwrap(), "a-1");
        assert_eq!(format("100%%", &[]).unwrap(), "100%");
        assert_eq!(format("[%5s]", &args(&[Some("ab")])).unwrap(), "[   ab]");
        assert_eq!(
            format("%I.%I", &args(&[Some("public"), Some("My Table")])).unwrap(),
            "public.\"My Table\""
        );
        assert_eq!(format("%s|%L", &args(&[None, None])).unwrap(), "|NULL");
        assert_eq!(format("%1$s %1$s", &args(&[Some("x")])).unwrap(), "x x");
        assert!(format("%s %s", &args(&[Some("x")])).is_err());
        assert!(format("%q", &args(&[Some("x")])).is_err());
        assert!(format("%I", &args(&[None])).is_err());
    }

    #[test]
    fn literals_are_quoted_as_postgres_quotes_them() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("O'Neil"), "'O''Neil'");
        assert_eq!(quote_literal("C:\\dir"), "E'C:\\\\dir'");
    }
}
