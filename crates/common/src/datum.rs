//! [`Datum`]: one SQL value, as slice servers store it and the bucket hash sees it.
//!
//! Rows travel between the coordinator and slice servers as Arrow record
//! batches; inside a slice server they are stored as `Vec<Datum>`. This module
//! converts between the two ([`Datum::from_array`], [`build_array`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array, Date32Builder,
    Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array, Float64Builder, Int16Array,
    Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder, IntervalMonthDayNanoArray,
    IntervalMonthDayNanoBuilder, ListArray, StringArray, StringBuilder, Time64MicrosecondArray,
    Time64MicrosecondBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{Field, IntervalMonthDayNano};
use serde::{Deserialize, Serialize};

use crate::{text_types, Error, Result, SqlType};

/// One SQL value. Dates are days since 1970-01-01, timestamps microseconds
/// since 1970-01-01 00:00 (UTC for `timestamptz`), times microseconds since
/// midnight; an interval keeps PostgreSQL's three fields (months, days and
/// microseconds), and an array its elements in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Decimal { value: i128, scale: i8 },
    Text(String),
    Bytes(Vec<u8>),
    Date(i32),
    Timestamp(i64),
    Time(i64),
    Interval { months: i32, days: i32, micros: i64 },
    Array(Vec<Datum>),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// An interval's length in microseconds, a month counted as 30 days and
    /// a day as 24 hours, as PostgreSQL's `interval_cmp` compares them;
    /// `None` for other values.
    pub fn interval_micros(&self) -> Option<i128> {
        match self {
            Datum::Interval { months, days, micros } => {
                Some((*months as i128 * 30 + *days as i128) * 86_400_000_000 + *micros as i128)
            }
            _ => None,
        }
    }

    /// Whether this value can be a value of SQL type `ty` (NULL fits all):
    /// the kind [`build_array`] takes for `ty`, element by element for an
    /// array.
    pub fn fits(&self, ty: SqlType) -> bool {
        match (self, ty) {
            (Datum::Null, _) => true,
            (Datum::Array(v), SqlType::Array(e)) => v.iter().all(|d| d.fits(e.sql_type())),
            (Datum::Int16(_), SqlType::SmallInt)
            | (Datum::Int32(_), SqlType::Integer)
            | (Datum::Int64(_), SqlType::BigInt)
            | (Datum::Float32(_), SqlType::Real)
            | (Datum::Float64(_), SqlType::Double)
            | (Datum::Decimal { .. }, SqlType::Numeric { .. })
            | (Datum::Bool(_), SqlType::Boolean)
            | (Datum::Bytes(_), SqlType::Bytea)
            | (Datum::Date(_), SqlType::Date)
            | (Datum::Timestamp(_), SqlType::Timestamp | SqlType::TimestampTz)
            | (Datum::Time(_), SqlType::Time)
            | (Datum::Interval { .. }, SqlType::Interval) => true,
            (Datum::Text(_), t) => t.arrow_type() == datafusion::arrow::datatypes::DataType::Utf8,
            _ => false,
        }
    }

    /// Reads row `row` of `array`, which holds values of SQL type `ty`.
    pub fn from_array(array: &dyn Array, row: usize, ty: SqlType) -> Result<Datum> {
        if array.is_null(row) {
            return Ok(Datum::Null);
        }
        fn down<T: 'static>(a: &dyn Array) -> Result<&T> {
            a.as_any()
                .downcast_ref::<T>()
                .ok_or_else(|| Error::internal(format!("unexpected array type {}", a.data_type())))
        }
        Ok(match ty {
            SqlType::SmallInt => Datum::Int16(down::<Int16Array>(array)?.value(row)),
            SqlType::Integer => Datum::Int32(down::<Int32Array>(array)?.value(row)),
            SqlType::BigInt => Datum::Int64(down::<Int64Array>(array)?.value(row)),
            SqlType::Real => Datum::Float32(down::<Float32Array>(array)?.value(row)),
            SqlType::Double => Datum::Float64(down::<Float64Array>(array)?.value(row)),
            SqlType::Numeric { scale, .. } => Datum::Decimal {
                value: down::<Decimal128Array>(array)?.value(row),
                scale,
            },
            SqlType::Boolean => Datum::Bool(down::<BooleanArray>(array)?.value(row)),
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => {
                Datum::Text(down::<StringArray>(array)?.value(row).to_string())
            }
            SqlType::Uuid => Datum::Text(text_types::canonical_uuid(down::<StringArray>(array)?.value(row))?),
            SqlType::Json => Datum::Text(text_types::canonical_json(down::<StringArray>(array)?.value(row))?),
            SqlType::Jsonb => Datum::Text(text_types::canonical_jsonb(down::<StringArray>(array)?.value(row))?),
            SqlType::Bytea => Datum::Bytes(down::<BinaryArray>(array)?.value(row).to_vec()),
            SqlType::Date => Datum::Date(down::<Date32Array>(array)?.value(row)),
            SqlType::Timestamp | SqlType::TimestampTz => {
                Datum::Timestamp(down::<TimestampMicrosecondArray>(array)?.value(row))
            }
            SqlType::Time => Datum::Time(down::<Time64MicrosecondArray>(array)?.value(row)),
            SqlType::Interval => {
                let v = down::<IntervalMonthDayNanoArray>(array)?.value(row);
                Datum::Interval {
                    months: v.months,
                    days: v.days,
                    micros: v.nanoseconds.div_euclid(1000),
                }
            }
            SqlType::Array(elem) => {
                let elements = down::<ListArray>(array)?.value(row);
                let ty = elem.sql_type();
                Datum::Array(
                    (0..elements.len())
                        .map(|i| Datum::from_array(elements.as_ref(), i, ty))
                        .collect::<Result<_>>()?,
                )
            }
        })
    }
}

