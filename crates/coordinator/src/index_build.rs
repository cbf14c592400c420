//! Online index builds: `CREATE [UNIQUE] INDEX` and `ADD UNIQUE` on a
//! table that holds rows and takes writes, without holding its writers up.
//!
//! A build runs as CockroachDB's and F1's schema changes do, in steps that
//! each leave the index consistent for what may use it:
//!
//! 1. **Publish** the index as *building*, under the table's write gates
//!    held for that catalog update alone: every write statement that passes
//!    the gates from then on maintains the index's entries in its own
//!    transaction (`planner::write::RowRouter` reads the live catalog under
//!    the gates); readers do not use it yet.
//! 2. **Wait** for the transactions that wrote to the table before (up to
//!    [`OPEN_WRITERS_LIMIT`], then 55P03): their rows have no entries, so
//!    they must have ended before the snapshot of step 3.
//! 3. **Back-fill**: read every row at a snapshot `S` and write its
//!    entries *as of `S`* (`SliceRequest::Backfill`): beneath any newer
//!    version a writer has written since, so that an entry a writer deleted
//!    stays deleted (`slicedb_storage`'s `backfill` module). An entry whose
//!    row another transaction holds locked is sent again a little later.
//! 4. **Validate** a unique index at a new snapshot: the rows with no NULL
//!    in the indexed columns must have distinct values (else 23505 names a
//!    duplicate) and as many entries (a writer cannot see an entry not
//!    back-filled yet, so a duplicate written during the build is found
//!    only here).
//! 5. **Publish it usable** from a timestamp after all of that: snapshots
//!    from then on see every entry.
//!
//! Progress shows in `slicedb.index_builds`. A build that fails, whose
//! statement is cancelled (or its session goes), or whose index is dropped
//! meanwhile takes the index back out of the catalog and deletes its
//! entries ([`Abandon`]); a coordinator that restarts drops the indexes
//! its builds left unfinished ([`Coordinator::drop_unfinished_indexes`]).
//! So an index is usable or absent, never half there.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use slicedb_catalog::{Catalog, Change};
use slicedb_common::{err, Datum, Error, IndexDef, NodeId, Result, TableDef, TableId};
use slicedb_planner::write::insert_write;
use slicedb_storage::{ReadAt, RowKey, RowWrite};
use slicedb_transport::{Cluster, ScanRequest, SliceRequest, SliceResponse};

use crate::index::{default_index_name, resolve_columns, IndexSpec};
use crate::Coordinator;

/// How long a build waits for transactions that wrote to its table to end.
pub const OPEN_WRITERS_LIMIT: Duration = Duration::from_secs(30);

/// How long a build keeps sending an entry whose row another transaction
/// holds locked before it gives up (55P03).
pub const LOCKED_ROW_LIMIT: Duration = Duration::from_secs(60);

/// Entries of a row batch sent in one round of back-fill requests (spread
/// over the slice servers that own them).
const BACKFILL_REQUEST_ENTRIES: usize = 1024;

/// The builds running on this coordinator, for `slicedb.index_builds`.
#[derive(Debug, Default)]
pub struct IndexBuilds {
    running: Mutex<BTreeMap<TableId, BuildProgress>>,
}

/// Where one build stands.
#[derive(Debug, Clone)]
struct BuildProgress {
    index: String,
    table: String,
    phase: &'static str,
    rows_done: u64,
    /// The table's rows when the back-fill started (the slice servers'
    /// counts of newest versions: an estimate).
    rows_total: Option<u64>,
    started: SystemTime,
}

