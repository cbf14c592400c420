//! The catalog: the global data structure of the seeds.
//!
//! It records the nodes (slice servers), the hash maps and which one is
//! current, the tables with the map each is bound to, the views, and a
//! catalog version that every change increments. It lives in the
//! coordinator's own RocksDB, one JSON document per object:
//!
//! ```text
//! meta              → {version, current_map, next_table_id, next_node_id, cluster_id}
//! node/<id>         → NodeInfo
//! map/<name>        → HashMap (as bucket runs)
//! table/<name>      → TableDef
//! view/<name>       → ViewDef
//! sequence/<name>   → SequenceDef (with its high-water mark: [`sequence`])
//! role/<name>       → RoleDef (attributes and SCRAM verifier: [`role`])
//! redistribution/<id, 20 digits> → RedistributionJob
//! txn/<id, 20 digits>, clock      → the transaction log ([`txn_log`])
//! ```
//!
//! A table in the middle of a redistribution is placed by its old map
//! overlaid with the buckets already moved ([`CatalogState::table_map`]);
//! every cut-over of a bucket batch is a catalog change, so routing and
//! cached plans follow it. Copy progress is saved without a new version
//! ([`Catalog::save_job`]): it changes no placement.
//!
//! Readers take a cheap snapshot ([`Catalog::snapshot`]); a change builds a
//! new state, persists the changed documents in one synced write batch, and
//! only then publishes it, so what a client saw acknowledged survives a crash.

pub mod redistribution;
pub mod role;
pub mod sequence;
pub mod txn_log;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use slicedb_common::blocking::off_executor;
use slicedb_common::{err, Error, NodeId, Result, TableDef, TableId};
use slicedb_hashmap::HashMap;

pub use redistribution::{JobState, MovePair, RedistributionJob};
pub use role::RoleDef;
pub use sequence::SequenceDef;
pub use txn_log::CommitDecision;

/// A registered slice server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// `embedded` for slice servers inside the coordinator process, else `host:port`.
    pub address: String,
    /// What the node can store, in MiB (`ALTER NODE n SET (capacity_gb =
    /// …)`): `REBALANCE` gives each node a share of the bytes in
    /// proportion to it.
    #[serde(default)]
    pub capacity_mb: Option<u64>,
}

/// A view, persisted as its defining query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    pub sql: String,
    /// Its owner and the privileges granted on it.
    #[serde(default)]
    pub acl: slicedb_common::acl::Acl,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    version: u64,
    current_map: Option<String>,
    next_table_id: TableId,
    next_node_id: NodeId,
    /// Chosen at random when the catalog is created; slice servers are
    /// registered to it and refuse other clusters' coordinators.
    #[serde(default)]
    cluster_id: u64,
    #[serde(default)]
    next_job_id: u64,
    #[serde(default)]
    next_role_oid: u32,
}

/// An immutable view of the catalog at one version.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    meta: Meta,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub hash_maps: BTreeMap<String, Arc<HashMap>>,
    pub tables: BTreeMap<String, Arc<TableDef>>,
    pub views: BTreeMap<String, ViewDef>,
    pub sequences: BTreeMap<String, SequenceDef>,
    pub roles: BTreeMap<String, RoleDef>,
    /// Redistribution jobs, finished ones included, by id.
    pub jobs: BTreeMap<u64, RedistributionJob>,
    /// Placements of tables in the middle of a redistribution (derived
    /// from `jobs`, not stored).
    placements: BTreeMap<String, Arc<HashMap>>,
}

impl CatalogState {
    pub fn version(&self) -> u64 {
        self.meta.version
    }

    /// The cluster's identity, fixed at creation.
    pub fn cluster_id(&self) -> u64 {
        self.meta.cluster_id
    }

    /// The id the next registered node gets.
    pub fn next_node_id(&self) -> NodeId {
        self.meta.next_node_id.max(1)
    }

    /// A hash map name not used yet: `hm1`, `hm2`, …
    pub fn unused_map_name(&self) -> String {
        self.unused_map_names()()
    }

    /// Names for several new hash maps in one update: each call returns
    /// the lowest `hmN` neither in the catalog nor returned before.
    pub fn unused_map_names(&self) -> impl FnMut() -> String {
        let mut taken: std::collections::BTreeSet<String> = self.hash_maps.keys().cloned().collect();
        move || {
            let name = (1..)
                .map(|i| format!("hm{i}"))
                .find(|n| !taken.contains(n))
                .unwrap_or_else(|| "hm".into());
            taken.insert(name.clone());
            name
        }
    }

