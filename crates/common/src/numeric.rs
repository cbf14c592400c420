//! PostgreSQL's `numeric` arithmetic where DataFusion's decimals differ.
//!
//! The coordinator plans `1.5` as a decimal (`numeric`), as PostgreSQL
//! does, not as a `double precision`: so `0.1 + 0.2 = 0.3` is true and
//! `price * 1.1` keeps its cents. DataFusion's decimal `+`, `-` and `*`
//! already give PostgreSQL's result scales (the larger scale; the sum of
//! the scales). Five things do not, and `rewrite_expr` rewrites them in a
//! plan as the SQL planner made it (through
//! [`crate::pg_semantics::postgres_semantics`]):
//!
//! - **Division.** DataFusion's quotient of decimals keeps a few digits
//!   (`7 / 2.0` is `3.5000`); PostgreSQL's keeps at least 16 fractional
//!   digits (`3.5000000000000000`). [`NumericDiv`] divides with scale
//!   `max(16, s1, s2)` and rounds half away from zero. PostgreSQL gives
//!   more digits to a quotient below 1 (`1 / 3.0` has 20): a column's
//!   scale here is fixed by its type, not by its values, so those have 16.
//! - **`avg` of integers and decimals.** DataFusion's is a `double
//!   precision` (of integers) or keeps four more digits (of decimals);
//!   PostgreSQL's is a `numeric` quotient, as [`NumericAvg`] computes it.
//!   `avg(DISTINCT …)` is left to DataFusion.
//! - **A cast of a fraction to an integer.** Arrow truncates; PostgreSQL
//!   rounds, a `numeric` half away from zero (`2.5::int` is 3) and a
//!   `double precision` half to even (`2.5::float8::int` is 2).
//!   [`RoundForInt`] rounds the value before the cast.
//! - **`ceil`, `floor` and `trunc` of a `numeric`** keep its scale in
//!   DataFusion (`ceil(99.99)` is `100.00`); PostgreSQL's have none
//!   (`100`).
//! - **Exponent literals.** `1e3` is parsed as a decimal of scale −3, which
//!   Arrow's casts and PostgreSQL's wire format do not take; it is
//!   rescaled to scale 0 (`1000`).
//!
//! Slice servers register the same functions ([`udfs`], [`udafs`]), so a
//! plan fragment that calls them (a partial `avg`) runs where the rows
//! are.
//!
//! ```
//! use slicedb_common::numeric::divide;
//! // 7 / 2.0 with scale 16: 3.5000000000000000
//! assert_eq!(divide(7, 0, 20, 1, 16).unwrap(), 35_000_000_000_000_000);
//! // 2 / 3 with scale 16 rounds the last digit up
//! assert_eq!(divide(2, 0, 3, 0, 16).unwrap(), 6_666_666_666_666_667);
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{i256, DataType, Decimal128Type, Field, FieldRef, Float32Type, Float64Type, UInt64Type};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, BinaryExpr, Cast, ColumnarValue, EmitTo, Expr, ExprSchemable,
    GroupsAccumulator, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TryCast, Volatility,
    WindowFunctionDefinition,
};

use crate::{Error, SqlState};

/// The fewest fractional digits of a quotient, as in PostgreSQL.
pub const MIN_DIV_SCALE: i8 = 16;

/// The widest decimal Arrow's 128-bit type holds.
const MAX_PRECISION: u8 = 38;

/// The scale of an exact number type: an integer's is 0, a decimal's its
/// own. `None` for anything else (floats, text…).
fn exact_scale(t: &DataType) -> Option<i8> {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Some(0),
        DataType::Decimal128(_, s) => Some((*s).max(0)),
        _ => None,
    }
}

/// The scale of a quotient of `a` and `b`: at least 16 digits, and at
/// least either operand's.
fn quotient_scale(a: i8, b: i8) -> i8 {
    MIN_DIV_SCALE.max(a).max(b).min(MAX_PRECISION as i8)
}

fn overflow() -> Error {
    Error::new(SqlState::NumericValueOutOfRange, "value overflows numeric format")
}

