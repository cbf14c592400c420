//! PostgreSQL's `age` and `justify_*` functions.
//!
//! - `age(a, b)`: `a - b` in years, months and days, as PostgreSQL's
//!   `timestamp_age` counts them: field by field, borrowing a day's length
//!   from the month of `b` (`age('2020-03-01', '2020-01-31')` is
//!   `1 mon 1 day`), negative when `a` is earlier. `age(a)` is
//!   `age(current_date, a)`, midnight of the statement's day.
//! - `justify_hours(i)` moves whole 24-hour periods of the time into days,
//!   `justify_days(i)` whole 30-day periods of the days into months, and
//!   `justify_interval(i)` both, with signs made to agree.
//!
//! ```
//! use chrono::NaiveDate;
//! use slicedb_planner::age::age_parts;
//! let at = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap();
//! assert_eq!(age_parts(at(2020, 3, 1), at(2020, 1, 1)), (2, 0, 0));
//! assert_eq!(age_parts(at(2020, 3, 1), at(2020, 1, 31)), (1, 1, 0));
//! assert_eq!(age_parts(at(2020, 1, 1), at(2020, 3, 1)), (-2, 0, 0));
//! ```

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

fn days_in_month(year: i32, month: u32) -> i64 {
    let next = match month {
        12 => NaiveDate::from_ymd_opt(year + 1, 1, 1),
        m => NaiveDate::from_ymd_opt(year, m + 1, 1),
    };
    match (next, NaiveDate::from_ymd_opt(year, month, 1)) {
        (Some(n), Some(f)) => (n - f).num_days(),
        _ => 30,
    }
}

/// `a - b` as PostgreSQL's `age` counts it: months, days and nanoseconds.
pub fn age_parts(a: NaiveDateTime, b: NaiveDateTime) -> (i32, i32, i64) {
    if a < b {
        let (m, d, n) = age_parts(b, a);
        return (-m, -d, -n);
    }
    let nanos = |t: NaiveDateTime| {
        i64::from(t.hour()) * 3_600_000_000_000
            + i64::from(t.minute()) * 60_000_000_000
            + i64::from(t.second()) * 1_000_000_000
            + i64::from(t.nanosecond())
    };
    let mut time = nanos(a) - nanos(b);
    let mut days = i64::from(a.day()) - i64::from(b.day());
    let mut months = i64::from(a.month()) - i64::from(b.month());
    let mut years = i64::from(a.year()) - i64::from(b.year());
    if time < 0 {
        time += NANOS_PER_DAY;
        days -= 1;
    }
    if days < 0 {
        days += days_in_month(b.year(), b.month());
        months -= 1;
    }
    if months < 0 {
        months += 12;
        years -= 1;
    }
    ((years * 12 + months) as i32, days as i32, time)
}

/// Which function a [`IntervalFunction`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Age,
    JustifyHours,
    JustifyDays,
    JustifyInterval,
}

/// One of the module's functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalFunction {
    kind: Kind,
    signature: Signature,
}

/// The functions, to register.
pub fn udfs() -> Vec<ScalarUDF> {
    [Kind::Age, Kind::JustifyHours, Kind::JustifyDays, Kind::JustifyInterval]
        .into_iter()
        .map(|kind| {
            let signature = match kind {
                Kind::Age => Signature::variadic_any(Volatility::Stable),
                _ => Signature::any(1, Volatility::Immutable),
            };
            ScalarUDF::new_from_impl(IntervalFunction { kind, signature })
        })
        .collect()
}

fn justify_hours(v: IntervalMonthDayNano) -> IntervalMonthDayNano {
    let whole = v.nanoseconds / NANOS_PER_DAY;
    IntervalMonthDayNano::new(v.months, v.days + whole as i32, v.nanoseconds % NANOS_PER_DAY)
}

fn justify_days(v: IntervalMonthDayNano) -> IntervalMonthDayNano {
    IntervalMonthDayNano::new(v.months + v.days / 30, v.days % 30, v.nanoseconds)
}

