//! Integer arithmetic that fails on overflow, as PostgreSQL's does.
//!
//! DataFusion's `+`, `-` and `*` on integers wrap around: there
//! `9223372036854775807::bigint + 1` is `-9223372036854775808`, and an
//! application adding to a balance would store a wrong number without a
//! word. PostgreSQL fails with 22003 (`bigint out of range`, `integer out of
//! range`, `smallint out of range`, after the operation's type).
//!
//! [`checked_arithmetic`] rewrites each `+`, `-` and `*` whose operands are
//! integers of one type (as they are once DataFusion has coerced them) into
//! a call of [`IntArith`], which computes with Arrow's checked kernels and
//! reports an overflow in PostgreSQL's words. [`numeric_sums`] makes `sum`
//! of a `bigint` add up `numeric`s, as PostgreSQL's does: DataFusion's is a
//! `bigint` that wraps. The coordinator applies it to
//! every plan after type coercion (the analyzer rule
//! [`CheckedIntegerArithmetic`]) and to the values its write router
//! computes. Slice servers register the
//! same functions ([`udfs`]), so a fragment of a plan that calls them (a
//! partial `sum(a * b)`) still runs where the rows are.
//!
//! ```
//! use datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use datafusion::common::DFSchema;
//! use datafusion::logical_expr::{col, lit};
//! use slicedb_common::int_arith::checked_arithmetic;
//!
//! let schema = DFSchema::try_from(Schema::new(vec![Field::new("a", DataType::Int64, true)])).unwrap();
//! let e = checked_arithmetic(col("a") + lit(1i64), &schema).unwrap().data;
//! assert_eq!(e.to_string(), "int_add(a, Int64(1))");
//! // Mixed types are left alone: type coercion has not run on them yet.
//! let mixed = checked_arithmetic(col("a") + lit(1i32), &schema).unwrap();
//! assert!(!mixed.transformed);
//! ```

use std::sync::Arc;

use arrow::compute::kernels::numeric;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ExprSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    cast, BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::optimizer::AnalyzerRule;

use crate::{Error, SqlState};

/// Which operation an [`IntArith`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
}

impl ArithOp {
    fn of(op: Operator) -> Option<ArithOp> {
        match op {
            Operator::Plus => Some(ArithOp::Add),
            Operator::Minus => Some(ArithOp::Sub),
            Operator::Multiply => Some(ArithOp::Mul),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ArithOp::Add => "int_add",
            ArithOp::Sub => "int_sub",
            ArithOp::Mul => "int_mul",
        }
    }
}

/// `int_add(a, b)`, `int_sub(a, b)`, `int_mul(a, b)`: the operation on two
/// integers of one type, in that type, failing with 22003 on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntArith {
    op: ArithOp,
    signature: Signature,
}

impl IntArith {
    pub fn new(op: ArithOp) -> IntArith {
        IntArith {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The three functions, to register where plans are run.
pub fn udfs() -> [ScalarUDF; 3] {
    [ArithOp::Add, ArithOp::Sub, ArithOp::Mul].map(|op| ScalarUDF::from(IntArith::new(op)))
}

/// PostgreSQL's words for a result that does not fit `t`.
pub fn out_of_range(t: &DataType) -> Error {
    let name = match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    };
    Error::new(SqlState::NumericValueOutOfRange, format!("{name} out of range"))
}

fn is_integer(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

impl ScalarUDFImpl for IntArith {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(Error::internal(format!("{} takes two arguments", self.name())).into_datafusion());
        };
        let t = left.data_type();
        let scalar = matches!((left, right), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let result = {
            let l = datum(left)?;
            let r = datum(right)?;
            let (l, r) = (l.as_ref(), r.as_ref());
            match self.op {
                ArithOp::Add => numeric::add(l, r),
                ArithOp::Sub => numeric::sub(l, r),
                ArithOp::Mul => numeric::mul(l, r),
            }
        };
        let array = match result {
            Ok(a) => a,
            Err(ArrowError::ArithmeticOverflow(_)) => return Err(out_of_range(&t).into_datafusion()),
            Err(e) => return Err(e.into()),
        };
        Ok(match scalar {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?),
            false => ColumnarValue::Array(array),
        })
    }
}

fn datum(v: &ColumnarValue) -> DfResult<Box<dyn arrow::array::Datum>> {
    Ok(match v {
        ColumnarValue::Array(a) => Box::new(Arc::clone(a)),
        ColumnarValue::Scalar(s) => Box::new(s.to_scalar()?),
    })
}

/// Rewrites every integer `+`, `-` and `*` of `expr` whose operands have
/// one type under `schema` into [`IntArith`]. Operands of other or of
/// mixed types (before type coercion) are left as they are.
pub fn checked_arithmetic(expr: Expr, schema: &dyn ExprSchema) -> DfResult<Transformed<Expr>> {
    expr.transform_up(|e| match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let integers = match (ArithOp::of(op), left.get_type(schema), right.get_type(schema)) {
                (Some(op), Ok(l), Ok(r)) if l == r && is_integer(&l) => Some(op),
                _ => None,
            };
            Ok(match integers {
                Some(op) => Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(ScalarUDF::from(IntArith::new(op))),
                    vec![*left, *right],
                ))),
                None => Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })),
            })
        }
        other => Ok(Transformed::no(other)),
    })
}

