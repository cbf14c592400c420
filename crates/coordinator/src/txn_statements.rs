//! Transaction blocks: what `BEGIN`, `COMMIT`, `ROLLBACK` and savepoints do
//! to a session.
//!
//! A block's [`Transaction`](slicedb_txn::Transaction) lives in the
//! [`Session`]. Outside a block every statement is a transaction of its
//! own (see `execute::run_plan`). As in PostgreSQL:
//! - `BEGIN` in a block and `COMMIT`/`ROLLBACK` outside one only warn;
//! - after an error the block is *failed*: statements get 25P02 until
//!   `ROLLBACK`, `ROLLBACK TO SAVEPOINT`, or `COMMIT` (which then rolls back);
//! - a savepoint remembers the number of the next statement; rolling back
//!   to it drops the writes of every later statement on every slice server.
//!
//! `READ COMMITTED` (the default, as in PostgreSQL) gives each statement
//! of the block a snapshot of its own, and restarts a write statement that
//! meets a row committed after it (see `execute::run_plan`); `REPEATABLE
//! READ` runs the block at one snapshot; `SERIALIZABLE` is refused rather
//! than silently weakened (docs/transactions.md).

use datafusion::sql::sqlparser::ast::{Ident, TransactionAccessMode, TransactionIsolationLevel, TransactionMode};
use slicedb_common::{err, Result};

use crate::session::Session;
use crate::{CommandTag, Coordinator, Output};

/// Refuses `SERIALIZABLE`: slicedb gives snapshot isolation, which allows write skew.
pub fn check_isolation(level: &str) -> Result<()> {
    if level.trim_matches('\'').eq_ignore_ascii_case("serializable") {
        return Err(err!(
            FeatureNotSupported,
            "SERIALIZABLE isolation is not supported: slicedb runs transactions at READ COMMITTED or REPEATABLE READ (snapshot isolation)"
        ));
    }
    Ok(())
}

/// What `BEGIN` or `SET TRANSACTION` asks for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Modes {
    pub read_only: bool,
    /// `Some(true)` for `READ COMMITTED` (and `READ UNCOMMITTED`, which
    /// PostgreSQL runs as it), `Some(false)` for `REPEATABLE READ`.
    pub read_committed: Option<bool>,
}

/// Checks transaction modes.
pub fn check_modes(modes: &[TransactionMode]) -> Result<Modes> {
    let mut out = Modes::default();
    for m in modes {
        match m {
            TransactionMode::IsolationLevel(TransactionIsolationLevel::Serializable) => {
                check_isolation("serializable")?
            }
            TransactionMode::IsolationLevel(TransactionIsolationLevel::RepeatableRead) => {
                out.read_committed = Some(false)
            }
            TransactionMode::IsolationLevel(_) => out.read_committed = Some(true),
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => out.read_only = true,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => out.read_only = false,
        }
    }
    Ok(out)
}

/// Whether an isolation level's name means `READ COMMITTED`.
pub(crate) fn is_read_committed(level: &str) -> bool {
    let level = level.trim_matches('\'').to_ascii_lowercase();
    level == "read committed" || level == "read uncommitted"
}

fn savepoint_name(name: &Ident) -> String {
    if name.quote_style.is_some() {
        name.value.clone()
    } else {
        name.value.to_lowercase()
    }
}

/// The open block's transaction and the position of its newest savepoint
/// called `name`.
fn find_savepoint<'a>(
    session: &'a mut Session,
    name: &Ident,
    statement: &str,
) -> Result<(&'a mut slicedb_txn::Transaction, usize)> {
    let Some(txn) = session.txn.as_mut() else {
        return Err(err!(
            NoActiveSqlTransaction,
            "{statement} can only be used in transaction blocks"
        ));
    };
    let name = savepoint_name(name);
    match txn.savepoints.iter().rposition(|(n, _)| *n == name) {
        Some(i) => Ok((txn, i)),
        None => Err(err!(
            InvalidSavepointSpecification,
            "savepoint \"{name}\" does not exist"
        )),
    }
}