    /// The current hash map: the one new tables bind to.
    pub fn current_map(&self) -> Result<Arc<HashMap>> {
        let name = self
            .meta
            .current_map
            .as_ref()
            .ok_or_else(|| err!(UndefinedObject, "no current hash map is set"))?;
        self.hash_map(name)
    }

    /// The id the next created table gets.
    pub fn next_table_id(&self) -> TableId {
        self.meta.next_table_id.max(1)
    }

    pub fn current_map_name(&self) -> Option<&str> {
        self.meta.current_map.as_deref()
    }

    pub fn hash_map(&self, name: &str) -> Result<Arc<HashMap>> {
        self.hash_maps
            .get(name)
            .cloned()
            .ok_or_else(|| err!(UndefinedObject, "hash map \"{name}\" does not exist"))
    }

    pub fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.tables
            .get(name)
            .cloned()
            .ok_or_else(|| err!(UndefinedTable, "relation \"{name}\" does not exist"))
    }

    pub fn sequence(&self, name: &str) -> Result<&SequenceDef> {
        self.sequences
            .get(name)
            .ok_or_else(|| err!(UndefinedTable, "relation \"{name}\" does not exist"))
    }

    /// Is `name` taken by a table, an index, a view or a sequence (which
    /// share one namespace)?
    pub fn relation_exists(&self, name: &str) -> bool {
        self.tables.contains_key(name)
            || self.views.contains_key(name)
            || self.sequences.contains_key(name)
            || self.index(name).is_some()
    }

    /// The index called `name`, with its table.
    pub fn index(&self, name: &str) -> Option<(&Arc<TableDef>, &slicedb_common::IndexDef)> {
        self.tables.values().find_map(|t| t.index(name).map(|i| (t, i)))
    }

    /// The table whose rows, or whose index entries, are stored under id
    /// `id` (index entries are placed by their table's map).
    pub fn table_by_storage_id(&self, id: TableId) -> Option<&Arc<TableDef>> {
        self.tables
            .values()
            .find(|t| t.id == id || t.indexes.iter().any(|i| i.id == id))
    }

    /// Where `table`'s buckets are now: its hash map, or, while a
    /// redistribution has moved some of its buckets, that map overlaid with
    /// the moved buckets' new owners.
    pub fn table_map(&self, table: &TableDef) -> Result<Arc<HashMap>> {
        match self.placements.get(&table.name) {
            Some(m) => Ok(m.clone()),
            None => self.hash_map(&table.hash_map),
        }
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Result<&RoleDef> {
        self.roles
            .get(name)
            .ok_or_else(|| err!(UndefinedObject, "role \"{name}\" does not exist"))
    }

    /// The object id the next created role gets.
    pub fn next_role_oid(&self) -> u32 {
        self.meta.next_role_oid.max(role::FIRST_ROLE_OID)
    }

    /// The id the next redistribution job gets.
    pub fn next_job_id(&self) -> u64 {
        self.meta.next_job_id.max(1)
    }

    /// The active redistribution job of `table`, if any.
    pub fn active_job(&self, table: &str) -> Option<&RedistributionJob> {
        self.jobs.values().find(|j| j.table == table && j.state.is_active())
    }

    /// Active jobs that move tables to or from hash map `name`.
    pub fn jobs_using_map(&self, name: &str) -> Vec<&RedistributionJob> {
        self.jobs
            .values()
            .filter(|j| j.state.is_active() && (j.to_map == name || j.from_map == name))
            .collect()
    }

    fn refresh_placement(&mut self, job: &RedistributionJob) {
        // Once cleaning, the table is bound to the target map itself.
        if !job.state.is_active() || job.state == JobState::Cleaning || job.moved.is_empty() {
            self.placements.remove(&job.table);
            return;
        }
        if let (Ok(from), Ok(to)) = (self.hash_map(&job.from_map), self.hash_map(&job.to_map)) {
            let placement = from.overlay(&job.placement_name(), &to, &job.moved);
            self.placements.insert(job.table.clone(), Arc::new(placement));
        }
    }

    /// Tables bound to the hash map `name`.
    pub fn tables_on_map(&self, name: &str) -> Vec<&TableDef> {
        self.tables
            .values()
            .filter(|t| t.hash_map == name)
            .map(|t| t.as_ref())
            .collect()
    }
}

