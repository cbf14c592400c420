//! Values in the text format printed as PostgreSQL prints them, where
//! pgwire's encoders print them otherwise.
//!
//! - **Timestamps and times.** pgwire prints every `timestamp`,
//!   `timestamptz` and `time` with six fractional digits (`2024-01-01
//!   10:00:00.000000`); PostgreSQL prints only the digits the value needs
//!   (`2024-01-01 10:00:00`, `10:00:00.25`), and a `timestamptz` in the
//!   session's time zone, which is UTC here (`2024-01-01 08:00:00+00`).
//!   This applies with the ISO date style (psql's and the drivers'
//!   default); other date styles keep pgwire's form.
//! - **Floats.** pgwire prints `1e30` and `1e-7`; PostgreSQL prints
//!   `1e+30` and `1e-07`, switching to the exponent form at 10^15 for
//!   `double precision` and 10^6 for `real`
//!   (`slicedb_common::datum::float8_text`).
//!
//! - **Intervals.** arrow-pg 0.16 encodes a NULL `interval` as the value
//!   in its slot (`00:00:00`); an interval column is printed here, with
//!   pgwire's own interval text (the session's `IntervalStyle`; in the
//!   `postgres` style without trailing zeros of the fraction, and with a
//!   `+` before a positive time after a negative day: `-1 days +02:03:00`),
//!   and NULL stays NULL. (The binary format still has that bug.) A duration (what
//!   DataFusion makes of `timestamp - timestamp`) is printed as PostgreSQL
//!   prints that difference, in days and time.
//!
//! - **Arrays.** arrow-pg prints an array's elements with its own forms
//!   (`{"2024-01-01 10:00:00.000000"}`); an array column whose elements
//!   slicedb stores is printed as PostgreSQL's `array_out` prints it, each
//!   element in PostgreSQL's form.
//!
//! [`for_text`] turns such columns of text-format fields into PostgreSQL's
//! strings before they are encoded; the field keeps its type.
//!
//! ```
//! use slicedb_frontend::text_format::{timestamp, time};
//! assert_eq!(timestamp(1_704_103_200_250_000, true).unwrap(), "2024-01-01 10:00:00.25+00");
//! assert_eq!(time(45_000_000_000), "12:30:00");
//! ```

use std::sync::Arc;

use bytes::BytesMut;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, DurationMicrosecondType, Field, Float32Type, Float64Type, IntervalMonthDayNanoType, IntervalUnit, Schema,
    Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::temporal_conversions::timestamp_us_to_datetime;
use pg_interval::Interval as PgInterval;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::types::ToSqlText;
use slicedb_common::datum::{float4_text, float8_text};
use slicedb_common::{Datum, Error, SqlType};

/// `.ffffff` with the trailing zeros dropped; nothing for whole seconds.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!(".{micros:06}");
    digits.trim_end_matches('0').to_string()
}

/// The first and last microsecond of years 1 to 9999 since the epoch.
const FIRST_MICRO: i64 = -62_135_596_800_000_000;
const LAST_MICRO: i64 = 253_402_300_799_999_999;

/// A timestamp of `micros` since the epoch (UTC), as PostgreSQL prints it
/// in the ISO style; with `tz`, as a `timestamptz` in UTC. `None` outside
/// years 1 to 9999, which PostgreSQL prints with an era.
pub fn timestamp(micros: i64, tz: bool) -> Option<String> {
    if !(FIRST_MICRO..=LAST_MICRO).contains(&micros) {
        return None;
    }
    let at = timestamp_us_to_datetime(micros)?;
    let sub = (micros.rem_euclid(1_000_000)) as u32;
    Some(format!(
        "{}{}{}",
        at.format("%Y-%m-%d %H:%M:%S"),
        fraction(sub),
        if tz { "+00" } else { "" }
    ))
}

/// A time of day of `micros` since midnight, as PostgreSQL prints it.
pub fn time(micros: i64) -> String {
    let (secs, sub) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000) as u32);
    format!(
        "{:02}:{:02}:{:02}{}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        fraction(sub)
    )
}

