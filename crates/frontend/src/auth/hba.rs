//! Host rules: which clients may connect, and how they prove who they are.
//!
//! The rules are PostgreSQL's `pg_hba.conf`, in the part that applies to
//! TCP clients: one rule a line, `#` starts a comment, and the first rule
//! whose connection type, database, user and address match decides.
//!
//! ```text
//! # TYPE     DATABASE  USER        ADDRESS         METHOD
//! hostssl    all       all         10.0.0.0/8      scram-sha-256
//! host       all       postgres    127.0.0.1/32    trust
//! host       all       all         all             reject
//! ```
//!
//! - TYPE: `host` (with or without TLS), `hostssl` (TLS only), `hostnossl`.
//! - DATABASE and USER: `all`, or a comma-separated list of names.
//! - ADDRESS: `all`, an address, or an address with a `/bits` mask.
//! - METHOD: `trust` (no password), `scram-sha-256` (`md5` is read as
//!   it, as PostgreSQL does for roles whose password is a SCRAM verifier),
//!   or `reject`.
//!
//! A client no rule matches is refused (28000). Without a file
//! ([`HostRules::default`]) loopback clients are trusted and every other
//! client must give its password:
//!
//! ```text
//! host all all 127.0.0.0/8 trust
//! host all all ::1/128     trust
//! host all all all         scram-sha-256
//! ```
//!
//! [`HostRules::check_listen`] is the secure default: rules that let a
//! client from another host in without a password are refused at start-up
//! unless the server listens on a loopback address only.

use std::net::{IpAddr, SocketAddr};

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    ScramSha256,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionType {
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Names {
    All,
    List(Vec<String>),
}

impl Names {
    fn parse(field: &str) -> Names {
        if field == "all" {
            Names::All
        } else {
            Names::List(field.split(',').map(|n| n.trim_matches('"').to_string()).collect())
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Names::All => true,
            Names::List(names) => names.iter().any(|n| n == name),
        }
    }
}

/// An address range: `all`, or a network and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    All,
    Net(IpAddr, u8),
}

impl Address {
    fn parse(field: &str) -> Result<Address, String> {
        if field == "all" {
            return Ok(Address::All);
        }
        let (ip, bits) = match field.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (field, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("\"{field}\" is not an address, an address/bits or all"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("\"{field}\" has a bad mask length"))?,
            None => max,
        };
        Ok(Address::Net(ip, bits))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match *self {
            Address::All => true,
            Address::Net(net, bits) => match (net, canonical(ip)) {
                (IpAddr::V4(n), IpAddr::V4(a)) => prefix(u32::from(n) as u128, u32::from(a) as u128, bits, 32),
                (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(n), u128::from(a), bits, 128),
                _ => false,
            },
        }
    }

    /// Only loopback addresses are in it.
    fn is_loopback_only(&self) -> bool {
        match *self {
            Address::All => false,
            Address::Net(IpAddr::V4(n), bits) => bits >= 8 && n.octets()[0] == 127,
            Address::Net(IpAddr::V6(n), bits) => bits == 128 && n.is_loopback(),
        }
    }
}

fn prefix(net: u128, addr: u128, bits: u8, width: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (net >> shift) == (addr >> shift)
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    line: usize,
    kind: ConnectionType,
    databases: Names,
    users: Names,
    address: Address,
    method: Method,
}

/// The rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRules {
    rules: Vec<Rule>,
}

impl Default for HostRules {
    fn default() -> Self {
        HostRules::parse(
            "host all all 127.0.0.0/8 trust\n\
             host all all ::1/128 trust\n\
             host all all all scram-sha-256\n",
        )
        .unwrap_or(HostRules { rules: Vec::new() })
    }
}