/// Builds an Arrow array of SQL type `ty` from datums.
pub fn build_array<'a>(ty: SqlType, datums: impl Iterator<Item = &'a Datum>) -> Result<ArrayRef> {
    macro_rules! build {
        ($builder:expr, $($pat:pat => $val:expr),+) => {{
            let mut b = $builder;
            for d in datums {
                match d {
                    Datum::Null => b.append_null(),
                    $($pat => b.append_value($val),)+
                    other => return Err(Error::internal(format!("datum {other:?} does not fit {ty:?}"))),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        SqlType::SmallInt => build!(Int16Builder::new(), Datum::Int16(v) => *v),
        SqlType::Integer => build!(Int32Builder::new(), Datum::Int32(v) => *v),
        SqlType::BigInt => build!(Int64Builder::new(), Datum::Int64(v) => *v),
        SqlType::Real => build!(Float32Builder::new(), Datum::Float32(v) => *v),
        SqlType::Double => build!(Float64Builder::new(), Datum::Float64(v) => *v),
        SqlType::Numeric { precision, scale } => {
            let b = Decimal128Builder::new()
                .with_precision_and_scale(precision, scale)
                .map_err(Error::from)?;
            build!(b, Datum::Decimal { value, .. } => *value)
        }
        SqlType::Boolean => build!(BooleanBuilder::new(), Datum::Bool(v) => *v),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Uuid | SqlType::Json | SqlType::Jsonb => {
            build!(StringBuilder::new(), Datum::Text(v) => v.as_str())
        }
        SqlType::Bytea => build!(BinaryBuilder::new(), Datum::Bytes(v) => v.as_slice()),
        SqlType::Date => build!(Date32Builder::new(), Datum::Date(v) => *v),
        SqlType::Timestamp => build!(TimestampMicrosecondBuilder::new(), Datum::Timestamp(v) => *v),
        SqlType::TimestampTz => {
            let b = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
            build!(b, Datum::Timestamp(v) => *v)
        }
        SqlType::Time => build!(Time64MicrosecondBuilder::new(), Datum::Time(v) => *v),
        SqlType::Interval => build!(
            IntervalMonthDayNanoBuilder::new(),
            Datum::Interval { months, days, micros } => IntervalMonthDayNano::new(*months, *days, micros * 1000)
        ),
        SqlType::Array(elem) => {
            // The elements of all rows in one array, then the offsets that
            // cut it into rows.
            let mut offsets = vec![0i32];
            let mut nulls = Vec::new();
            let mut elements: Vec<&Datum> = Vec::new();
            for d in datums {
                match d {
                    Datum::Null => nulls.push(false),
                    Datum::Array(v) => {
                        elements.extend(v.iter());
                        nulls.push(true);
                    }
                    other => return Err(Error::internal(format!("datum {other:?} does not fit {ty:?}"))),
                }
                let end = i32::try_from(elements.len())
                    .map_err(|_| Error::internal("an array of more than 2^31 elements"))?;
                offsets.push(end);
            }
            let values = build_array(elem.sql_type(), elements.into_iter())?;
            let field = Arc::new(Field::new_list_field(elem.sql_type().arrow_type(), true));
            let list = ListArray::try_new(
                field,
                OffsetBuffer::new(offsets.into()),
                values,
                Some(NullBuffer::from(nulls)),
            )
            .map_err(Error::from)?;
            Arc::new(list) as ArrayRef
        }
    })
}

impl Datum {
    /// SQL comparison of two non-null values; `None` if either is NULL or
    /// the kinds are not comparable. Integers of any width compare by value,
    /// numerics are aligned to a common scale.
    pub fn sql_cmp(&self, other: &Datum) -> Option<std::cmp::Ordering> {
        use Datum::*;
        fn int(d: &Datum) -> Option<i64> {
            match d {
                Int16(v) => Some(*v as i64),
                Int32(v) => Some(*v as i64),
                Int64(v) => Some(*v),
                _ => None,
            }
        }
        fn float(d: &Datum) -> Option<f64> {
            match d {
                Float32(v) => Some(*v as f64),
                Float64(v) => Some(*v),
                Int16(_) | Int32(_) | Int64(_) => int(d).map(|v| v as f64),
                Decimal { value, scale } => Some(*value as f64 / 10f64.powi(*scale as i32)),
                _ => None,
            }
        }
        match (self, other) {
            (Null, _) | (_, Null) => None,
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Text(a), Text(b)) => Some(a.cmp(b)),
            (Bytes(a), Bytes(b)) => Some(a.cmp(b)),
            (Date(a), Date(b)) => Some(a.cmp(b)),
            (Timestamp(a), Timestamp(b)) => Some(a.cmp(b)),
            (Time(a), Time(b)) => Some(a.cmp(b)),
            // PostgreSQL compares intervals by length, a month as 30 days.
            (Interval { .. }, Interval { .. }) => Some(self.interval_micros()?.cmp(&other.interval_micros()?)),
            (Array(a), Array(b)) => {
                for (x, y) in a.iter().zip(b) {
                    // NULL elements sort after all others, as in PostgreSQL.
                    let ord = match (x.is_null(), y.is_null()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        (false, false) => x.sql_cmp(y)?,
                    };
                    if ord.is_ne() {
                        return Some(ord);
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            (Decimal { value: a, scale: sa }, Decimal { value: b, scale: sb }) => {
                let s = (*sa).max(*sb);
                let a = a.checked_mul(10i128.checked_pow((s - sa) as u32)?)?;
                let b = b.checked_mul(10i128.checked_pow((s - sb) as u32)?)?;
                Some(a.cmp(&b))
            }
            (Decimal { value, scale }, i) | (i, Decimal { value, scale }) if int(i).is_some() => {
                let scaled = (int(i)? as i128).checked_mul(10i128.checked_pow(*scale as u32)?)?;
                let ord = value.cmp(&scaled);
                Some(if matches!(self, Decimal { .. }) {
                    ord
                } else {
                    ord.reverse()
                })
            }
            _ => match (int(self), int(other)) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                // PostgreSQL's order: -0 = 0, NaN = NaN and NaN above everything.
                _ => {
                    let canon = |v: f64| {
                        if v == 0.0 {
                            0.0
                        } else if v.is_nan() {
                            f64::NAN
                        } else {
                            v
                        }
                    };
                    Some(canon(float(self)?).total_cmp(&canon(float(other)?)))
                }
            },
        }
    }
}

impl Datum {
    /// PostgreSQL's text output of this value (as `COPY … TO` and the text
    /// protocol print it), for a value of SQL type `ty`.
    pub fn pg_text(&self, ty: SqlType) -> Option<String> {
        Some(match self {
            Datum::Null => return None,
            Datum::Bool(b) => (if *b { "t" } else { "f" }).to_string(),
            Datum::Int16(v) => v.to_string(),
            Datum::Int32(v) => v.to_string(),
            Datum::Int64(v) => v.to_string(),
            Datum::Float32(v) => float4_text(*v),
            Datum::Float64(v) => float8_text(*v),
            Datum::Decimal { value, scale } => decimal_text(*value, *scale),
            Datum::Text(s) => s.clone(),
            Datum::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            Datum::Date(d) => chrono::NaiveDate::from_num_days_from_ce_opt(*d + 719_163)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| d.to_string()),
            Datum::Timestamp(t) => {
                let secs = t.div_euclid(1_000_000);
                let micros = t.rem_euclid(1_000_000) as u32;
                let Some(dt) = chrono::DateTime::from_timestamp(secs, micros * 1000) else {
                    return Some(t.to_string());
                };
                let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
                if micros != 0 {
                    let frac = format!("{micros:06}");
                    s.push('.');
                    s.push_str(frac.trim_end_matches('0'));
                }
                if ty == SqlType::TimestampTz {
                    s.push_str("+00");
                }
                s
            }
            Datum::Time(t) => time_text(*t),
            Datum::Interval { months, days, micros } => interval_text(*months, *days, *micros),
            Datum::Array(elements) => {
                let elem = match ty {
                    SqlType::Array(e) => e.sql_type(),
                    other => other,
                };
                let mut s = String::from("{");
                for (i, e) in elements.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    match e.pg_text(elem) {
                        None => s.push_str("NULL"),
                        Some(text) => push_array_element(&mut s, &text),
                    }
                }
                s.push('}');
                s
            }
        })
    }
}

/// Appends one element's text to an array's text, in double quotes where
/// PostgreSQL's `array_out` quotes it (empty, `NULL`, or holding a brace,
/// comma, quote, backslash or white space), with `"` and `\` escaped.
fn push_array_element(out: &mut String, text: &str) {
    let quote = text.is_empty()
        || text.eq_ignore_ascii_case("null")
        || text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !quote {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `.ffffff` without its trailing zeros, or nothing for whole seconds.
fn fraction_text(micros: i64) -> String {
    if micros == 0 {
        return String::new();
    }
    format!(".{micros:06}").trim_end_matches('0').to_string()
}

/// A `time` of `micros` since midnight, as PostgreSQL prints it.
///
/// ```
/// use slicedb_common::datum::time_text;
/// assert_eq!(time_text(45_000_250_000), "12:30:00.25");
/// ```
pub fn time_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    format!(
        "{:02}:{:02}:{:02}{}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        fraction_text(micros.rem_euclid(1_000_000))
    )
}

/// An interval as PostgreSQL prints it in its default `postgres` style
/// (`EncodeInterval`): years, months and days where not zero, then the time
/// when not zero or when nothing else was printed, with a `+` before a
/// positive part that follows a negative one.
///
/// ```
/// use slicedb_common::datum::interval_text;
/// assert_eq!(interval_text(14, 3, 4 * 3_600_000_000 + 500_000), "1 year 2 mons 3 days 04:00:00.5");
/// assert_eq!(interval_text(0, -1, 2 * 3_600_000_000), "-1 days +02:00:00");
/// assert_eq!(interval_text(0, 0, 0), "00:00:00");
/// assert_eq!(interval_text(1, 0, -60_000_000), "1 mon -00:01:00");
/// ```
pub fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    let mut before_negative = false;
    for (value, unit) in [(months / 12, "year"), (months % 12, "mon"), (days, "day")] {
        if value == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        if before_negative && value > 0 {
            out.push('+');
        }
        out.push_str(&format!("{value} {unit}{}", if value != 1 { "s" } else { "" }));
        before_negative = value < 0;
    }
    if out.is_empty() || micros != 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        if micros < 0 {
            out.push('-');
        } else if before_negative {
            out.push('+');
        }
        let abs = micros.unsigned_abs();
        let secs = abs / 1_000_000;
        out.push_str(&format!(
            "{:02}:{:02}:{:02}{}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            fraction_text((abs % 1_000_000) as i64)
        ));
    }
    out
}

impl Datum {
    /// The text of this value without its column type (timestamps print
    /// without a zone).
    pub fn pg_text_untyped(&self) -> String {
        self.pg_text(SqlType::Timestamp).unwrap_or_else(|| "NULL".to_string())
    }
}

/// A `double precision` as PostgreSQL prints it (see [`float_text`]).
///
/// ```
/// use slicedb_common::datum::float8_text;
/// assert_eq!(float8_text(1e30), "1e+30");
/// assert_eq!(float8_text(1e-5), "1e-05");
/// assert_eq!(float8_text(1e14), "100000000000000");
/// assert_eq!(float8_text(0.0001), "0.0001");
/// assert_eq!(float8_text(-2.5), "-2.5");
/// ```
pub fn float8_text(v: f64) -> String {
    float_text(v, format!("{v:e}"), 15)
}

/// A `real` as PostgreSQL prints it (see [`float_text`]).
///
/// ```
/// use slicedb_common::datum::float4_text;
/// assert_eq!(float4_text(1234567.0), "1.234567e+06");
/// assert_eq!(float4_text(123456.0), "123456");
/// assert_eq!(float4_text(0.1), "0.1");
/// ```
pub fn float4_text(v: f32) -> String {
    float_text(v as f64, format!("{v:e}"), 6)
}

/// PostgreSQL's output of a float (`extra_float_digits` 1, its default):
/// the shortest digits that read back as the same value (`shortest`, in
/// Rust's `{:e}` form, which has them), in fixed notation when the decimal
/// exponent is at least -4 and below `max_exponent` (15 for `double
/// precision`, 6 for `real`), else as `d.ddde±XX`.
fn float_text(v: f64, shortest: String, max_exponent: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let Some((mantissa, exponent)) = shortest.split_once('e') else {
        return shortest;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return shortest;
    };
    if !(-4..max_exponent).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if exponent < 0 {
        return format!("{sign}0.{}{digits}", "0".repeat((-exponent - 1) as usize));
    }
    let point = exponent as usize + 1;
    if digits.len() <= point {
        format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

/// Formats an unscaled decimal with `scale` digits after the point.
pub fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return (value * 10i128.pow((-scale) as u32)).to_string();
    }
    let neg = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's output of the same values (`SELECT 1e30::float8, …`).
    #[test]
    fn floats_print_as_postgresql_prints_them() {
        let doubles = [
            (1e30, "1e+30"),
            (1e-7, "1e-07"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (-1e-300, "-1e-300"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (-123.456, "-123.456"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, pg) in doubles {
            assert_eq!(float8_text(v), pg, "{v}");
        }
        let reals = [
            (0.1f32, "0.1"),
            (1234567.0, "1.234567e+06"),
            (123456.0, "123456"),
            (1e30, "1e+30"),
        ];
        for (v, pg) in reals {
            assert_eq!(float4_text(v), pg, "{v}");
        }
    }

    #[test]
    fn datums_round_trip_through_arrow() {
        let cases = [
            (SqlType::BigInt, vec![Datum::Int64(7), Datum::Null]),
            (
                SqlType::Numeric {
                    precision: 12,
                    scale: 2,
                },
                vec![Datum::Decimal { value: 1234, scale: 2 }],
            ),
            (SqlType::Text, vec![Datum::Text("x".into())]),
            (SqlType::TimestampTz, vec![Datum::Timestamp(1_000_000)]),
            (SqlType::Time, vec![Datum::Time(45_000_000_000), Datum::Null]),
            (
                SqlType::Interval,
                vec![Datum::Interval {
                    months: 1,
                    days: -2,
                    micros: 3,
                }],
            ),
            (
                SqlType::Array(crate::ArrayElem::Integer),
                vec![
                    Datum::Array(vec![Datum::Int32(1), Datum::Null]),
                    Datum::Null,
                    Datum::Array(vec![]),
                ],
            ),
        ];
        for (ty, datums) in cases {
            let array = build_array(ty, datums.iter()).unwrap();
            assert_eq!(array.data_type(), &ty.arrow_type());
            for (i, d) in datums.iter().enumerate() {
                assert_eq!(&Datum::from_array(array.as_ref(), i, ty).unwrap(), d);
            }
        }
    }
}
