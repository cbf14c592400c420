//! `AT TIME ZONE` of a `timestamptz`, as PostgreSQL reads it.
//!
//! DataFusion plans `x AT TIME ZONE 'z'` as a cast to a nanosecond
//! timestamp in zone `z`. For a `timestamp` (no zone) that is PostgreSQL's
//! meaning: the wall time in `z`, as an instant (`timestamptz`). For a
//! `timestamptz` PostgreSQL gives the wall time in `z` as a `timestamp`
//! (`timestamptz '2020-01-01 00:00+00' AT TIME ZONE 'America/New_York'` is
//! `2019-12-31 19:00:00`); DataFusion's cast keeps the instant, which
//! slicedb prints in UTC, so the zone changed nothing. [`rewrite_expr`]
//! makes such a cast the wall time: `to_local_time` of it.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable};

/// Whether `e` is an `AT TIME ZONE` of a `timestamptz`: DataFusion's cast
/// of a zoned timestamp to a nanosecond timestamp in another zone. (A cast
/// to `timestamptz` keeps the session's zone, `+00:00`, and stays a cast;
/// so does `AT TIME ZONE '+00:00'`, which changes no wall time.)
fn at_time_zone_of_instant(cast: &Cast, schema: &DFSchema) -> bool {
    match (cast.field.data_type(), cast.expr.get_type(schema)) {
        (DataType::Timestamp(TimeUnit::Nanosecond, Some(to)), Ok(DataType::Timestamp(_, Some(from)))) => to != &from,
        _ => false,
    }
}

/// Makes each `AT TIME ZONE` of a `timestamptz` in `expr` its wall time in
/// that zone (see the module comment).
pub(crate) fn rewrite_expr(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    expr.transform_up(|e| match e {
        Expr::Cast(c) if at_time_zone_of_instant(&c, schema) => Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(datafusion::functions::datetime::to_local_time(), vec![Expr::Cast(c)]),
        ))),
        other => Ok(Transformed::no(other)),
    })
}
