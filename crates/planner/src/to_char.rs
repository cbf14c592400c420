//! `to_char(date or timestamp, format)` with PostgreSQL's template patterns.
//!
//! DataFusion's `to_char` reads chrono's `%Y-%m-%d`, so PostgreSQL's
//! `to_char(now(), 'YYYY-MM-DD')` printed the template back unchanged: a
//! wrong answer. [`ToChar`] replaces it and formats PostgreSQL's patterns:
//!
//! | pattern | meaning |
//! |---|---|
//! | `YYYY`, `YYY`, `YY`, `Y` | year (last digits) |
//! | `MM`, `DD`, `DDD` | month, day of month, day of year (zero-padded) |
//! | `HH24`, `HH12`, `HH`, `MI`, `SS`, `MS`, `US` | time of day, milliseconds, microseconds |
//! | `AM`, `PM`, `am`, `pm`, `A.M.`, `P.M.` | meridiem |
//! | `MONTH`, `Month`, `month`, `MON`, `Mon`, `mon` | month name, blank-padded to 9 / abbreviated |
//! | `DAY`, `Day`, `day`, `DY`, `Dy`, `dy` | weekday name, blank-padded to 9 / abbreviated |
//! | `D`, `ID`, `IW`, `WW`, `Q`, `IYYY`, `J` | weekday (Sunday 1 / Monday 1), ISO week, week of year, quarter, ISO year, Julian day |
//! | `TZ`, `tz`, `OF` | time zone (UTC: slicedb keeps `timestamptz` in UTC) |
//! | `FM` prefix | no padding for the next pattern |
//! | `"text"`, `\x` | literal text |
//!
//! Other characters are copied. `to_char` of a number is refused (0A000).

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use slicedb_common::err;

/// DataFusion's functions that [`ToChar`] replaces on the coordinator (a
/// slice server has only DataFusion's, so plans calling them stay on the
/// coordinator).
pub const REPLACES: &[&str] = &["to_char"];

/// `to_char(value, format)`: see the module comment.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    signature: Signature,
}

impl Default for ToChar {
    fn default() -> Self {
        ToChar {
            signature: Signature::any(2, Volatility::Stable),
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A name in the case the pattern was written in (`MONTH`, `Month`,
/// `month`), blank-padded to `width` unless `fill` mode is on.
fn name(out: &mut String, text: &str, pattern: &str, width: usize, fill: bool) {
    let cased = if pattern.chars().all(|c| c.is_ascii_uppercase()) {
        text.to_ascii_uppercase()
    } else if pattern.starts_with(|c: char| c.is_ascii_lowercase()) {
        text.to_ascii_lowercase()
    } else {
        text.to_string()
    };
    if fill {
        out.push_str(&cased);
    } else {
        out.push_str(&format!("{cased:<width$}"));
    }
}

fn number(out: &mut String, value: i64, digits: usize, fill: bool) {
    if fill {
        out.push_str(&value.to_string());
    } else {
        out.push_str(&format!("{value:0digits$}"));
    }
}

/// `t` formatted by PostgreSQL template `format`.
pub fn format(t: &NaiveDateTime, format: &str) -> String {
    // Longest patterns first, so that `HH24` is not read as `HH` then `24`.
    const PATTERNS: &[&str] = &[
        "A.M.", "P.M.", "a.m.", "p.m.", "MONTH", "Month", "month", "HH24", "HH12", "IYYY", "YYYY", "DAY", "Day", "day",
        "MON", "Mon", "mon", "DDD", "YYY", "AM", "PM", "am", "pm", "HH", "MI", "SS", "MS", "US", "YY", "MM", "DD",
        "DY", "Dy", "dy", "ID", "IW", "WW", "TZ", "tz", "OF", "Y", "D", "Q", "J",
    ];
    const NAMES: &[&str] = &["MONTH", "DAY", "MON", "DY", "AM", "PM", "A.M.", "P.M.", "TZ"];
    let mut out = String::new();
    let mut rest = format;
    let mut fill = false;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            fill = true;
            rest = r;
            continue;
        }
        if c == '"' {
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 1);
            out.push_str(&rest[1..end]);
            rest = rest.get(end + 1..).unwrap_or("");
            continue;
        }
        if c == '\\' {
            let mut chars = rest[1..].chars();
            if let Some(next) = chars.next() {
                out.push(next);
            }
            rest = chars.as_str();
            continue;
        }
        // Names and meridiems print in the case they are written in; the
        // numeric patterns may be written in any case (`yyyy-mm-dd`).
        let matches = |p: &str| {
            if p.chars().any(|c| c.is_ascii_lowercase()) || NAMES.contains(&p) {
                rest.starts_with(p)
            } else {
                rest.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p))
            }
        };
        let Some(p) = PATTERNS.iter().find(|p| matches(p)) else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let pm = t.hour() >= 12;
        match *p {
            "YYYY" => number(&mut out, t.year() as i64, 4, fill),
            "YYY" => number(&mut out, (t.year() % 1000) as i64, 3, fill),
            "YY" => number(&mut out, (t.year() % 100) as i64, 2, fill),
            "Y" => number(&mut out, (t.year() % 10) as i64, 1, fill),
            "IYYY" => number(&mut out, t.iso_week().year() as i64, 4, fill),
            "MM" => number(&mut out, t.month() as i64, 2, fill),
            "DD" => number(&mut out, t.day() as i64, 2, fill),
            "DDD" => number(&mut out, t.ordinal() as i64, 3, fill),
            "HH24" => number(&mut out, t.hour() as i64, 2, fill),
            "HH12" | "HH" => number(&mut out, hour12 as i64, 2, fill),
            "MI" => number(&mut out, t.minute() as i64, 2, fill),
            "SS" => number(&mut out, t.second() as i64, 2, fill),
            "MS" => number(&mut out, (t.nanosecond() / 1_000_000) as i64, 3, fill),
            "US" => number(&mut out, (t.nanosecond() / 1_000) as i64, 6, fill),
            "AM" | "PM" => out.push_str(if pm { "PM" } else { "AM" }),
            "am" | "pm" => out.push_str(if pm { "pm" } else { "am" }),
            "A.M." | "P.M." => out.push_str(if pm { "P.M." } else { "A.M." }),
            "a.m." | "p.m." => out.push_str(if pm { "p.m." } else { "a.m." }),
            "MONTH" | "Month" | "month" => name(&mut out, MONTHS[t.month0() as usize], p, 9, fill),
            "MON" | "Mon" | "mon" => name(&mut out, &MONTHS[t.month0() as usize][..3], p, 3, true),
            "DAY" | "Day" | "day" => name(&mut out, DAYS[t.weekday().num_days_from_sunday() as usize], p, 9, fill),
            "DY" | "Dy" | "dy" => name(
                &mut out,
                &DAYS[t.weekday().num_days_from_sunday() as usize][..3],
                p,
                3,
                true,
            ),
            "D" => number(&mut out, t.weekday().number_from_sunday() as i64, 1, fill),
            "ID" => number(&mut out, t.weekday().number_from_monday() as i64, 1, fill),
            "IW" => number(&mut out, t.iso_week().week() as i64, 2, fill),
            "WW" => number(&mut out, (t.ordinal0() / 7 + 1) as i64, 2, fill),
            "Q" => number(&mut out, (t.month0() / 3 + 1) as i64, 1, fill),
            "J" => number(&mut out, t.date().num_days_from_ce() as i64 + 1_721_425, 1, true),
            "TZ" => out.push_str("UTC"),
            "tz" => out.push_str("utc"),
            "OF" => out.push_str("+00"),
            _ => unreachable!("every pattern is matched"),
        }
        fill = false;
        rest = &rest[p.len()..];
    }
    out
}

