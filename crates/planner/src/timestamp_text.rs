//! PostgreSQL's text input for `timestamp` and `timestamptz` where Arrow's
//! parser is stricter: `'2024-01-31 10:00'` (no seconds) and
//! `'2024-01-31 9:05'` (a one-digit hour) are timestamps to PostgreSQL,
//! and errors ("error parsing time") to Arrow.
//!
//! [`pg_timestamp_text`] rewrites such text into the form Arrow reads
//! (`2024-01-31 10:00:00`, `2024-01-31 09:05:00`), leaving everything else
//! as it is for Arrow to accept or refuse. The text-input analyzer rule
//! (`crate::text_input`) puts [`TimestampText`] in front of every text →
//! timestamp or date cast, and COPY applies the function to its fields.
//!
//! The cast also reads PostgreSQL's special words ([`special_time_text`]):
//! `epoch`, `now`, `today`, `tomorrow` and `yesterday` (the current time
//! when the cast is evaluated: for a literal, when the statement is
//! planned, as PostgreSQL freezes `'now'` when it parses it). Arrow's
//! timestamps have no infinity, so `infinity` and `-infinity` are refused
//! with 0A000 rather than misread.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// Timestamp text in the form Arrow's parser reads: seconds added to a
/// time of day written as `H:MM` or `HH:MM`, and a one-digit hour padded.
///
/// ```
/// use slicedb_planner::timestamp_text::pg_timestamp_text;
/// assert_eq!(pg_timestamp_text("2024-01-31 10:00"), "2024-01-31 10:00:00");
/// assert_eq!(pg_timestamp_text("2024-01-31T9:05+02"), "2024-01-31T09:05:00+02");
/// assert_eq!(pg_timestamp_text("2024-01-31 10:00:07.5"), "2024-01-31 10:00:07.5");
/// assert_eq!(pg_timestamp_text("2024-01-31"), "2024-01-31");
/// ```
pub fn pg_timestamp_text(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    // A date of the form YYYY-MM-DD, then ' ' or 'T', then the time.
    let date_ok = b.len() > 11
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && matches!(b[10], b' ' | b'T');
    if !date_ok {
        return Cow::Borrowed(s);
    }
    let time = &s[11..];
    let t = time.as_bytes();
    let hour_digits = t.iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=2).contains(&hour_digits) || t.get(hour_digits) != Some(&b':') {
        return Cow::Borrowed(s);
    }
    let minutes = &t[hour_digits + 1..];
    if minutes.len() < 2
        || !minutes[..2].iter().all(u8::is_ascii_digit)
        || minutes.get(2).is_some_and(u8::is_ascii_digit)
    {
        return Cow::Borrowed(s);
    }
    let has_seconds = minutes.get(2) == Some(&b':');
    if hour_digits == 2 && has_seconds {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str(&s[..11]);
    if hour_digits == 1 {
        out.push('0');
    }
    out.push_str(&time[..hour_digits + 3]);
    if !has_seconds {
        out.push_str(":00");
    }
    out.push_str(&time[hour_digits + 3..]);
    Cow::Owned(out)
}