impl HostRules {
    /// Reads rules in `pg_hba.conf`'s form; an error names the line.
    pub fn parse(text: &str) -> Result<HostRules, String> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let bad = |why: String| format!("host rules, line {line_no}: {why}");
            let kind = match fields[0] {
                "host" => ConnectionType::Host,
                "hostssl" => ConnectionType::HostSsl,
                "hostnossl" => ConnectionType::HostNoSsl,
                "local" => return Err(bad("slicedb has no Unix-domain socket: use host rules".into())),
                other => return Err(bad(format!("unknown connection type \"{other}\""))),
            };
            if fields.len() != 5 {
                return Err(bad(format!(
                    "expected 5 fields (type, database, user, address, method), found {}",
                    fields.len()
                )));
            }
            let method = match fields[4] {
                "trust" => Method::Trust,
                "scram-sha-256" | "md5" => Method::ScramSha256,
                "reject" => Method::Reject,
                other => {
                    return Err(bad(format!(
                        "unsupported method \"{other}\" (trust, scram-sha-256, md5 or reject)"
                    )))
                }
            };
            rules.push(Rule {
                line: line_no,
                kind,
                databases: Names::parse(fields[1]),
                users: Names::parse(fields[2]),
                address: Address::parse(fields[3]).map_err(bad)?,
                method,
            });
        }
        Ok(HostRules { rules })
    }

    /// The method for a client, or `None` if no rule matches it.
    pub fn method(&self, peer: IpAddr, tls: bool, database: &str, user: &str) -> Option<Method> {
        self.rules
            .iter()
            .find(|r| {
                let kind = match r.kind {
                    ConnectionType::Host => true,
                    ConnectionType::HostSsl => tls,
                    ConnectionType::HostNoSsl => !tls,
                };
                kind && r.databases.matches(database) && r.users.matches(user) && r.address.contains(peer)
            })
            .map(|r| r.method)
    }

    /// Refuses to serve `listen` if it is reachable from other hosts and a
    /// rule lets such a host in without a password.
    pub fn check_listen(&self, listen: SocketAddr) -> Result<(), String> {
        if canonical(listen.ip()).is_loopback() {
            return Ok(());
        }
        match self
            .rules
            .iter()
            .find(|r| r.method == Method::Trust && !r.address.is_loopback_only())
        {
            Some(r) => Err(format!(
                "refusing to listen on {listen}: host rule {} (line {}) trusts clients from other hosts, who would \
                 connect as any role without a password. Give those clients the scram-sha-256 method (and the \
                 roles passwords), or listen on a loopback address",
                self.rules.iter().position(|x| x == r).unwrap_or(0) + 1,
                r.line
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_trusts_loopback_and_asks_everyone_else_for_a_password() {
        let rules = HostRules::default();
        assert_eq!(
            rules.method(ip("127.0.0.1"), false, "slicedb", "postgres"),
            Some(Method::Trust)
        );
        assert_eq!(
            rules.method(ip("::1"), false, "slicedb", "postgres"),
            Some(Method::Trust)
        );
        assert_eq!(
            rules.method(ip("::ffff:127.0.0.1"), false, "x", "y"),
            Some(Method::Trust)
        );
        assert_eq!(
            rules.method(ip("10.1.2.3"), true, "slicedb", "postgres"),
            Some(Method::ScramSha256)
        );
        assert_eq!(
            rules.method(ip("::ffff:10.1.2.3"), false, "x", "y"),
            Some(Method::ScramSha256)
        );
        assert!(rules.check_listen("127.0.0.1:5433".parse().unwrap()).is_ok());
        assert!(rules.check_listen("0.0.0.0:5433".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = HostRules::parse(
            "# comment\n\
             hostssl  all      all        10.0.0.0/8   scram-sha-256\n\
             host     app,db2  alice      10.0.0.0/8   trust   # trailing comment\n\
             hostnossl all     all        all          reject\n",
        )
        .unwrap();
        assert_eq!(
            rules.method(ip("10.9.9.9"), true, "app", "alice"),
            Some(Method::ScramSha256)
        );
        assert_eq!(rules.method(ip("10.9.9.9"), false, "app", "alice"), Some(Method::Trust));
        assert_eq!(
            rules.method(ip("10.9.9.9"), false, "other", "alice"),
            Some(Method::Reject)
        );
        assert_eq!(rules.method(ip("11.0.0.1"), true, "app", "alice"), None);
        assert_eq!(rules.method(ip("10.0.0.1"), false, "db2", "bob"), Some(Method::Reject));
    }

    #[test]
    fn trusting_other_hosts_is_refused_unless_listening_on_loopback() {
        let open = HostRules::parse("host all all 0.0.0.0/0 trust\n").unwrap();
        assert!(open.check_listen("127.0.0.1:5433".parse().unwrap()).is_ok());
        let e = open.check_listen("0.0.0.0:5433".parse().unwrap()).unwrap_err();
        assert!(e.contains("line 1") && e.contains("scram-sha-256"), "{e}");
        assert!(open.check_listen("[::]:5433".parse().unwrap()).is_err());
        let loopback = HostRules::parse("host all all 127.0.0.1/32 trust\nhost all all all reject\n").unwrap();
        assert!(loopback.check_listen("0.0.0.0:5433".parse().unwrap()).is_ok());
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        for (text, needle) in [
            ("host all all\n", "line 1"),
            ("\nhost all all 10.0.0.0/33 trust\n", "line 2"),
            ("host all all 10.0.0.0/8 password\n", "unsupported method"),
            ("local all all trust\n", "Unix-domain"),
            ("hots all all all trust\n", "unknown connection type"),
        ] {
            let e = HostRules::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