/// What `sum(bigint)` adds up in: every `bigint` fits, and a sum of fewer
/// than 10^19 of them does too.
const SUM_OF_BIGINT: DataType = DataType::Decimal128(38, 0);

/// Makes every `sum` of a `bigint` in `plan` (and its subqueries) add up
/// `numeric`s, as PostgreSQL's does, where DataFusion's is a `bigint` that
/// wraps around. This changes the type of the plan's columns, so it runs
/// on the plan as the SQL planner made it, before anything reads its
/// schema (a prepared statement's description, a query's row
/// description), not as an analyzer rule; each node's schema is made
/// again from its inputs.
pub fn numeric_sums(plan: LogicalPlan, config: &ConfigOptions) -> DfResult<LogicalPlan> {
    let out = plan.transform_up_with_subqueries(|node| {
        if !matches!(node, LogicalPlan::Aggregate(_)) {
            return Ok(Transformed::no(node));
        }
        let schema = merge_schema(&node.inputs());
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let saved = names.save(&e);
            let out = e.transform_up(|e| match e {
                Expr::AggregateFunction(mut f)
                    if f.func.name() == "sum"
                        && f.params.args.len() == 1
                        && matches!(f.params.args[0].get_type(&schema), Ok(DataType::Int64)) =>
                {
                    let arg = f.params.args.remove(0);
                    f.params.args.push(cast(arg, SUM_OF_BIGINT.clone()));
                    Ok(Transformed::yes(Expr::AggregateFunction(f)))
                }
                other => Ok(Transformed::no(other)),
            })?;
            Ok(out.update_data(|e| saved.restore(e)))
        })?
        .map_data(|node| node.recompute_schema())
    })?;
    retyped(out, config)
}

/// A plan whose expressions a rewrite may have given other types: most
/// plans are untouched and done. Otherwise the nodes above a changed one
/// are typed again from their inputs, and the branches of a UNION, the two
/// sides of a comparison… that met the new type are coerced to it, as the
/// SQL planner would have. Coercion casts literals (`round(x, 1)`'s `1` to
/// `integer`); they are folded back into literals and the nodes typed once
/// more, since a function may type its result by a literal argument
/// (`round` of a `numeric` keeps that many digits) and must see it as one.
pub(crate) fn retyped(out: Transformed<LogicalPlan>, config: &ConfigOptions) -> DfResult<LogicalPlan> {
    if !out.transformed {
        return Ok(out.data);
    }
    let retyped = out
        .data
        .transform_up_with_subqueries(|node| node.recompute_schema().map(Transformed::yes))?;
    let coerced = TypeCoercion::new().analyze(retyped.data, config)?;
    let folded = coerced.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        let node = node.map_expressions(|e| {
            let saved = names.save(&e);
            Ok(e.transform_up(fold_literal_cast)?.update_data(|e| saved.restore(e)))
        })?;
        match node.transformed {
            true => node.map_data(|n| n.recompute_schema()),
            false => Ok(node),
        }
    })?;
    Ok(folded.data)
}

/// `CAST(literal AS t)` as the literal of type `t`, when the value casts.
fn fold_literal_cast(e: Expr) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(c) = e else {
        return Ok(Transformed::no(e));
    };
    let folded = match c.expr.as_ref() {
        Expr::Literal(v, None) => v.cast_to(c.field.data_type()).ok(),
        _ => None,
    };
    Ok(match folded {
        Some(v) => Transformed::yes(Expr::Literal(v, None)),
        None => Transformed::no(Expr::Cast(c)),
    })
}