/// The values of an interval or duration column as PostgreSQL intervals.
/// A duration (DataFusion's `timestamp - timestamp`) is split into days
/// and time as PostgreSQL's `timestamp - timestamp` splits it (both parts
/// truncated toward zero: `-31 days -05:30:00`, not `-749:30:00`).
fn pg_intervals(column: &ArrayRef) -> Result<Vec<Option<PgInterval>>, datafusion::arrow::error::ArrowError> {
    const DAY: i64 = 86_400_000_000;
    if let DataType::Duration(_) = column.data_type() {
        let micros = cast(column, &DataType::Duration(TimeUnit::Microsecond))?;
        let micros = micros.as_primitive::<DurationMicrosecondType>();
        return Ok(micros
            .iter()
            .map(|v| v.map(|us| PgInterval::new(0, (us / DAY) as i32, us % DAY)))
            .collect());
    }
    let mdn = cast(column, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    Ok(mdn
        .as_primitive::<IntervalMonthDayNanoType>()
        .iter()
        .map(|v| v.map(|v| PgInterval::new(v.months, v.days, v.nanoseconds / 1000)))
        .collect())
}

/// An interval printed in the `postgres` style with the fractional
/// seconds' trailing zeros dropped, as PostgreSQL prints it
/// (`00:00:04.5`, not pgwire's `00:00:04.500000`).
///
/// ```
/// use slicedb_frontend::text_format::trim_fraction;
/// assert_eq!(trim_fraction("1 day 00:00:04.500000"), "1 day 00:00:04.5");
/// assert_eq!(trim_fraction("-00:00:01.000000"), "-00:00:01");
/// assert_eq!(trim_fraction("1 year 2 mons"), "1 year 2 mons");
/// ```
pub fn trim_fraction(interval: &str) -> &str {
    let time_at = interval.rfind(':').unwrap_or(0);
    if !interval[time_at..].contains('.') {
        return interval;
    }
    let trimmed = interval.trim_end_matches('0');
    trimmed.strip_suffix('.').unwrap_or(trimmed)
}

/// An interval in the `postgres` style with PostgreSQL's `+` before a
/// positive time that follows a negative day, month or year part
/// (`-1 days +02:03:00`), which pgwire leaves out.
///
/// ```
/// use pg_interval::Interval;
/// use slicedb_frontend::text_format::signed_time;
/// let v = Interval::new(0, -1, 2 * 3_600_000_000);
/// assert_eq!(signed_time("-1 days 02:00:00", &v), "-1 days +02:00:00");
/// let v = Interval::new(0, 1, 2 * 3_600_000_000);
/// assert_eq!(signed_time("1 day 02:00:00", &v), "1 day 02:00:00");
/// ```
pub fn signed_time(printed: &str, v: &PgInterval) -> String {
    let (years, months) = (v.months / 12, v.months % 12);
    let last_date_part = [v.days, months, years].into_iter().find(|p| *p != 0);
    match (last_date_part, printed.rfind(' ')) {
        (Some(p), Some(at)) if p < 0 && v.microseconds > 0 => format!("{} +{}", &printed[..at], &printed[at + 1..]),
        _ => printed.to_string(),
    }
}

/// Whether the date style `style` (the `DateStyle` setting) prints ISO.
fn iso(style: &str) -> bool {
    style.trim().to_ascii_uppercase().starts_with("ISO") || style.trim().is_empty()
}

/// The fields `for_text`'s batches are encoded with: a text-format array
/// field, whose values `for_text` printed whole, is encoded as `text`
/// (pgwire would quote the printed array as one element). The row
/// description keeps the array type.
pub fn encoding_fields(fields: &[FieldInfo]) -> Vec<FieldInfo> {
    fields
        .iter()
        // PostgreSQL's array types are named for their element, `_int4`.
        .map(|f| match (f.format(), f.datatype().name().starts_with('_')) {
            (FieldFormat::Text, true) => FieldInfo::new(
                f.name().to_string(),
                f.table_id(),
                f.column_id(),
                Type::TEXT,
                f.format(),
            )
            .with_format_options(f.format_options().clone()),
            _ => f.clone(),
        })
        .collect()
}

/// `batch` with its text-format timestamp, time and float columns as
/// PostgreSQL's strings (see the module comment); other batches unchanged.
pub fn for_text(fields: &[FieldInfo], batch: RecordBatch) -> Result<RecordBatch, Error> {
    let converts = |i: usize, t: &DataType| {
        let Some(f) = fields.get(i).filter(|f| f.format() == FieldFormat::Text) else {
            return false;
        };
        match t {
            DataType::Float32 | DataType::Float64 => true,
            DataType::Timestamp(..) | DataType::Time64(_) | DataType::Time32(_) => iso(&f.format_options().date_style),
            DataType::Interval(_) | DataType::Duration(_) => true,
            DataType::List(_) | DataType::LargeList(_) => matches!(SqlType::from_arrow(t), Some(SqlType::Array(_))),
            _ => false,
        }
    };
    let columns = batch.columns();
    if !columns.iter().enumerate().any(|(i, c)| converts(i, c.data_type())) {
        return Ok(batch);
    }
    let internal = |e: datafusion::arrow::error::ArrowError| Error::internal(e.to_string());
    let mut out: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    let mut schema_fields = Vec::with_capacity(columns.len());
    for (i, (column, field)) in columns.iter().zip(batch.schema().fields()).enumerate() {
        if !converts(i, column.data_type()) {
            out.push(column.clone());
            schema_fields.push(field.as_ref().clone());
            continue;
        }
        let mut text = StringBuilder::new();
        match column.data_type() {
            DataType::Float64 => {
                for v in column.as_primitive::<Float64Type>() {
                    text.append_option(v.map(float8_text));
                }
            }
            DataType::Float32 => {
                for v in column.as_primitive::<Float32Type>() {
                    text.append_option(v.map(float4_text));
                }
            }
            DataType::Timestamp(_, tz) => {
                // Same time zone: the values stay instants since the epoch.
                let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone())).map_err(internal)?;
                let tz = tz.is_some();
                let micros = micros.as_primitive::<TimestampMicrosecondType>();
                for row in 0..micros.len() {
                    if micros.is_null(row) {
                        text.append_null();
                        continue;
                    }
                    let v = micros.value(row);
                    match timestamp(v, tz) {
                        Some(s) => text.append_value(s),
                        // Out of PostgreSQL's common range: chrono's form.
                        None => text.append_value(
                            timestamp_us_to_datetime(v)
                                .map(|d| d.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                                .unwrap_or_default(),
                        ),
                    }
                }
            }
            DataType::List(_) | DataType::LargeList(_) => {
                // Elements as `Datum::pg_text` prints them, quoted as
                // PostgreSQL's `array_out` quotes them.
                let ty = SqlType::from_arrow(column.data_type())
                    .ok_or_else(|| Error::internal("an array column of an unknown element type"))?;
                let column = cast(column, &ty.arrow_type()).map_err(internal)?;
                for row in 0..column.len() {
                    text.append_option(Datum::from_array(column.as_ref(), row, ty)?.pg_text(ty));
                }
            }
            DataType::Interval(_) | DataType::Duration(_) => {
                let format = fields[i].format_options();
                let style = format.interval_style.trim().to_ascii_lowercase();
                let postgres_style = style.is_empty() || style == "postgres";
                let intervals = pg_intervals(column).map_err(internal)?;
                let mut buf = BytesMut::new();
                for v in intervals {
                    let Some(v) = v else {
                        text.append_null();
                        continue;
                    };
                    buf.clear();
                    v.to_sql_text(&Type::INTERVAL, &mut buf, format)
                        .map_err(|e| Error::internal(e.to_string()))?;
                    let printed = String::from_utf8_lossy(&buf);
                    match postgres_style {
                        true => text.append_value(signed_time(trim_fraction(&printed), &v)),
                        false => text.append_value(&printed),
                    }
                }
            }
            _ => {
                let micros = cast(column, &DataType::Time64(TimeUnit::Microsecond)).map_err(internal)?;
                let micros = micros.as_primitive::<Time64MicrosecondType>();
                for row in 0..micros.len() {
                    if micros.is_null(row) {
                        text.append_null();
                    } else {
                        text.append_value(time(micros.value(row)));
                    }
                }
            }
        }
        out.push(Arc::new(text.finish()));
        schema_fields.push(Field::new(field.name(), DataType::Utf8, true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), out).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_keep_only_the_digits_they_need() {
        assert_eq!(timestamp(0, false).unwrap(), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_500_000, false).unwrap(), "1970-01-01 00:00:01.5");
        assert_eq!(timestamp(-1, true).unwrap(), "1969-12-31 23:59:59.999999+00");
        assert_eq!(time(0), "00:00:00");
        assert_eq!(time(86_399_000_001), "23:59:59.000001");
        assert_eq!(timestamp(LAST_MICRO, false).unwrap(), "9999-12-31 23:59:59.999999");
        assert_eq!(timestamp(FIRST_MICRO, false).unwrap(), "0001-01-01 00:00:00");
        assert_eq!(timestamp(LAST_MICRO + 1, false), None);
    }
}