/// One change to the catalog, applied by [`Catalog::update`].
#[derive(Debug, Clone)]
pub enum Change {
    PutNode(NodeInfo),
    RemoveNode(NodeId),
    PutHashMap(HashMap),
    DropHashMap(String),
    SetCurrentMap(String),
    PutTable(TableDef),
    DropTable(String),
    PutView(ViewDef),
    DropView(String),
    PutJob(RedistributionJob),
    PutSequence(SequenceDef),
    DropSequence(String),
    PutRole(RoleDef),
    DropRole(String),
    /// Takes the table ids below `below` out of use for new tables: a
    /// rewrite writes its new storage under them before the table that
    /// names them is put.
    ReserveTableIds {
        below: TableId,
    },
}

/// The persistent catalog.
pub struct Catalog {
    db: DB,
    state: RwLock<Arc<CatalogState>>,
    /// Serializes writers; readers use `state`.
    write: Mutex<()>,
}

impl Catalog {
    /// Opens the catalog at `path`, creating an empty one if needed.
    pub fn open(path: &Path) -> Result<Catalog> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path).map_err(|e| Error::io(format!("opening catalog {}: {e}", path.display())))?;
        let mut state = load(&db)?;
        if state.meta.cluster_id == 0 {
            // A new catalog (or one from before cluster ids): pick its identity.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            h.write_u32(std::process::id());
            state.meta.cluster_id = h.finish().max(1);
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.put_opt("meta", json(&state.meta)?, &wo)
                .map_err(|e| Error::io(format!("writing catalog: {e}")))?;
        }
        if state.roles.is_empty() {
            // A new catalog, or one from before roles, when every session
            // acted as `postgres`: that superuser, without a password.
            let role = RoleDef::bootstrap();
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.put_opt(format!("role/{}", role.name), json(&role)?, &wo)
                .map_err(|e| Error::io(format!("writing catalog: {e}")))?;
            state.roles.insert(role.name.clone(), role);
        }
        Ok(Catalog {
            db,
            state: RwLock::new(Arc::new(state)),
            write: Mutex::new(()),
        })
    }

    /// The catalog as of now. Cheap: an `Arc` clone.
    pub fn snapshot(&self) -> Arc<CatalogState> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn next_node_id(&self) -> NodeId {
        self.snapshot().next_node_id()
    }

    /// Validates and applies `changes` atomically, bumping the version.
    ///
    /// `check` runs on the state the changes apply to, under the writer
    /// lock, so checks such as "no table is bound to this map" cannot race
    /// with a concurrent change.
    ///
    /// Like every synced write of the catalog, it runs off the async
    /// executor ([`slicedb_common::blocking::off_executor`]), waiting for
    /// the writer lock included.
    pub fn update(&self, check: impl FnOnce(&CatalogState) -> Result<Vec<Change>>) -> Result<Arc<CatalogState>> {
        off_executor(|| self.update_now(check))
    }

    fn update_now(&self, check: impl FnOnce(&CatalogState) -> Result<Vec<Change>>) -> Result<Arc<CatalogState>> {
        let _w = self
            .write
            .lock()
            .map_err(|_| Error::internal("catalog lock poisoned"))?;
        let old = self.snapshot();
        let changes = check(&old)?;
        let mut new = (*old).clone();
        let mut batch = WriteBatch::default();
        for change in changes {
            match change {
                Change::PutNode(n) => {
                    new.meta.next_node_id = new.meta.next_node_id.max(n.id + 1);
                    batch.put(format!("node/{}", n.id), json(&n)?);
                    new.nodes.insert(n.id, n);
                }
                Change::PutHashMap(m) => {
                    batch.put(format!("map/{}", m.name), json(&m)?);
                    new.hash_maps.insert(m.name.clone(), Arc::new(m));
                }
                Change::RemoveNode(id) => {
                    batch.delete(format!("node/{id}"));
                    new.nodes.remove(&id);
                }
                Change::DropHashMap(name) => {
                    batch.delete(format!("map/{name}"));
                    new.hash_maps.remove(&name);
                }
                Change::SetCurrentMap(name) => new.meta.current_map = Some(name),
                Change::PutTable(t) => {
                    let last = t.indexes.iter().map(|i| i.id).chain([t.id]).max().unwrap_or(t.id);
                    new.meta.next_table_id = new.meta.next_table_id.max(last + 1);
                    batch.put(format!("table/{}", t.name), json(&t)?);
                    new.tables.insert(t.name.clone(), Arc::new(t));
                }
                Change::DropTable(name) => {
                    batch.delete(format!("table/{name}"));
                    new.tables.remove(&name);
                }
                Change::PutView(v) => {
                    batch.put(format!("view/{}", v.name), json(&v)?);
                    new.views.insert(v.name.clone(), v);
                }
                Change::DropView(name) => {
                    batch.delete(format!("view/{name}"));
                    new.views.remove(&name);
                }
                Change::PutSequence(seq) => {
                    batch.put(format!("sequence/{}", seq.name), json(&seq)?);
                    new.sequences.insert(seq.name.clone(), seq);
                }
                Change::DropSequence(name) => {
                    batch.delete(format!("sequence/{name}"));
                    new.sequences.remove(&name);
                }
                Change::PutRole(role) => {
                    new.meta.next_role_oid = new.meta.next_role_oid.max(role.oid + 1);
                    batch.put(format!("role/{}", role.name), json(&role)?);
                    new.roles.insert(role.name.clone(), role);
                }
                Change::DropRole(name) => {
                    batch.delete(format!("role/{name}"));
                    new.roles.remove(&name);
                }
                Change::ReserveTableIds { below } => {
                    new.meta.next_table_id = new.meta.next_table_id.max(below);
                }
                Change::PutJob(job) => {
                    new.meta.next_job_id = new.meta.next_job_id.max(job.id + 1);
                    batch.put(job_key(job.id), json(&job)?);
                    new.jobs.insert(job.id, job);
                }
            }
        }
        // Placements follow the jobs and the maps they name.
        let jobs: Vec<RedistributionJob> = new.jobs.values().filter(|j| j.state.is_active()).cloned().collect();
        new.placements.clear();
        for job in &jobs {
            new.refresh_placement(job);
        }
        new.meta.version += 1;
        batch.put("meta", json(&new.meta)?);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| Error::io(format!("writing catalog: {e}")))?;
        let new = Arc::new(new);
        match self.state.write() {
            Ok(mut s) => *s = new.clone(),
            Err(poisoned) => *poisoned.into_inner() = new.clone(),
        }
        Ok(new)
    }
}

