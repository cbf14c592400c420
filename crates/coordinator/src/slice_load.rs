//! Where the heat is: the load and size of every bucket, gathered from the
//! slice servers, as the view `slicedb.bucket_load` and as
//! `SHOW SLICE LOAD [FOR t]`.
//!
//! Each slice server counts the reads and writes of each bucket it serves
//! and estimates its bytes (`slicedb_slice_server::load`,
//! `SliceStore::bucket_sizes`). The coordinator asks every node for the
//! buckets the table's placement gives it (mid-move, the live placement:
//! buckets already cut over are asked of their new owner). A table's index
//! entries live in buckets of the same map, so bucket `b` of an index is on
//! the node of bucket `b` of its table and moves with it: their load and
//! bytes are added to the table's bucket, which is the unit the rebalancer
//! moves.
//!
//! A *slice* is a maximal run of consecutive buckets of one table on one
//! node. `SHOW SLICE LOAD` gives each slice's load, its bytes, its share of
//! its node's load, and its hottest bucket: when one bucket carries most of
//! a slice's load (one hot key), splitting the slice would not spread it,
//! and the `note` column says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use slicedb_catalog::CatalogState;
use slicedb_codec::BucketLoad;
use slicedb_common::{Error, NodeId, Result, TableDef, TableId};
use slicedb_transport::{Cluster, SliceRequest, SliceResponse};

use crate::execute::batch_rows;
use crate::{Coordinator, Output};

/// The share of a slice's load above which its hottest bucket is called
/// the whole story (`SHOW SLICE LOAD`'s `note`).
pub const ONE_HOT_BUCKET_PCT: f64 = 80.0;

/// The buckets of one table on one node, index entries folded in, in
/// bucket order.
pub struct NodeBuckets {
    pub table: Arc<TableDef>,
    pub node: NodeId,
    pub buckets: Vec<BucketLoad>,
}

/// Inclusive bucket ranges of each table (or index table) asked of a node.
type Asked = Vec<(TableId, Vec<(u16, u16)>)>;

/// Every node's answer for its buckets of every table and index table,
/// and the table each asked id (a table's or an index's) belongs to.
async fn ask(
    s: &CatalogState,
    cluster: &Cluster,
) -> Result<(Vec<(NodeId, Vec<BucketLoad>)>, BTreeMap<TableId, Arc<TableDef>>)> {
    // What to ask each node: per table and index table, its ranges there.
    let mut asked: BTreeMap<NodeId, Asked> = BTreeMap::new();
    let mut base: BTreeMap<TableId, Arc<TableDef>> = BTreeMap::new();
    for def in s.tables.values() {
        let map = s.table_map(def)?;
        let mut ranges: BTreeMap<NodeId, Vec<(u16, u16)>> = BTreeMap::new();
        for r in map.ranges() {
            ranges.entry(r.node).or_default().push((r.start, r.end));
        }
        for id in std::iter::once(def.id).chain(def.indexes.iter().map(|i| i.id)) {
            base.insert(id, def.clone());
            for (node, rs) in &ranges {
                asked.entry(*node).or_default().push((id, rs.clone()));
            }
        }
    }
    let answers = futures::future::join_all(asked.into_iter().map(|(node, tables)| async move {
        let answer = cluster.client(node)?.call(SliceRequest::BucketLoad { tables }).await?;
        match answer {
            SliceResponse::BucketLoad(loads) => Ok((node, loads)),
            other => Err(Error::internal(format!("unexpected bucket load response {other:?}"))),
        }
    }))
    .await;
    Ok((answers.into_iter().collect::<Result<Vec<_>>>()?, base))
}

/// The bytes each table and each index table holds over all nodes
/// (RocksDB's estimates, as in `slicedb.bucket_load`), by id: what
/// `pg_table_size` and its kin report.
pub async fn relation_bytes(s: &CatalogState, cluster: &Cluster) -> Result<BTreeMap<TableId, u64>> {
    let (answers, _) = ask(s, cluster).await?;
    let mut bytes: BTreeMap<TableId, u64> = BTreeMap::new();
    for (_, loads) in answers {
        for l in loads {
            *bytes.entry(l.table).or_default() += l.bytes;
        }
    }
    Ok(bytes)
}

