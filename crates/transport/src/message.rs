//! Requests and responses between the coordinator and a slice server.

use serde::{Deserialize, Serialize};
use slicedb_codec::row::{RowView, ValueRef};
use slicedb_codec::{
    BucketLoad, CaptureSpec, QueueEntry, ReadAt, RowChunk, RowKey, RowWrite, Seen, TableStats, Timestamp, TxnId,
    TxnStatus, TxnWrite,
};
use slicedb_common::{Datum, NodeId, Result, SqlType, TableId};

/// Name of the extra binary column a scan appends when `with_key` is set:
/// the row's [`RowKey`], which UPDATE and DELETE use to address the row.
pub const ROW_KEY_COLUMN: &str = "__slicedb_row_key";

/// A scan of one table on one slice server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRequest {
    pub table_id: TableId,
    /// Types of all the table's columns, in order.
    pub column_types: Vec<SqlType>,
    /// Columns to return, in order.
    pub projection: Vec<usize>,
    /// Also return each row's key as [`ROW_KEY_COLUMN`] (last column).
    pub with_key: bool,
    /// Inclusive bucket ranges to read.
    pub buckets: Vec<(u16, u16)>,
    /// If set, read only these keys (primary-key point reads) instead of ranges.
    pub keys: Option<Vec<RowKey>>,
    /// Rows failing this predicate are skipped on the slice server.
    pub predicate: Option<Predicate>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
    /// Rows per record batch.
    pub batch_size: usize,
    /// The snapshot to read (see `slicedb_storage::mvcc`).
    pub at: ReadAt,
    /// What the tail of a row stored before columns were added reads as
    /// (`TableDef::missing_values`): rows are padded with it before the
    /// predicate and the projection see them.
    pub missing: Vec<Datum>,
    /// The stored-row slots of the table's dropped columns
    /// (`TableDef::dropped`): the projection, the predicate and `missing`
    /// name visible columns, and column `c` is read from slot
    /// `slicedb_common::slot_of(&dropped, c)`.
    #[serde(default)]
    pub dropped: Vec<u32>,
}

/// A scan leaf of a plan fragment (see the planner's `fragment` module):
/// what the slice server reads, and the Arrow schema (IPC-encoded, see
/// [`crate::wire::schema_to_bytes`]) the plan above it expects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FragmentScan {
    pub request: ScanRequest,
    pub schema: Vec<u8>,
}

/// Comparison operators a slice server evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A filter pushed down to slice servers, over column indexes of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Predicate {
    Compare {
        column: usize,
        op: CmpOp,
        value: Datum,
    },
    InList {
        column: usize,
        values: Vec<Datum>,
        negated: bool,
    },
    IsNull(usize),
    IsNotNull(usize),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
}

