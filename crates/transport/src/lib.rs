//! Transport between the coordinator and slice servers.
//!
//! A slice server is a component with its own request and response messages
//! ([`message`]). The coordinator reaches it only through a [`SliceClient`]
//! and never opens a slice server's RocksDB. A slice server implements
//! [`SliceService`]; a transport connects the two:
//!
//! - [`local::LocalTransport`] calls the service in the same process (the
//!   embedded `slicedb start`): requests are passed as values, and scans
//!   stream Arrow record batches through a bounded channel, so backpressure
//!   holds as it would over the network.
//! - [`quic::QuicClient`] carries the same messages between processes over
//!   QUIC (quinn), one request per stream, with mutual TLS against the
//!   cluster CA ([`tls`]); [`wire`] is the byte format, with scans streamed
//!   as Arrow IPC.
//!
//! [`Cluster`] is the coordinator's table of clients by node id.

pub mod cluster;
pub mod local;
pub mod message;
pub mod quic;
pub mod tls;
pub mod wire;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use slicedb_common::{NodeId, Result};

pub use cluster::Cluster;
pub use message::{CmpOp, Predicate, ScanRequest, SliceRequest, SliceResponse};

/// A stream of Arrow record batches from a slice server.
pub type RecordBatchStream = BoxStream<'static, Result<RecordBatch>>;

/// `batch`'s columns under `schema`: slice servers name columns by
/// position, the plan that reads them by name.
pub fn with_schema(schema: &datafusion::arrow::datatypes::SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    let opts = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &opts).map_err(Into::into)
}

/// A DataFusion stream of the batches `start` produces once it has begun
/// (a scan or fragment on a slice server), under `schema`.
pub fn batches_as(
    schema: datafusion::arrow::datatypes::SchemaRef,
    start: impl std::future::Future<Output = Result<RecordBatchStream>> + Send + 'static,
) -> datafusion::execution::SendableRecordBatchStream {
    use futures::{StreamExt, TryStreamExt};
    let out = schema.clone();
    let batches = futures::stream::once(start)
        .try_flatten()
        .map(move |batch| with_schema(&out, batch?))
        .map_err(slicedb_common::Error::into_datafusion);
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        schema, batches,
    ))
}

/// What a slice server serves.
#[async_trait]
pub trait SliceService: Send + Sync {
    /// Handles one request.
    async fn call(&self, request: SliceRequest) -> Result<SliceResponse>;
    /// Starts a scan and returns its batches as they are produced.
    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream>;
    /// Runs a plan fragment (datafusion-proto bytes) over the local slices
    /// and returns its batches as they are produced.
    async fn fragment(&self, plan: Vec<u8>) -> Result<RecordBatchStream>;
}

/// The coordinator's handle on one slice server.
#[async_trait]
pub trait SliceClient: Send + Sync {
    fn node_id(&self) -> NodeId;
    async fn call(&self, request: SliceRequest) -> Result<SliceResponse>;
    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream>;
    async fn fragment(&self, plan: Vec<u8>) -> Result<RecordBatchStream>;
}
