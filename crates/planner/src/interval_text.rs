//! PostgreSQL's interval text where Arrow's parser reads less.
//!
//! Arrow reads `1 day 2 hours` but not a time of day (`1 day 02:00:00`,
//! `-1 days +02:03`: what PostgreSQL, and slicedb, print), the `@ … ago`
//! form, or ISO 8601 (`P1DT2H`). [`pg_interval_text`] rewrites those into
//! units Arrow reads (`1 day 2 hours 0 minutes 0 seconds`), leaving other
//! text as it is. It is applied to `INTERVAL '…'` literals in the syntax
//! tree ([`interval_literals`], before DataFusion parses them while
//! planning) and, through [`IntervalText`], to text cast to `interval`
//! (the text-input analyzer rule, `crate::text_input`).
//!
//! ```
//! use slicedb_planner::interval_text::pg_interval_text;
//! assert_eq!(pg_interval_text("1 day 02:00:00"), "1 day 2 hours 0 minutes 0 seconds");
//! assert_eq!(pg_interval_text("-1 days +02:03"), "-1 days 2 hours 3 minutes");
//! assert_eq!(pg_interval_text("-00:30:00.5"), "-0 hours -30 minutes -0.5 seconds");
//! assert_eq!(pg_interval_text("@ 1 hour ago"), "-1 hour");
//! assert_eq!(pg_interval_text("P1Y2M3DT4H5M6.5S"), "1 years 2 months 3 days 4 hours 5 minutes 6.5 seconds");
//! assert_eq!(pg_interval_text("2 hours"), "2 hours");
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast;

/// A time of day (`[+-]H:MM[:SS[.frac]]`) as units, or `None`.
fn time_units(token: &str) -> Option<String> {
    let (sign, rest) = match token.as_bytes().first()? {
        b'-' => ("-", &token[1..]),
        b'+' => ("", &token[1..]),
        _ => ("", token),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let seconds_ok = parts.get(2).is_none_or(|s| {
        let mut it = s.splitn(2, '.');
        digits(it.next().unwrap_or("")) && it.next().is_none_or(digits)
    });
    if !digits(parts[0]) || !digits(parts[1]) || !seconds_ok {
        return None;
    }
    let number = |p: &str| {
        let t = p.trim_start_matches('0');
        if t.is_empty() || t.starts_with('.') {
            format!("0{t}")
        } else {
            t.to_string()
        }
    };
    let mut out = format!("{sign}{} hours {sign}{} minutes", number(parts[0]), number(parts[1]));
    if let Some(s) = parts.get(2) {
        out.push_str(&format!(" {sign}{} seconds", number(s)));
    }
    Some(out)
}

/// ISO 8601's `P[nY][nM][nW][nD][T[nH][nM][nS]]` as units, or `None`.
fn iso_units(text: &str) -> Option<String> {
    let body = text.strip_prefix(['P', 'p'])?;
    if body.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut number = String::new();
    let mut time = false;
    for c in body.chars() {
        match c.to_ascii_uppercase() {
            'T' if number.is_empty() && !time => time = true,
            d if d.is_ascii_digit() || d == '.' || (d == '-' && number.is_empty()) => number.push(d),
            unit => {
                if number.is_empty() {
                    return None;
                }
                let name = match (unit, time) {
                    ('Y', false) => "years",
                    ('M', false) => "months",
                    ('W', false) => "weeks",
                    ('D', false) => "days",
                    ('H', true) => "hours",
                    ('M', true) => "minutes",
                    ('S', true) => "seconds",
                    _ => return None,
                };
                out.push(format!("{number} {name}"));
                number.clear();
            }
        }
    }
    (number.is_empty() && !out.is_empty()).then(|| out.join(" "))
}

/// A number of the interval negated (for `ago`).
fn negated(token: &str) -> String {
    match token.strip_prefix('-') {
        Some(rest) => rest.to_string(),
        None => format!("-{}", token.trim_start_matches('+')),
    }
}

/// Interval text as Arrow reads it (see the module comment).
pub fn pg_interval_text(text: &str) -> Cow<'_, str> {
    let trimmed = text.trim();
    if let Some(iso) = iso_units(trimmed) {
        return Cow::Owned(iso);
    }
    let mut body = trimmed.strip_prefix('@').map(str::trim_start).unwrap_or(trimmed);
    let lower = body.to_ascii_lowercase();
    let ago = lower.ends_with(" ago");
    if ago {
        body = body[..body.len() - 4].trim_end();
    }
    let mut changed = ago || body.len() != trimmed.len();
    let mut tokens = Vec::new();
    for token in body.split_whitespace() {
        match time_units(token) {
            Some(units) => {
                changed = true;
                tokens.extend(units.split(' ').map(str::to_string));
            }
            None => tokens.push(token.to_string()),
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    if ago {
        for t in &mut tokens {
            if t.trim_start_matches(['-', '+']).parse::<f64>().is_ok() {
                *t = negated(t);
            }
        }
    }
    Cow::Owned(tokens.join(" "))
}

/// Rewrites the text of each `INTERVAL '…'` literal of `stmt` without a
/// unit after it into what Arrow reads; whether any changed.
pub fn interval_literals(stmt: &mut ast::Statement) -> bool {
    let mut changed = false;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Interval(iv) = e {
            if iv.leading_field.is_none() && iv.last_field.is_none() {
                if let ast::Expr::Value(v) = iv.value.as_mut() {
                    if let ast::Value::SingleQuotedString(s) = &mut v.value {
                        if let Cow::Owned(new) = pg_interval_text(s) {
                            *s = new;
                            changed = true;
                        }
                    }
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// `slicedb_interval_text(text) → text`: [`pg_interval_text`] of each value.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalText {
    signature: Signature,
}

impl Default for IntervalText {
    fn default() -> Self {
        IntervalText {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IntervalText {
    fn name(&self) -> &str {
        "slicedb_interval_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (strings, mut out) = crate::udf::text_argument(&args)?;
        for v in strings.iter() {
            out.append_option(v.map(pg_interval_text));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::IntervalUnit;

    /// Each rewritten text parses with Arrow; text that needs nothing is
    /// left alone.
    #[test]
    fn rewritten_intervals_parse_with_arrow() {
        let t = DataType::Interval(IntervalUnit::MonthDayNano);
        for text in [
            "1 day 02:00:00",
            "02:00:00",
            "-1 days +02:03",
            "1 year 2 mons 3 days 04:05:06",
            "@ 1 hour ago",
            "P1DT2H",
            "PT0.5S",
            "00:00:04.5",
        ] {
            let fixed = pg_interval_text(text);
            let array = StringArray::from(vec![fixed.as_ref()]);
            cast(&array, &t).unwrap_or_else(|e| panic!("{text} → {fixed}: {e}"));
        }
        for untouched in ["1 day", "2 hours 30 minutes", "1 mon", "bad text", ""] {
            assert!(matches!(pg_interval_text(untouched), Cow::Borrowed(_)), "{untouched}");
        }
    }
}
