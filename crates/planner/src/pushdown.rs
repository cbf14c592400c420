//! Filter push-down: DataFusion expressions → slice-server predicates,
//! bucket pruning from equalities on the distribution key, and the values
//! equalities pin an index's elements to (a column, or `lower(column)` of
//! an expression index).

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use slicedb_common::{Datum, IndexDef, KeyFunction, SqlType, TableDef};
use slicedb_hashmap::{bucket_of, Bucket};
use slicedb_transport::{CmpOp, Predicate};

/// Most key combinations we enumerate for pruning (`a IN (…) AND b IN (…)`).
const MAX_KEY_COMBINATIONS: usize = 1024;

/// Converts a literal to a datum of exactly the column's type, or `None` if
/// the value does not fit (then the filter is left to DataFusion).
pub fn scalar_to_datum(value: &ScalarValue, ty: SqlType) -> Option<Datum> {
    if value.is_null() {
        return Some(Datum::Null);
    }
    if let Some(exact) = integer_or_text(value, ty) {
        return exact;
    }
    let cast = value.cast_to(&ty.arrow_type()).ok()?;
    // A lossy cast (3.5 → integer 3) would change the predicate's meaning.
    if cast.cast_to(&value.data_type()).ok()? != *value {
        return None;
    }
    let array = cast.to_array().ok()?;
    Datum::from_array(array.as_ref(), 0, ty).ok()
}

/// The literals of point queries (an integer key, a text key) converted
/// without Arrow's cast kernels, which build three one-row arrays per
/// value. `None` when the pair is not one of these; `Some(None)` when the
/// value does not fit the type exactly.
fn integer_or_text(value: &ScalarValue, ty: SqlType) -> Option<Option<Datum>> {
    let int = match value {
        ScalarValue::Int8(Some(v)) => i64::from(*v),
        ScalarValue::Int16(Some(v)) => i64::from(*v),
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => i64::from(*v),
        ScalarValue::UInt16(Some(v)) => i64::from(*v),
        ScalarValue::UInt32(Some(v)) => i64::from(*v),
        ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) | ScalarValue::Utf8View(Some(v)) => match ty {
            SqlType::Text | SqlType::Varchar(None) => return Some(Some(Datum::Text(v.clone()))),
            // The digits of a key in a statement's text (`WHERE id = 42`),
            // when they read back as written; others take the cast path.
            SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => match v.parse::<i64>() {
                Ok(int) if int.to_string() == *v => int,
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    };
    Some(match ty {
        SqlType::SmallInt => i16::try_from(int).ok().map(Datum::Int16),
        SqlType::Integer => i32::try_from(int).ok().map(Datum::Int32),
        SqlType::BigInt => Some(Datum::Int64(int)),
        _ => return None,
    })
}

/// Translates a filter into a predicate the slice servers can evaluate.
pub fn to_predicate(expr: &Expr, table: &TableDef) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let l = to_predicate(left, table)?;
                let r = to_predicate(right, table)?;
                Some(if *op == Operator::And {
                    Predicate::And(vec![l, r])
                } else {
                    Predicate::Or(vec![l, r])
                })
            }
            _ => {
                let cmp = match op {
                    Operator::Eq => CmpOp::Eq,
                    Operator::NotEq => CmpOp::NotEq,
                    Operator::Lt => CmpOp::Lt,
                    Operator::LtEq => CmpOp::LtEq,
                    Operator::Gt => CmpOp::Gt,
                    Operator::GtEq => CmpOp::GtEq,
                    _ => return None,
                };
                if let (Some(column), Some(value)) = (column_of(left, table), literal(right)) {
                    let value = scalar_to_datum(value, table.columns[column].sql_type)?;
                    Some(Predicate::Compare { column, op: cmp, value })
                } else if let (Some(value), Some(column)) = (literal(left), column_of(right, table)) {
                    let value = scalar_to_datum(value, table.columns[column].sql_type)?;
                    Some(Predicate::Compare {
                        column,
                        op: flip(cmp),
                        value,
                    })
                } else {
                    None
                }
            }
        },
        Expr::InList(list) => {
            let column = column_of(&list.expr, table)?;
            let ty = table.columns[column].sql_type;
            let values = list
                .list
                .iter()
                .map(|e| scalar_to_datum(literal(e)?, ty))
                .collect::<Option<Vec<_>>>()?;
            Some(Predicate::InList {
                column,
                values,
                negated: list.negated,
            })
        }
        Expr::IsNull(e) => Some(Predicate::IsNull(column_of(e, table)?)),
        Expr::IsNotNull(e) => Some(Predicate::IsNotNull(column_of(e, table)?)),
        Expr::Not(e) => Some(Predicate::Not(Box::new(to_predicate(e, table)?))),
        Expr::Between(b) => {
            let column = column_of(&b.expr, table)?;
            let ty = table.columns[column].sql_type;
            let low = scalar_to_datum(literal(&b.low)?, ty)?;
            let high = scalar_to_datum(literal(&b.high)?, ty)?;
            let p = Predicate::And(vec![
                Predicate::Compare {
                    column,
                    op: CmpOp::GtEq,
                    value: low,
                },
                Predicate::Compare {
                    column,
                    op: CmpOp::LtEq,
                    value: high,
                },
            ]);
            Some(if b.negated { Predicate::Not(Box::new(p)) } else { p })
        }
        _ => None,
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