impl Coordinator {
    /// `BEGIN` / `START TRANSACTION`.
    pub(crate) async fn begin_block(&self, session: &mut Session, modes: &[TransactionMode]) -> Result<Output> {
        let modes = check_modes(modes)?;
        if !session.in_block() {
            let mut txn = self.txns.begin().await?;
            txn.read_committed = modes
                .read_committed
                .unwrap_or_else(|| is_read_committed(session.get("default_transaction_isolation").unwrap_or_default()));
            session.txn = Some(txn);
            session.failed = false;
            session.read_only = modes.read_only;
        } else {
            tracing::debug!("BEGIN inside a transaction block: ignored");
        }
        Ok(Output::TransactionStart(CommandTag::new("BEGIN")))
    }

    /// `SET TRANSACTION …` inside a block.
    pub(crate) fn set_transaction(&self, session: &mut Session, modes: &[TransactionMode]) -> Result<()> {
        let modes = check_modes(modes)?;
        if let Some(txn) = session.txn.as_mut() {
            if let Some(rc) = modes.read_committed {
                txn.read_committed = rc;
            }
            session.read_only = modes.read_only;
        }
        Ok(())
    }

    /// `COMMIT` / `END`: commits the block, or rolls a failed one back.
    pub(crate) async fn commit_block(&self, session: &mut Session) -> Result<Output> {
        let failed = std::mem::take(&mut session.failed);
        session.read_only = false;
        let Some(mut txn) = session.txn.take() else {
            return Ok(Output::TransactionEnd(CommandTag::new("COMMIT")));
        };
        if failed {
            self.txns.rollback(&mut txn).await;
            return Ok(Output::TransactionEnd(CommandTag::new("ROLLBACK")));
        }
        // Deferred foreign keys are checked now; a violation rolls the
        // block back, as in PostgreSQL.
        let deferred = txn.writes.lock().map(|w| !w.fk.is_empty()).unwrap_or(false);
        if deferred {
            let checked = match self.txns.next_statement(&mut txn).await {
                Ok((stmt, snapshot)) => {
                    let r = self.keep_foreign_keys(&stmt, &session.sequences, true).await;
                    drop(snapshot);
                    r
                }
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                self.txns.rollback(&mut txn).await;
                return Err(e);
            }
        }
        self.txns.commit(&mut txn).await?;
        Ok(Output::TransactionEnd(CommandTag::new("COMMIT")))
    }

    /// `ROLLBACK`.
    pub(crate) async fn rollback_block(&self, session: &mut Session) -> Result<Output> {
        session.failed = false;
        session.read_only = false;
        if let Some(mut txn) = session.txn.take() {
            self.txns.rollback(&mut txn).await;
        }
        Ok(Output::TransactionEnd(CommandTag::new("ROLLBACK")))
    }

    /// `SAVEPOINT name`.
    pub(crate) fn savepoint(&self, session: &mut Session, name: &Ident) -> Result<Output> {
        let Some(txn) = session.txn.as_mut() else {
            return Err(err!(
                NoActiveSqlTransaction,
                "SAVEPOINT can only be used in transaction blocks"
            ));
        };
        let seq = txn.next_seq();
        txn.savepoints.push((savepoint_name(name), seq));
        Ok(Output::Command(CommandTag::new("SAVEPOINT")))
    }

    /// `RELEASE [SAVEPOINT] name`: forgets it and every later one.
    pub(crate) fn release_savepoint(&self, session: &mut Session, name: &Ident) -> Result<Output> {
        let (txn, i) = find_savepoint(session, name, "RELEASE SAVEPOINT")?;
        txn.savepoints.truncate(i);
        Ok(Output::Command(CommandTag::new("RELEASE")))
    }

    /// `ROLLBACK TO [SAVEPOINT] name`: drops the writes made since, and
    /// ends a failed state. The savepoint stays.
    pub(crate) async fn rollback_to_savepoint(&self, session: &mut Session, name: &Ident) -> Result<Output> {
        let (txn, i) = find_savepoint(session, name, "ROLLBACK TO SAVEPOINT")?;
        let seq = txn.savepoints[i].1;
        txn.savepoints.truncate(i + 1);
        self.txns.rollback_to(txn, seq).await?;
        session.failed = false;
        Ok(Output::Command(CommandTag::new("ROLLBACK")))
    }
}