/// Asks every node for the load and bytes of its buckets of every table.
pub async fn gather(s: &CatalogState, cluster: &Cluster) -> Result<Vec<NodeBuckets>> {
    let (answers, base) = ask(s, cluster).await?;
    type Folded = (Arc<TableDef>, BTreeMap<u16, BucketLoad>);
    let mut folded: BTreeMap<(String, NodeId), Folded> = BTreeMap::new();
    for (node, loads) in answers {
        for l in loads {
            let Some(def) = base.get(&l.table) else { continue };
            let (_, buckets) = folded
                .entry((def.name.clone(), node))
                .or_insert_with(|| (def.clone(), BTreeMap::new()));
            let b = buckets.entry(l.bucket).or_insert(BucketLoad {
                table: def.id,
                bucket: l.bucket,
                ..BucketLoad::default()
            });
            b.reads_per_s += l.reads_per_s;
            b.writes_per_s += l.writes_per_s;
            b.write_bytes_per_s += l.write_bytes_per_s;
            b.reads_per_s_5m += l.reads_per_s_5m;
            b.writes_per_s_5m += l.writes_per_s_5m;
            b.bytes += l.bytes;
        }
    }
    Ok(folded
        .into_iter()
        .map(|((_, node), (table, buckets))| NodeBuckets {
            table,
            node,
            buckets: buckets.into_values().collect(),
        })
        .collect())
}

/// The columns of `slicedb.bucket_load`.
pub fn bucket_load_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("bucket", DataType::Int64, false),
        Field::new("node", DataType::Int64, false),
        Field::new("reads_per_s", DataType::Float64, false),
        Field::new("writes_per_s", DataType::Float64, false),
        Field::new("write_bytes_per_s", DataType::Float64, false),
        Field::new("reads_per_s_5m", DataType::Float64, false),
        Field::new("writes_per_s_5m", DataType::Float64, false),
        Field::new("bytes", DataType::Int64, false),
    ]))
}

/// The rows of `slicedb.bucket_load`: one per bucket of every table.
pub async fn bucket_load_rows(s: &CatalogState, cluster: &Cluster) -> Result<RecordBatch> {
    let gathered = gather(s, cluster).await?;
    let rows: Vec<(&str, NodeId, &BucketLoad)> = gathered
        .iter()
        .flat_map(|g| g.buckets.iter().map(move |b| (g.table.name.as_str(), g.node, b)))
        .collect();
    let f = |get: fn(&BucketLoad) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| round(get(r.2)))))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.bucket as i64))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1 as i64))),
        f(|b| b.reads_per_s),
        f(|b| b.writes_per_s),
        f(|b| b.write_bytes_per_s),
        f(|b| b.reads_per_s_5m),
        f(|b| b.writes_per_s_5m),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.bytes as i64))),
    ];
    Ok(RecordBatch::try_new(bucket_load_schema(), columns)?)
}

/// Rates to two decimals: they are estimates.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One slice: a run of consecutive buckets of a table on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub table: String,
    pub node: NodeId,
    pub first: u16,
    pub last: u16,
    pub reads_per_s: f64,
    pub writes_per_s: f64,
    pub bytes: u64,
    /// The slice's share of its node's load, in percent.
    pub node_share_pct: f64,
    pub hottest_bucket: u16,
    /// The hottest bucket's share of the slice's load, in percent.
    pub hottest_pct: f64,
}

impl Slice {
    pub fn load(&self) -> f64 {
        self.reads_per_s + self.writes_per_s
    }

    /// Says when splitting this slice would not spread its load.
    pub fn note(&self) -> Option<String> {
        (self.load() > 0.0 && self.hottest_pct >= ONE_HOT_BUCKET_PCT).then(|| {
            format!(
                "bucket {} carries {:.0}% of the load: one hot key, not split",
                self.hottest_bucket, self.hottest_pct
            )
        })
    }
}