impl Predicate {
    /// Renders the predicate in SQL, naming columns by `names`.
    pub fn to_sql(&self, names: &[String]) -> String {
        let col = |i: &usize| names.get(*i).cloned().unwrap_or_else(|| format!("#{i}"));
        let lit = |d: &Datum| match d {
            Datum::Text(s) => format!("'{}'", s.replace('\'', "''")),
            other => other.pg_text_untyped(),
        };
        match self {
            Predicate::Compare { column, op, value } => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::NotEq => "<>",
                    CmpOp::Lt => "<",
                    CmpOp::LtEq => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::GtEq => ">=",
                };
                format!("{} {op} {}", col(column), lit(value))
            }
            Predicate::InList {
                column,
                values,
                negated,
            } => format!(
                "{} {}IN ({})",
                col(column),
                if *negated { "NOT " } else { "" },
                values.iter().map(lit).collect::<Vec<_>>().join(", ")
            ),
            Predicate::IsNull(c) => format!("{} IS NULL", col(c)),
            Predicate::IsNotNull(c) => format!("{} IS NOT NULL", col(c)),
            Predicate::And(ps) => ps
                .iter()
                .map(|p| format!("({})", p.to_sql(names)))
                .collect::<Vec<_>>()
                .join(" AND "),
            Predicate::Or(ps) => ps
                .iter()
                .map(|p| format!("({})", p.to_sql(names)))
                .collect::<Vec<_>>()
                .join(" OR "),
            Predicate::Not(p) => format!("NOT ({})", p.to_sql(names)),
        }
    }

    /// SQL three-valued evaluation against a full row: `None` is unknown.
    pub fn eval(&self, row: &[Datum]) -> Option<bool> {
        let col = |c: usize| Ok(row.get(c).map(ValueRef::of).unwrap_or(ValueRef::Null));
        self.eval_with(&col).expect("reading a datum never fails")
    }

    /// [`Predicate::eval`] against a stored row read in place: only the
    /// columns the predicate names are decoded, and none is copied. A
    /// column the row predates reads as its `missing` value; column `c` is
    /// read from slot `slot_of(dropped, c)` (see [`ScanRequest::dropped`]).
    pub fn eval_stored(&self, row: &RowView<'_>, missing: &[Datum], dropped: &[u32]) -> Result<Option<bool>> {
        let col = |c: usize| {
            Ok(match row.get(slicedb_common::slot_of(dropped, c))? {
                Some(v) => v,
                None => missing.get(c).map(ValueRef::of).unwrap_or(ValueRef::Null),
            })
        };
        self.eval_with(&col)
    }

    fn eval_with<'a, F: Fn(usize) -> Result<ValueRef<'a>>>(&self, col: &F) -> Result<Option<bool>> {
        Ok(match self {
            Predicate::Compare { column, op, value } => {
                let Some(ord) = col(*column)?.sql_cmp(value) else {
                    return Ok(None);
                };
                Some(match op {
                    CmpOp::Eq => ord.is_eq(),
                    CmpOp::NotEq => ord.is_ne(),
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::LtEq => ord.is_le(),
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::GtEq => ord.is_ge(),
                })
            }
            Predicate::InList {
                column,
                values,
                negated,
            } => {
                let v = col(*column)?;
                if v.is_null() {
                    return Ok(None);
                }
                let mut unknown = false;
                for candidate in values {
                    match v.sql_cmp(candidate) {
                        Some(o) if o.is_eq() => return Ok(Some(!negated)),
                        None => unknown = true,
                        _ => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(*negated)
                }
            }
            Predicate::IsNull(c) => Some(col(*c)?.is_null()),
            Predicate::IsNotNull(c) => Some(!col(*c)?.is_null()),
            Predicate::And(ps) => {
                let mut result = Some(true);
                for p in ps {
                    match p.eval_with(col)? {
                        Some(false) => return Ok(Some(false)),
                        None => result = None,
                        Some(true) => {}
                    }
                }
                result
            }
            Predicate::Or(ps) => {
                let mut result = Some(false);
                for p in ps {
                    match p.eval_with(col)? {
                        Some(true) => return Ok(Some(true)),
                        None => result = None,
                        Some(false) => {}
                    }
                }
                result
            }
            Predicate::Not(p) => p.eval_with(col)?.map(|b| !b),
        })
    }
}

