//! SQL-level prepared statements: `PREPARE name [(types)] AS statement`,
//! `EXECUTE name [(values)]`, `DEALLOCATE [PREPARE] name | ALL`, and
//! `DISCARD ALL`.
//!
//! A prepared statement is planned once, as the extended protocol's Parse
//! plans it ([`Coordinator::prepare`]), and kept in the session. `EXECUTE`
//! evaluates its argument expressions, casts each to the parameter's type
//! (the declared one, else the one planning inferred) and runs the plan
//! with them, re-planning only if the catalog changed since.

use std::sync::Arc;

use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::sql::sqlparser::ast;
use slicedb_common::{err, Result, SqlType};

use crate::execute::Prepared;
use crate::session::Session;
use crate::{CommandTag, Coordinator, Output};

/// A statement `PREPARE` stored in the session.
#[derive(Debug, Clone)]
pub struct SqlPrepared {
    pub prepared: Arc<Prepared>,
    /// The declared parameter types, if any.
    pub types: Vec<SqlType>,
}

impl Coordinator {
    /// `PREPARE name [(types)] AS statement`.
    pub async fn prepare_sql(
        &self,
        session: &mut Session,
        name: &ast::Ident,
        types: &[ast::DataType],
        statement: &ast::Statement,
    ) -> Result<Output> {
        let name = crate::ddl::normalize(name);
        if session.statements.contains_key(&name) {
            return Err(err!(
                DuplicatePreparedStatement,
                "prepared statement \"{name}\" already exists"
            ));
        }
        let types = types.iter().map(SqlType::from_ast).collect::<Result<Vec<_>>>()?;
        let prepared = Arc::new(self.prepare(&statement.to_string()).await?);
        session.statements.insert(name, SqlPrepared { prepared, types });
        Ok(Output::Command(CommandTag::new("PREPARE")))
    }

    /// `EXECUTE name [(values)]`.
    pub async fn execute_sql_prepared(
        &self,
        session: &mut Session,
        name: &ast::ObjectName,
        values: &[ast::Expr],
    ) -> Result<Output> {
        let name = crate::ddl::relation_name(name)?;
        let stored = session
            .statements
            .get(&name)
            .cloned()
            .ok_or_else(|| err!(InvalidSqlStatementName, "prepared statement \"{name}\" does not exist"))?;
        if let Some(stmt) = &stored.prepared.statement {
            self.check_privileges(session, stmt)?;
        }
        let inferred = Coordinator::parameter_types(&stored.prepared)?;
        let wanted = inferred.len().max(stored.types.len());
        if values.len() != wanted {
            return Err(err!(
                SyntaxError,
                "wrong number of parameters for prepared statement \"{name}\": expected {wanted}, got {}",
                values.len()
            ));
        }
        let state = self.ctx.state();
        let empty = DFSchema::empty();
        let one = RecordBatch::try_new_with_options(
            Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let mut params = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let mut expr = state.create_logical_expr(&v.to_string(), &empty)?;
            let target = match stored.types.get(i) {
                Some(t) => Some(t.arrow_type()),
                None => inferred.get(i).cloned().flatten(),
            };
            if let Some(t) = target {
                // Text read as PostgreSQL reads it (bytea's hex form,
                // timestamps without seconds), as in any other cast.
                let cast = datafusion::logical_expr::cast(expr, t);
                expr = slicedb_planner::text_input::pg_text_input(cast, &empty)?;
            }
            let value = state
                .create_physical_expr(expr, &empty)?
                .evaluate(&one)?
                .into_array(1)?;
            params.push(ScalarValue::try_from_array(&value, 0)?);
        }
        Box::pin(self.execute_prepared_statement(session, &stored.prepared, params.into())).await
    }

    /// `DEALLOCATE [PREPARE] name | ALL`.
    pub fn deallocate_sql(&self, session: &mut Session, name: &ast::Ident) -> Result<Output> {
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            session.statements.clear();
        } else {
            let name = crate::ddl::normalize(name);
            if session.statements.remove(&name).is_none() {
                return Err(err!(
                    InvalidSqlStatementName,
                    "prepared statement \"{name}\" does not exist"
                ));
            }
        }
        Ok(Output::Command(CommandTag::new("DEALLOCATE")))
    }

    /// `DISCARD ALL`: the session's settings back to their defaults, its
    /// SQL-level prepared statements and its sequence values forgotten.
    pub fn discard_all(&self, session: &mut Session, what: &ast::DiscardObject) -> Result<Output> {
        if session.in_block() {
            return Err(err!(
                ActiveSqlTransaction,
                "DISCARD ALL cannot run inside a transaction block"
            ));
        }
        match what {
            ast::DiscardObject::ALL => {
                session.statements.clear();
                session.sequences = crate::session::SessionValues::of(&session.user);
                session.reset_all();
                Ok(Output::Command(CommandTag::new("DISCARD ALL")))
            }
            ast::DiscardObject::SEQUENCES => {
                session.sequences = crate::session::SessionValues::of(&session.user);
                Ok(Output::Command(CommandTag::new("DISCARD SEQUENCES")))
            }
            // No temporary tables and no cached plans outside prepared statements.
            ast::DiscardObject::TEMP => Ok(Output::Command(CommandTag::new("DISCARD TEMP"))),
            ast::DiscardObject::PLANS => Ok(Output::Command(CommandTag::new("DISCARD PLANS"))),
        }
    }
}
