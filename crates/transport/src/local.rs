//! The in-process transport used by the embedded `slicedb start`.

use std::sync::Arc;

use async_trait::async_trait;
use slicedb_common::{NodeId, Result};

use crate::{RecordBatchStream, ScanRequest, SliceClient, SliceRequest, SliceResponse, SliceService};

/// Calls a [`SliceService`] living in the same process.
pub struct LocalTransport {
    node: NodeId,
    service: Arc<dyn SliceService>,
}

impl LocalTransport {
    pub fn new(node: NodeId, service: Arc<dyn SliceService>) -> Self {
        LocalTransport { node, service }
    }
}

#[async_trait]
impl SliceClient for LocalTransport {
    fn node_id(&self) -> NodeId {
        self.node
    }

    async fn call(&self, request: SliceRequest) -> Result<SliceResponse> {
        self.service.call(request).await
    }

    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream> {
        self.service.scan(request).await
    }

    async fn fragment(&self, plan: Vec<u8>) -> Result<RecordBatchStream> {
        self.service.fragment(plan).await
    }
}
