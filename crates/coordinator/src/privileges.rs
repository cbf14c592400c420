//! Table privileges: the check before every statement, `GRANT`, `REVOKE`
//! and `ALTER TABLE … OWNER TO`.
//!
//! Each table and view has an owner and grants ([`slicedb_common::acl`]).
//! Before a statement runs, [`needs`] reads from its syntax tree what it
//! needs of which relation, and [`Coordinator::check_privileges`] refuses
//! it (42501, `permission denied for table t`) unless the session's role
//! is a superuser or holds every one:
//!
//! | statement | needs |
//! |---|---|
//! | any relation read (`SELECT`, a subquery, `INSERT … SELECT`'s source, `COPY … TO`) | `SELECT` |
//! | `INSERT` (and `COPY … FROM`) | `INSERT` on the target; `UPDATE` too for `ON CONFLICT DO UPDATE`; `SELECT` too with `RETURNING` |
//! | `UPDATE` | `UPDATE`; `SELECT` too with a `WHERE`, `FROM` or `RETURNING` |
//! | `DELETE` | `DELETE`; `SELECT` too with a `WHERE`, `USING` or `RETURNING` |
//! | `TRUNCATE` | `TRUNCATE` |
//! | `ALTER TABLE`, `DROP`, `CREATE INDEX`, `COMMENT ON`, `GRANT`, `REVOKE`, `CREATE OR REPLACE VIEW` of an existing view | to be the owner |
//! | `ALTER TABLE … OWNER TO` | a superuser |
//!
//! A view is checked as a relation of its own: reading it needs `SELECT`
//! on the view, not on the tables it reads (as in PostgreSQL, where those
//! are checked against the view's owner; here its creator must have been
//! able to read them when it created the view). The system catalogs, and
//! names that are not tables or views (a `WITH` query's name, a table
//! function), need nothing. Sequences have no privileges: any role may
//! use any sequence.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;
use slicedb_catalog::{CatalogState, Change};
use slicedb_common::acl::{Acl, Privileges, PUBLIC};
use slicedb_common::{err, Result};

use crate::ddl::normalize;
use crate::parser::Statement;
use crate::session::Session;
use crate::{CommandTag, Coordinator, Output};

/// What a statement needs of one relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Privileges(Privileges),
    Owner,
    Superuser,
}

/// The name of a relation of schema `public` (`t`, `public.t`,
/// `slicedb.public.t`); `None` for other schemas' (the system catalogs).
fn public_name(name: &ast::ObjectName) -> Option<String> {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident().map(normalize)).collect();
    if parts.len() != name.0.len() {
        return None;
    }
    match parts.as_slice() {
        [t] => Some(t.clone()),
        [s, t] | [_, s, t] if s == crate::SCHEMA => Some(t.clone()),
        _ => None,
    }
}

/// Every relation `node` reads, by name (once per mention).
fn relations<V: ast::Visit>(node: &V) -> Vec<String> {
    let mut out = Vec::new();
    let _ = ast::visit_relations(node, |name| {
        out.extend(public_name(name));
        ControlFlow::<()>::Continue(())
    });
    out
}

/// `SELECT` on everything `node` mentions but `target` (once).
fn reads_besides<V: ast::Visit>(node: &V, target: Option<&str>, out: &mut Vec<(String, Need)>) {
    let mut names = relations(node);
    if let Some(t) = target {
        if let Some(i) = names.iter().position(|n| n == t) {
            names.remove(i);
        }
    }
    out.extend(names.into_iter().map(|n| (n, Need::Privileges(Privileges::SELECT))));
}

/// `wanted` on a write's `target` (with `SELECT` too when `reads`), and
/// `SELECT` on every other relation `node` mentions.
fn write_needs<V: ast::Visit>(
    node: &V,
    target: Option<String>,
    mut wanted: Privileges,
    reads: bool,
    out: &mut Vec<(String, Need)>,
) {
    if reads {
        wanted |= Privileges::SELECT;
    }
    if let Some(t) = &target {
        out.push((t.clone(), Need::Privileges(wanted)));
    }
    reads_besides(node, target.as_deref(), out);
}

