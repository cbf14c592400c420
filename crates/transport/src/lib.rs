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
//! - A QUIC transport (cluster mode) will carry the same messages.
//!
//! [`Cluster`] is the coordinator's table of clients by node id.

pub mod cluster;
pub mod local;
pub mod message;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use slicedb_common::{NodeId, Result};

pub use cluster::Cluster;
pub use message::{CmpOp, Predicate, ScanRequest, SliceRequest, SliceResponse};

/// A stream of Arrow record batches from a slice server.
pub type RecordBatchStream = BoxStream<'static, Result<RecordBatch>>;

/// What a slice server serves.
#[async_trait]
pub trait SliceService: Send + Sync {
    /// Handles one request.
    async fn call(&self, request: SliceRequest) -> Result<SliceResponse>;
    /// Starts a scan and returns its batches as they are produced.
    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream>;
}

/// The coordinator's handle on one slice server.
#[async_trait]
pub trait SliceClient: Send + Sync {
    fn node_id(&self) -> NodeId;
    async fn call(&self, request: SliceRequest) -> Result<SliceResponse>;
    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream>;
}
