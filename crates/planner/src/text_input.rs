//! PostgreSQL's text input where Arrow's casts read text differently.
//!
//! DataFusion inserts a cast wherever text meets another type: for
//! `INSERT … VALUES ('…')`, comparisons such as `ts > '2024-01-31 10:00'`,
//! and `'…'::type`. Arrow's cast kernels then read the text, but not always
//! as PostgreSQL does. The [`TextInput`] analyzer rule rewrites two kinds:
//!
//! - text → bytea: `'\xdead'` is two bytes to PostgreSQL, ten characters to
//!   Arrow; the cast becomes `bytea_in` (`crate::bytea`);
//! - text → timestamp: a time without seconds (`10:00`) or with a one-digit
//!   hour is refused by Arrow; the text goes through
//!   `slicedb_timestamp_text` (`crate::timestamp_text`) before the cast,
//!   which also reads PostgreSQL's special words (`epoch`, `now`,
//!   `today`…); text → date goes through `slicedb_date_text` for those;
//! - text → interval: a time of day (`1 day 02:00:00`), `@ … ago` and ISO
//!   8601 go through `slicedb_interval_text` (`crate::interval_text`);
//! - text → array: Arrow has no such cast; the text is read as PostgreSQL
//!   reads an array by `slicedb_array_text` (`crate::array_text`).
//!
//! Literals fold to constants in the optimizer afterwards, as before.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, ScalarUDF};
use datafusion::optimizer::AnalyzerRule;

use crate::bytea::ByteaIn;
use crate::timestamp_text::TimestampText;

/// Rewrites text → bytea and text → timestamp casts into PostgreSQL's input.
#[derive(Debug, Default)]
pub struct TextInput;

/// The functions the rewrite calls.
struct Inputs {
    bytea: Arc<ScalarUDF>,
    timestamp: Arc<ScalarUDF>,
    date: Arc<ScalarUDF>,
    interval: Arc<ScalarUDF>,
}

impl Inputs {
    fn new() -> Inputs {
        Inputs {
            bytea: Arc::new(ScalarUDF::from(ByteaIn::default())),
            timestamp: Arc::new(ScalarUDF::from(TimestampText::default())),
            date: Arc::new(ScalarUDF::from(TimestampText::for_dates())),
            interval: Arc::new(ScalarUDF::from(crate::interval_text::IntervalText::default())),
        }
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn call(udf: &Arc<ScalarUDF>, arg: Box<Expr>) -> Expr {
    let arg = Expr::Cast(Cast::new(arg, DataType::Utf8));
    Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), vec![arg]))
}

fn rewrite(e: Expr, schema: &DFSchema, inputs: &Inputs) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(c) = &e else {
        return Ok(Transformed::no(e));
    };
    if !c.expr.get_type(schema).map(|t| is_text(&t)).unwrap_or(false) {
        return Ok(Transformed::no(e));
    }
    let target = c.field.data_type().clone();
    match &target {
        DataType::Binary => Ok(Transformed::yes(call(&inputs.bytea, c.expr.clone()))),
        DataType::LargeBinary | DataType::BinaryView => Ok(Transformed::yes(Expr::Cast(Cast::new(
            Box::new(call(&inputs.bytea, c.expr.clone())),
            target,
        )))),
        DataType::Timestamp(_, _) => Ok(Transformed::yes(Expr::Cast(Cast::new(
            Box::new(call(&inputs.timestamp, c.expr.clone())),
            target,
        )))),
        DataType::Date32 | DataType::Date64 => Ok(Transformed::yes(Expr::Cast(Cast::new(
            Box::new(call(&inputs.date, c.expr.clone())),
            target,
        )))),
        DataType::Interval(_) => Ok(Transformed::yes(Expr::Cast(Cast::new(
            Box::new(call(&inputs.interval, c.expr.clone())),
            target,
        )))),
        DataType::List(_) => match crate::array_text::ArrayText::to(&target) {
            Some(udf) => Ok(Transformed::yes(call(&Arc::new(ScalarUDF::from(udf)), c.expr.clone()))),
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    }
}

/// Rewrites the text casts of one expression over `schema` (for
/// expressions evaluated outside a plan, such as the write router's).
pub fn pg_text_input(expr: Expr, schema: &DFSchema) -> DfResult<Expr> {
    let inputs = Inputs::new();
    expr.transform_up(|e| rewrite(e, schema, &inputs)).map(|t| t.data)
}

impl AnalyzerRule for TextInput {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let inputs = Inputs::new();
        plan.transform_up_with_subqueries(|node| {
            let schema = match node.inputs().as_slice() {
                [input] => input.schema().clone(),
                _ => Arc::new(DFSchema::empty()),
            };
            // An output keeps its name (the plan's schema must not change).
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                let rewritten = e.transform_up(|e| rewrite(e, &schema, &inputs))?;
                Ok(rewritten.update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "slicedb_text_input"
    }
}