/// Both justifications, then the days and time given the months' sign.
fn justify_interval(v: IntervalMonthDayNano) -> IntervalMonthDayNano {
    let v = justify_days(justify_hours(v));
    let (mut months, mut days, mut nanos) = (v.months, v.days, v.nanoseconds);
    if months > 0 && (days < 0 || (days == 0 && nanos < 0)) {
        days += 30;
        months -= 1;
    } else if months < 0 && (days > 0 || (days == 0 && nanos > 0)) {
        days -= 30;
        months += 1;
    }
    if days > 0 && nanos < 0 {
        nanos += NANOS_PER_DAY;
        days -= 1;
    } else if days < 0 && nanos > 0 {
        nanos -= NANOS_PER_DAY;
        days += 1;
    }
    IntervalMonthDayNano::new(months, days, nanos)
}

/// A timestamp argument as microseconds since the epoch (UTC).
fn micros(a: &ArrayRef) -> DfResult<ArrayRef> {
    Ok(cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?)
}

impl ScalarUDFImpl for IntervalFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Age => "age",
            Kind::JustifyHours => "justify_hours",
            Kind::JustifyDays => "justify_days",
            Kind::JustifyInterval => "justify_interval",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, n, scalar) = crate::udf::arguments(&args)?;
        let mut out = IntervalMonthDayNanoBuilder::with_capacity(n);
        match self.kind {
            Kind::Age => {
                if !(1..=2).contains(&arrays.len()) {
                    return Err(slicedb_common::Error::new(
                        slicedb_common::SqlState::UndefinedFunction,
                        "function age takes one or two timestamps",
                    )
                    .into_datafusion());
                }
                let a = micros(&arrays[0])?;
                let b = arrays.get(1).map(micros).transpose()?;
                // One argument: its age at midnight of the statement's day.
                let today = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap_or_default();
                let at = |arr: &ArrayRef, row: usize| {
                    chrono::DateTime::from_timestamp_micros(arr.as_primitive::<TimestampMicrosecondType>().value(row))
                        .map(|t| t.naive_utc())
                };
                for row in 0..n {
                    let (later, earlier) = match &b {
                        Some(b) if !a.is_null(row) && !b.is_null(row) => (at(&a, row), at(b, row)),
                        None if !a.is_null(row) => (Some(today), at(&a, row)),
                        _ => (None, None),
                    };
                    match (later, earlier) {
                        (Some(x), Some(y)) => {
                            let (m, d, t) = age_parts(x, y);
                            out.append_value(IntervalMonthDayNano::new(m, d, t));
                        }
                        _ => out.append_null(),
                    }
                }
            }
            _ => {
                let v = cast(&arrays[0], &DataType::Interval(IntervalUnit::MonthDayNano))?;
                for v in v.as_primitive::<IntervalMonthDayNanoType>().iter() {
                    out.append_option(v.map(|v| match self.kind {
                        Kind::JustifyHours => justify_hours(v),
                        Kind::JustifyDays => justify_days(v),
                        _ => justify_interval(v),
                    }));
                }
            }
        }
        crate::udf::result(Arc::new(out.finish()), scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, 0, 0).unwrap()
    }

    #[test]
    fn ages_borrow_as_postgres_does() {
        // age('2021-03-15 10:00', '2020-01-20 12:00') = 1 year 1 mon 25 days
        // 22:00:00: the day borrowed is one of January's 31.
        assert_eq!(
            age_parts(at(2021, 3, 15, 10), at(2020, 1, 20, 12)),
            (13, 25, 22 * 3_600_000_000_000)
        );
        // Borrowing February of a leap year: 29 days.
        assert_eq!(age_parts(at(2020, 3, 1, 0), at(2020, 2, 15, 0)), (0, 15, 0));
    }

    #[test]
    fn justification_moves_whole_days_and_months() {
        let hours = |h: i64| h * 3_600_000_000_000;
        assert_eq!(
            justify_hours(IntervalMonthDayNano::new(0, 0, hours(25))),
            IntervalMonthDayNano::new(0, 1, hours(1))
        );
        assert_eq!(
            justify_days(IntervalMonthDayNano::new(0, 35, 0)),
            IntervalMonthDayNano::new(1, 5, 0)
        );
        // 1 mon -1 hour is 29 days 23:00:00.
        assert_eq!(
            justify_interval(IntervalMonthDayNano::new(1, 0, -hours(1))),
            IntervalMonthDayNano::new(0, 29, hours(23))
        );
    }
}
