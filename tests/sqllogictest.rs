//! Runs every `sql/*.slt` file against a freshly started `slicedb start`
//! process, through a real pgwire connection (tokio-postgres, simple query
//! protocol). Errors are matched by SQLSTATE: `statement error (42P01)`.

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

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[test]
fn sqllogictest_files() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files in sql/");
    let filter = std::env::var("SLT").ok();
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path());
        let result = runtime.block_on(async {
            let conn_str = server.conn_str();
            let mut runner = sqllogictest::Runner::new(move || {
                let conn_str = conn_str.clone();
                async move {
                    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
                        .await
                        .map_err(DbError)?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Ok(Postgres { client })
                }
            });
            runner.run_file_async(file).await
        });
        match result {
            Ok(()) => println!("{name}: ok"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "sqllogictest failures:\n{}", failures.join("\n\n"));
}
