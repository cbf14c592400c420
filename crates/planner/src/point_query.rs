//! The point-query router: `SELECT cols FROM t WHERE pk = v` without DataFusion.
//!
//! A query that names one table, projects plain columns and pins every
//! primary-key column with an equality (and nothing else) reads exactly one
//! row key in one bucket on one slice server. One that pins every column of
//! a usable unique index instead reads that index's entry (one bucket, one
//! slice server), then the row it names. Planning it through DataFusion
//! costs far more than the read itself, so such queries are recognized on
//! the parsed statement and sent straight to the owning slice server, as
//! Citus's fast-path router planner does. Anything else — joins, other
//! predicates, expressions, ORDER BY, LIMIT, casts that would change a value —
//! is left to DataFusion, so results are the same either way.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BinaryArray};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, ObjectName, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use futures::TryStreamExt;
use slicedb_codec::key::{bucket_of_row_key, row_key};
use slicedb_codec::ReadAt;
use slicedb_common::{Datum, IndexDef, Result, TableDef};
use slicedb_hashmap::bucket_of;
use slicedb_transport::ScanRequest;

use crate::pushdown::scalar_to_datum;
use crate::table::SliceTable;

/// What a point query's equalities pin.
enum Pinned {
    PrimaryKey,
    Unique(IndexDef),
}

/// A recognized point query, before its table is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PointQuery {
    /// The table name as written (folded like an identifier).
    pub table: String,
    /// Projected columns: `None` is `*`; otherwise (column, output name).
    pub columns: Option<Vec<(String, String)>>,
    /// `column = value` conjuncts.
    pub equalities: Vec<(String, KeyValue)>,
}

/// The right-hand side of an equality.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// A literal, kept as its text (cast losslessly to the column type later).
    Literal(String),
    /// `$n`, bound at execution.
    Placeholder(String),
}

pub(crate) fn ident_name(i: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// A column reference, bare or qualified by the table (or its alias).
pub(crate) fn column_ref(e: &Expr, qualifiers: &[String]) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident_name(i)),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 && qualifiers.contains(&ident_name(&parts[0])) => {
            Some(ident_name(&parts[1]))
        }
        Expr::Nested(inner) => column_ref(inner, qualifiers),
        _ => None,
    }
}

fn key_value(e: &Expr) -> Option<KeyValue> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, false) => Some(KeyValue::Literal(n.to_string())),
            Value::SingleQuotedString(s) => Some(KeyValue::Literal(s.clone())),
            Value::Placeholder(p) => Some(KeyValue::Placeholder(p.clone())),
            _ => None,
        },
        Expr::Nested(inner) => key_value(inner),
        _ => None,
    }
}

pub(crate) fn equalities(e: &Expr, qualifiers: &[String], out: &mut Vec<(String, KeyValue)>) -> Option<()> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            equalities(left, qualifiers, out)?;
            equalities(right, qualifiers, out)
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let pair = match (column_ref(left, qualifiers), key_value(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column_ref(right, qualifiers)?, key_value(left)?),
            };
            out.push(pair);
            Some(())
        }
        Expr::Nested(inner) => equalities(inner, qualifiers, out),
        _ => None,
    }
}

/// A plain table reference (`t`, `public.t`, `t AS x` without column
/// aliases): its name and the names that qualify its columns.
pub(crate) fn plain_table(relation: &TableFactor) -> Option<(String, Vec<String>)> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        with_hints,
        version: None,
        partitions,
        with_ordinality: false,
        json_path: None,
        sample: None,
        index_hints,
        ..
    } = relation
    else {
        return None;
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return None;
    }
    let table = object_table(name)?;
    let mut qualifiers = vec![table.clone()];
    if let Some(a) = alias {
        if !a.columns.is_empty() {
            return None;
        }
        qualifiers = vec![ident_name(&a.name)];
    }
    Some((table, qualifiers))
}

/// The table an object name names (`t` or `public.t`).
pub(crate) fn object_table(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident_name))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [t] => Some(t.clone()),
        [schema, t] if schema == "public" => Some(t.clone()),
        _ => None,
    }
}