impl IndexBuilds {
    fn update(&self, index: TableId, f: impl FnOnce(&mut BuildProgress)) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(p) = running.get_mut(&index) {
                f(p);
            }
        }
    }

    fn start(&self, index: &IndexDef, table: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.insert(
                index.id,
                BuildProgress {
                    index: index.name.clone(),
                    table: table.to_string(),
                    phase: "waiting for writers",
                    rows_done: 0,
                    rows_total: None,
                    started: SystemTime::now(),
                },
            );
        }
    }

    fn finish(&self, index: TableId) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&index);
        }
    }

    /// The schema of `slicedb.index_builds`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("index", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("phase", DataType::Utf8, false),
            Field::new("rows_done", DataType::Int64, false),
            Field::new("rows_total", DataType::Int64, true),
            Field::new(
                "started",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    }

    /// The rows of `slicedb.index_builds`: one per running build.
    pub fn rows(&self) -> Result<RecordBatch> {
        let running: Vec<BuildProgress> = self
            .running
            .lock()
            .map_err(|_| Error::internal("index build registry poisoned"))?
            .values()
            .cloned()
            .collect();
        let micros = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64)
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(running.iter().map(|p| p.index.as_str()))),
            Arc::new(StringArray::from_iter_values(running.iter().map(|p| p.table.as_str()))),
            Arc::new(StringArray::from_iter_values(running.iter().map(|p| p.phase))),
            Arc::new(Int64Array::from_iter_values(running.iter().map(|p| p.rows_done as i64))),
            Arc::new(Int64Array::from_iter(
                running.iter().map(|p| p.rows_total.map(|n| n as i64)),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(running.iter().map(|p| micros(p.started)))
                    .with_timezone("UTC"),
            ),
        ];
        Ok(RecordBatch::try_new(IndexBuilds::schema(), columns)?)
    }
}

/// Takes an unfinished index back when dropped before [`Abandon::keep`]:
/// out of the catalog at once, its entries in the background. A drop cannot
/// wait for the write gates, so a writer that read the catalog just before
/// may still write an entry after the entries are deleted: index ids are
/// never reused, so such an entry, like one a failure leaves behind, is
/// unreachable.
/// Dropping covers every way a build ends early: an error, and the
/// statement's future dropped by a cancel or a lost session.
struct Abandon {
    catalog: Arc<Catalog>,
    cluster: Arc<Cluster>,
    builds: Arc<IndexBuilds>,
    table: TableId,
    index: IndexDef,
    keep: bool,
}

impl Abandon {
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.builds.finish(self.index.id);
        if self.keep {
            return;
        }
        let mut map = None;
        let removed = self.catalog.update(|state| {
            let Some(t) = state.tables.values().find(|t| t.id == self.table) else {
                return Ok(vec![]);
            };
            let mut t = (**t).clone();
            t.indexes.retain(|i| i.id != self.index.id);
            map = Some(t.hash_map.clone());
            Ok(vec![Change::PutTable(t)])
        });
        match (removed, map) {
            (Err(e), _) => tracing::warn!("could not drop unfinished index \"{}\": {e}", self.index.name),
            (Ok(_), Some(map)) => {
                tracing::info!("dropped index \"{}\", whose build did not finish", self.index.name);
                drop_entries_later(&self.catalog, &self.cluster, &self.index.name, self.index.id, &map);
            }
            (Ok(_), None) => {}
        }
    }
}

/// Deletes the entries of index `id` (named `name`) on the slice servers of
/// hash map `map`, in a task of its own.
fn drop_entries_later(catalog: &Arc<Catalog>, cluster: &Arc<Cluster>, name: &str, id: TableId, map: &str) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (catalog, cluster, name, map) = (catalog.clone(), cluster.clone(), name.to_string(), map.to_string());
    rt.spawn(async move {
        let Ok(map) = catalog.snapshot().hash_map(&map) else {
            return;
        };
        for node in &map.nodes {
            let request = SliceRequest::DropTable { table_id: id };
            let sent = match cluster.client(*node) {
                Ok(c) => c.call(request).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!("entries of index \"{name}\" stay on node {node}: {e}");
            }
        }
    });
}