/// What `stmt` needs of which relations (see the module comment).
pub(crate) fn needs(stmt: &Statement) -> Vec<(String, Need)> {
    let mut out = Vec::new();
    let sql = match stmt {
        Statement::Sql(s) => s.as_ref(),
        Statement::CreateTable { create, .. } => {
            if let Some(q) = &create.query {
                reads_besides(q.as_ref(), None, &mut out);
            }
            return out;
        }
        _ => return out,
    };
    use ast::Statement as S;
    match sql {
        S::Query(q) => reads_besides(q.as_ref(), None, &mut out),
        S::Explain { statement, .. } => return needs(&Statement::Sql(statement.clone())),
        S::Insert(insert) => {
            let target = match &insert.table {
                ast::TableObject::TableName(n) => public_name(n),
                _ => None,
            };
            let mut wanted = Privileges::INSERT;
            if let Some(ast::OnInsert::OnConflict(c)) = &insert.on {
                if matches!(c.action, ast::OnConflictAction::DoUpdate(_)) {
                    wanted |= Privileges::UPDATE;
                }
            }
            write_needs(insert, target, wanted, insert.returning.is_some(), &mut out);
        }
        S::Update(update) => {
            let target = match &update.table.relation {
                ast::TableFactor::Table { name, .. } => public_name(name),
                _ => None,
            };
            let reads = update.selection.is_some() || update.from.is_some() || update.returning.is_some();
            write_needs(update, target, Privileges::UPDATE, reads, &mut out);
        }
        S::Delete(delete) => {
            let from = match &delete.from {
                ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
            };
            let target = from.first().and_then(|t| match &t.relation {
                ast::TableFactor::Table { name, .. } => public_name(name),
                _ => None,
            });
            let reads = delete.selection.is_some() || delete.using.is_some() || delete.returning.is_some();
            write_needs(delete, target, Privileges::DELETE, reads, &mut out);
        }
        S::Truncate(t) => {
            for target in &t.table_names {
                out.extend(public_name(&target.name).map(|n| (n, Need::Privileges(Privileges::TRUNCATE))));
            }
        }
        S::Copy { source, to, .. } => match source {
            ast::CopySource::Table { table_name, .. } => {
                let wanted = if *to { Privileges::SELECT } else { Privileges::INSERT };
                out.extend(public_name(table_name).map(|n| (n, Need::Privileges(wanted))));
            }
            ast::CopySource::Query(q) => reads_besides(q.as_ref(), None, &mut out),
        },
        S::CreateView(view) => {
            reads_besides(view.query.as_ref(), None, &mut out);
            if view.or_replace {
                out.extend(public_name(&view.name).map(|n| (n, Need::Owner)));
            }
        }
        S::AlterTable(alter) => {
            let need = if alter
                .operations
                .iter()
                .any(|op| matches!(op, ast::AlterTableOperation::OwnerTo { .. }))
            {
                Need::Superuser
            } else {
                Need::Owner
            };
            out.extend(public_name(&alter.name).map(|n| (n, need)));
        }
        S::CreateIndex(ci) => out.extend(public_name(&ci.table_name).map(|n| (n, Need::Owner))),
        S::Drop { names, .. } => out.extend(names.iter().filter_map(public_name).map(|n| (n, Need::Owner))),
        S::Comment { object_name, .. } => {
            // `COMMENT ON COLUMN t.c`: the table is all but the last part.
            let table = match object_name.0.len() {
                n if n >= 2 => ast::ObjectName(object_name.0[..n - 1].to_vec()),
                _ => object_name.clone(),
            };
            out.extend(
                public_name(&table)
                    .or_else(|| public_name(object_name))
                    .map(|n| (n, Need::Owner)),
            );
        }
        _ => {}
    }
    out
}

/// The owner and grants of relation `name` (a table, a view, or an index,
/// whose are its table's); `None` if it is none of them.
fn acl_of<'a>(state: &'a CatalogState, name: &str) -> Option<&'a Acl> {
    if let Some(t) = state.tables.get(name) {
        return Some(&t.acl);
    }
    if let Some(v) = state.views.get(name) {
        return Some(&v.acl);
    }
    state.index(name).map(|(t, _)| &t.acl)
}

fn kind_of(state: &CatalogState, name: &str) -> &'static str {
    if state.views.contains_key(name) {
        "view"
    } else if state.tables.contains_key(name) {
        "table"
    } else {
        "index"
    }
}

