//! Roles as SQL sees them: `CREATE`, `ALTER` and `DROP ROLE` (and `USER`),
//! and the rule that some statements need a superuser.
//!
//! A role is a catalog object ([`slicedb_catalog::role`]); the front end
//! authenticates connections against it and starts each session as one
//! role ([`Session::user`]). Every check here reads the role from the
//! catalog as of the statement, so `ALTER ROLE … NOSUPERUSER` applies to
//! that role's open sessions from their next statement on.
//!
//! What needs a superuser: creating, dropping and altering roles (a role
//! may change its own password), and every statement that changes the
//! cluster's shape: `ADD NODE`, `REMOVE NODE`, `CREATE`/`DROP HASH MAP`,
//! `SET CURRENT HASH MAP`, `REDISTRIBUTE` and `CANCEL REDISTRIBUTION`.
//! Anything else is refused with 42501.
//!
//! `session_user` and `current_user` (which the parser turns into it)
//! answer the session's role ([`SessionUser`]).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use slicedb_catalog::role::{password_verifier, BOOTSTRAP_ROLE};
use slicedb_catalog::{Change, RoleDef};
use slicedb_common::{err, Result};

use crate::parser::RoleOptions;
use crate::session::{Session, SessionValues};
use crate::{CommandTag, Coordinator, Output};

impl Coordinator {
    /// Is the session's role a superuser now?
    pub(crate) fn is_superuser(&self, session: &Session) -> bool {
        self.catalog
            .snapshot()
            .roles
            .get(&session.user)
            .is_some_and(|r| r.superuser)
    }

    /// Refuses `what` (42501) unless the session's role is a superuser.
    pub(crate) fn require_superuser(&self, session: &Session, what: &str) -> Result<()> {
        if self.is_superuser(session) {
            Ok(())
        } else {
            Err(err!(
                InsufficientPrivilege,
                "permission denied: only a superuser may {what}"
            ))
        }
    }

    /// `CREATE ROLE` / `CREATE USER`.
    pub(crate) async fn create_role(&self, session: &Session, name: String, options: RoleOptions) -> Result<Output> {
        self.require_superuser(session, "create roles")?;
        let password = match options.password {
            Some(Some(p)) => Some(password_verifier(&p)?),
            _ => None,
        };
        self.catalog.update(|s| {
            if s.roles.contains_key(&name) {
                return Err(err!(DuplicateObject, "role \"{name}\" already exists"));
            }
            Ok(vec![Change::PutRole(RoleDef {
                name: name.clone(),
                oid: s.next_role_oid(),
                superuser: options.superuser.unwrap_or(false),
                login: options.login.unwrap_or(false),
                password,
            })])
        })?;
        Ok(Output::Command(CommandTag::new("CREATE ROLE")))
    }

    /// `ALTER ROLE` / `ALTER USER`: a superuser may change any attribute
    /// of any role; another role only its own password.
    pub(crate) async fn alter_role(&self, session: &Session, name: String, options: RoleOptions) -> Result<Output> {
        let own_password_only = name == session.user && options.login.is_none() && options.superuser.is_none();
        if !own_password_only {
            self.require_superuser(session, "alter roles other than their own password")?;
        }
        if name == BOOTSTRAP_ROLE && (options.superuser == Some(false) || options.login == Some(false)) {
            return Err(err!(
                InsufficientPrivilege,
                "the bootstrap role \"{name}\" must keep SUPERUSER and LOGIN"
            ));
        }
        let password = match &options.password {
            Some(Some(p)) => Some(Some(password_verifier(p)?)),
            Some(None) => Some(None),
            None => None,
        };
        self.catalog.update(|s| {
            let mut role = s.role(&name)?.clone();
            if let Some(login) = options.login {
                role.login = login;
            }
            if let Some(superuser) = options.superuser {
                role.superuser = superuser;
            }
            if let Some(password) = password {
                role.password = password;
            }
            Ok(vec![Change::PutRole(role)])
        })?;
        Ok(Output::Command(CommandTag::new("ALTER ROLE")))
    }

    /// `DROP ROLE [IF EXISTS] name, …`: all of them or none.
    pub(crate) async fn drop_role(&self, session: &Session, names: Vec<String>, if_exists: bool) -> Result<Output> {
        self.require_superuser(session, "drop roles")?;
        self.catalog.update(|s| {
            let mut changes = Vec::new();
            for name in &names {
                if !s.roles.contains_key(name) {
                    if if_exists {
                        tracing::info!("role \"{name}\" does not exist, skipping");
                        continue;
                    }
                    return Err(err!(UndefinedObject, "role \"{name}\" does not exist"));
                }
                if *name == session.user {
                    return Err(err!(ObjectInUse, "current user cannot be dropped"));
                }
                if name == BOOTSTRAP_ROLE {
                    return Err(err!(
                        DependentObjectsStillExist,
                        "cannot drop role {name} because it is required by the database system"
                    ));
                }
                // As in PostgreSQL: not while it owns a relation or holds a
                // privilege on one (a new role of the same name would
                // inherit them).
                let acls = s
                    .tables
                    .values()
                    .map(|t| (t.name.as_str(), &t.acl))
                    .chain(s.views.values().map(|v| (v.name.as_str(), &v.acl)));
                for (relation, acl) in acls {
                    let what = if acl.owner == *name {
                        "owner of"
                    } else if acl.grants.contains_key(name) {
                        "privileges for"
                    } else {
                        continue;
                    };
                    return Err(err!(
                        DependentObjectsStillExist,
                        "role \"{name}\" cannot be dropped because some objects depend on it: {what} {relation}"
                    ));
                }
                changes.push(Change::DropRole(name.clone()));
            }
            Ok(changes)
        })?;
        Ok(Output::Command(CommandTag::new("DROP ROLE")))
    }

    /// Gives the bootstrap role `password` if it has none yet (what
    /// `SLICEDB_PASSWORD` does at start-up, as `POSTGRES_PASSWORD` does
    /// for PostgreSQL's images). Returns whether it did.
    pub fn set_initial_password(&self, password: &str) -> Result<bool> {
        let verifier = password_verifier(password)?;
        let mut set = false;
        self.catalog.update(|s| {
            let mut role = s.role(BOOTSTRAP_ROLE)?.clone();
            if role.password.is_some() {
                return Ok(Vec::new());
            }
            role.password = Some(verifier);
            set = true;
            Ok(vec![Change::PutRole(role)])
        })?;
        Ok(set)
    }
}

/// `session_user` (and `current_user`): the role of the statement's
/// session, read from its [`SessionValues`]; registered over
/// datafusion-pg-catalog's, which always answers `postgres`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionUser {
    signature: Signature,
}

impl SessionUser {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SessionUser {
            signature: Signature::exact(vec![], Volatility::Stable),
        })
    }
}

impl ScalarUDFImpl for SessionUser {
    fn name(&self) -> &str {
        "session_user"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let user = match args.config_options.extensions.get::<SessionValues>() {
            Some(values) => values.user.to_string(),
            None => BOOTSTRAP_ROLE.to_string(),
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(user))))
    }
}