/// Requests other than scans.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SliceRequest {
    /// Add row writes of a transaction's statement to one table, pending
    /// until the transaction commits.
    Write {
        txn: TxnWrite,
        table_id: TableId,
        /// The constraint a duplicate key violates (23505): the table's
        /// primary key, or a unique index.
        unique_name: String,
        writes: Vec<RowWrite>,
        /// Answer with what each write found ([`SliceResponse::WrittenSeen`]).
        seen: bool,
    },
    /// Two-phase commit, phase one: make the transaction's writes durable intents.
    Prepare { txn: TxnId },
    /// Commit the transaction at `commit_ts`: phase two, or, with
    /// `one_phase`, the only phase of a transaction that wrote to this
    /// slice server alone. A one-phase commit is durable when answered;
    /// phase two is durable once [`SliceRequest::Settle`]d. Repeating a
    /// commit is harmless.
    Commit {
        txn: TxnId,
        commit_ts: Timestamp,
        one_phase: bool,
    },
    /// Drop the transaction's writes. Repeating it is harmless.
    Abort { txn: TxnId },
    /// Drop the transaction's writes of statements `seq` and later (ROLLBACK TO SAVEPOINT).
    RollbackTo { txn: TxnId, seq: u32 },
    /// The transactions with pending writes or intents.
    ListTransactions,
    /// Who waits for whom for a row lock (deadlock detection across slice
    /// servers).
    ListLockWaits,
    /// Makes a deadlock victim stop waiting for a row lock (40P01).
    BreakDeadlock { txn: TxnId },
    /// Delete the versions no snapshot at or after `horizon` needs.
    Gc { horizon: Timestamp },
    /// Range-delete whole buckets of a table (inclusive ranges).
    DeleteBuckets { table_id: TableId, ranges: Vec<(u16, u16)> },
    /// Delete every row of a table.
    DropTable { table_id: TableId },
    /// Rows and bytes held for each table.
    TableStats { table_ids: Vec<TableId> },
    /// The load and approximate bytes of every bucket in the given
    /// inclusive ranges of each table ([`BucketLoad`]).
    BucketLoad { tables: Vec<(TableId, Vec<(u16, u16)>)> },
    /// Liveness and identity check.
    Ping,
    /// Makes a slice server node `node_id` of cluster `cluster_id`, for
    /// good: it persists the identity and refuses any other later. Repeating
    /// the same registration is harmless.
    Register { node_id: NodeId, cluster_id: u64 },

    // Redistribution (SPEC §4). Every request below is idempotent, so a
    // coordinator that lost its answer may send it again.
    /// On a source: start capturing the moving buckets' writes into write queues.
    StartCapture(CaptureSpec),
    /// On a source: stop capturing for `job` and delete its queues.
    StopCapture { job: u64 },
    /// On a source: read raw rows of the moving buckets, after a row key.
    ReadRows {
        table_id: TableId,
        ranges: Vec<(u16, u16)>,
        after: Option<RowKey>,
        max_bytes: u64,
    },
    /// On a target: store raw rows copied from a source.
    PutRows {
        table_id: TableId,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// On a source: read the queue of `job` towards `target` after a sequence number.
    ReadQueue {
        job: u64,
        target: NodeId,
        after: Option<u64>,
        max_entries: u64,
        max_bytes: u64,
    },
    /// On a source: drop queue entries up to `upto`, which the target applied.
    TrimQueue { job: u64, target: NodeId, upto: u64 },
    /// On a target: apply queue entries in order, each to its table.
    ApplyQueue { entries: Vec<QueueEntry> },
    /// On a source: entries waiting in each of `job`'s queues.
    QueueDepths { job: u64 },
    /// Make these phase-two commits durable: commit those still prepared,
    /// then sync the WAL. Repeating it is harmless.
    Settle { commits: Vec<(TxnId, Timestamp)> },
    /// How a transaction stands here ([`SliceResponse::TxnStatus`]).
    TxnStatus { txn: TxnId },
    /// Write entries (row key, entry) of an index being built online, as
    /// of the build's snapshot `version`, beneath later writes; `unique`
    /// names a unique index ([`SliceResponse::Backfilled`]). Repeating it
    /// is harmless.
    Backfill {
        table_id: TableId,
        version: Timestamp,
        unique: Option<String>,
        entries: Vec<(RowKey, Vec<Datum>)>,
    },
}

/// The version of the node-to-node protocol. A coordinator refuses slice
/// servers that speak another. 9: stored rows copied between slice
/// servers and queued in write queues are in row format 2. 10: a capture
/// covers the table's index entry tables, and queue entries name their
/// table. 11: online index builds back-fill entries
/// ([`SliceRequest::Backfill`]), and writers erase their entries
/// (`RowWrite::Erase`). 12: slice servers report load and size per
/// bucket ([`SliceRequest::BucketLoad`]). 13: plan fragments may call
/// `numeric_div`, `round_for_int` and `numeric_avg`
/// (`slicedb_common::numeric`). 14: a `Datum` may be a `time`, an
/// `interval` or an array.
pub const PROTOCOL_VERSION: u32 = 14;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SliceResponse {
    /// Rows affected by a write.
    Written(u64),
    /// Rows written, and what each write found (a `Write` with `seen`).
    WrittenSeen(u64, Vec<Seen>),
    Done,
    TableStats(Vec<(TableId, TableStats)>),
    /// One entry per bucket asked for, in the order asked.
    BucketLoad(Vec<BucketLoad>),
    /// Who the slice server is: its node id and cluster once registered,
    /// its build and its protocol version.
    Pong {
        node_id: Option<NodeId>,
        cluster_id: Option<u64>,
        version: String,
        protocol: u32,
    },
    Rows(RowChunk),
    /// Write-queue entries, and whether the read reached the queue's end.
    Queue {
        entries: Vec<(u64, QueueEntry)>,
        at_end: bool,
    },
    QueueDepths(Vec<(NodeId, u64)>),
    /// Transactions: id, start timestamp, prepared.
    Transactions(Vec<(TxnId, Timestamp, bool)>),
    /// Lock waits: (waiter, holder).
    LockWaits(Vec<(TxnId, TxnId)>),
    /// Versions a garbage collection deleted.
    Collected(u64),
    TxnStatus(TxnStatus),
    /// Entries a back-fill wrote, and the positions of those whose row
    /// another transaction held locked (to send again).
    Backfilled {
        written: u64,
        busy: Vec<u32>,
    },
}