/// Cuts gathered buckets into slices, hottest first.
pub fn slices(gathered: &[NodeBuckets]) -> Vec<Slice> {
    let mut node_load: BTreeMap<NodeId, f64> = BTreeMap::new();
    for g in gathered {
        *node_load.entry(g.node).or_default() += g.buckets.iter().map(BucketLoad::load).sum::<f64>();
    }
    let mut out = Vec::new();
    for g in gathered {
        let mut run: Vec<&BucketLoad> = Vec::new();
        let mut flush = |run: &mut Vec<&BucketLoad>| {
            if let (Some(first), Some(last)) = (run.first(), run.last()) {
                let load: f64 = run.iter().map(|b| b.load()).sum();
                let hottest = run
                    .iter()
                    .max_by(|a, b| a.load().total_cmp(&b.load()))
                    .map(|b| (b.bucket, b.load()))
                    .unwrap_or_default();
                let node_total = node_load.get(&g.node).copied().unwrap_or(0.0);
                out.push(Slice {
                    table: g.table.name.clone(),
                    node: g.node,
                    first: first.bucket,
                    last: last.bucket,
                    reads_per_s: run.iter().map(|b| b.reads_per_s).sum(),
                    writes_per_s: run.iter().map(|b| b.writes_per_s).sum(),
                    bytes: run.iter().map(|b| b.bytes).sum(),
                    node_share_pct: pct(load, node_total),
                    hottest_bucket: hottest.0,
                    hottest_pct: pct(hottest.1, load),
                });
            }
            run.clear();
        };
        for b in &g.buckets {
            if run.last().is_some_and(|l| l.bucket + 1 != b.bucket) {
                flush(&mut run);
            }
            run.push(b);
        }
        flush(&mut run);
    }
    out.sort_by(|a, b| {
        b.load()
            .total_cmp(&a.load())
            .then_with(|| a.table.cmp(&b.table))
            .then(a.first.cmp(&b.first))
    });
    out
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

impl Coordinator {
    /// `SHOW SLICE LOAD [FOR t]`: per slice, its load, bytes, share of its
    /// node's load and hottest bucket, hottest slices first.
    pub async fn show_slice_load(&self, table: Option<&str>) -> Result<Output> {
        let s = self.catalog.snapshot();
        if let Some(t) = table {
            s.table(t)?;
        }
        let gathered = gather(&s, &self.cluster).await?;
        let slices: Vec<Slice> = slices(&gathered)
            .into_iter()
            .filter(|sl| table.is_none_or(|t| sl.table == t))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("node", DataType::Int64, false),
            Field::new("first_bucket", DataType::Int64, false),
            Field::new("last_bucket", DataType::Int64, false),
            Field::new("reads_per_s", DataType::Float64, false),
            Field::new("writes_per_s", DataType::Float64, false),
            Field::new("load", DataType::Float64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("node_share_pct", DataType::Float64, false),
            Field::new("hottest_bucket", DataType::Int64, false),
            Field::new("hottest_pct", DataType::Float64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let f = |get: fn(&Slice) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(slices.iter().map(|sl| round(get(sl)))))
        };
        let i = |get: fn(&Slice) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(slices.iter().map(get))) };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(slices.iter().map(|sl| sl.table.as_str()))),
            i(|sl| sl.node as i64),
            i(|sl| sl.first as i64),
            i(|sl| sl.last as i64),
            f(|sl| sl.reads_per_s),
            f(|sl| sl.writes_per_s),
            f(Slice::load),
            i(|sl| sl.bytes as i64),
            f(|sl| sl.node_share_pct),
            i(|sl| sl.hottest_bucket as i64),
            f(|sl| sl.hottest_pct),
            Arc::new(StringArray::from_iter(slices.iter().map(Slice::note))),
        ];
        batch_rows(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicedb_common::{ColumnDef, SqlType};

    fn bucket(b: u16, reads: f64, bytes: u64) -> BucketLoad {
        BucketLoad {
            table: 1,
            bucket: b,
            reads_per_s: reads,
            bytes,
            ..BucketLoad::default()
        }
    }

    #[test]
    fn slices_are_runs_hottest_first_and_one_hot_bucket_is_noted() {
        let table = Arc::new(TableDef::new(
            1,
            "t",
            vec![ColumnDef::new("a", SqlType::BigInt)],
            vec![0],
            "hm1",
        ));
        let gathered = vec![
            NodeBuckets {
                table: table.clone(),
                node: 1,
                // Two runs: 0..=2 and 10..=11.
                buckets: vec![
                    bucket(0, 1.0, 10),
                    bucket(1, 1.0, 10),
                    bucket(2, 2.0, 10),
                    bucket(10, 90.0, 5),
                    bucket(11, 6.0, 5),
                ],
            },
            NodeBuckets {
                table,
                node: 2,
                buckets: vec![bucket(3, 0.0, 7), bucket(4, 0.0, 7)],
            },
        ];
        let s = slices(&gathered);
        assert_eq!(
            s.iter().map(|sl| (sl.node, sl.first, sl.last)).collect::<Vec<_>>(),
            vec![(1, 10, 11), (1, 0, 2), (2, 3, 4)]
        );
        assert_eq!(s[0].load(), 96.0);
        assert_eq!(s[0].bytes, 10);
        assert_eq!(s[0].node_share_pct, 96.0);
        assert_eq!((s[0].hottest_bucket, s[0].hottest_pct), (10, 93.75));
        assert!(s[0].note().unwrap().contains("bucket 10"));
        assert_eq!((s[1].hottest_bucket, s[1].hottest_pct), (2, 50.0));
        assert_eq!(s[1].note(), None);
        // An idle slice has no note and no share.
        assert_eq!((s[2].node_share_pct, s[2].note()), (0.0, None));
        assert_eq!(s[2].bytes, 14);
    }
}