impl Coordinator {
    /// Refuses `stmt` (42501) unless the session's role may run it.
    pub(crate) fn check_privileges(&self, session: &Session, stmt: &Statement) -> Result<()> {
        let state = self.catalog.snapshot();
        if state.roles.get(&session.user).is_some_and(|r| r.superuser) {
            return Ok(());
        }
        for (name, need) in needs(stmt) {
            let Some(acl) = acl_of(&state, &name) else {
                continue;
            };
            let ok = match need {
                Need::Privileges(p) => acl.allows(&session.user, p),
                Need::Owner => acl.owner == session.user,
                Need::Superuser => false,
            };
            if !ok {
                let kind = kind_of(&state, &name);
                return Err(match need {
                    Need::Privileges(_) => err!(InsufficientPrivilege, "permission denied for {kind} {name}"),
                    Need::Owner => err!(InsufficientPrivilege, "must be owner of {kind} {name}"),
                    Need::Superuser => err!(
                        InsufficientPrivilege,
                        "permission denied: only a superuser may change the owner of {kind} {name}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// `GRANT privileges ON [TABLE] t, … | ALL TABLES IN SCHEMA public TO role | PUBLIC, …`
    /// and `REVOKE … FROM …` (`grant` false). The session's role must own
    /// every table named (or be a superuser). On schemas and sequences,
    /// where every role already holds every privilege, `GRANT` changes
    /// nothing and `REVOKE` is refused (0A000).
    pub(crate) async fn grant_or_revoke(
        &self,
        session: &Session,
        grant: bool,
        privileges: &ast::Privileges,
        objects: Option<&ast::GrantObjects>,
        grantees: &[ast::Grantee],
    ) -> Result<Output> {
        let tag = if grant { "GRANT" } else { "REVOKE" };
        let wanted = table_privileges(privileges)?;
        let relations: Option<Vec<String>> = match objects {
            Some(ast::GrantObjects::Tables(names)) | Some(ast::GrantObjects::Views(names)) => Some(
                names
                    .iter()
                    .map(crate::ddl::relation_name)
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(ast::GrantObjects::AllTablesInSchema { schemas }) => {
                for s in schemas {
                    if crate::ddl::relation_name(s)? != crate::SCHEMA {
                        return Err(err!(InvalidSchemaName, "schema \"{s}\" does not exist"));
                    }
                }
                let state = self.catalog.snapshot();
                Some(state.tables.keys().chain(state.views.keys()).cloned().collect())
            }
            Some(ast::GrantObjects::Schemas(_))
            | Some(ast::GrantObjects::Sequences(_))
            | Some(ast::GrantObjects::AllSequencesInSchema { .. })
                if grant =>
            {
                None
            }
            _ => {
                return Err(err!(
                    FeatureNotSupported,
                    "{tag} is supported on tables and views (and GRANT on schema public and sequences, which every role may use)"
                ))
            }
        };
        let mut names = Vec::with_capacity(grantees.len());
        for g in grantees {
            names.push(match (&g.grantee_type, &g.name) {
                (ast::GranteesType::Public, _) => PUBLIC.to_string(),
                (_, Some(ast::GranteeName::ObjectName(n))) => crate::ddl::relation_name(n)?,
                _ => return Err(err!(FeatureNotSupported, "grantee {g} is not supported")),
            });
        }
        let Some(relations) = relations else {
            return Ok(Output::Command(CommandTag::new(tag)));
        };
        let superuser = self.is_superuser(session);
        self.catalog.update(|state| {
            for n in &names {
                if n != PUBLIC && !state.roles.contains_key(n) {
                    return Err(err!(UndefinedObject, "role \"{n}\" does not exist"));
                }
            }
            let mut changes = Vec::new();
            for r in &relations {
                let change = |acl: &mut Acl| -> Result<()> {
                    if !superuser && acl.owner != session.user {
                        return Err(err!(InsufficientPrivilege, "permission denied: must be owner of {r}"));
                    }
                    for n in &names {
                        if grant {
                            acl.grant(n, wanted);
                        } else {
                            acl.revoke(n, wanted);
                        }
                    }
                    Ok(())
                };
                if let Some(t) = state.tables.get(r) {
                    let mut t = (**t).clone();
                    change(&mut t.acl)?;
                    changes.push(Change::PutTable(t));
                } else if let Some(v) = state.views.get(r) {
                    let mut v = v.clone();
                    change(&mut v.acl)?;
                    changes.push(Change::PutView(v));
                } else {
                    return Err(err!(UndefinedTable, "relation \"{r}\" does not exist"));
                }
            }
            Ok(changes)
        })?;
        Ok(Output::Command(CommandTag::new(tag)))
    }

    /// `ALTER TABLE t OWNER TO role` (the check before the statement made
    /// sure the session's role is a superuser).
    pub(crate) fn alter_owner(&self, session: &Session, table: &str, owner: &ast::Owner) -> Result<()> {
        let role = match owner {
            ast::Owner::Ident(i) => normalize(i),
            _ => session.user.clone(),
        };
        self.catalog.update(|state| {
            state.role(&role)?;
            // Views and sequences have no owner in slicedb (every role may
            // use them): PostgreSQL's ALTER TABLE … OWNER TO of one, as
            // pg_dump writes it, checks the role and changes nothing.
            if !state.tables.contains_key(table)
                && (state.views.contains_key(table) || state.sequences.contains_key(table))
            {
                return Ok(vec![]);
            }
            let mut t = (*state.table(table)?).clone();
            t.acl.owner = role.clone();
            Ok(vec![Change::PutTable(t)])
        })?;
        Ok(())
    }
}

/// The table privileges `GRANT`/`REVOKE` name (`ALL [PRIVILEGES]`: every one).
fn table_privileges(privileges: &ast::Privileges) -> Result<Privileges> {
    let actions = match privileges {
        ast::Privileges::All { .. } => return Ok(Privileges::ALL),
        ast::Privileges::Actions(a) => a,
    };
    let mut out = Privileges::NONE;
    for a in actions {
        out |= match a {
            ast::Action::Select { columns: None } => Privileges::SELECT,
            ast::Action::Insert { columns: None } => Privileges::INSERT,
            ast::Action::Update { columns: None } => Privileges::UPDATE,
            ast::Action::Delete => Privileges::DELETE,
            ast::Action::Truncate => Privileges::TRUNCATE,
            // What every role may do with a schema or a sequence.
            ast::Action::Usage => Privileges::NONE,
            other => return Err(err!(FeatureNotSupported, "privilege {other} is not supported")),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs_of(sql: &str) -> Vec<(String, Need)> {
        let mut stmts = crate::parser::parse(sql).unwrap();
        needs(&stmts.remove(0))
    }

    fn p(bits: Privileges) -> Need {
        Need::Privileges(bits)
    }

    #[test]
    fn each_statement_needs_what_postgresql_asks() {
        use Privileges as P;
        let s = |n: &str, need| (n.to_string(), need);
        assert_eq!(
            needs_of("SELECT * FROM a JOIN public.b ON true WHERE a.x IN (SELECT y FROM c)"),
            [s("a", p(P::SELECT)), s("b", p(P::SELECT)), s("c", p(P::SELECT))]
        );
        assert_eq!(needs_of("SELECT * FROM pg_catalog.pg_class"), []);
        assert_eq!(needs_of("INSERT INTO t VALUES (1)"), [s("t", p(P::INSERT))]);
        assert_eq!(
            needs_of("INSERT INTO t SELECT * FROM t RETURNING id"),
            [s("t", p(P::INSERT | P::SELECT)), s("t", p(P::SELECT))]
        );
        assert_eq!(
            needs_of("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2"),
            [s("t", p(P::INSERT | P::UPDATE))]
        );
        assert_eq!(needs_of("UPDATE t SET v = 1"), [s("t", p(P::UPDATE))]);
        assert_eq!(
            needs_of("UPDATE t SET v = 1 WHERE id = 2"),
            [s("t", p(P::UPDATE | P::SELECT))]
        );
        assert_eq!(needs_of("DELETE FROM t"), [s("t", p(P::DELETE))]);
        assert_eq!(
            needs_of("DELETE FROM t WHERE id IN (SELECT id FROM u)"),
            [s("t", p(P::DELETE | P::SELECT)), s("u", p(P::SELECT))]
        );
        assert_eq!(
            needs_of("TRUNCATE t, u"),
            [s("t", p(P::TRUNCATE)), s("u", p(P::TRUNCATE))]
        );
        assert_eq!(needs_of("COPY t FROM STDIN"), [s("t", p(P::INSERT))]);
        assert_eq!(needs_of("COPY t TO STDOUT"), [s("t", p(P::SELECT))]);
        assert_eq!(needs_of("COPY (SELECT * FROM u) TO STDOUT"), [s("u", p(P::SELECT))]);
        assert_eq!(needs_of("EXPLAIN SELECT * FROM t"), [s("t", p(P::SELECT))]);
        assert_eq!(needs_of("ALTER TABLE t ADD COLUMN c int"), [s("t", Need::Owner)]);
        assert_eq!(needs_of("ALTER TABLE t OWNER TO bob"), [s("t", Need::Superuser)]);
        assert_eq!(needs_of("DROP TABLE t, u"), [s("t", Need::Owner), s("u", Need::Owner)]);
        assert_eq!(needs_of("CREATE INDEX i ON t (v)"), [s("t", Need::Owner)]);
        assert_eq!(needs_of("COMMENT ON COLUMN t.v IS 'x'"), [s("t", Need::Owner)]);
        assert_eq!(needs_of("CREATE TABLE n AS SELECT * FROM t"), [s("t", p(P::SELECT))]);
        assert_eq!(
            needs_of("CREATE OR REPLACE VIEW v AS SELECT * FROM t"),
            [s("t", p(P::SELECT)), s("v", Need::Owner)]
        );
        assert_eq!(needs_of("WITH w AS (SELECT 1) SELECT * FROM w"), [s("w", p(P::SELECT))]);
        assert_eq!(needs_of("BEGIN"), []);
    }
}