/// PostgreSQL's special date and time words as text Arrow reads, at `now`:
/// `None` for any other text; an error (0A000) for `infinity` and
/// `-infinity`. A `date` takes the day alone.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use slicedb_planner::timestamp_text::special_time_text;
/// let now = Utc.with_ymd_and_hms(2024, 1, 31, 10, 0, 0).unwrap();
/// assert_eq!(special_time_text("epoch", now, false).unwrap().unwrap(), "1970-01-01 00:00:00");
/// assert_eq!(special_time_text(" Today ", now, false).unwrap().unwrap(), "2024-01-31 00:00:00");
/// assert_eq!(special_time_text("tomorrow", now, true).unwrap().unwrap(), "2024-02-01");
/// assert_eq!(special_time_text("now", now, false).unwrap().unwrap(), "2024-01-31 10:00:00.000000");
/// assert!(special_time_text("infinity", now, false).unwrap().is_err());
/// assert!(special_time_text("2024-01-31", now, false).is_none());
/// ```
pub fn special_time_text(s: &str, now: DateTime<Utc>, date: bool) -> Option<Result<String, slicedb_common::Error>> {
    let word = s.trim();
    if word.len() > 9 || !word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
        return None;
    }
    let day = |offset: i64| {
        let d = (now + Duration::days(offset)).date_naive();
        match date {
            true => d.format("%Y-%m-%d").to_string(),
            false => d.format("%Y-%m-%d 00:00:00").to_string(),
        }
    };
    Some(Ok(match word.to_ascii_lowercase().as_str() {
        "epoch" if date => "1970-01-01".to_string(),
        "epoch" => "1970-01-01 00:00:00".to_string(),
        "now" if date => day(0),
        "now" => now.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        "today" => day(0),
        "tomorrow" => day(1),
        "yesterday" => day(-1),
        "infinity" | "-infinity" => {
            return Some(Err(slicedb_common::Error::unsupported(
                "infinite dates and timestamps are not supported",
            )))
        }
        _ => return None,
    }))
}

/// `slicedb_timestamp_text(text) → text` (and `slicedb_date_text` for a
/// date): [`pg_timestamp_text`] of each value, or its
/// [`special_time_text`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampText {
    signature: Signature,
    date: bool,
}

impl Default for TimestampText {
    fn default() -> Self {
        TimestampText {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
            date: false,
        }
    }
}

impl TimestampText {
    /// The function for text cast to a `date`.
    pub fn for_dates() -> Self {
        TimestampText {
            date: true,
            ..TimestampText::default()
        }
    }
}

impl ScalarUDFImpl for TimestampText {
    fn name(&self) -> &str {
        match self.date {
            true => "slicedb_date_text",
            false => "slicedb_timestamp_text",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (strings, mut out) = crate::udf::text_argument(&args)?;
        let now = Utc::now();
        for v in strings.iter() {
            match v.map(|v| (v, special_time_text(v, now, self.date))) {
                None => out.append_null(),
                Some((_, Some(special))) => out.append_value(special.map_err(|e| e.into_datafusion())?),
                Some((v, None)) if self.date => out.append_value(v),
                Some((v, None)) => out.append_value(pg_timestamp_text(v)),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::TimeUnit;

    /// Each rewritten text parses with Arrow to the instant PostgreSQL 15
    /// gives the original; text Arrow reads already is left alone.
    #[test]
    fn rewritten_text_parses_as_postgres_reads_the_original() {
        let cases = [
            ("2024-01-31 10:00", Some("2024-01-31T10:00:00")),
            ("2024-01-31 9:05", Some("2024-01-31T09:05:00")),
            ("2024-01-31T23:59", Some("2024-01-31T23:59:00")),
            ("2024-01-31 10:00+02:00", Some("2024-01-31T08:00:00")),
            ("2024-01-31 10:00:01", Some("2024-01-31T10:00:01")),
            ("2024-01-31 10:00:01.25", Some("2024-01-31T10:00:01.250")),
            ("2024-01-31", Some("2024-01-31T00:00:00")),
        ];
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        for (text, want) in cases {
            let fixed = pg_timestamp_text(text);
            let array = StringArray::from(vec![fixed.as_ref()]);
            let parsed = cast(&array, &ts).unwrap_or_else(|e| panic!("{text} → {fixed}: {e}"));
            let shown = datafusion::arrow::util::display::array_value_to_string(&parsed, 0).unwrap();
            assert_eq!(Some(shown.as_str()), want, "{text}");
        }
        for untouched in [
            "2024-01-31 10:00:00",
            "10:00",
            "2024-01-31 100:00",
            "2024-01-31 10:0",
            "now",
            "",
        ] {
            assert!(matches!(pg_timestamp_text(untouched), Cow::Borrowed(_)), "{untouched}");
        }
    }
}