/// Microseconds (or another unit) since the epoch as a date-time.
fn date_time(values: &ArrayRef, row: usize) -> DfResult<Option<NaiveDateTime>> {
    if values.is_null(row) {
        return Ok(None);
    }
    let micros = match values.data_type() {
        DataType::Date32 => {
            values
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                .value(row) as i64
                * 86_400_000_000
        }
        DataType::Date64 => {
            values
                .as_primitive::<datafusion::arrow::datatypes::Date64Type>()
                .value(row)
                * 1_000
        }
        DataType::Timestamp(unit, _) => {
            let v = datafusion::arrow::compute::cast(values, &DataType::Int64)?;
            let v = v.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(row);
            match unit {
                TimeUnit::Second => v * 1_000_000,
                TimeUnit::Millisecond => v * 1_000,
                TimeUnit::Microsecond => v,
                TimeUnit::Nanosecond => v.div_euclid(1_000),
            }
        }
        other => {
            return Err(err!(FeatureNotSupported, "to_char of {other} is not supported").into_datafusion());
        }
    };
    Ok(DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc()))
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if scalar { 1 } else { args.number_rows };
        let values = args.args[0].to_array(n)?;
        let formats = datafusion::arrow::compute::cast(&args.args[1].to_array(n)?, &DataType::Utf8)?;
        let formats = formats.as_string::<i32>();
        let mut out = StringBuilder::new();
        for row in 0..n {
            match date_time(&values, row)? {
                Some(t) if formats.is_valid(row) => out.append_value(format(&t, formats.value(row))),
                _ => out.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        crate::udf::result(array, scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn formats_as_postgresql_does() {
        let t = at("2024-03-05 14:07:09.123456");
        assert_eq!(format(&t, "YYYY-MM-DD HH24:MI:SS"), "2024-03-05 14:07:09");
        assert_eq!(
            format(&t, "HH12:MI AM, Day DD Month YYYY"),
            "02:07 PM, Tuesday   05 March     2024"
        );
        assert_eq!(format(&t, "FMDay, FMDD FMMonth"), "Tuesday, 5 March");
        assert_eq!(format(&t, "DY Mon yy \"is\" Q"), "TUE Mar 24 is 1");
        assert_eq!(format(&t, "MS US DDD IW D"), "123 123456 065 10 3");
        assert_eq!(format(&t, "yyyy-mm-dd hh24:mi:ss"), "2024-03-05 14:07:09");
        assert_eq!(
            format(&at("2024-03-05 00:07:09.0"), "HH am Mon mon MON"),
            "12 am Mar mar MAR"
        );
    }
}
