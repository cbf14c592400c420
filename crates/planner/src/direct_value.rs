//! Values the write router computes from the syntax tree alone.
//!
//! For each value of a routed write ([`crate::point_write`]) the router
//! converted the expression to DataFusion's, coerced and evaluated it over a
//! one-row batch: for pgbench's `abalance + 1234`, a key `42` or
//! `CURRENT_TIMESTAMP` that was a seventh of the server's CPU under TPC-B
//! (`docs/benchmarks.md`). The shapes such statements use are computed here
//! directly, with PostgreSQL's types and errors:
//!
//! - `NULL`, for a column of any type;
//! - an integer literal, negated or not: `integer` if it fits, else
//!   `bigint` (a larger one is `numeric`: not here);
//! - a bound parameter of an integer type;
//! - an integer column of the row being updated, bare or qualified;
//! - `a + b` and `a - b` of two of these, computed in the wider of their
//!   types, which fails with 22003 when the result leaves it (`integer out
//!   of range`), as PostgreSQL's operators do;
//!
//! assigned to a `smallint`, `integer` or `bigint` column, which fails with
//! 22003 when the value does not fit it; and `CURRENT_TIMESTAMP` or `now()`
//! for a `timestamp` or `timestamptz` column: the statement's start time,
//! as the planner's simplifier folds it. Anything else is `None` here and
//! takes DataFusion's path, which answers the same.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Int16Array, Int32Array, Int64Array, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, FunctionArguments, UnaryOperator, Value};
use slicedb_common::int_arith::out_of_range;
use slicedb_common::{Result, TableDef};

use crate::point_query::column_ref;

/// An operand: a constant of a PostgreSQL integer type (`Int16`, `Int32`
/// or `Int64`), NULL, or a column of the old row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    Null,
    Const(i64, DataType),
    Column(usize, DataType),
}

/// A recognized value, ready to be computed once the old row is known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DirectValue {
    Term(Term),
    /// The statement's start time, in microseconds since 1970 (UTC).
    Now(i64),
    /// `left + right` (`negate: false`) or `left - right`.
    Sum {
        left: Term,
        right: Term,
        negate: bool,
    },
}

fn is_integer(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

/// The narrowest of PostgreSQL's `integer` and `bigint` that holds `v`.
fn literal_type(v: i64) -> DataType {
    match i32::try_from(v) {
        Ok(_) => DataType::Int32,
        Err(_) => DataType::Int64,
    }
}

fn fits(v: i128, t: &DataType) -> bool {
    match t {
        DataType::Int16 => i16::try_from(v).is_ok(),
        DataType::Int32 => i32::try_from(v).is_ok(),
        _ => i64::try_from(v).is_ok(),
    }
}

/// The wider of two integer types.
fn wider(a: &DataType, b: &DataType) -> DataType {
    let rank = |t: &DataType| match t {
        DataType::Int16 => 0,
        DataType::Int32 => 1,
        _ => 2,
    };
    if rank(a) >= rank(b) {
        a.clone()
    } else {
        b.clone()
    }
}

/// The row an UPDATE computes its new values from: which table, the name
/// that qualifies its columns, and the old row (one row of every column).
pub(crate) struct OldRow<'a> {
    pub def: &'a TableDef,
    pub qualifier: &'a str,
}

impl DirectValue {
    /// Recognizes `e` as a value for a column of type `target`. `row` gives
    /// the columns an UPDATE may read; an INSERT has none.
    pub(crate) fn parse(
        e: &Expr,
        target: &DataType,
        row: Option<&OldRow<'_>>,
        params: Option<&ParamValues>,
        now: Option<DateTime<Utc>>,
    ) -> Option<DirectValue> {
        if matches!(target, DataType::Timestamp(TimeUnit::Microsecond, _)) && is_now(e) {
            return Some(DirectValue::Now(now?.timestamp_micros()));
        }
        let value = match e {
            Expr::BinaryOp { left, op, right } => {
                let negate = match op {
                    BinaryOperator::Plus => false,
                    BinaryOperator::Minus => true,
                    _ => return None,
                };
                DirectValue::Sum {
                    left: term(left, row, params)?,
                    right: term(right, row, params)?,
                    negate,
                }
            }
            other => DirectValue::Term(term(other, row, params)?),
        };
        // NULL fits any column; a number only an integer one.
        (is_integer(target) || value == DirectValue::Term(Term::Null)).then_some(value)
    }

