//! Runs every `sql/*.slt` and `sql/postgres/*.slt` file against a freshly
//! started `slicedb start` process, through a real pgwire connection
//! (tokio-postgres, simple query protocol). Errors are matched by SQLSTATE:
//! `statement error (42P01)`.
//!
//! The expected output of `sql/postgres/*.slt` is PostgreSQL 15's own:
//! `scripts/slt-postgres` regenerates it from a throwaway PostgreSQL
//! (through the ignored `regenerate_postgres_expectations` test below).

use std::path::PathBuf;

use async_trait::async_trait;
use slicedb_e2e::Server;
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::SimpleQueryMessage;

struct Postgres {
    client: tokio_postgres::Client,
}

#[derive(Debug)]
struct DbError(tokio_postgres::Error);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for DbError {}

#[async_trait]
impl sqllogictest::AsyncDB for Postgres {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let messages = self.client.simple_query(sql).await.map_err(DbError)?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(desc) => columns = Some(desc.len()),
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(affected)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "slicedb"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }

    fn error_sql_state(err: &DbError) -> Option<String> {
        err.0.code().map(|c| c.code().to_string())
    }
}

fn slt_files_in(dir: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

fn slt_files() -> Vec<PathBuf> {
    let mut files = slt_files_in("sql");
    files.extend(slt_files_in("sql/postgres"));
    files
}

/// The file's name, unless `SLT` (`filter`) names other files.
fn selected(file: &std::path::Path, filter: Option<&str>) -> Option<String> {
    let name = file.file_name()?.to_str()?.to_string();
    filter.is_none_or(|f| name.contains(f)).then_some(name)
}

async fn connect(conn_str: String) -> Result<Postgres, DbError> {
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .map_err(DbError)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Postgres { client })
}

/// Expected errors are matched by SQLSTATE only (`statement error
/// (23505)`): the regenerated file has PostgreSQL's whole message, whose
/// wording slicedb need not copy.
fn keep_only_sqlstates(file: &std::path::Path) {
    let text = std::fs::read_to_string(file).expect("read the regenerated file");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let kept = ["statement error ", "query error "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (code, _) = rest.split_once(':')?;
            (code.len() == 5 && code.chars().all(|c| c.is_ascii_alphanumeric())).then(|| format!("{prefix}({code})"))
        });
        out.push_str(kept.as_deref().unwrap_or(line));
        out.push('\n');
    }
    std::fs::write(file, out).expect("write the regenerated file");
}

/// Rewrites the expected output of `sql/postgres/*.slt` with what the
/// PostgreSQL at `SLT_POSTGRES` (a connection string) answers. Run by
/// `scripts/slt-postgres`, which starts that PostgreSQL; each file runs in
/// a database of its own.
#[test]
#[ignore = "needs a PostgreSQL 15: run it through scripts/slt-postgres"]
fn regenerate_postgres_expectations() {
    let conn = std::env::var("SLT_POSTGRES").expect("SLT_POSTGRES: a PostgreSQL connection string");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let filter = std::env::var("SLT").ok();
    for (i, file) in slt_files_in("sql/postgres").iter().enumerate() {
        let Some(name) = selected(file, filter.as_deref()) else {
            continue;
        };
        let db = format!("slt_{i}");
        runtime.block_on(async {
            let admin = connect(conn.clone()).await.expect("connect to PostgreSQL");
            for sql in [format!("DROP DATABASE IF EXISTS {db}"), format!("CREATE DATABASE {db}")] {
                admin.client.simple_query(&sql).await.expect("create the database");
            }
            let conn_str = format!("{conn} dbname={db}");
            let mut runner = sqllogictest::Runner::new(move || connect(conn_str.clone()));
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        });
        keep_only_sqlstates(file);
        println!("{name}: regenerated from PostgreSQL");
    }
}

#[test]
fn sqllogictest_files() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files in sql/");
    let filter = std::env::var("SLT").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in &files {
        let Some(name) = selected(file, filter.as_deref()) else {
            continue;
        };
        ran += 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path());
        let result = runtime.block_on(async {
            let conn_str = server.conn_str();
            let mut runner = sqllogictest::Runner::new(move || connect(conn_str.clone()));
            runner.run_file_async(file).await
        });
        match result {
            Ok(()) => println!("{name}: ok"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    // A filter that names no file must not pass as if it had run one.
    assert!(ran > 0, "SLT={} names no .slt file", filter.unwrap_or_default());
    assert!(failures.is_empty(), "sqllogictest failures:\n{}", failures.join("\n\n"));
}
