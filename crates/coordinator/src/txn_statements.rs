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
//! Every isolation level runs as snapshot isolation (PostgreSQL's
//! `REPEATABLE READ`), which is stronger than `READ COMMITTED`;
//! `SERIALIZABLE` is refused rather than silently weakened.

use datafusion::sql::sqlparser::ast::{Ident, TransactionAccessMode, TransactionIsolationLevel, TransactionMode};
use slicedb_common::{err, Result};

use crate::session::Session;
use crate::{CommandTag, Coordinator, Output};

/// Refuses `SERIALIZABLE`: slicedb gives snapshot isolation, which allows write skew.
pub fn check_isolation(level: &str) -> Result<()> {
    if level.trim_matches('\'').eq_ignore_ascii_case("serializable") {
        return Err(err!(
            FeatureNotSupported,
            "SERIALIZABLE isolation is not supported: slicedb runs every transaction under snapshot isolation (REPEATABLE READ)"
        ));
    }
    Ok(())
}

/// Checks transaction modes; returns whether they ask for `READ ONLY`.
pub fn check_modes(modes: &[TransactionMode]) -> Result<bool> {
    let mut read_only = false;
    for m in modes {
        match m {
            TransactionMode::IsolationLevel(TransactionIsolationLevel::Serializable) => {
                check_isolation("serializable")?
            }
            TransactionMode::IsolationLevel(_) => {}
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => read_only = true,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => read_only = false,
        }
    }
    Ok(read_only)
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
        let read_only = check_modes(modes)?;
        if !session.in_block() {
            session.txn = Some(self.txns.begin().await?);
            session.failed = false;
            session.read_only = read_only;
        } else {
            tracing::debug!("BEGIN inside a transaction block: ignored");
        }
        Ok(Output::TransactionStart(CommandTag::new("BEGIN")))
    }

    /// `SET TRANSACTION …` inside a block.
    pub(crate) fn set_transaction(&self, session: &mut Session, modes: &[TransactionMode]) -> Result<()> {
        let read_only = check_modes(modes)?;
        if session.in_block() {
            session.read_only = read_only;
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