fn column_of(expr: &Expr, table: &TableDef) -> Option<usize> {
    match expr {
        Expr::Column(c) => table.column_index(&c.name),
        _ => None,
    }
}

/// The column of `expr` if it is an index element: the column itself
/// (`KeyFunction::None`), or the index's function of it (`lower(email)`,
/// the column perhaps cast to another string type).
fn element_of(expr: &Expr, table: &TableDef, function: KeyFunction) -> Option<usize> {
    let Some(name) = function.name() else {
        return column_of(expr, table);
    };
    match expr {
        Expr::ScalarFunction(f) if f.args.len() == 1 && f.name() == name => match &f.args[0] {
            Expr::Cast(c)
                if matches!(
                    c.field.data_type(),
                    DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                ) =>
            {
                column_of(&c.expr, table)
            }
            other => column_of(other, table),
        },
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// The values each column is pinned to by top-level equalities (`c = v`,
/// `c IN (…)`) in `filters`, which are ANDed together.
fn pinned_values(filters: &[Expr], table: &TableDef, column: usize, function: KeyFunction) -> Option<Vec<Datum>> {
    let ty = table.columns[column].sql_type;
    let mut result: Option<Vec<Datum>> = None;
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    for c in conjuncts {
        let values = pinned_by(c, table, (column, function), ty);
        if let Some(mut values) = values {
            values.retain(|d| !d.is_null());
            let mut unique: Vec<Datum> = Vec::with_capacity(values.len());
            for v in values {
                if !unique.contains(&v) {
                    unique.push(v);
                }
            }
            let values = unique;
            result = Some(match result {
                None => values,
                Some(prev) => prev.into_iter().filter(|d| values.contains(d)).collect(),
            });
        }
    }
    result
}

/// The values `e` pins `column` to: `c = v`, `c IN (…)`, or an OR of those
/// (DataFusion turns short IN lists into ORs).
fn pinned_by(e: &Expr, table: &TableDef, element: (usize, KeyFunction), ty: SqlType) -> Option<Vec<Datum>> {
    let (column, function) = element;
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let v = if element_of(left, table, function) == Some(column) {
                literal(right)
            } else if element_of(right, table, function) == Some(column) {
                literal(left)
            } else {
                None
            };
            v.and_then(|v| scalar_to_datum(v, ty)).map(|d| vec![d])
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut values = pinned_by(left, table, element, ty)?;
            for v in pinned_by(right, table, element, ty)? {
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            Some(values)
        }
        Expr::InList(list) if !list.negated && element_of(&list.expr, table, function) == Some(column) => list
            .list
            .iter()
            .map(|e| literal(e).and_then(|v| scalar_to_datum(v, ty)))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

/// All combinations of pinned values for `columns`, if every column is
/// pinned and there are not too many.
pub fn key_combinations(filters: &[Expr], table: &TableDef, columns: &[usize]) -> Option<Vec<Vec<Datum>>> {
    combinations(filters, table, columns.iter().map(|c| (*c, KeyFunction::None)))
}

/// All combinations of pinned values for the elements of `index` (an
/// expression index's `lower(email) = 'a@x.org'` pins its element), if
/// every element is pinned and there are not too many.
pub fn index_key_combinations(filters: &[Expr], table: &TableDef, index: &IndexDef) -> Option<Vec<Vec<Datum>>> {
    combinations(
        filters,
        table,
        index.columns.iter().enumerate().map(|(n, c)| (*c, index.function(n))),
    )
}

/// Whether `filter` pins an element of one of `table`'s expression indexes,
/// which the scan can then read through.
pub fn pins_expression_index(filter: &Expr, table: &TableDef) -> bool {
    let expression_index = |i: &&IndexDef| i.predicate.is_empty() && !i.is_plain();
    table.indexes.iter().filter(expression_index).any(|i| {
        i.columns.iter().enumerate().any(|(n, c)| {
            let f = i.function(n);
            f != KeyFunction::None && pinned_values(std::slice::from_ref(filter), table, *c, f).is_some()
        })
    })
}

fn combinations(
    filters: &[Expr],
    table: &TableDef,
    elements: impl Iterator<Item = (usize, KeyFunction)>,
) -> Option<Vec<Vec<Datum>>> {
    let mut combos: Vec<Vec<Datum>> = vec![Vec::new()];
    for (c, function) in elements {
        let values = pinned_values(filters, table, c, function)?;
        if combos.len() * values.len().max(1) > MAX_KEY_COMBINATIONS {
            return None;
        }
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut k = prefix.clone();
                    k.push(v.clone());
                    k
                })
            })
            .collect();
    }
    Some(combos)
}

