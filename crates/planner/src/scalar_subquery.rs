//! A scalar subquery is NULL when it finds no row, whatever the column it
//! reads.
//!
//! DataFusion types `(SELECT c FROM t WHERE …)` with the nullability of `c`
//! as the subquery produces it, and a filter such as `c > 10` makes `c`
//! non-nullable there; when the subquery then finds no row, the query
//! fails ("declared as non-nullable but contains null values") where
//! PostgreSQL answers NULL. The [`NullableScalarSubquery`] analyzer rule
//! wraps every scalar subquery in [`Nullable`], an identity function whose
//! result is nullable, keeping the expression's name.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// `slicedb_nullable(x)`: `x`, typed as nullable.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Nullable {
    signature: Signature,
}

impl Default for Nullable {
    fn default() -> Self {
        Nullable {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Nullable {
    fn name(&self) -> &str {
        "slicedb_nullable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(args.args.remove(0))
    }
}

/// Wraps scalar subqueries in [`Nullable`].
#[derive(Debug, Default)]
pub struct NullableScalarSubquery;

impl AnalyzerRule for NullableScalarSubquery {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let udf = Arc::new(ScalarUDF::from(Nullable::default()));
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let out = e.transform_up(|e| match e {
                    Expr::ScalarSubquery(_) => Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                        udf.clone(),
                        vec![e],
                    )))),
                    other => Ok(Transformed::no(other)),
                })?;
                Ok(out.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "slicedb_nullable_scalar_subquery"
    }
}