    /// The value as a one-element array of `target`'s type, computed over
    /// `old` (the row an UPDATE changes; ignored by an INSERT's values).
    pub(crate) fn compute(&self, target: &DataType, old: Option<&RecordBatch>) -> Result<ArrayRef> {
        let value = match self {
            DirectValue::Now(micros) => {
                let tz = match target {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                return Ok(Arc::new(
                    TimestampMicrosecondArray::from(vec![*micros]).with_timezone_opt(tz),
                ));
            }
            DirectValue::Term(t) => operand(t, old)?,
            DirectValue::Sum { left, right, negate } => match (operand(left, old)?, operand(right, old)?) {
                (Some((l, lt)), Some((r, rt))) => {
                    let t = wider(&lt, &rt);
                    let v = if *negate { l - r } else { l + r };
                    if !fits(v, &t) {
                        return Err(out_of_range(&t));
                    }
                    Some((v, t))
                }
                _ => None,
            },
        };
        let Some((v, _)) = value else {
            return Ok(new_null_array(target, 1));
        };
        if !fits(v, target) {
            return Err(out_of_range(target));
        }
        // `fits` checked the narrowing casts.
        Ok(match target {
            DataType::Int16 => Arc::new(Int16Array::from(vec![v as i16])),
            DataType::Int32 => Arc::new(Int32Array::from(vec![v as i32])),
            _ => Arc::new(Int64Array::from(vec![v as i64])),
        })
    }
}

/// An operand's value and type, `None` if NULL.
fn operand(t: &Term, old: Option<&RecordBatch>) -> Result<Option<(i128, DataType)>> {
    Ok(match t {
        Term::Null => None,
        Term::Const(v, t) => Some((*v as i128, t.clone())),
        Term::Column(c, t) => {
            let Some(column) = old.map(|b| b.column(*c)).filter(|a| a.len() == 1 && !a.is_null(0)) else {
                return Ok(None);
            };
            let v = match t {
                DataType::Int16 => column.as_primitive_opt::<Int16Type>().map(|a| a.value(0) as i64),
                DataType::Int32 => column.as_primitive_opt::<Int32Type>().map(|a| a.value(0) as i64),
                _ => column.as_primitive_opt::<Int64Type>().map(|a| a.value(0)),
            };
            let Some(v) = v else {
                return Err(slicedb_common::Error::internal(format!(
                    "column {c} of the old row is not of type {t}"
                )));
            };
            Some((v as i128, t.clone()))
        }
    })
}

/// `CURRENT_TIMESTAMP` or `now()`.
fn is_now(e: &Expr) -> bool {
    let Expr::Function(f) = e else { return false };
    let [name] = f.name.0.as_slice() else { return false };
    let Some(name) = name.as_ident().map(|i| i.value.to_ascii_lowercase()) else {
        return false;
    };
    let plain = f.filter.is_none() && f.over.is_none() && f.within_group.is_empty() && f.null_treatment.is_none();
    plain
        && match &f.args {
            FunctionArguments::None => name == "current_timestamp",
            FunctionArguments::List(l) => name == "now" && l.args.is_empty() && l.clauses.is_empty(),
            FunctionArguments::Subquery(_) => false,
        }
}

fn term(e: &Expr, row: Option<&OldRow<'_>>, params: Option<&ParamValues>) -> Option<Term> {
    match e {
        Expr::Nested(inner) => term(inner, row, params),
        Expr::Value(v) => match &v.value {
            Value::Null => Some(Term::Null),
            Value::Number(digits, false) => {
                let v: i64 = digits.parse().ok()?;
                Some(Term::Const(v, literal_type(v)))
            }
            Value::Placeholder(id) => match params?.get_placeholders_with_values(id).ok()?.value {
                ScalarValue::Int16(v) => Some(v.map_or(Term::Null, |v| Term::Const(v as i64, DataType::Int16))),
                ScalarValue::Int32(v) => Some(v.map_or(Term::Null, |v| Term::Const(v as i64, DataType::Int32))),
                ScalarValue::Int64(v) => Some(v.map_or(Term::Null, |v| Term::Const(v, DataType::Int64))),
                _ => None,
            },
            _ => None,
        },
        // PostgreSQL folds the sign into the constant: `-2147483648` is an
        // `integer`.
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(digits, false) => {
                    let v = digits.parse::<i128>().ok()?.checked_neg()?;
                    let v = i64::try_from(v).ok()?;
                    Some(Term::Const(v, literal_type(v)))
                }
                _ => None,
            },
            _ => None,
        },
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            let row = row?;
            let name = column_ref(e, &[row.qualifier.to_string()])?;
            let c = row.def.column_index(&name)?;
            let t = row.def.columns[c].sql_type.arrow_type();
            is_integer(&t).then_some(Term::Column(c, t))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use slicedb_common::{ColumnDef, SqlType};

    fn expr(sql: &str) -> Expr {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap()
    }

    fn table() -> TableDef {
        let c = |name: &str, sql_type| ColumnDef::new(name, sql_type);
        let columns = vec![
            c("id", SqlType::Integer),
            c("bal", SqlType::Integer),
            c("name", SqlType::Text),
        ];
        TableDef::new(1, "acct", columns, vec![0], "hm1")
    }

