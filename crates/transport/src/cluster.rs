//! [`Cluster`]: the coordinator's clients for the slice servers, by node id.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use slicedb_common::{err, NodeId, Result};

use crate::SliceClient;

#[derive(Default)]
pub struct Cluster {
    clients: RwLock<BTreeMap<NodeId, Arc<dyn SliceClient>>>,
}

impl Cluster {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, client: Arc<dyn SliceClient>) {
        if let Ok(mut clients) = self.clients.write() {
            clients.insert(client.node_id(), client);
        }
    }

    /// Forgets the client of `node`.
    pub fn remove(&self, node: NodeId) {
        if let Ok(mut clients) = self.clients.write() {
            clients.remove(&node);
        }
    }

    /// The client of `node`, or a connection-class error (08006) naming it.
    pub fn client(&self, node: NodeId) -> Result<Arc<dyn SliceClient>> {
        self.clients
            .read()
            .ok()
            .and_then(|c| c.get(&node).cloned())
            .ok_or_else(|| err!(ConnectionFailure, "slice server {node} is not connected"))
    }
}
