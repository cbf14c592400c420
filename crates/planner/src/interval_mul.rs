//! `interval * number`, `number * interval` and `interval / number`, as
//! PostgreSQL 15 computes them.
//!
//! DataFusion has no such operators ("Invalid interval arithmetic
//! operation"), and queries such as `now() - interval '1 day' * $1` are
//! common. [`interval_arithmetic`] rewrites them in the syntax tree, where a
//! side is an interval literal or a cast to `interval`, into
//! `interval_mul(i, x)` or `interval_div(i, x)`, which scale the months, days
//! and time of the interval by `x` and carry the fractions down as
//! PostgreSQL's `interval_mul` does: a fraction of a month becomes days of
//! 30, a fraction of a day becomes seconds, each rounded to the microsecond.
//!
//! ```
//! use slicedb_planner::interval_mul::scale;
//! use datafusion::arrow::datatypes::IntervalMonthDayNano;
//! // 1 month 1 day * 1.5 = 1 mon 16 days 12:00:00
//! let i = scale(IntervalMonthDayNano::new(1, 1, 0), 1.5).unwrap();
//! assert_eq!((i.months, i.days, i.nanoseconds), (1, 16, 12 * 3_600_000_000_000));
//! ```

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName,
};
use slicedb_common::{Error, SqlState};

const DAYS_PER_MONTH: f64 = 30.0;
const SECS_PER_DAY: f64 = 86_400.0;
const NANOS_PER_MICRO: i64 = 1_000;

/// Rounds to the microsecond, as PostgreSQL's `TSROUND`.
fn ts_round(x: f64) -> f64 {
    (x * 1_000_000.0).round_ties_even() / 1_000_000.0
}

fn out_of_range() -> Error {
    Error::new(SqlState::DatetimeFieldOverflow, "interval out of range")
}

/// `span * factor`, as PostgreSQL 15's `interval_mul`.
pub fn scale(span: IntervalMonthDayNano, factor: f64) -> Result<IntervalMonthDayNano, Error> {
    let fits = |v: f64| v.is_finite() && v >= i32::MIN as f64 && v <= i32::MAX as f64;
    let month = span.months as f64 * factor;
    let day = span.days as f64 * factor;
    if !fits(month) || !fits(day) {
        return Err(out_of_range());
    }
    let (months, mut days) = (month as i32, day as i32);
    let month_remainder_days = ts_round((span.months as f64 * factor - months as f64) * DAYS_PER_MONTH);
    let mut sec_remainder = ts_round(
        (span.days as f64 * factor - days as f64 + month_remainder_days - month_remainder_days.trunc()) * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        days = days
            .checked_add((sec_remainder / SECS_PER_DAY) as i32)
            .ok_or_else(out_of_range)?;
        sec_remainder -= (sec_remainder / SECS_PER_DAY).trunc() * SECS_PER_DAY;
    }
    days = days.checked_add(month_remainder_days as i32).ok_or_else(out_of_range)?;
    let micros = ((span.nanoseconds / NANOS_PER_MICRO) as f64 * factor + sec_remainder * 1_000_000.0).round_ties_even();
    if !micros.is_finite() || micros.abs() >= (i64::MAX / NANOS_PER_MICRO) as f64 {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(months, days, micros as i64 * NANOS_PER_MICRO))
}

/// `interval_mul(interval, x)` and `interval_div(interval, x)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalScale {
    divide: bool,
    signature: Signature,
}