    fn old(bal: Option<i32>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("bal", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![1])),
                Arc::new(Int32Array::from(vec![bal])),
                Arc::new(datafusion::arrow::array::StringArray::from(vec!["x"])),
            ],
        )
        .unwrap()
    }

    /// The value of `sql` for a column of type `target` over a row whose
    /// `bal` is `bal`: `Ok(None)` if not recognized.
    fn value(sql: &str, target: DataType, bal: Option<i32>) -> Result<Option<Option<i64>>> {
        let def = table();
        let row = OldRow {
            def: &def,
            qualifier: "acct",
        };
        let params = ParamValues::List(vec![
            ScalarValue::Int32(Some(5)).into(),
            ScalarValue::Utf8(Some("5".into())).into(),
        ]);
        let Some(v) = DirectValue::parse(&expr(sql), &target, Some(&row), Some(&params), None) else {
            return Ok(None);
        };
        let a = v.compute(&target, Some(&old(bal)))?;
        assert_eq!(a.data_type(), &target);
        let cast = datafusion::arrow::compute::cast(&a, &DataType::Int64).unwrap();
        let a = cast.as_primitive::<Int64Type>();
        Ok(Some(a.is_valid(0).then(|| a.value(0))))
    }

    #[test]
    fn computes_sums_of_columns_literals_and_parameters() {
        assert_eq!(value("bal + 7", DataType::Int32, Some(10)).unwrap(), Some(Some(17)));
        assert_eq!(
            value("acct.bal - $1", DataType::Int64, Some(10)).unwrap(),
            Some(Some(5))
        );
        assert_eq!(value("-3 + (bal)", DataType::Int16, Some(10)).unwrap(), Some(Some(7)));
        assert_eq!(value("42", DataType::Int64, None).unwrap(), Some(Some(42)));
        assert_eq!(value("bal + 1", DataType::Int32, None).unwrap(), Some(None));
        assert_eq!(value("NULL", DataType::Int32, Some(1)).unwrap(), Some(None));
    }

    #[test]
    fn overflow_is_named_after_the_operation_then_the_column() {
        let err = |sql, t, bal| value(sql, t, bal).unwrap_err().message;
        // integer + integer overflows the integer operation
        assert_eq!(err("bal + 1", DataType::Int64, Some(i32::MAX)), "integer out of range");
        // integer + bigint is computed in bigint, then does not fit the smallint column
        assert_eq!(
            err("bal + 3000000000", DataType::Int16, Some(1)),
            "smallint out of range"
        );
        assert_eq!(err("-2147483648 - 1", DataType::Int64, None), "integer out of range");
        assert_eq!(
            value("-2147483648", DataType::Int32, None).unwrap(),
            Some(Some(i32::MIN as i64))
        );
        assert_eq!(
            err("9223372036854775807 + 1", DataType::Int64, None),
            "bigint out of range"
        );
    }

    #[test]
    fn now_is_the_statements_start_for_timestamp_columns() {
        let start = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123456789Z")
            .unwrap()
            .to_utc();
        for (target, tz) in [
            (DataType::Timestamp(TimeUnit::Microsecond, None), None),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                Some("+00:00"),
            ),
        ] {
            for sql in ["CURRENT_TIMESTAMP", "now()", "NOW()"] {
                let v = DirectValue::parse(&expr(sql), &target, None, None, Some(start)).unwrap();
                let a = v.compute(&target, None).unwrap();
                assert_eq!(a.data_type(), &target);
                let a = a.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
                assert_eq!((a.value(0), a.timezone()), (start.timestamp_micros(), tz), "{sql}");
            }
            // Not known without a start time; other functions and shapes are DataFusion's.
            assert!(DirectValue::parse(&expr("now()"), &target, None, None, None).is_none());
            for sql in [
                "now(1)",
                "clock_timestamp()",
                "CURRENT_TIMESTAMP(2)",
                "now() + interval '1 day'",
            ] {
                assert!(
                    DirectValue::parse(&expr(sql), &target, None, None, Some(start)).is_none(),
                    "{sql}"
                );
            }
        }
        // NULL is NULL for a timestamp column too.
        let target = DataType::Timestamp(TimeUnit::Microsecond, None);
        let null = DirectValue::parse(&expr("NULL"), &target, None, None, Some(start)).unwrap();
        assert!(null.compute(&target, None).unwrap().is_null(0));
        // now() for a column of another type is DataFusion's cast.
        assert!(DirectValue::parse(&expr("now()"), &DataType::Date32, None, None, Some(start)).is_none());
    }

    #[test]
    fn other_shapes_take_datafusions_path() {
        for sql in [
            "bal * 2",
            "name",
            "bal + 1.5",
            "$2 + 1",
            "99999999999999999999",
            "abs(bal)",
            "other + 1",
            "x.bal + 1",
        ] {
            assert_eq!(value(sql, DataType::Int32, Some(1)).unwrap(), None, "{sql}");
        }
        // A number for a column that is not an integer.
        assert_eq!(value("1", DataType::Utf8, Some(1)).unwrap(), None);
    }
}
