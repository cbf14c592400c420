//! Who may do what with a table or a view: its owner, and the privileges
//! `GRANT` gave other roles.
//!
//! The owner (the role that created it) may do anything with it, as may a
//! superuser. Any other role needs the privilege for what it does:
//! `SELECT` to read, `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE` to
//! write, granted to it by name or to `PUBLIC` (every role). Changing the
//! definition (`ALTER`, `DROP`, `CREATE INDEX`, `GRANT`) is the owner's.
//!
//! ```
//! use slicedb_common::acl::{Acl, Privileges};
//! let mut acl = Acl::owned_by("app");
//! acl.grant("reporting", Privileges::SELECT);
//! assert!(acl.allows("app", Privileges::ALL));
//! assert!(acl.allows("reporting", Privileges::SELECT));
//! assert!(!acl.allows("reporting", Privileges::SELECT | Privileges::UPDATE));
//! acl.grant("public", Privileges::INSERT);
//! assert!(acl.allows("anyone", Privileges::INSERT));
//! assert_eq!(acl.items(), ["app=arwdD/app", "=a/app", "reporting=r/app"]);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The grantee that stands for every role.
pub const PUBLIC: &str = "public";

/// A set of table privileges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Privileges(pub u8);

impl Privileges {
    pub const NONE: Privileges = Privileges(0);
    pub const SELECT: Privileges = Privileges(1);
    pub const INSERT: Privileges = Privileges(2);
    pub const UPDATE: Privileges = Privileges(4);
    pub const DELETE: Privileges = Privileges(8);
    pub const TRUNCATE: Privileges = Privileges(16);
    pub const ALL: Privileges = Privileges(31);

    /// Every privilege of `other` is in `self`.
    pub fn contains(self, other: Privileges) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the privileges in `self`, in PostgreSQL's order.
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(p, _, _)| self.contains(*p))
            .map(|(_, name, _)| *name)
            .collect()
    }

    /// PostgreSQL's letters (`arwdD`), as `aclitem` prints them.
    fn letters(self) -> String {
        ORDER
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, c)| *c)
            .collect()
    }
}

const NAMES: [(Privileges, &str, char); 5] = [
    (Privileges::SELECT, "SELECT", 'r'),
    (Privileges::INSERT, "INSERT", 'a'),
    (Privileges::UPDATE, "UPDATE", 'w'),
    (Privileges::DELETE, "DELETE", 'd'),
    (Privileges::TRUNCATE, "TRUNCATE", 'D'),
];

/// The order `aclitem` prints its letters in.
const ORDER: [(Privileges, char); 5] = [
    (Privileges::INSERT, 'a'),
    (Privileges::SELECT, 'r'),
    (Privileges::UPDATE, 'w'),
    (Privileges::DELETE, 'd'),
    (Privileges::TRUNCATE, 'D'),
];

impl std::ops::BitOr for Privileges {
    type Output = Privileges;
    fn bitor(self, other: Privileges) -> Privileges {
        Privileges(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Privileges {
    fn bitor_assign(&mut self, other: Privileges) {
        self.0 |= other.0;
    }
}

fn default_owner() -> String {
    "postgres".into()
}

/// A relation's owner and grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owning role (`postgres` for relations made before roles).
    #[serde(default = "default_owner")]
    pub owner: String,
    /// Privileges granted to other roles, or to [`PUBLIC`], by role name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Privileges>,
}

impl Default for Acl {
    fn default() -> Self {
        Acl::owned_by(&default_owner())
    }
}

impl Acl {
    pub fn owned_by(owner: &str) -> Acl {
        Acl {
            owner: owner.to_string(),
            grants: BTreeMap::new(),
        }
    }

    /// May `role` (not a superuser: the caller checks that) do `wanted`?
    pub fn allows(&self, role: &str, wanted: Privileges) -> bool {
        if role == self.owner {
            return true;
        }
        let mut held = self.grants.get(role).copied().unwrap_or_default();
        held |= self.grants.get(PUBLIC).copied().unwrap_or_default();
        held.contains(wanted)
    }

    pub fn grant(&mut self, role: &str, privileges: Privileges) {
        *self.grants.entry(role.to_string()).or_default() |= privileges;
    }

    pub fn revoke(&mut self, role: &str, privileges: Privileges) {
        if let Some(held) = self.grants.get_mut(role) {
            held.0 &= !privileges.0;
            if held.is_empty() {
                self.grants.remove(role);
            }
        }
    }

    /// The grants as PostgreSQL's `aclitem`s (`role=letters/grantor`, the
    /// owner's first, `PUBLIC` as an empty name), as `relacl` holds them.
    pub fn items(&self) -> Vec<String> {
        let mut items = vec![format!("{}={}/{}", self.owner, Privileges::ALL.letters(), self.owner)];
        for (role, privileges) in &self.grants {
            let name = if role == PUBLIC { "" } else { role.as_str() };
            items.push(format!("{name}={}/{}", privileges.letters(), self.owner));
        }
        items
    }
}