/// `a × 10^-sa` divided by `b × 10^-sb`, as an integer of scale `s`
/// (`s ≥ sa`, scales not negative), rounded half away from zero. Fails
/// with 22012 on a zero divisor and 22003 when the quotient does not fit
/// a 38-digit decimal.
pub fn divide(a: i128, sa: i8, b: i128, sb: i8, s: i8) -> Result<i128, Error> {
    if b == 0 {
        return Err(Error::new(SqlState::DivisionByZero, "division by zero"));
    }
    let shift = i32::from(s) - i32::from(sa) + i32::from(sb);
    let ten = i256::from_i128(10);
    let (num, den) = if shift >= 0 {
        let f = ten.checked_pow(shift as u32).ok_or_else(overflow)?;
        (
            i256::from_i128(a).checked_mul(f).ok_or_else(overflow)?,
            i256::from_i128(b),
        )
    } else {
        let f = ten.checked_pow((-shift) as u32).ok_or_else(overflow)?;
        (
            i256::from_i128(a),
            i256::from_i128(b).checked_mul(f).ok_or_else(overflow)?,
        )
    };
    let mut q = num.checked_div(den).ok_or_else(overflow)?;
    let r = num.checked_rem(den).ok_or_else(overflow)?;
    if r.wrapping_abs().wrapping_mul(i256::from_i128(2)) >= den.wrapping_abs() {
        let away = if num.is_negative() != den.is_negative() { -1 } else { 1 };
        q = q.wrapping_add(i256::from_i128(away));
    }
    let max = i256::from_i128(10i128.pow(MAX_PRECISION as u32));
    if q.wrapping_abs() >= max {
        return Err(overflow());
    }
    q.to_i128().ok_or_else(overflow)
}

/// A value of an exact type as a 38-digit decimal array of `scale`.
fn as_decimal(a: &ArrayRef, scale: i8) -> DfResult<Decimal128Array> {
    let d = cast(a, &DataType::Decimal128(MAX_PRECISION, scale))?;
    Ok(d.as_primitive::<Decimal128Type>().clone())
}

/// PostgreSQL's `numeric` division: `a / b` of integers or decimals, one
/// of them a decimal, with [`quotient_scale`]'s scale.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NumericDiv {
    signature: Signature,
}

