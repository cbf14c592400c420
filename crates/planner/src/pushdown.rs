//! Filter push-down: DataFusion expressions → slice-server predicates, and
//! bucket pruning from equalities on the distribution key.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use slicedb_common::{Datum, SqlType, TableDef};
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
    let cast = value.cast_to(&ty.arrow_type()).ok()?;
    // A lossy cast (3.5 → integer 3) would change the predicate's meaning.
    if cast.cast_to(&value.data_type()).ok()? != *value {
        return None;
    }
    let array = cast.to_array().ok()?;
    Datum::from_array(array.as_ref(), 0, ty).ok()
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

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// The values each column is pinned to by top-level equalities (`c = v`,
/// `c IN (…)`) in `filters`, which are ANDed together.
fn pinned_values(filters: &[Expr], table: &TableDef, column: usize) -> Option<Vec<Datum>> {
    let ty = table.columns[column].sql_type;
    let mut result: Option<Vec<Datum>> = None;
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    for c in conjuncts {
        let values = match c {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                let v = if column_of(left, table) == Some(column) {
                    literal(right)
                } else if column_of(right, table) == Some(column) {
                    literal(left)
                } else {
                    None
                };
                v.and_then(|v| scalar_to_datum(v, ty)).map(|d| vec![d])
            }
            Expr::InList(list) if !list.negated && column_of(&list.expr, table) == Some(column) => list
                .list
                .iter()
                .map(|e| literal(e).and_then(|v| scalar_to_datum(v, ty)))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        if let Some(mut values) = values {
            values.retain(|d| !d.is_null());
            result = Some(match result {
                None => values,
                Some(prev) => prev.into_iter().filter(|d| values.contains(d)).collect(),
            });
        }
    }
    result
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
fn key_combinations(filters: &[Expr], table: &TableDef, columns: &[usize]) -> Option<Vec<Vec<Datum>>> {
    let mut combos: Vec<Vec<Datum>> = vec![Vec::new()];
    for c in columns {
        let values = pinned_values(filters, table, *c)?;
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
