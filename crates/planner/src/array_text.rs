//! PostgreSQL's text input of values, column at a time: arrays
//! (`'{a,"b c",NULL}'`), and every other stored type, for `COPY … FROM`
//! and for casts from text that Arrow's cast kernels would read otherwise.
//!
//! An array's text is `{` elements separated by commas `}`. An element is
//! either double-quoted (a backslash escapes the next character) or bare
//! (surrounding white space dropped, a backslash escapes the next
//! character); a bare `NULL`, in any case, is a NULL element. Only
//! one-dimensional arrays with the default lower bound are stored, so a
//! nested `{` or a `[1:2]=` prefix is refused with 0A000; anything else
//! that does not parse is PostgreSQL's 22P02 "malformed array literal".
//!
//! [`ArrayText`] (`slicedb_array_text`) is the cast that
//! `crate::text_input` puts where text meets an array column:
//! `INSERT INTO t (tags) VALUES ('{a,b}')`, `'{1,2}'::int[]`.
//!
//! ```
//! use slicedb_planner::array_text::parse_array_text;
//! let e = parse_array_text(r#"{a, "b c" ,NULL,"NULL",\,}"#).unwrap();
//! assert_eq!(e, [Some("a".into()), Some("b c".into()), None, Some("NULL".into()), Some(",".into())]);
//! assert!(parse_array_text("{}").unwrap().is_empty());
//! assert!(parse_array_text("{a").is_err());
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder, ListArray, StringArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use slicedb_common::{err, ArrayElem, Error, Result, SqlType};

/// The elements of an array's text (`None` for a NULL element).
pub fn parse_array_text(text: &str) -> Result<Vec<Option<String>>> {
    let malformed = |detail: &str| {
        err!(
            InvalidTextRepresentation,
            "malformed array literal: \"{text}\" ({detail})"
        )
    };
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return Err(err!(
            FeatureNotSupported,
            "arrays with explicit bounds are not supported: \"{text}\""
        ));
    }
    let Some(inner) = trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return Err(malformed("array value must start with \"{\" and end with \"}\""));
    };
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        let mut quoted = false;
        // Bare text keeps inner white space; trailing white space that was
        // not escaped is dropped at the end of the element.
        let mut kept = 0;
        match chars.peek() {
            Some('"') => {
                chars.next();
                quoted = true;
                loop {
                    match chars.next() {
                        None => return Err(malformed("unexpected end of input")),
                        Some('"') => break,
                        Some('\\') => value.push(chars.next().ok_or_else(|| malformed("unexpected end of input"))?),
                        Some(c) => value.push(c),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
            }
            Some('{') => {
                return Err(err!(
                    FeatureNotSupported,
                    "multidimensional arrays are not supported: \"{text}\""
                ))
            }
            _ => loop {
                match chars.peek() {
                    None | Some(',') => break,
                    Some('{') | Some('}') | Some('"') => return Err(malformed("unexpected character")),
                    Some('\\') => {
                        chars.next();
                        value.push(chars.next().ok_or_else(|| malformed("unexpected end of input"))?);
                        kept = value.len();
                    }
                    Some(c) => {
                        let c = *c;
                        chars.next();
                        value.push(c);
                        if !c.is_ascii_whitespace() {
                            kept = value.len();
                        }
                    }
                }
            },
        }
        if !quoted {
            value.truncate(kept);
            if value.is_empty() {
                return Err(malformed("unexpected \",\" or end of input"));
            }
        }
        out.push(match !quoted && value.eq_ignore_ascii_case("null") {
            true => None,
            false => Some(value),
        });
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(_) => return Err(malformed("junk after an element")),
        }
    }
}

/// Reads text values as values of SQL type `ty`, as PostgreSQL's input
/// functions read them; a value that does not parse is 22P02 (naming
/// `column` when given).
pub fn text_column(strings: &StringArray, ty: SqlType, column: Option<&str>) -> Result<ArrayRef> {
    match ty {
        SqlType::Bytea => {
            let mut b = BinaryBuilder::new();
            for v in strings.iter() {
                match v {
                    None => b.append_null(),
                    Some(s) => b.append_value(crate::bytea::decode_bytea(s)?),
                }
            }
            return Ok(Arc::new(b.finish()));
        }
        SqlType::Array(elem) => return array_column(strings, elem, column),
        _ => {}
    }
    let target = ty.arrow_type();
    if target == DataType::Utf8 {
        return Ok(Arc::new(strings.clone()));
    }
    // PostgreSQL's forms that Arrow's parsers refuse as written.
    let rewrite: Option<fn(&str) -> std::borrow::Cow<'_, str>> = match target {
        DataType::Timestamp(..) => Some(crate::timestamp_text::pg_timestamp_text),
        DataType::Interval(_) => Some(crate::interval_text::pg_interval_text),
        _ => None,
    };
    let rewritten;
    let strings = match rewrite {
        Some(f) => {
            rewritten = StringArray::from_iter(strings.iter().map(|v| v.map(f)));
            &rewritten
        }
        None => strings,
    };
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    match cast_with_options(strings, &target, &strict) {
        Ok(a) => Ok(a),
        Err(_) => {
            // Find the offending value for the message.
            let lenient = cast_with_options(strings, &target, &CastOptions::default()).map_err(Error::from)?;
            let bad = (0..strings.len())
                .find(|i| strings.is_valid(*i) && lenient.is_null(*i))
                .map(|i| strings.value(i).to_string())
                .unwrap_or_default();
            let of_column = column.map(|c| format!(" (column {c})")).unwrap_or_default();
            Err(err!(
                InvalidTextRepresentation,
                "invalid input syntax for type {}: \"{bad}\"{of_column}",
                ty.pg_name()
            ))
        }
    }
}