impl Default for NumericDiv {
    fn default() -> Self {
        NumericDiv {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NumericDiv {
    fn name(&self) -> &str {
        "numeric_div"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match (exact_scale(&arg_types[0]), exact_scale(&arg_types[1])) {
            (Some(a), Some(b)) => Ok(DataType::Decimal128(MAX_PRECISION, quotient_scale(a, b))),
            _ => {
                Err(Error::internal(format!("numeric_div of {} and {}", arg_types[0], arg_types[1])).into_datafusion())
            }
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(Error::internal("numeric_div takes two arguments").into_datafusion());
        };
        let scalar = matches!((left, right), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let n = if scalar { 1 } else { args.number_rows };
        let (l, r) = (left.to_array(n)?, right.to_array(n)?);
        let (sa, sb) = match (exact_scale(l.data_type()), exact_scale(r.data_type())) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::internal("numeric_div of inexact numbers").into_datafusion()),
        };
        let s = quotient_scale(sa, sb);
        let (l, r) = (as_decimal(&l, sa)?, as_decimal(&r, sb)?);
        let out = l
            .iter()
            .zip(r.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => divide(a, sa, b, sb, s).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Decimal128Array, Error>>()
            .map_err(Error::into_datafusion)?
            .with_precision_and_scale(MAX_PRECISION, s)?;
        let array: ArrayRef = Arc::new(out);
        Ok(match scalar {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?),
            false => ColumnarValue::Array(array),
        })
    }
}

/// A fraction rounded to a whole number as PostgreSQL's casts to integer
/// round it, in its own type: a decimal half away from zero, a float half
/// to even.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RoundForInt {
    signature: Signature,
}

impl Default for RoundForInt {
    fn default() -> Self {
        RoundForInt {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// `v × 10^-s` rounded half away from zero to a whole number, still of
/// scale `s`.
fn round_decimal(v: i128, s: i8) -> i128 {
    if s <= 0 {
        return v;
    }
    let p = 10i128.pow(s as u32);
    let (q, r) = (v / p, v % p);
    let q = if r.abs() * 2 >= p { q + v.signum() } else { q };
    q.saturating_mul(p)
}

impl ScalarUDFImpl for RoundForInt {
    fn name(&self) -> &str {
        "round_for_int"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(Error::internal("round_for_int takes one argument").into_datafusion());
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let a = arg.to_array(if scalar { 1 } else { args.number_rows })?;
        let array: ArrayRef = match a.data_type() {
            DataType::Float64 => Arc::new(
                a.as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(f64::round_ties_even),
            ),
            DataType::Float32 => Arc::new(
                a.as_primitive::<Float32Type>()
                    .unary::<_, Float32Type>(f32::round_ties_even),
            ),
            DataType::Decimal128(p, s) => {
                let (p, s) = (*p, *s);
                let d: Decimal128Array = a
                    .as_primitive::<Decimal128Type>()
                    .unary::<_, Decimal128Type>(|v| round_decimal(v, s));
                Arc::new(d.with_precision_and_scale(p, s)?)
            }
            _ => a,
        };
        Ok(match scalar {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?),
            false => ColumnarValue::Array(array),
        })
    }
}

/// PostgreSQL's `avg` of integers and decimals: a `numeric` sum divided by
/// the count, with a quotient's scale ([`NumericDiv`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NumericAvg {
    signature: Signature,
}

impl Default for NumericAvg {
    fn default() -> Self {
        NumericAvg {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl NumericAvg {
    fn input_scale(t: &DataType) -> DfResult<i8> {
        exact_scale(t).ok_or_else(|| Error::internal(format!("numeric_avg of {t}")).into_datafusion())
    }
}

impl AggregateUDFImpl for NumericAvg {
    fn name(&self) -> &str {
        "numeric_avg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let s = Self::input_scale(&arg_types[0])?;
        Ok(DataType::Decimal128(MAX_PRECISION, quotient_scale(s, 0)))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let scale = Self::input_scale(args.expr_fields[0].data_type())?;
        Ok(Box::new(AvgAccumulator {
            scale,
            sum: 0,
            count: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let scale = Self::input_scale(args.input_fields[0].data_type())?;
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::UInt64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "sum"),
                DataType::Decimal128(MAX_PRECISION, scale),
                true,
            )),
        ])
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn GroupsAccumulator>> {
        let scale = Self::input_scale(args.expr_fields[0].data_type())?;
        Ok(Box::new(AvgGroups {
            scale,
            sums: Vec::new(),
            counts: Vec::new(),
        }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

/// The running sum (of scale `scale`) and count of a [`NumericAvg`].
#[derive(Debug)]
struct AvgAccumulator {
    scale: i8,
    sum: i128,
    count: i64,
}

impl AvgAccumulator {
    fn add(&mut self, v: i128, n: i64) -> DfResult<()> {
        self.sum = self.sum.checked_add(v).ok_or_else(|| overflow().into_datafusion())?;
        self.count += n;
        Ok(())
    }
}

impl Accumulator for AvgAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        for v in as_decimal(&values[0], self.scale)?.iter().flatten() {
            self.add(v, 1)?;
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        for v in as_decimal(&values[0], self.scale)?.iter().flatten() {
            self.add(-v, -1)?;
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let counts = states[0].as_primitive::<UInt64Type>();
        let sums = as_decimal(&states[1], self.scale)?;
        for (c, s) in counts.iter().zip(sums.iter()) {
            if let (Some(c), Some(s)) = (c, s) {
                self.add(s, c as i64)?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::UInt64(Some(self.count as u64)),
            ScalarValue::Decimal128(Some(self.sum), MAX_PRECISION, self.scale),
        ])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let s = quotient_scale(self.scale, 0);
        if self.count == 0 {
            return Ok(ScalarValue::Decimal128(None, MAX_PRECISION, s));
        }
        let q = divide(self.sum, self.scale, i128::from(self.count), 0, s).map_err(Error::into_datafusion)?;
        Ok(ScalarValue::Decimal128(Some(q), MAX_PRECISION, s))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// The sums (of scale `scale`) and counts of a [`NumericAvg`] per group,
/// for GROUP BY: one accumulator for all groups, as DataFusion's own `avg`
/// has, rather than one [`AvgAccumulator`] per group.
#[derive(Debug)]
struct AvgGroups {
    scale: i8,
    sums: Vec<i128>,
    counts: Vec<u64>,
}

impl AvgGroups {
    fn add(&mut self, group: usize, v: i128, n: u64) -> DfResult<()> {
        self.sums[group] = self.sums[group]
            .checked_add(v)
            .ok_or_else(|| overflow().into_datafusion())?;
        self.counts[group] += n;
        Ok(())
    }
}

impl GroupsAccumulator for AvgGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.sums.resize(total_num_groups, 0);
        self.counts.resize(total_num_groups, 0);
        let values = as_decimal(&values[0], self.scale)?;
        for (row, &group) in group_indices.iter().enumerate() {
            let selected = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if selected && values.is_valid(row) {
                self.add(group, values.value(row), 1)?;
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> DfResult<()> {
        self.sums.resize(total_num_groups, 0);
        self.counts.resize(total_num_groups, 0);
        let counts = values[0].as_primitive::<UInt64Type>();
        let sums = as_decimal(&values[1], self.scale)?;
        for (row, &group) in group_indices.iter().enumerate() {
            if counts.is_valid(row) && sums.is_valid(row) {
                self.add(group, sums.value(row), counts.value(row))?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        let counts = emit_to.take_needed(&mut self.counts);
        let s = quotient_scale(self.scale, 0);
        let out = sums
            .into_iter()
            .zip(counts)
            .map(|(sum, n)| match n {
                0 => Ok(None),
                n => divide(sum, self.scale, i128::from(n), 0, s).map(Some),
            })
            .collect::<Result<Decimal128Array, Error>>()
            .map_err(Error::into_datafusion)?
            .with_precision_and_scale(MAX_PRECISION, s)?;
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let sums = emit_to.take_needed(&mut self.sums);
        let counts = emit_to.take_needed(&mut self.counts);
        let sums = Decimal128Array::from(sums).with_precision_and_scale(MAX_PRECISION, self.scale)?;
        Ok(vec![Arc::new(UInt64Array::from(counts)), Arc::new(sums)])
    }

    /// Each row as its own group's state: a count of 1 and the value, or 0
    /// and 0 for a NULL or filtered-out row.
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> DfResult<Vec<ArrayRef>> {
        let values = as_decimal(&values[0], self.scale)?;
        let taken = |row: usize| values.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        let counts: UInt64Array = (0..values.len()).map(|row| Some(u64::from(taken(row)))).collect();
        let sums: Decimal128Array = (0..values.len())
            .map(|row| Some(if taken(row) { values.value(row) } else { 0 }))
            .collect();
        let sums = sums.with_precision_and_scale(MAX_PRECISION, self.scale)?;
        Ok(vec![Arc::new(counts), Arc::new(sums)])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<i128>() + self.counts.capacity() * std::mem::size_of::<u64>()
    }
}

/// The scalar functions, to register where plans run.
pub fn udfs() -> [ScalarUDF; 2] {
    [
        ScalarUDF::from(NumericDiv::default()),
        ScalarUDF::from(RoundForInt::default()),
    ]
}

/// The aggregate functions, to register where plans run.
pub fn udafs() -> [AggregateUDF; 1] {
    [AggregateUDF::from(NumericAvg::default())]
}

fn is_integer_type(t: &DataType) -> bool {
    exact_scale(t) == Some(0) && !matches!(t, DataType::Decimal128(..))
}

/// A `Decimal128` literal of negative scale (`1e3`) at scale 0, when it fits.
fn rescaled(v: &ScalarValue) -> Option<ScalarValue> {
    match v {
        ScalarValue::Decimal128(value, p, s) if *s < 0 => {
            let up = u32::from(s.unsigned_abs());
            let p = (u32::from(*p) + up).min(u32::from(MAX_PRECISION)) as u8;
            let value = match value {
                Some(v) => Some(v.checked_mul(10i128.checked_pow(up)?)?),
                None => None,
            };
            Some(ScalarValue::Decimal128(value, p.max(1), 0))
        }
        _ => None,
    }
}

/// One expression with this module's rewrites, its types read in
/// `schema`; `divisions` is false in a `VALUES` list, whose schema is its
/// own (a quotient there keeps DataFusion's type).
pub(crate) fn rewrite_expr(expr: Expr, schema: &DFSchema, divisions: bool) -> DfResult<Transformed<Expr>> {
    expr.transform_up(|e| match e {
        Expr::Literal(v, meta) => Ok(match rescaled(&v) {
            Some(v) => Transformed::yes(Expr::Literal(v, meta)),
            None => Transformed::no(Expr::Literal(v, meta)),
        }),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Divide,
            right,
        }) if divisions => {
            let exact = match (left.get_type(schema), right.get_type(schema)) {
                (Ok(l), Ok(r)) => {
                    exact_scale(&l).is_some()
                        && exact_scale(&r).is_some()
                        && (matches!(l, DataType::Decimal128(..)) || matches!(r, DataType::Decimal128(..)))
                }
                _ => false,
            };
            Ok(match exact {
                true => Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(ScalarUDF::from(NumericDiv::default())),
                    vec![*left, *right],
                ))),
                false => Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Divide,
                    right,
                })),
            })
        }
        Expr::Cast(Cast { expr, field }) if is_integer_type(field.data_type()) && rounds(&expr, schema) => Ok(
            Transformed::yes(Expr::Cast(Cast::new_from_field(Box::new(round_for_int(*expr)), field))),
        ),
        Expr::TryCast(TryCast { expr, field }) if is_integer_type(field.data_type()) && rounds(&expr, schema) => {
            Ok(Transformed::yes(Expr::TryCast(TryCast {
                expr: Box::new(round_for_int(*expr)),
                field,
            })))
        }
        Expr::ScalarFunction(f) if whole_number_of_numeric(&f, schema).is_some() => {
            let t = whole_number_of_numeric(&f, schema).unwrap_or(DataType::Int64);
            Ok(Transformed::yes(Expr::Cast(Cast::new(
                Box::new(Expr::ScalarFunction(f)),
                t,
            ))))
        }
        Expr::AggregateFunction(mut f) if is_exact_avg(&f, schema) => {
            f.func = Arc::new(AggregateUDF::from(NumericAvg::default()));
            Ok(Transformed::yes(Expr::AggregateFunction(f)))
        }
        Expr::WindowFunction(mut w) => {
            let exact = match &w.fun {
                WindowFunctionDefinition::AggregateUDF(f) => {
                    f.name() == "avg"
                        && !w.params.distinct
                        && w.params.args.len() == 1
                        && w.params.args[0]
                            .get_type(schema)
                            .is_ok_and(|t| exact_scale(&t).is_some())
                }
                _ => false,
            };
            if exact {
                w.fun = WindowFunctionDefinition::AggregateUDF(Arc::new(AggregateUDF::from(NumericAvg::default())));
                Ok(Transformed::yes(Expr::WindowFunction(w)))
            } else {
                Ok(Transformed::no(Expr::WindowFunction(w)))
            }
        }
        other => Ok(Transformed::no(other)),
    })
}

/// The type of `ceil(n)`, `floor(n)` or `trunc(n)` of a `numeric` with a
/// fraction: a `numeric` of scale 0 (`ceil(99.99)` is `100`), where
/// DataFusion's keeps the argument's scale (`100.00`).
fn whole_number_of_numeric(f: &ScalarFunction, schema: &DFSchema) -> Option<DataType> {
    if !matches!(f.func.name(), "ceil" | "floor" | "trunc") || f.args.len() != 1 {
        return None;
    }
    match f.args[0].get_type(schema) {
        Ok(DataType::Decimal128(p, s)) if s > 0 => {
            let digits = (i16::from(p) - i16::from(s) + 1).clamp(1, i16::from(MAX_PRECISION));
            Some(DataType::Decimal128(digits as u8, 0))
        }
        _ => None,
    }
}

fn is_exact_avg(f: &AggregateFunction, schema: &DFSchema) -> bool {
    f.func.name() == "avg"
        && !f.params.distinct
        && f.params.args.len() == 1
        && f.params.args[0]
            .get_type(schema)
            .is_ok_and(|t| exact_scale(&t).is_some())
}

/// Whether a cast of `e` to an integer must round it first: `e` is a float
/// or a decimal with a fraction.
fn rounds(e: &Expr, schema: &DFSchema) -> bool {
    match e.get_type(schema) {
        Ok(DataType::Float16 | DataType::Float32 | DataType::Float64) => true,
        Ok(DataType::Decimal128(_, s)) => s > 0,
        _ => false,
    }
}

fn round_for_int(e: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::from(RoundForInt::default())),
        vec![e],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use datafusion::common::config::ConfigOptions;

    #[test]
    fn quotients_keep_sixteen_digits_and_round_half_away() {
        // 1 / 3 = 0.3333333333333333
        assert_eq!(divide(1, 0, 3, 0, 16).unwrap(), 3_333_333_333_333_333);
        // -2 / 3 = -0.6666666666666667
        assert_eq!(divide(-2, 0, 3, 0, 16).unwrap(), -6_666_666_666_666_667);
        // 10.10 / 0.5 at scale 16 = 20.2
        assert_eq!(divide(1010, 2, 5, 1, 16).unwrap(), 202 * 10i128.pow(15));
        // a divisor with more digits than the result's scale
        // 1 / 0.00000000000000000003 = 33333333333333333333.3333333333333333
        assert_eq!(
            divide(1, 0, 3, 20, 16).unwrap(),
            "3".repeat(36).parse::<i128>().unwrap()
        );
    }

    #[test]
    fn zero_divisors_and_overflows_are_postgres_errors() {
        assert_eq!(divide(1, 0, 0, 0, 16).unwrap_err().state.code(), "22012");
        assert_eq!(divide(10i128.pow(37), 0, 1, 16, 16).unwrap_err().state.code(), "22003");
    }

    #[test]
    fn casts_to_integer_round_as_postgres() {
        // numeric: half away from zero
        assert_eq!(round_decimal(15, 1), 20);
        assert_eq!(round_decimal(25, 1), 30);
        assert_eq!(round_decimal(-15, 1), -20);
        assert_eq!(round_decimal(-14, 1), -10);
        // double precision: half to even
        assert_eq!(2.5f64.round_ties_even(), 2.0);
        assert_eq!(1.5f64.round_ties_even(), 2.0);
    }

    #[test]
    fn exponent_literals_get_scale_zero() {
        let v = rescaled(&ScalarValue::Decimal128(Some(1), 1, -3)).unwrap();
        assert_eq!(v, ScalarValue::Decimal128(Some(1000), 4, 0));
        assert!(rescaled(&ScalarValue::Decimal128(Some(15), 2, 1)).is_none());
    }

    #[test]
    fn an_average_is_a_numeric_quotient() {
        let mut acc = AvgAccumulator {
            scale: 0,
            sum: 0,
            count: 0,
        };
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(2)]));
        acc.update_batch(&[values]).unwrap();
        assert_eq!(
            acc.evaluate().unwrap(),
            ScalarValue::Decimal128(Some(15 * 10i128.pow(15)), 38, 16)
        );
        let empty = AvgAccumulator {
            scale: 2,
            sum: 0,
            count: 0,
        }
        .evaluate_owned();
        assert_eq!(empty, ScalarValue::Decimal128(None, 38, 16));
    }