impl Catalog {
    /// Saves a job's progress (copy cursors, counters, a state that moves
    /// no bucket) durably, without a new catalog version: placements and
    /// plans are unchanged. A change of placement goes through
    /// [`Catalog::update`] with [`Change::PutJob`].
    pub fn save_job(&self, job: &RedistributionJob) -> Result<()> {
        off_executor(|| {
            let _w = self
                .write
                .lock()
                .map_err(|_| Error::internal("catalog lock poisoned"))?;
            self.save_job_locked(job)
        })
    }

    /// Changes the saved job `id` in place with `change`, as
    /// [`Catalog::save_job`] saves it, reading and writing under the writer
    /// lock so that no concurrent save is lost.
    pub fn change_job(&self, id: u64, change: impl FnOnce(&mut RedistributionJob)) -> Result<RedistributionJob> {
        off_executor(|| self.change_job_now(id, change))
    }

    fn change_job_now(&self, id: u64, change: impl FnOnce(&mut RedistributionJob)) -> Result<RedistributionJob> {
        let _w = self
            .write
            .lock()
            .map_err(|_| Error::internal("catalog lock poisoned"))?;
        let mut job = self
            .snapshot()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| err!(UndefinedObject, "redistribution {id} does not exist"))?;
        change(&mut job);
        self.save_job_locked(&job)?;
        Ok(job)
    }

    fn save_job_locked(&self, job: &RedistributionJob) -> Result<()> {
        let old = self.snapshot();
        if old.jobs.get(&job.id).is_some_and(|j| j.moved != job.moved) {
            return Err(Error::internal("a cut-over must be saved as a catalog change"));
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(job_key(job.id), json(job)?, &wo)
            .map_err(|e| Error::io(format!("writing catalog: {e}")))?;
        let mut new = (*old).clone();
        new.jobs.insert(job.id, job.clone());
        new.refresh_placement(job);
        let new = Arc::new(new);
        match self.state.write() {
            Ok(mut s) => *s = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(())
    }
}

impl Catalog {
    /// Takes up to `count` values of sequence `name` (see [`sequence`]):
    /// the first and how many, after the new high-water mark is synced.
    /// Does not change the catalog version.
    pub fn allocate_sequence(&self, name: &str, count: i64) -> Result<(i64, i64)> {
        self.change_sequence(name, |seq| seq.take(count))
    }

    /// Changes sequence `name` in place (`setval`), durably, without a new
    /// catalog version.
    pub fn change_sequence<T>(&self, name: &str, change: impl FnOnce(&mut SequenceDef) -> Result<T>) -> Result<T> {
        off_executor(|| self.change_sequence_now(name, change))
    }

    fn change_sequence_now<T>(&self, name: &str, change: impl FnOnce(&mut SequenceDef) -> Result<T>) -> Result<T> {
        let _w = self
            .write
            .lock()
            .map_err(|_| Error::internal("catalog lock poisoned"))?;
        let old = self.snapshot();
        let mut seq = old.sequence(name)?.clone();
        let out = change(&mut seq)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(format!("sequence/{name}"), json(&seq)?, &wo)
            .map_err(|e| Error::io(format!("writing catalog: {e}")))?;
        let mut new = (*old).clone();
        new.sequences.insert(seq.name.clone(), seq);
        let new = Arc::new(new);
        match self.state.write() {
            Ok(mut s) => *s = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(out)
    }
}

fn job_key(id: u64) -> String {
    format!("redistribution/{id:020}")
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::internal(format!("catalog encoding: {e}")))
}

fn load(db: &DB) -> Result<CatalogState> {
    let mut state = CatalogState::default();
    for item in db.iterator(rocksdb::IteratorMode::Start) {
        let (k, v) = item.map_err(|e| Error::io(format!("reading catalog: {e}")))?;
        let key = String::from_utf8_lossy(&k);
        let bad = |e: serde_json::Error| Error::internal(format!("corrupt catalog entry {key}: {e}"));
        if key == "meta" {
            state.meta = serde_json::from_slice(&v).map_err(bad)?;
        } else if key.starts_with("node/") {
            let n: NodeInfo = serde_json::from_slice(&v).map_err(bad)?;
            state.nodes.insert(n.id, n);
        } else if key.starts_with("map/") {
            let m: HashMap = serde_json::from_slice(&v).map_err(bad)?;
            state.hash_maps.insert(m.name.clone(), Arc::new(m));
        } else if key.starts_with("table/") {
            let t: TableDef = serde_json::from_slice(&v).map_err(bad)?;
            state.tables.insert(t.name.clone(), Arc::new(t));
        } else if key.starts_with("view/") {
            let view: ViewDef = serde_json::from_slice(&v).map_err(bad)?;
            state.views.insert(view.name.clone(), view);
        } else if key.starts_with("sequence/") {
            let seq: SequenceDef = serde_json::from_slice(&v).map_err(bad)?;
            state.sequences.insert(seq.name.clone(), seq);
        } else if key.starts_with("role/") {
            let role: RoleDef = serde_json::from_slice(&v).map_err(bad)?;
            state.roles.insert(role.name.clone(), role);
        } else if key.starts_with("redistribution/") {
            let job: RedistributionJob = serde_json::from_slice(&v).map_err(bad)?;
            state.jobs.insert(job.id, job);
        }
    }
    let active: Vec<RedistributionJob> = state.jobs.values().filter(|j| j.state.is_active()).cloned().collect();
    for job in &active {
        state.refresh_placement(job);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.update(|_| {
                Ok(vec![
                    Change::PutNode(NodeInfo {
                        id: 1,
                        address: "embedded".into(),
                        capacity_mb: None,
                    }),
                    Change::PutHashMap(HashMap::range("hm1", &[1]).unwrap()),
                    Change::SetCurrentMap("hm1".into()),
                ])
            })
            .unwrap();
        }
        let cat = Catalog::open(dir.path()).unwrap();
        let s = cat.snapshot();
        assert_eq!(s.version(), 1);
        assert_eq!(s.current_map().unwrap().name, "hm1");
        assert_eq!(cat.next_node_id(), 2);
        assert_ne!(s.cluster_id(), 0, "a cluster id is chosen at creation");
        let id = s.cluster_id();
        drop(cat);
        assert_eq!(
            Catalog::open(dir.path()).unwrap().snapshot().cluster_id(),
            id,
            "and kept"
        );
        assert_eq!(s.table("nope").unwrap_err().state.code(), "42P01");
    }

    #[test]
    fn sequence_ranges_survive_reopen_without_a_new_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.update(|_| {
                Ok(vec![Change::PutSequence(SequenceDef::new(
                    "s",
                    slicedb_common::SqlType::BigInt,
                ))])
            })
            .unwrap();
            assert_eq!(cat.allocate_sequence("s", 32).unwrap(), (1, 32));
            assert_eq!(cat.snapshot().version(), 1, "allocation is no catalog change");
        }
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(
            cat.allocate_sequence("s", 1).unwrap(),
            (33, 1),
            "a reopened catalog never hands out a value twice"
        );
        assert_eq!(cat.allocate_sequence("nope", 1).unwrap_err().state.code(), "42P01");
    }

    #[test]
    fn a_failed_check_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let r = cat.update(|_| Err(err!(ObjectInUse, "busy")));
        assert!(r.is_err());
        assert_eq!(cat.snapshot().version(), 0);
    }
}