/// Arrays' texts as a `List` of `elem`: every element of every value is
/// read at once by [`text_column`].
fn array_column(strings: &StringArray, elem: ArrayElem, column: Option<&str>) -> Result<ArrayRef> {
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(strings.len());
    let mut elements: Vec<Option<String>> = Vec::new();
    for v in strings.iter() {
        if let Some(text) = v {
            elements.extend(parse_array_text(text)?);
        }
        valid.push(v.is_some());
        offsets.push(i32::try_from(elements.len()).map_err(|_| err!(ProgramLimitExceeded, "too many array elements"))?);
    }
    let values = text_column(&StringArray::from(elements), elem.sql_type(), column)?;
    let field = Arc::new(Field::new_list_field(elem.sql_type().arrow_type(), true));
    let list = ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        values,
        Some(NullBuffer::from(valid)),
    )?;
    Ok(Arc::new(list))
}

/// `slicedb_array_text(text) → elem[]`: text read as an array of `elem`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayText {
    elem: ArrayElem,
    signature: Signature,
}

impl ArrayText {
    /// The cast of text to an array of Arrow type `target`, if slicedb
    /// reads such arrays from text.
    pub fn to(target: &DataType) -> Option<ArrayText> {
        match SqlType::from_arrow(target)? {
            SqlType::Array(elem) => Some(ArrayText {
                elem,
                signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
            }),
            _ => None,
        }
    }
}

impl ScalarUDFImpl for ArrayText {
    fn name(&self) -> &str {
        "slicedb_array_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(SqlType::Array(self.elem).arrow_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (strings, _) = crate::udf::text_argument(&args)?;
        let array = text_column(&strings, SqlType::Array(self.elem), None).map_err(Error::into_datafusion)?;
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicedb_common::Datum;

    fn read(text: &str, elem: ArrayElem) -> Result<Datum> {
        let a = text_column(&StringArray::from(vec![text]), SqlType::Array(elem), None)?;
        Datum::from_array(a.as_ref(), 0, SqlType::Array(elem))
    }

    /// PostgreSQL 15 reads these texts as these arrays (`SELECT '…'::int[]`).
    #[test]
    fn reads_arrays_as_postgresql_does() {
        assert_eq!(
            read("{1, 2 ,NULL}", ArrayElem::Integer).unwrap(),
            Datum::Array(vec![Datum::Int32(1), Datum::Int32(2), Datum::Null])
        );
        assert_eq!(
            read(r#"{"a b","x\"y",c d}"#, ArrayElem::Text).unwrap(),
            Datum::Array(vec![
                Datum::Text("a b".into()),
                Datum::Text("x\"y".into()),
                Datum::Text("c d".into())
            ])
        );
        assert_eq!(read(" { } ", ArrayElem::BigInt).unwrap(), Datum::Array(vec![]));
        let e = read("{1,x}", ArrayElem::Integer).unwrap_err();
        assert_eq!(e.state.code(), "22P02");
        for bad in ["{1,}", "1,2", "{\"a}", "{a}b}"] {
            let e = read(bad, ArrayElem::Text).unwrap_err();
            assert_eq!(e.state.code(), "22P02", "{bad}");
        }
        let e = read("{{1},{2}}", ArrayElem::Integer).unwrap_err();
        assert_eq!(e.state.code(), "0A000");
    }

    /// What `Datum::pg_text` prints reads back as the same array.
    #[test]
    fn printed_arrays_read_back() {
        let v = Datum::Array(vec![
            Datum::Text("".into()),
            Datum::Text("null".into()),
            Datum::Null,
            Datum::Text("a\\b{c}".into()),
            Datum::Text(" x ".into()),
        ]);
        let text = v.pg_text(SqlType::Array(ArrayElem::Text)).unwrap();
        assert_eq!(text, r#"{"","null",NULL,"a\\b{c}"," x "}"#);
        assert_eq!(read(&text, ArrayElem::Text).unwrap(), v);
    }
}
