//! Operators on arrays, intervals and times that PostgreSQL has and
//! DataFusion plans otherwise or not at all.
//!
//! - **A quoted literal beside a typed value takes that value's type.** In
//!   PostgreSQL `'{1,2}'` and `'26 hours'` are of unknown type until
//!   compared: `nums = '{1,2}'` reads the literal as an `int[]`,
//!   `d > '3 hours'` as an `interval`. DataFusion finds no common type of
//!   a list or an interval with text. [`ArrayOperators`] casts the literal
//!   to the other side's type (the cast then reads PostgreSQL's text, see
//!   `crate::text_input`) and lets the next planner (interval comparisons
//!   by length, `crate::interval_cmp`) see two values of one type.
//! - **`a && b`** (the arrays share an element) is `array_has_any(a, b)`.
//!
//! ```
//! use datafusion::prelude::SessionContext;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let ctx = slicedb_planner::array_ops::with_array_operators(SessionContext::new());
//! let batches = ctx
//!     .sql("SELECT ARRAY[1, 2] && ARRAY[2, 3], ARRAY['a'] && ARRAY['b']")
//!     .await.unwrap().collect().await.unwrap();
//! let line = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
//! assert!(line.contains("| true ") && line.contains("| false "));
//! # });
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{cast, Expr, ExprSchemable};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Plans `&&` of arrays, and gives a text literal compared with a list, an
/// interval or a time that value's type (see the module comment).
#[derive(Debug, Default)]
pub struct ArrayOperators;

/// Types whose values DataFusion does not compare with text.
fn takes_literal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::Interval(_) | DataType::Time64(_) | DataType::Time32(_)
    )
}

fn is_text_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(
            ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_),
            _
        )
    )
}

/// `literal` cast to `other`'s type when `literal` is text and `other` of
/// a type that takes it.
fn typed(literal: Expr, other: &Expr, schema: &DFSchema) -> Expr {
    if !is_text_literal(&literal) {
        return literal;
    }
    match other.get_type(schema) {
        Ok(t) if takes_literal(&t) => cast(literal, t),
        _ => literal,
    }
}

impl ExprPlanner for ArrayOperators {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let RawBinaryExpr { op, left, right } = expr;
        if op == BinaryOperator::PGOverlap {
            let has_any = datafusion::functions_nested::expr_fn::array_has_any(left.clone(), right.clone());
            return Ok(PlannerResult::Planned(has_any));
        }
        let compares = matches!(
            op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::PGCustomBinaryOperator(_)
                | BinaryOperator::AtArrow
                | BinaryOperator::ArrowAt
        );
        if !compares {
            return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
        }
        let left = typed(left, &right, schema);
        let right = typed(right, &left, schema);
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

/// `ctx` with [`ArrayOperators`] planned before DataFusion's planners.
pub fn with_array_operators(ctx: SessionContext) -> SessionContext {
    let state = ctx.state();
    let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(ArrayOperators)];
    planners.extend(state.expr_planners().iter().cloned());
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_expr_planners(planners)
        .build();
    SessionContext::new_with_state(state)
}