    impl AvgAccumulator {
        fn evaluate_owned(mut self) -> ScalarValue {
            self.evaluate().unwrap()
        }
    }

    #[test]
    fn grouped_averages_merge_partial_states() {
        let new = || AvgGroups {
            scale: 0,
            sums: Vec::new(),
            counts: Vec::new(),
        };
        // Two partial aggregates (two slice servers), groups 0..3; group 2
        // sees only NULL or filtered-out rows.
        let mut a = new();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(7)]));
        let filter = BooleanArray::from(vec![true, true, true, false]);
        a.update_batch(&[values], &[0, 0, 2, 2], Some(&filter), 3).unwrap();
        let mut b = new();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(4), Some(10)]));
        b.update_batch(&[values], &[0, 1], None, 3).unwrap();
        let mut total = new();
        for mut part in [a, b] {
            let state = part.state(EmitTo::All).unwrap();
            total.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        }
        let out = total.evaluate(EmitTo::All).unwrap();
        let out = out.as_primitive::<Decimal128Type>();
        let unit = 10i128.pow(16);
        // (1 + 2 + 4) / 3, 10 / 1, nothing.
        assert_eq!(out.value(0), divide(7, 0, 3, 0, 16).unwrap());
        assert_eq!(out.value(1), 10 * unit);
        assert!(out.is_null(2));
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 16));
        // Rows passed on as states when grouping does not pay: one group
        // per row, a NULL or filtered-out row counting nothing.
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(5)]));
        let filter = BooleanArray::from(vec![true, true, false]);
        let state = new().convert_to_state(&[values], Some(&filter)).unwrap();
        let mut merged = new();
        merged.merge_batch(&state, &[0, 0, 0], 1).unwrap();
        let out = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(out.as_primitive::<Decimal128Type>().value(0), 3 * unit);
    }

    #[test]
    fn floats_round_half_to_even_before_a_cast() {
        let f = RoundForInt::default();
        let arg = ColumnarValue::Array(Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5, -2.5])));
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![arg],
                arg_fields: vec![Arc::new(Field::new("a", DataType::Float64, true))],
                number_rows: 4,
                return_field: Arc::new(Field::new("r", DataType::Float64, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        let ColumnarValue::Array(a) = out else {
            panic!("an array")
        };
        let a: &Float64Array = a.as_primitive::<Float64Type>();
        assert_eq!(a.values().to_vec(), vec![0.0, 2.0, 2.0, -2.0]);
    }
}