impl IntervalScale {
    fn new(divide: bool) -> IntervalScale {
        IntervalScale {
            divide,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The two functions, to register with the session.
pub fn udfs() -> [ScalarUDF; 2] {
    [false, true].map(|d| ScalarUDF::from(IntervalScale::new(d)))
}

impl ScalarUDFImpl for IntervalScale {
    fn name(&self) -> &str {
        match self.divide {
            false => "interval_mul",
            true => "interval_div",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [spans, factors] = arrays.as_slice() else {
            return Err(Error::internal(format!("{} takes two arguments", self.name())).into_datafusion());
        };
        let spans = cast(spans, &DataType::Interval(IntervalUnit::MonthDayNano))?;
        let factors = cast(factors, &DataType::Float64)?;
        let (spans, factors) = (
            spans.as_primitive::<IntervalMonthDayNanoType>(),
            factors.as_primitive::<Float64Type>(),
        );
        let mut out = Vec::with_capacity(spans.len());
        for i in 0..spans.len() {
            if spans.is_null(i) || factors.is_null(i) {
                out.push(None);
                continue;
            }
            let factor = match self.divide {
                false => factors.value(i),
                true if factors.value(i) == 0.0 => {
                    return Err(Error::new(SqlState::DivisionByZero, "division by zero").into_datafusion())
                }
                true => 1.0 / factors.value(i),
            };
            out.push(Some(scale(spans.value(i), factor).map_err(Error::into_datafusion)?));
        }
        let array: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(out));
        Ok(match scalar {
            true => ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?),
            false => ColumnarValue::Array(array),
        })
    }
}

/// Is `e` an interval by its syntax: a literal, a cast to `interval`, or
/// an interval already scaled?
fn is_interval(e: &Expr) -> bool {
    match e {
        Expr::Interval(_) => true,
        Expr::Nested(inner) => is_interval(inner),
        Expr::Cast { data_type, .. } => matches!(data_type, ast::DataType::Interval { .. }),
        Expr::TypedString(t) => matches!(t.data_type, ast::DataType::Interval { .. }),
        // `(i * 3) / 2`: the inner product, rewritten first.
        Expr::Function(f) => is_scaling(f),
        _ => false,
    }
}

/// Is `f` a call [`interval_arithmetic`] made?
pub fn is_scaling(f: &ast::Function) -> bool {
    matches!(f.name.0.as_slice(), [n] if n.as_ident().is_some_and(|i| i.value == "interval_mul" || i.value == "interval_div"))
}

fn call(name: &str, span: Expr, factor: Expr) -> Expr {
    let arg = |e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![arg(span), arg(factor)],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Rewrites `i * x`, `x * i` and `i / x` where `i` is an interval literal
/// or a cast to `interval` into [`IntervalScale`] calls. Returns whether it
/// rewrote anything.
pub fn interval_arithmetic(stmt: &mut ast::Statement) -> bool {
    let mut changed = false;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Expr::BinaryOp { left, op, right } = e {
            let rewritten = match op {
                BinaryOperator::Multiply if is_interval(left) => Some(("interval_mul", true)),
                BinaryOperator::Multiply if is_interval(right) => Some(("interval_mul", false)),
                BinaryOperator::Divide if is_interval(left) => Some(("interval_div", true)),
                _ => None,
            };
            if let Some((name, left_is_span)) = rewritten {
                let l = std::mem::replace(left.as_mut(), Expr::value(ast::Value::Null));
                let r = std::mem::replace(right.as_mut(), Expr::value(ast::Value::Null));
                *e = match left_is_span {
                    true => call(name, l, r),
                    false => call(name, r, l),
                };
                changed = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn scales_as_postgresql() {
        // SELECT interval '1 day' * 2 → 2 days
        assert_eq!(
            scale(IntervalMonthDayNano::new(0, 1, 0), 2.0).unwrap(),
            IntervalMonthDayNano::new(0, 2, 0)
        );
        // interval '1 day' / 3 → 08:00:00
        assert_eq!(
            scale(IntervalMonthDayNano::new(0, 1, 0), 1.0 / 3.0).unwrap(),
            IntervalMonthDayNano::new(0, 0, 8 * HOUR)
        );
        // interval '1 month' * 0.5 → 15 days
        assert_eq!(
            scale(IntervalMonthDayNano::new(1, 0, 0), 0.5).unwrap(),
            IntervalMonthDayNano::new(0, 15, 0)
        );
        // interval '1 hour' * -2.5 → -02:30:00
        assert_eq!(
            scale(IntervalMonthDayNano::new(0, 0, HOUR), -2.5).unwrap(),
            IntervalMonthDayNano::new(0, 0, -5 * HOUR / 2)
        );
        // interval '2 months' * 1e10 is out of range
        let e = scale(IntervalMonthDayNano::new(2, 0, 0), 1e10).unwrap_err();
        assert_eq!((e.state.code(), e.message.as_str()), ("22008", "interval out of range"));
    }
}
