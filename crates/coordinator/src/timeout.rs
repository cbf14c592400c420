//! `statement_timeout`: a statement that runs longer than the session's
//! setting is cancelled with 57014, as in PostgreSQL.
//!
//! The clock starts when the statement starts executing and covers the
//! rows it streams back: [`within`] bounds the execution up to its
//! [`Output`], [`bound_output`] the rows of a query or of `COPY … TO
//! STDOUT` read after it. A cancelled statement is dropped where it stands,
//! as after a CancelRequest: its writes are rolled back with its
//! transaction (a block fails, 25P02), and a `COMMIT` already under way is
//! not the client's to stop (see [`slicedb_txn`]). `COPY … FROM STDIN` is not
//! bounded while the client sends its data.
//!
//! Settings are read as PostgreSQL reads them ([`parse_duration_ms`]): an
//! integer is milliseconds, or a number with a unit (`us`, `ms`, `s`,
//! `min`, `h`, `d`); 0 turns the timeout off.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures::{Stream, StreamExt};
use slicedb_common::{err, Error, Result};
use tokio::time::Instant;

use crate::Output;

/// Reads a duration setting `name`, in milliseconds.
pub fn parse_duration_ms(name: &str, value: &str) -> Result<u64> {
    let invalid = || {
        err!(
            InvalidParameterValue,
            "invalid value for parameter \"{name}\": \"{value}\""
        )
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let per_unit = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let ms = (number * per_unit).round();
    if !(0.0..=i32::MAX as f64).contains(&ms) {
        return Err(err!(
            InvalidParameterValue,
            "{value} is outside the valid range for parameter \"{name}\" (0 .. {})",
            i32::MAX
        ));
    }
    Ok(ms as u64)
}

/// The error of a statement cancelled by `statement_timeout`.
fn timed_out() -> Error {
    err!(QueryCanceled, "canceling statement due to statement timeout")
}

/// The deadline of a statement starting now under `timeout_ms` (0: none).
pub fn deadline(timeout_ms: u64) -> Option<Instant> {
    (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms))
}

/// Runs `f` until `deadline`, then gives up with 57014.
pub async fn within<T>(deadline: Option<Instant>, f: impl Future<Output = Result<T>>) -> Result<T> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.unwrap_or_else(|_| Err(timed_out())),
        None => f.await,
    }
}

/// Ends `stream` with 57014 once `deadline` passes, even while it waits
/// for its next item.
fn bound<T, E>(
    stream: impl Stream<Item = std::result::Result<T, E>> + Send + Unpin + 'static,
    deadline: Instant,
    error: fn() -> E,
) -> impl Stream<Item = std::result::Result<T, E>> + Send + 'static
where
    T: Send + 'static,
    E: Send + 'static,
{
    let mut stream = stream;
    let mut sleep: Pin<Box<tokio::time::Sleep>> = Box::pin(tokio::time::sleep_until(deadline));
    let mut done = false;
    futures::stream::poll_fn(move |cx| {
        if done {
            return Poll::Ready(None);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            done = true;
            return Poll::Ready(Some(Err(error())));
        }
        stream.poll_next_unpin(cx)
    })
}

/// Bounds the rows `out` streams by `deadline`.
pub fn bound_output(out: Output, deadline: Option<Instant>) -> Output {
    let Some(deadline) = deadline else {
        return out;
    };
    match out {
        Output::Rows { schema, stream } => Output::Rows {
            schema: schema.clone(),
            stream: Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                schema,
                bound(stream, deadline, || timed_out().into_datafusion()),
            )),
        },
        Output::CopyOut { columns, binary, rows } => Output::CopyOut {
            columns,
            binary,
            rows: bound(rows, deadline, timed_out).boxed(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_postgresql_reads_them() {
        let ms = |v: &str| parse_duration_ms("statement_timeout", v).map_err(|e| e.state.code());
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("250"), Ok(250));
        assert_eq!(ms("2s"), Ok(2_000));
        assert_eq!(ms("1.5 s"), Ok(1_500));
        assert_eq!(ms("1min"), Ok(60_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("abc"), Err("22023"));
        assert_eq!(ms("5 parsecs"), Err("22023"));
        assert_eq!(ms("-1"), Err("22023"));
    }

    #[tokio::test]
    async fn a_statement_or_its_rows_past_the_deadline_get_57014() {
        let never = std::future::pending::<Result<()>>();
        let e = within(deadline(10), never).await.unwrap_err();
        assert_eq!(e.state.code(), "57014");
        assert!(within(deadline(0), async { Ok(1) }).await.is_ok());
        let rows = futures::stream::pending::<Result<Vec<u8>>>().boxed();
        let out = bound_output(
            Output::CopyOut {
                columns: 1,
                binary: false,
                rows,
            },
            deadline(10),
        );
        let Output::CopyOut { mut rows, .. } = out else {
            panic!("not COPY output");
        };
        assert_eq!(rows.next().await.unwrap().unwrap_err().state.code(), "57014");
        assert!(rows.next().await.is_none());
    }
}