/// The analyzer rule that applies [`checked_arithmetic`] to every
/// expression of a plan and of its subqueries, keeping each expression's
/// name (and type). It must run after DataFusion's type coercion.
#[derive(Debug, Default)]
pub struct CheckedIntegerArithmetic;

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let inputs = node.inputs();
            let schema = match inputs.is_empty() {
                true => node.schema().as_ref().clone(),
                false => merge_schema(&inputs),
            };
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                Ok(checked_arithmetic(e, &schema)?.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "checked_integer_arithmetic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, ArrayRef, Int16Array, Int32Array, Int64Array};
    use arrow::datatypes::Field;

    fn run(op: ArithOp, l: ColumnarValue, r: ColumnarValue) -> Result<ColumnarValue, Error> {
        let t = l.data_type();
        let rows = match (&l, &r) {
            (ColumnarValue::Array(a), _) | (_, ColumnarValue::Array(a)) => a.len(),
            _ => 1,
        };
        let args = ScalarFunctionArgs {
            arg_fields: vec![
                Arc::new(Field::new("l", t.clone(), true)),
                Arc::new(Field::new("r", t.clone(), true)),
            ],
            args: vec![l, r],
            number_rows: rows,
            return_field: Arc::new(Field::new("out", t, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        IntArith::new(op).invoke_with_args(args).map_err(Error::from_datafusion)
    }

    fn array(a: impl Array + 'static) -> ColumnarValue {
        ColumnarValue::Array(Arc::new(a) as ArrayRef)
    }

    #[test]
    fn results_in_range_match_plain_arithmetic() {
        let out = run(
            ArithOp::Add,
            array(Int32Array::from(vec![Some(1), None, Some(-5)])),
            ColumnarValue::Scalar(ScalarValue::Int32(Some(10))),
        )
        .unwrap();
        let ColumnarValue::Array(a) = out else {
            panic!("array expected")
        };
        assert_eq!(
            a.as_any().downcast_ref::<Int32Array>().unwrap(),
            &Int32Array::from(vec![Some(11), None, Some(5)])
        );
        let out = run(
            ArithOp::Mul,
            ColumnarValue::Scalar(ScalarValue::Int64(Some(-3))),
            ColumnarValue::Scalar(ScalarValue::Int64(Some(7))),
        )
        .unwrap();
        assert!(matches!(out, ColumnarValue::Scalar(ScalarValue::Int64(Some(-21)))));
    }

    #[test]
    fn overflow_is_22003_named_after_the_type() {
        let cases: Vec<(ArithOp, ColumnarValue, ColumnarValue, &str)> = vec![
            (
                ArithOp::Add,
                array(Int64Array::from(vec![i64::MAX])),
                array(Int64Array::from(vec![1])),
                "bigint out of range",
            ),
            (
                ArithOp::Sub,
                ColumnarValue::Scalar(ScalarValue::Int32(Some(i32::MIN))),
                ColumnarValue::Scalar(ScalarValue::Int32(Some(1))),
                "integer out of range",
            ),
            (
                ArithOp::Mul,
                array(Int16Array::from(vec![200])),
                array(Int16Array::from(vec![200])),
                "smallint out of range",
            ),
        ];
        for (op, l, r, message) in cases {
            let e = run(op, l, r).unwrap_err();
            assert_eq!((e.state.code(), e.message.as_str()), ("22003", message));
        }
    }

    #[test]
    fn only_integer_operands_of_one_type_are_rewritten() {
        use datafusion::common::DFSchema;
        use datafusion::logical_expr::{col, lit};
        let schema = DFSchema::try_from(arrow::datatypes::Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("f", DataType::Float64, true),
        ]))
        .unwrap();
        let nested = checked_arithmetic((col("i") - lit(2i32)) * col("i"), &schema)
            .unwrap()
            .data;
        assert_eq!(nested.to_string(), "int_mul(int_sub(i, Int32(2)), i)");
        assert!(!checked_arithmetic(col("f") + col("f"), &schema).unwrap().transformed);
        assert!(!checked_arithmetic(col("i") / col("i"), &schema).unwrap().transformed);
    }

    #[test]
    fn sum_of_bigints_adds_numerics() {
        use datafusion::functions_aggregate::expr_fn::{max, sum};
        use datafusion::logical_expr::{col, table_scan, LogicalPlanBuilder};
        let schema = arrow::datatypes::Schema::new(vec![
            Field::new("b", DataType::Int64, true),
            Field::new("i", DataType::Int32, true),
        ]);
        let plan = |aggregates| -> LogicalPlan {
            let scan = table_scan(Some("t"), &schema, None).unwrap().build().unwrap();
            LogicalPlanBuilder::from(scan)
                .aggregate(Vec::<Expr>::new(), aggregates)
                .unwrap()
                .project(vec![col("sum(t.b)"), col("sum(t.i)"), col("max(t.b)")])
                .unwrap()
                .build()
                .unwrap()
        };
        let out = numeric_sums(
            plan(vec![sum(col("b")), sum(col("i")), max(col("b"))]),
            &ConfigOptions::default(),
        )
        .unwrap();
        let types: Vec<DataType> = out.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(
            types,
            vec![DataType::Decimal128(38, 0), DataType::Int64, DataType::Int64]
        );
    }
}