impl Coordinator {
    /// Builds an index on a table that may hold rows and take writes (see
    /// the module comment). Returns `false` when it existed already (`IF
    /// NOT EXISTS`).
    pub async fn add_index(&self, session: Option<&crate::Session>, spec: IndexSpec) -> Result<bool> {
        let snapshot = self.catalog.snapshot();
        let table = snapshot.table(&spec.table)?;
        if let Some(name) = &spec.name {
            if snapshot.relation_exists(name) {
                if spec.if_not_exists {
                    tracing::info!("relation \"{name}\" already exists, skipping");
                    return Ok(false);
                }
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
        }
        let columns = resolve_columns(&table, &spec.columns, &spec.functions)?;
        spec.check_functions(&table, &columns)?;
        spec.resolve_predicate(&table)?;
        if spec.unique && table.has_primary_key() && columns == table.primary_key && spec.constraint {
            return Ok(false);
        }
        self.check_not_moving(&table.name, "index")?;
        let open = session.and_then(|s| s.txn.as_ref());
        let own = open.map(|t| t.id()).unwrap_or(0);
        if let Some(t) = open {
            if t.writes.lock().is_ok_and(|w| w.placed.contains_key(&table.id)) {
                return Err(err!(
                    FeatureNotSupported,
                    "cannot index \"{}\" in a transaction that wrote to it",
                    table.name
                ));
            }
        }
        // 1. Publish it as building, under the gates, and note who wrote
        //    to the table before.
        let gates = self.holds.current(table.id);
        let hold = gates.hold(0).await;
        let mut index = None;
        self.catalog.update(|state| {
            let mut t = (*state.table(&spec.table)?).clone();
            if t.id != table.id {
                return Err(err!(UndefinedTable, "relation \"{}\" was dropped", spec.table));
            }
            crate::redistribute::not_moving(state, &t.name, "index")?;
            let name = match &spec.name {
                Some(n) => n.clone(),
                None => default_index_name(state, &t.name, &spec.name_parts(), spec.constraint),
            };
            if state.relation_exists(&name) {
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            let def = IndexDef {
                name,
                id: state.next_table_id(),
                columns: resolve_columns(&t, &spec.columns, &spec.functions)?,
                unique: spec.unique,
                constraint: spec.constraint,
                building: true,
                usable_from: 0,
                functions: spec.functions.clone(),
                predicate: spec.resolve_predicate(&t)?,
            };
            t.indexes.push(def.clone());
            index = Some(def);
            Ok(vec![Change::PutTable(t)])
        })?;
        let earlier_writers = self.txns.open_writers(table.id, own);
        drop(hold);
        let index = index.ok_or_else(|| Error::internal("index not published"))?;
        self.index_builds.start(&index, &table.name);
        let abandon = Abandon {
            catalog: self.catalog.clone(),
            cluster: self.cluster.clone(),
            builds: self.index_builds.clone(),
            table: table.id,
            index: index.clone(),
            keep: false,
        };
        // 2.
        self.txns
            .wait_finished(&earlier_writers?, OPEN_WRITERS_LIMIT, "could not create index")
            .await?;
        // 3 and 4.
        let built = async {
            self.backfill(&spec.table, &index).await?;
            if index.unique {
                self.validate_unique(&spec.table, &index).await?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = built.await {
            return Err(match e.state {
                slicedb_common::SqlState::UniqueViolation => err!(
                    UniqueViolation,
                    "could not create unique index \"{}\": {}",
                    index.name,
                    e.message
                        .split_once(": ")
                        .map_or(e.message.as_str(), |(_, detail)| detail)
                ),
                _ => e,
            });
        }
        // 5.
        slicedb_common::failpoint::failpoint_async("index-build-before-ready").await;
        let usable_from = self.txns.now()?;
        self.catalog.update(|state| {
            let mut t = (*state.table(&spec.table)?).clone();
            let Some(i) = t.indexes.iter_mut().find(|i| i.id == index.id) else {
                return Err(dropped_meanwhile(&index));
            };
            i.building = false;
            i.usable_from = usable_from;
            Ok(vec![Change::PutTable(t)])
        })?;
        abandon.keep();
        Ok(true)
    }

    /// The table as the catalog has it now, if `index` is still being
    /// built on it (`DROP INDEX` or `DROP TABLE` cancels a build).
    fn still_building(&self, table: &str, index: &IndexDef) -> Result<Arc<TableDef>> {
        let t = self.catalog.snapshot().table(table)?;
        match t.indexes.iter().any(|i| i.id == index.id && i.building) {
            true => Ok(t),
            false => Err(dropped_meanwhile(index)),
        }
    }

    /// Step 3: writes the entries of every row that a snapshot sees, as of
    /// that snapshot.
    async fn backfill(&self, table: &str, index: &IndexDef) -> Result<()> {
        let source = self.slice_table(table)?;
        let def = source.table.clone();
        let mut reader = self.txns.begin().await?;
        let at = reader.id();
        self.index_builds.update(index.id, |p| p.phase = "back-filling");
        if let Ok(total) = self.table_rows(&def).await {
            self.index_builds.update(index.id, |p| p.rows_total = Some(total));
        }
        let filled = async {
            let mut rows = self.rows_with_keys(&source, reader.statement()).await?;
            let types = def.column_types();
            let read_columns = index.read_columns();
            let entries_def = index.entry_table(&def);
            let unique = index.unique.then(|| index.name.clone());
            let mut first = true;
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                self.still_building(table, index)?;
                let keys = crate::alter::row_keys(&batch, types.len())?;
                let mut writes = Vec::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    let mut row = vec![Datum::Null; types.len()];
                    for c in &read_columns {
                        row[*c] = Datum::from_array(batch.column(*c).as_ref(), i, types[*c])?;
                    }
                    if let Some(entry) = index.entry(&row, keys.value(i)) {
                        writes.push(insert_write(&entries_def, entry)?);
                    }
                }
                // In small requests: each holds its entries' row locks
                // while it writes them, and a writer may wait for one.
                let mut writes = writes.into_iter().peekable();
                while writes.peek().is_some() {
                    let chunk: Vec<_> = writes.by_ref().take(BACKFILL_REQUEST_ENTRIES).collect();
                    self.send_backfill(&def, index.id, at, &unique, chunk).await?;
                }
                self.index_builds
                    .update(index.id, |p| p.rows_done += batch.num_rows() as u64);
                if first {
                    first = false;
                    slicedb_common::failpoint::failpoint_async("index-build-backfill").await;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        // The reader wrote nothing: this only lets its snapshot go.
        self.txns.rollback(&mut reader).await;
        filled
    }

    /// Sends each slice server its entries to back-fill as of `at`, and
    /// again those whose rows were locked, until none is left.
    async fn send_backfill(
        &self,
        def: &TableDef,
        index: TableId,
        at: u64,
        unique: &Option<String>,
        writes: Vec<(u16, RowWrite)>,
    ) -> Result<()> {
        let placement = self.routing.placement(def)?;
        let mut pending: BTreeMap<NodeId, Vec<(RowKey, Vec<Datum>)>> = BTreeMap::new();
        for (bucket, w) in writes {
            let RowWrite::Insert { key, row } = w else {
                return Err(Error::internal("an index entry without a key"));
            };
            pending.entry(placement.owner(bucket)).or_default().push((key, row));
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        while !pending.is_empty() {
            let calls = pending.iter().map(|(node, entries)| {
                let request = SliceRequest::Backfill {
                    table_id: index,
                    version: at,
                    unique: unique.clone(),
                    entries: entries.clone(),
                };
                async move {
                    let answer = match self.cluster.client(*node) {
                        Ok(client) => client.call(request).await,
                        Err(e) => Err(e),
                    };
                    (*node, answer)
                }
            });
            let mut busy: BTreeMap<NodeId, Vec<(RowKey, Vec<Datum>)>> = BTreeMap::new();
            for (node, answer) in futures::future::join_all(calls).await {
                let positions = match answer? {
                    SliceResponse::Backfilled { busy, .. } => busy,
                    other => return Err(Error::internal(format!("unexpected answer to a back-fill: {other:?}"))),
                };
                if positions.is_empty() {
                    continue;
                }
                let entries = &pending[&node];
                busy.insert(node, positions.iter().map(|p| entries[*p as usize].clone()).collect());
            }
            pending = busy;
            if pending.is_empty() {
                break;
            }
            if started.elapsed() > LOCKED_ROW_LIMIT {
                return Err(err!(
                    LockNotAvailable,
                    "could not create index: rows of the table stayed locked by open transactions for {}s",
                    LOCKED_ROW_LIMIT.as_secs()
                ));
            }
            // Rows locked by writers that have not finished: give them time.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Step 4 for a unique index: at a new snapshot, the rows with no NULL
    /// in the indexed columns have distinct values, and as many entries.
    async fn validate_unique(&self, table: &str, index: &IndexDef) -> Result<()> {
        self.index_builds.update(index.id, |p| p.phase = "validating");
        let source = self.slice_table(table)?;
        let def = source.table.clone();
        let mut reader = self.txns.begin().await?;
        let checked = async {
            let types = def.column_types();
            let read_columns = index.read_columns();
            let entries_def = index.entry_table(&def);
            let mut seen: HashSet<RowKey> = HashSet::new();
            let mut rows = self.rows_with_keys(&source, reader.statement()).await?;
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                for i in 0..batch.num_rows() {
                    let mut row = vec![Datum::Null; types.len()];
                    for c in &read_columns {
                        row[*c] = Datum::from_array(batch.column(*c).as_ref(), i, types[*c])?;
                    }
                    // The entry, with an empty row key: its key is the values alone.
                    let Some(values) = index.entry(&row, &[]) else {
                        continue;
                    };
                    let shown = index
                        .columns
                        .iter()
                        .zip(&values)
                        .map(|(c, v)| v.pg_text(types[*c]).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let (_, w) = insert_write(&entries_def, values)?;
                    let RowWrite::Insert { key, .. } = w else {
                        return Err(Error::internal("an index entry without a key"));
                    };
                    if !seen.insert(key) {
                        return Err(err!(
                            UniqueViolation,
                            "could not create unique index: key ({})=({shown}) is duplicated",
                            index.column_list(&def)
                        ));
                    }
                }
            }
            let count = self.count_entries(&def, index, &entries_def, reader.id()).await?;
            if count != seen.len() {
                return Err(err!(
                    SerializationFailure,
                    "could not create unique index \"{}\": a value was written twice while it was built ({} rows, {count} entries); run it again",
                    index.name,
                    seen.len()
                ));
            }
            Ok(())
        }
        .await;
        self.txns.rollback(&mut reader).await;
        checked
    }

    /// The entries of `index` that snapshot `at` sees, counted on the slice
    /// servers that own the table's buckets.
    async fn count_entries(&self, def: &TableDef, index: &IndexDef, entries: &TableDef, at: u64) -> Result<usize> {
        let map = self.routing.placement(def)?;
        let mut per_node: BTreeMap<NodeId, Vec<(u16, u16)>> = BTreeMap::new();
        for r in map.ranges() {
            per_node.entry(r.node).or_default().push((r.start, r.end));
        }
        let scans = per_node.into_iter().map(|(node, buckets)| {
            let request = ScanRequest {
                table_id: index.id,
                column_types: entries.column_types(),
                // The row key: the smallest column to carry back.
                projection: vec![index.columns.len()],
                with_key: false,
                buckets,
                keys: None,
                predicate: None,
                limit: None,
                batch_size: slicedb_planner::table::SCAN_BATCH_ROWS,
                at: ReadAt { ts: at, own: None },
                missing: Vec::new(),
                dropped: Vec::new(),
            };
            async move {
                let mut batches = self.cluster.client(node)?.scan(request).await?;
                let mut n = 0;
                while let Some(batch) = batches.next().await {
                    n += batch?.num_rows();
                }
                Ok::<usize, Error>(n)
            }
        });
        Ok(futures::future::try_join_all(scans).await?.into_iter().sum())
    }

    /// The table's rows as its slice servers count them (newest versions).
    async fn table_rows(&self, def: &TableDef) -> Result<u64> {
        let map = self.routing.placement(def)?;
        let mut total = 0;
        for node in &map.nodes {
            let answer = self
                .cluster
                .client(*node)?
                .call(SliceRequest::TableStats {
                    table_ids: vec![def.id],
                })
                .await?;
            if let SliceResponse::TableStats(stats) = answer {
                total += stats.iter().map(|(_, s)| s.rows).sum::<u64>();
            }
        }
        Ok(total)
    }

    /// Drops the indexes a build left unfinished (the coordinator stopped
    /// during it): out of the catalog at once, their entries in the
    /// background. Called at start.
    pub fn drop_unfinished_indexes(&self) -> Result<()> {
        let mut dropped: Vec<(String, TableId, String)> = Vec::new();
        self.catalog.update(|state| {
            let mut changes = Vec::new();
            for t in state.tables.values().filter(|t| t.indexes.iter().any(|i| i.building)) {
                let mut t = (**t).clone();
                for i in t.indexes.iter().filter(|i| i.building) {
                    dropped.push((i.name.clone(), i.id, t.hash_map.clone()));
                }
                t.indexes.retain(|i| !i.building);
                changes.push(Change::PutTable(t));
            }
            Ok(changes)
        })?;
        for (name, id, map) in dropped {
            tracing::info!("dropped index \"{name}\", whose build did not finish");
            drop_entries_later(&self.catalog, &self.cluster, &name, id, &map);
        }
        Ok(())
    }
}

fn dropped_meanwhile(index: &IndexDef) -> Error {
    err!(
        QueryCanceled,
        "index \"{}\" was dropped while it was being built",
        index.name
    )
}
