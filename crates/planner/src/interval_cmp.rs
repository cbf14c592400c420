//! Intervals compared as PostgreSQL compares them.
//!
//! Arrow compares a `month-day-nanosecond` interval field by field, so
//! `interval '1 day' < interval '25 hours'` is false there (one day against
//! none). PostgreSQL compares the intervals' lengths, a month counting 30
//! days and a day 24 hours: there it is true, and `interval '1 day' =
//! interval '24 hours'`. [`IntervalComparison`] plans `=`, `<>`, `<`,
//! `<=`, `>` and `>=` of two intervals (or durations, as a difference of
//! timestamps is) as the comparison of their [`IntervalLength`]s, in
//! nanoseconds. Sorting and grouping by an interval still go field by
//! field.
//!
//! ```
//! use slicedb_planner::interval_cmp::length_nanos;
//! assert_eq!(length_nanos(0, 1, 0), length_nanos(0, 0, 24 * 3_600_000_000_000));
//! assert!(length_nanos(0, 1, 0) < length_nanos(0, 0, 25 * 3_600_000_000_000));
//! assert_eq!(length_nanos(1, 0, 0), length_nanos(0, 30, 0));
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{
    DataType, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType,
    IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, TimeUnit,
};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// An interval's length in nanoseconds, a month counting 30 days.
pub fn length_nanos(months: i32, days: i32, nanos: i64) -> i128 {
    (i128::from(months) * 30 + i128::from(days)) * NANOS_PER_DAY + i128::from(nanos)
}

fn is_interval(t: &DataType) -> bool {
    matches!(t, DataType::Interval(_) | DataType::Duration(_))
}

/// Plans comparisons of intervals by length (see the module comment).
#[derive(Debug, Default)]
pub struct IntervalComparison;

impl ExprPlanner for IntervalComparison {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let op = match expr.op {
            BinaryOperator::Eq => Operator::Eq,
            BinaryOperator::NotEq => Operator::NotEq,
            BinaryOperator::Lt => Operator::Lt,
            BinaryOperator::LtEq => Operator::LtEq,
            BinaryOperator::Gt => Operator::Gt,
            BinaryOperator::GtEq => Operator::GtEq,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let intervals = matches!(
            (expr.left.get_type(schema), expr.right.get_type(schema)),
            (Ok(l), Ok(r)) if is_interval(&l) && is_interval(&r)
        );
        if !intervals {
            return Ok(PlannerResult::Original(expr));
        }
        let length = ScalarUDF::new_from_impl(IntervalLength::default());
        Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(length.call(vec![expr.left])),
            op,
            Box::new(length.call(vec![expr.right])),
        ))))
    }
}

/// `interval_length(i)`: an interval's or a duration's length in
/// nanoseconds, as a `numeric` (a month is 30 days).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalLength {
    signature: Signature,
}

impl Default for IntervalLength {
    fn default() -> Self {
        IntervalLength {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

fn lengths(a: &ArrayRef) -> DfResult<Decimal128Array> {
    let nanos_of = |unit: &TimeUnit| -> i128 {
        match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        }
    };
    let out: Decimal128Array = match a.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => a
            .as_primitive::<IntervalMonthDayNanoType>()
            .iter()
            .map(|v| v.map(|v| length_nanos(v.months, v.days, v.nanoseconds)))
            .collect(),
        DataType::Interval(IntervalUnit::DayTime) => a
            .as_primitive::<IntervalDayTimeType>()
            .iter()
            .map(|v| v.map(|v| length_nanos(0, v.days, i64::from(v.milliseconds) * 1_000_000)))
            .collect(),
        DataType::Interval(IntervalUnit::YearMonth) => a
            .as_primitive::<IntervalYearMonthType>()
            .iter()
            .map(|v| v.map(|m| length_nanos(m, 0, 0)))
            .collect(),
        DataType::Duration(unit) => {
            let f = nanos_of(unit);
            let values: Vec<Option<i64>> = match unit {
                TimeUnit::Second => a.as_primitive::<DurationSecondType>().iter().collect(),
                TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().iter().collect(),
                TimeUnit::Microsecond => a.as_primitive::<DurationMicrosecondType>().iter().collect(),
                TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().iter().collect(),
            };
            values.into_iter().map(|v| v.map(|v| i128::from(v) * f)).collect()
        }
        DataType::Null => Decimal128Array::new_null(a.len()),
        other => {
            return Err(datafusion::error::DataFusionError::Plan(format!(
                "interval_length of {other}"
            )))
        }
    };
    Ok(out.with_precision_and_scale(38, 0)?)
}

impl ScalarUDFImpl for IntervalLength {
    fn name(&self) -> &str {
        "interval_length"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Decimal128(38, 0))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, _, scalar) = crate::udf::arguments(&args)?;
        crate::udf::result(Arc::new(lengths(&arrays[0])?), scalar)
    }
}
