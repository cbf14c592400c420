//! A parameter cast to a type has that type: `$1::int` is an `integer`
//! parameter, as PostgreSQL infers it.
//!
//! DataFusion infers a placeholder's type only from what it is compared or
//! combined with (`id = $1`); in `SELECT $1::int + 1` or `WHERE $1::uuid =
//! id::uuid` it leaves the parameter untyped, so the server describes it
//! as `unknown` and a driver that encodes by the described type (asyncpg,
//! pgjdbc) sends text where it has a number. [`type_cast_parameters`]
//! gives each untyped placeholder under a `CAST`/`::` (or `TRY_CAST`) the
//! cast's type, with its field's metadata (which names text-stored types);
//! the cast then changes nothing. A cast to `uuid`, `json` or `jsonb` is a
//! call of one of [`crate::text_types::CASTS`]' functions by then: its
//! parameter gets that type too.
//!
//! ```
//! use datafusion::logical_expr::{cast, lit, placeholder, LogicalPlanBuilder};
//! use datafusion::arrow::datatypes::DataType;
//! use slicedb_planner::param_casts::type_cast_parameters;
//!
//! let plan = LogicalPlanBuilder::empty(true)
//!     .project(vec![cast(placeholder("$1"), DataType::Int32) + lit(1)])
//!     .unwrap()
//!     .build()
//!     .unwrap();
//! assert_eq!(plan.get_parameter_types().unwrap()["$1"], None);
//! let plan = type_cast_parameters(plan).unwrap();
//! assert_eq!(plan.get_parameter_types().unwrap()["$1"], Some(DataType::Int32));
//! ```

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::logical_expr::expr::{Cast, Placeholder, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan};

/// Types every untyped placeholder that is cast (see the module comment).
pub fn type_cast_parameters(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::Cast(Cast { expr, field }) if is_untyped_placeholder(&expr) => {
                    let expr = Box::new(typed(*expr, &field));
                    Ok(Transformed::yes(Expr::Cast(Cast { expr, field })))
                }
                Expr::TryCast(TryCast { expr, field }) if is_untyped_placeholder(&expr) => {
                    let expr = Box::new(typed(*expr, &field));
                    Ok(Transformed::yes(Expr::TryCast(TryCast { expr, field })))
                }
                Expr::ScalarFunction(mut f) if f.args.len() == 1 && is_untyped_placeholder(&f.args[0]) => {
                    let cast = crate::text_types::CASTS.iter().find(|(name, _)| *name == f.func.name());
                    match cast {
                        Some((name, pg_type)) => {
                            let arg = f.args.remove(0);
                            f.args.push(typed(arg, &crate::text_types::typed_text(name, pg_type)));
                            Ok(Transformed::yes(Expr::ScalarFunction(f)))
                        }
                        None => Ok(Transformed::no(Expr::ScalarFunction(f))),
                    }
                }
                other => Ok(Transformed::no(other)),
            })
        })
    })
    .map(|t| t.data)
}

fn is_untyped_placeholder(e: &Expr) -> bool {
    matches!(e, Expr::Placeholder(Placeholder { field: None, .. }))
}

fn typed(e: Expr, field: &datafusion::arrow::datatypes::FieldRef) -> Expr {
    match e {
        Expr::Placeholder(Placeholder { id, field: None }) => Expr::Placeholder(Placeholder {
            id,
            field: Some(field.as_ref().clone().with_nullable(true).into()),
        }),
        other => other,
    }
}