/// The buckets a query can touch, if the filters pin the distribution key.
pub fn prune_buckets(filters: &[Expr], table: &TableDef) -> Option<BTreeSet<Bucket>> {
    let combos = key_combinations(filters, table, &table.distribution_key)?;
    Some(combos.iter().map(|k| bucket_of(k.iter())).collect())
}

/// The primary keys a query reads, if the filters pin every primary-key
/// column: `(bucket, key values)` for point reads.
pub fn point_keys(filters: &[Expr], table: &TableDef) -> Option<Vec<(Bucket, Vec<Datum>)>> {
    if !table.has_primary_key() {
        return None;
    }
    let combos = key_combinations(filters, table, &table.primary_key)?;
    Some(
        combos
            .into_iter()
            .map(|pk| {
                let dist: Vec<&Datum> = table
                    .distribution_key
                    .iter()
                    .map(|c| {
                        let pos = table.primary_key.iter().position(|p| p == c).unwrap_or(0);
                        &pk[pos]
                    })
                    .collect();
                (bucket_of(dist), pk)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};
    use slicedb_common::ColumnDef;

    use super::*;

    fn table() -> TableDef {
        let c = |name: &str, sql_type| ColumnDef::new(name, sql_type);
        let columns = vec![
            c("region", SqlType::Text),
            c("id", SqlType::BigInt),
            c("v", SqlType::Integer),
        ];
        TableDef {
            distribution_key: vec![0],
            ..TableDef::new(1, "t", columns, vec![0, 1], "hm1")
        }
    }

    /// The general conversion: Arrow casts there and back, as before the
    /// fast path.
    fn through_arrow(value: &ScalarValue, ty: SqlType) -> Option<Datum> {
        let cast = value.cast_to(&ty.arrow_type()).ok()?;
        if cast.cast_to(&value.data_type()).ok()? != *value {
            return None;
        }
        Datum::from_array(cast.to_array().ok()?.as_ref(), 0, ty).ok()
    }

    #[test]
    fn integer_and_text_literals_convert_as_arrow_casts_do() {
        let values = [
            ScalarValue::Int64(Some(7)),
            ScalarValue::Int64(Some(-40_000)),
            ScalarValue::Int64(Some(1 << 40)),
            ScalarValue::Int64(Some(i64::MIN)),
            ScalarValue::Int32(Some(i32::MAX)),
            ScalarValue::Int16(Some(-3)),
            ScalarValue::UInt32(Some(u32::MAX)),
            ScalarValue::Utf8(Some("abc".into())),
            ScalarValue::Utf8(Some("12".into())),
            ScalarValue::Utf8(Some("-40000".into())),
            ScalarValue::Utf8(Some("2147483648".into())),
            ScalarValue::Utf8(Some("9223372036854775808".into())),
            ScalarValue::Utf8(Some("012".into())),
            ScalarValue::Utf8(Some("+5".into())),
            ScalarValue::Utf8(Some(" 5".into())),
            ScalarValue::Float64(Some(3.5)),
            ScalarValue::Float64(Some(3.0)),
        ];
        let types = [
            SqlType::SmallInt,
            SqlType::Integer,
            SqlType::BigInt,
            SqlType::Text,
            SqlType::Varchar(None),
            SqlType::Varchar(Some(2)),
            SqlType::Double,
        ];
        for v in &values {
            for ty in types {
                assert_eq!(scalar_to_datum(v, ty), through_arrow(v, ty), "{v:?} as {ty:?}");
            }
        }
    }

    #[test]
    fn equalities_pin_buckets_and_keys() {
        let t = table();
        let f = vec![col("region")
            .eq(lit("eu"))
            .and(col("id").in_list(vec![lit(1i64), lit(2i64)], false))];
        assert_eq!(prune_buckets(&f, &t).unwrap().len(), 1);
        assert_eq!(point_keys(&f, &t).unwrap().len(), 2);
        // OR of equalities, as DataFusion rewrites short IN lists
        let f = vec![col("region").eq(lit("eu")).or(col("region").eq(lit("us")))];
        assert_eq!(pinned_values(&f, &t, 0, KeyFunction::None).unwrap().len(), 2);
        assert!(point_keys(&f, &t).is_none(), "id is not pinned");
        // a range does not pin anything
        assert!(prune_buckets(&[col("region").gt(lit("a"))], &t).is_none());
        // contradictory equalities pin nothing
        let f = vec![col("region").eq(lit("a")), col("region").eq(lit("b"))];
        assert_eq!(prune_buckets(&f, &t).unwrap().len(), 0);
    }

    #[test]
    fn literals_convert_only_when_lossless() {
        assert_eq!(
            scalar_to_datum(&ScalarValue::Int32(Some(5)), SqlType::BigInt),
            Some(Datum::Int64(5))
        );
        assert_eq!(
            scalar_to_datum(&ScalarValue::Float64(Some(3.5)), SqlType::Integer),
            None
        );
        let p = to_predicate(&col("v").lt(lit(10i64)), &table()).unwrap();
        assert_eq!(p.eval(&[Datum::Null, Datum::Null, Datum::Int32(3)]), Some(true));
        assert_eq!(p.eval(&[Datum::Null, Datum::Null, Datum::Null]), None);
    }
}