impl PointQuery {
    /// Recognizes the shape on a parsed statement (the table is not checked yet).
    pub fn recognize(stmt: &Statement) -> Option<PointQuery> {
        let Statement::Query(q) = stmt else { return None };
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = q.as_ref();
        if with.is_some()
            || order_by.is_some()
            || limit_clause.is_some()
            || fetch.is_some()
            || !locks.is_empty()
            || for_clause.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || !pipe_operators.is_empty()
        {
            return None;
        }
        let SetExpr::Select(s) = body.as_ref() else { return None };
        let plain = s.distinct.is_none()
            && s.top.is_none()
            && s.into.is_none()
            && s.exclude.is_none()
            && s.from.len() == 1
            && s.from[0].joins.is_empty()
            && s.lateral_views.is_empty()
            && s.prewhere.is_none()
            && s.connect_by.is_empty()
            && matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
            && s.cluster_by.is_empty()
            && s.distribute_by.is_empty()
            && s.sort_by.is_empty()
            && s.having.is_none()
            && s.named_window.is_empty()
            && s.qualify.is_none()
            && s.value_table_mode.is_none();
        if !plain {
            return None;
        }
        let (table, qualifiers) = plain_table(&s.from[0].relation)?;
        let columns = match s.projection.as_slice() {
            [SelectItem::Wildcard(opts)] if opts.to_string().is_empty() => None,
            items => Some(
                items
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(e) => column_ref(e, &qualifiers).map(|c| (c.clone(), c)),
                        SelectItem::ExprWithAlias { expr, alias } => {
                            column_ref(expr, &qualifiers).map(|c| (c, ident_name(alias)))
                        }
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
        };
        let mut eqs = Vec::new();
        equalities(s.selection.as_ref()?, &qualifiers, &mut eqs)?;
        Some(PointQuery {
            table,
            columns,
            equalities: eqs,
        })
    }

    /// Are the equalities exactly one per column of `columns`?
    fn pins(&self, def: &TableDef, columns: &[usize]) -> bool {
        !columns.is_empty()
            && self.equalities.len() == columns.len()
            && columns.iter().all(|c| {
                let name = &def.columns[*c].name;
                self.equalities.iter().filter(|(e, _)| e == name).count() == 1
            })
    }

    /// What the equalities pin: the primary key, or else a unique index
    /// (its entry gives the row's key: one more point read).
    fn pinned(&self, def: &TableDef) -> Option<Pinned> {
        if self.pins(def, &def.primary_key) {
            return Some(Pinned::PrimaryKey);
        }
        def.indexes
            .iter()
            .find(|i| i.unique && !i.building && i.is_plain() && self.pins(def, &i.columns))
            .map(|i| Pinned::Unique(i.clone()))
    }

    /// The output schema, if the query fits `table` (every column exists and
    /// the equalities are exactly one per column of its primary key or of
    /// a unique index).
    pub fn plan(&self, table: &SliceTable) -> Option<(Vec<usize>, SchemaRef)> {
        let def = &table.table;
        self.pinned(def)?;
        let schema = def.schema();
        let (projection, fields): (Vec<usize>, Vec<_>) = match &self.columns {
            None => (0..def.columns.len()).map(|i| (i, schema.field(i).clone())).unzip(),
            Some(cols) => cols
                .iter()
                .map(|(c, out)| {
                    let i = def.column_index(c)?;
                    Some((i, schema.field(i).clone().with_name(out)))
                })
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .unzip(),
        };
        Some((projection, Arc::new(Schema::new(fields))))
    }

    /// The row's bucket and primary-key values. `None` if the query does
    /// not fit the table or a key value does not convert losslessly to its
    /// column type (then DataFusion plans the statement and decides).
    pub fn key(&self, table: &SliceTable, params: Option<&ParamValues>) -> Option<(u16, Vec<Datum>)> {
        let def = &table.table;
        if !self.pins(def, &def.primary_key) {
            return None;
        }
        Some(self.values(def, &def.primary_key, params)?).map(|pk| {
            let dist: Vec<&Datum> = def
                .distribution_key
                .iter()
                .filter_map(|c| def.primary_key.iter().position(|p| p == c).map(|i| &pk[i]))
                .collect();
            (bucket_of(dist), pk)
        })
    }

    /// The values the equalities give `columns`, converted losslessly to
    /// their types (`None` otherwise, or for a NULL).
    fn values(&self, def: &TableDef, columns: &[usize], params: Option<&ParamValues>) -> Option<Vec<Datum>> {
        let mut pk = Vec::with_capacity(columns.len());
        for col in columns {
            let column = &def.columns[*col];
            let value = &self.equalities.iter().find(|(c, _)| *c == column.name).map(|(_, v)| v);
            let scalar = match value {
                Some(KeyValue::Literal(text)) => ScalarValue::Utf8(Some(text.clone())),
                Some(KeyValue::Placeholder(id)) => match params.map(|p| p.get_placeholders_with_values(id)) {
                    Some(Ok(v)) => v.value().clone(),
                    _ => return None,
                },
                None => return None,
            };
            match scalar_to_datum(&scalar, column.sql_type) {
                // `pk = NULL` matches nothing; let DataFusion say so.
                Some(Datum::Null) | None => return None,
                Some(d) => pk.push(d),
            }
        }
        Some(pk)
    }

    /// Reads the row. `None` if the query does not fit (see [`Self::key`]).
    pub async fn execute(
        &self,
        table: &SliceTable,
        params: Option<&ParamValues>,
        at: ReadAt,
    ) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
        let Some((projection, schema)) = self.plan(table) else {
            return Ok(None);
        };
        let index = match self.pinned(&table.table) {
            Some(Pinned::Unique(index)) => index,
            _ => {
                let Some((bucket, pk)) = self.key(table, params) else {
                    return Ok(None);
                };
                return Self::read(table, projection, schema, bucket, &pk, at).await.map(Some);
            }
        };
        // Through a unique index: its entry, then the row it names.
        let def = &table.table;
        if index.usable_from > at.ts {
            return Ok(None);
        }
        let Some(values) = self.values(def, &index.columns, params) else {
            return Ok(None);
        };
        let bucket = bucket_of(values.iter());
        let entries = index.entry_table(def);
        let request = ScanRequest {
            table_id: index.id,
            column_types: entries.column_types(),
            projection: vec![index.columns.len()],
            with_key: false,
            buckets: Vec::new(),
            keys: Some(vec![row_key(bucket, &values)?]),
            predicate: None,
            limit: None,
            batch_size: 1,
            at,
            missing: Vec::new(),
            dropped: Vec::new(),
        };
        let map = table.routing.placement(def)?;
        // The entry moves with its bucket of the table: a snapshot older
        // than that bucket's cut-over cannot read it on the new owner.
        table
            .routing
            .cutovers
            .check(def.id, &def.name, at.ts, std::iter::once(bucket))?;
        let client = table.cluster.client(map.owner(bucket))?;
        let found: Vec<RecordBatch> = client.scan(request).await?.try_collect().await?;
        let key = found.iter().find(|b| b.num_rows() > 0).and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .map(|k| k.value(0).to_vec())
        });
        match key {
            None => Ok(Some((schema, Vec::new()))),
            Some(key) => {
                let bucket = bucket_of_row_key(&key)?;
                Self::read_key(table, projection, schema, bucket, key, at)
                    .await
                    .map(Some)
            }
        }
    }

    /// Reads the columns `projection` (output `schema`) of the row with
    /// primary key `pk` in `bucket`, at snapshot `at`.
    pub async fn read(
        table: &SliceTable,
        projection: Vec<usize>,
        schema: SchemaRef,
        bucket: u16,
        pk: &[Datum],
        at: ReadAt,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        Self::read_key(table, projection, schema, bucket, row_key(bucket, pk)?, at).await
    }

    /// [`Self::read`] of the row with key `key`, in `bucket`.
    async fn read_key(
        table: &SliceTable,
        projection: Vec<usize>,
        schema: SchemaRef,
        bucket: u16,
        key: Vec<u8>,
        at: ReadAt,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let def = &table.table;
        let request = ScanRequest {
            table_id: def.id,
            column_types: def.column_types(),
            projection,
            with_key: false,
            buckets: Vec::new(),
            keys: Some(vec![key]),
            predicate: None,
            limit: None,
            batch_size: 1,
            at,
            missing: def.missing_values(),
            dropped: def.dropped.clone(),
        };
        let map = table.routing.placement(def)?;
        table
            .routing
            .cutovers
            .check(def.id, &def.name, at.ts, std::iter::once(bucket))?;
        let client = table.cluster.client(map.owner(bucket))?;
        let batches: Vec<RecordBatch> = client.scan(request).await?.try_collect().await?;
        let batches = batches
            .into_iter()
            .map(|b| {
                let opts = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                RecordBatch::try_new_with_options(schema.clone(), b.columns().to_vec(), &opts)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((schema, batches))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn recognize(sql: &str) -> Option<PointQuery> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        PointQuery::recognize(&stmt)
    }

    #[test]
    fn recognizes_point_queries_only() {
        let q = recognize("SELECT v, id AS k FROM t WHERE id = 42").unwrap();
        assert_eq!(q.table, "t");
        assert_eq!(
            q.columns,
            Some(vec![("v".into(), "v".into()), ("id".into(), "k".into())])
        );
        assert_eq!(q.equalities, vec![("id".into(), KeyValue::Literal("42".into()))]);
        let q = recognize("SELECT * FROM public.T x WHERE x.a = $1 AND 'b' = b").unwrap();
        assert_eq!(q.columns, None);
        assert_eq!(q.equalities.len(), 2);
        for other in [
            "SELECT v FROM t WHERE id > 42",
            "SELECT v + 1 FROM t WHERE id = 42",
            "SELECT v FROM t WHERE id = 42 OR id = 43",
            "SELECT v FROM t WHERE id = 42 LIMIT 1",
            "SELECT v FROM t JOIN u ON true WHERE id = 42",
            "SELECT count(*) FROM t WHERE id = 42",
            "SELECT v FROM t",
            "SELECT v FROM t WHERE id = -1",
            "SELECT v FROM t WHERE id = 1::int",
        ] {
            assert!(recognize(other).is_none(), "{other}");
        }
    }
}
