//! The QUIC transport (quinn) between the coordinator and slice servers.
//!
//! - **Security.** Both ends present a certificate of the cluster CA and
//!   verify the other's ([`crate::tls`]); a peer without one is refused
//!   during the handshake.
//! - **One request per stream.** Each call or scan opens its own
//!   bidirectional stream on a shared connection ([`crate::wire`] has the
//!   byte format), so a slow scan never holds up a write. The concurrent
//!   stream limit is raised to [`MAX_STREAMS`], and opening a stream is
//!   time-bounded: at the limit quinn would otherwise wait silently.
//! - **Timeouts.** Connecting, opening a stream, a call's reply and each
//!   frame of a scan have their own bounds ([`Timeouts`]). Keep-alives and
//!   an idle timeout notice a peer that died without closing.
//! - **Reconnection.** [`QuicClient`] keeps one connection and makes a new
//!   one on the next request after it broke. Each new connection is checked
//!   to reach the expected node of the expected cluster before use.
//!
//! Transport failures become connection-class errors (SQLSTATE 08006) that
//! name the slice server; errors the slice server itself reports (a
//! duplicate key, say) come back with their own SQLSTATE.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, TransportConfig, VarInt};
use slicedb_common::{err, Error, NodeId, Result, SqlState};

use crate::message::PROTOCOL_VERSION;
use crate::tls::{NodeIdentity, CLUSTER_SERVER_NAME};
use crate::wire::{self, IpcDecoder, IpcEncoder, Request, Tag};
use crate::{RecordBatchStream, ScanRequest, SliceClient, SliceRequest, SliceResponse, SliceService};

/// Concurrent bidirectional streams a peer may open on one connection.
pub const MAX_STREAMS: u32 = 4096;

/// Time bounds of the transport.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Establishing a connection, including the TLS handshake and the
    /// identity check.
    pub connect: Duration,
    /// Opening a stream on an established connection.
    pub open_stream: Duration,
    /// Waiting for the reply to a call.
    pub call: Duration,
    /// Waiting for the next frame of a scan.
    pub scan_frame: Duration,
    /// Silence after which a connection counts as lost (keep-alives are
    /// sent at a fifth of it).
    pub idle: Duration,
    /// After a failed connection attempt, further requests fail at once for
    /// this long instead of each waiting for its own attempt.
    pub retry_after: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            open_stream: Duration::from_secs(5),
            call: Duration::from_secs(120),
            scan_frame: Duration::from_secs(120),
            idle: Duration::from_secs(6),
            retry_after: Duration::from_millis(500),
        }
    }
}

fn transport_config(t: &Timeouts) -> Result<TransportConfig> {
    let mut config = TransportConfig::default();
    config.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    config.max_concurrent_uni_streams(VarInt::from_u32(0));
    config.keep_alive_interval(Some(t.idle / 5));
    let idle = quinn::IdleTimeout::try_from(t.idle).map_err(|e| Error::internal(format!("idle timeout: {e}")))?;
    config.max_idle_timeout(Some(idle));
    // Windows sized for bulk row traffic on a LAN.
    config.stream_receive_window(VarInt::from_u32(16 << 20));
    config.receive_window(VarInt::from_u32(64 << 20));
    config.send_window(64 << 20);
    Ok(config)
}

/// A node's QUIC endpoint: it accepts connections from other nodes (if
/// [`QuicEndpoint::serve`] runs) and connects to them.
pub struct QuicEndpoint {
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    pub timeouts: Timeouts,
}

impl QuicEndpoint {
    /// Binds a UDP socket at `addr` with `identity`'s certificates.
    pub fn bind(addr: SocketAddr, identity: &NodeIdentity, timeouts: Timeouts) -> Result<QuicEndpoint> {
        let transport = Arc::new(transport_config(&timeouts)?);
        let server_tls = QuicServerConfig::try_from(identity.server_config()?)
            .map_err(|e| Error::internal(format!("QUIC server TLS: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(transport.clone());
        let client_tls = QuicClientConfig::try_from(identity.client_config()?)
            .map_err(|e| Error::internal(format!("QUIC client TLS: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
        client.transport_config(transport);
        let endpoint =
            Endpoint::server(server, addr).map_err(|e| Error::io(format!("cannot bind QUIC endpoint {addr}: {e}")))?;
        Ok(QuicEndpoint {
            endpoint,
            client,
            timeouts,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Accepts connections and serves each stream's request with `service`,
    /// until the endpoint closes.
    pub async fn serve(&self, service: Arc<dyn SliceService>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%remote, "refused a QUIC connection: {e}");
                        return;
                    }
                };
                tracing::debug!(%remote, "node connected");
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(serve_stream(service.clone(), send, recv));
                }
            });
        }
    }

    /// Connects to `address` (`host:port`) and returns the connection.
    pub async fn connect(&self, address: &str) -> Result<Connection> {
        let attempt = async {
            let addr = resolve(address).await?;
            let connecting = self
                .endpoint
                .connect_with(self.client.clone(), addr, CLUSTER_SERVER_NAME)
                .map_err(|e| Error::connection(e.to_string()))?;
            connecting.await.map_err(|e| Error::connection(e.to_string()))
        };
        match tokio::time::timeout(self.timeouts.connect, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Error::connection(format!(
                "no answer within {:?}",
                self.timeouts.connect
            ))),
        }
    }

    /// Sends one call on `conn` and waits for its reply.
    pub async fn call_on(&self, conn: &Connection, request: SliceRequest) -> Result<SliceResponse> {
        let mut recv = self.send_request(conn, Request::Call(request)).await?;
        let frame = tokio::time::timeout(self.timeouts.call, wire::read_frame(&mut recv))
            .await
            .map_err(|_| Error::connection(format!("no reply within {:?}", self.timeouts.call)))??;
        match frame {
            Some((Tag::Reply, payload)) => wire::reply(&payload),
            Some((tag, _)) => Err(Error::connection(format!(
                "protocol error: {tag:?} frame instead of a reply"
            ))),
            None => Err(Error::connection("the stream ended without a reply")),
        }
    }

    /// Registers the slice server at `address` with cluster `cluster_id`:
    /// connects, pings it, lets `choose` pick its node id from the `Pong`
    /// (or refuse), and sends `Register`. Returns the node id.
    pub async fn register(
        &self,
        address: &str,
        cluster_id: u64,
        choose: impl FnOnce(&SliceResponse) -> Result<NodeId>,
    ) -> Result<NodeId> {
        let conn = self.connect(address).await?;
        let result = async {
            let pong = self.call_on(&conn, SliceRequest::Ping).await?;
            let node_id = choose(&pong)?;
            self.call_on(&conn, SliceRequest::Register { node_id, cluster_id })
                .await?;
            Ok(node_id)
        }
        .await;
        conn.close(VarInt::from_u32(0), b"registered");
        result
    }

    /// Opens a stream (time-bounded) and writes `request` on it.
    async fn send_request(&self, conn: &Connection, request: Request) -> Result<RecvStream> {
        let (mut send, recv) = tokio::time::timeout(self.timeouts.open_stream, conn.open_bi())
            .await
            .map_err(|_| {
                Error::connection(format!(
                    "could not open a stream within {:?} (stream limit reached?)",
                    self.timeouts.open_stream
                ))
            })?
            .map_err(|e| Error::connection(e.to_string()))?;
        wire::write_frame(&mut send, Tag::Request, &wire::encode(&request)?).await?;
        send.finish().map_err(|e| Error::connection(e.to_string()))?;
        Ok(recv)
    }

    /// Closes every connection and the socket.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"shutting down");
    }
}

async fn resolve(address: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| Error::connection(format!("cannot resolve {address}: {e}")))?
        .next()
        .ok_or_else(|| Error::connection(format!("{address} resolves to no address")))
}

/// Serves one stream: reads the request, answers it, finishes the stream.
async fn serve_stream(service: Arc<dyn SliceService>, mut send: quinn::SendStream, mut recv: RecvStream) {
    let result: Result<()> = async {
        let request = match wire::read_frame(&mut recv).await? {
            Some((Tag::Request, payload)) => wire::decode::<Request>(&payload)?,
            _ => return Err(Error::connection("protocol error: expected a request frame")),
        };
        let batches = match request {
            Request::Call(call) => {
                let reply = service.call(call).await;
                wire::write_frame(&mut send, Tag::Reply, &wire::encode(&reply)?).await?;
                send.finish().map_err(|e| Error::connection(e.to_string()))?;
                return Ok(());
            }
            Request::Scan(scan) => service.scan(scan).await,
            Request::Fragment(plan) => service.fragment(plan).await,
        };
        match batches {
            Err(e) => wire::write_frame(&mut send, Tag::Error, &wire::encode(&e)?).await?,
            Ok(mut batches) => {
                let mut encoder = IpcEncoder::default();
                loop {
                    match batches.next().await {
                        Some(Ok(batch)) => {
                            wire::write_frame(&mut send, Tag::Ipc, &encoder.batch(&batch)?).await?;
                        }
                        Some(Err(e)) => {
                            wire::write_frame(&mut send, Tag::Error, &wire::encode(&e)?).await?;
                            break;
                        }
                        None => {
                            wire::write_frame(&mut send, Tag::Ipc, &encoder.finish()?).await?;
                            wire::write_frame(&mut send, Tag::End, &[]).await?;
                            break;
                        }
                    }
                }
            }
        }
        send.finish().map_err(|e| Error::connection(e.to_string()))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        // Mostly a reader that went away (a LIMIT satisfied early).
        tracing::debug!("stream ended early: {e}");
    }
}

/// The coordinator's client for one slice server over QUIC.
pub struct QuicClient {
    node: NodeId,
    address: String,
    cluster_id: u64,
    endpoint: Arc<QuicEndpoint>,
    /// The live connection, if any.
    conn: RwLock<Option<Connection>>,
    /// Serializes reconnection, so that a burst of requests makes one attempt.
    connecting: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<(Instant, Error)>>,
}

impl QuicClient {
    /// A client for node `node` of cluster `cluster_id` at `address`. It
    /// connects on first use.
    pub fn new(node: NodeId, address: &str, cluster_id: u64, endpoint: Arc<QuicEndpoint>) -> QuicClient {
        QuicClient {
            node,
            address: address.to_string(),
            cluster_id,
            endpoint,
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
        }
    }

    /// A transport error, as the client sees it: connection class, naming the node.
    fn lost(&self, e: Error) -> Error {
        if e.state == SqlState::ConnectionFailure && !e.message.starts_with("slice server ") {
            err!(
                ConnectionFailure,
                "slice server {} ({}) is unreachable: {}",
                self.node,
                self.address,
                e.message
            )
        } else {
            e
        }
    }

    fn live(&self) -> Option<Connection> {
        let guard = self.conn.read().ok()?;
        guard.as_ref().filter(|c| c.close_reason().is_none()).cloned()
    }

    /// The live connection, made anew if the last one broke; `true` with it
    /// if it was made for this request.
    async fn connection(&self) -> Result<(Connection, bool)> {
        if let Some(c) = self.live() {
            return Ok((c, false));
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.live() {
            return Ok((c, false));
        }
        if let Ok(last) = self.last_failure.lock() {
            if let Some((at, e)) = last.as_ref() {
                if at.elapsed() < self.endpoint.timeouts.retry_after {
                    return Err(e.clone());
                }
            }
        }
        match self.establish().await {
            Ok(c) => {
                if let Ok(mut slot) = self.conn.write() {
                    *slot = Some(c.clone());
                }
                if let Ok(mut last) = self.last_failure.lock() {
                    *last = None;
                }
                tracing::info!(node = self.node, address = %self.address, "connected to slice server");
                Ok((c, true))
            }
            Err(e) => {
                let e = self.lost(e);
                if let Ok(mut last) = self.last_failure.lock() {
                    *last = Some((Instant::now(), e.clone()));
                }
                Err(e)
            }
        }
    }

    /// Drops a connection that failed, so the next request makes a new one.
    fn forget(&self, conn: &Connection) {
        conn.close(VarInt::from_u32(0), b"connection failed");
        if let Ok(mut slot) = self.conn.write() {
            if slot.as_ref().is_some_and(|c| c.stable_id() == conn.stable_id()) {
                *slot = None;
            }
        }
    }

    /// Connects and checks that the peer is the node this client is for.
    async fn establish(&self) -> Result<Connection> {
        let conn = self.endpoint.connect(&self.address).await?;
        let pong = self.endpoint.call_on(&conn, SliceRequest::Ping).await?;
        check_identity(&pong, Some(self.node), self.cluster_id).map_err(|e| {
            conn.close(VarInt::from_u32(0), b"wrong node");
            Error::new(
                e.state,
                format!("slice server {} ({}): {}", self.node, self.address, e.message),
            )
        })?;
        Ok(conn)
    }

    /// Runs `attempt` on the connection. If a connection that predates this
    /// request turns out dead (the slice server restarted, say) and the
    /// request may safely run twice, it is tried once more on a new one.
    async fn with_connection<T, F, Fut>(&self, retry: bool, attempt: F) -> Result<T>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let (conn, fresh) = self.connection().await?;
        match attempt(conn.clone()).await {
            Err(e) if e.state == SqlState::ConnectionFailure => {
                self.forget(&conn);
                if retry && !fresh {
                    let (conn, _) = self.connection().await?;
                    return attempt(conn).await.map_err(|e| self.lost(e));
                }
                Err(self.lost(e))
            }
            other => other,
        }
    }

    /// Sends a scan or fragment and waits for its first frame, so that a
    /// dead connection shows before any row is handed out.
    async fn start_stream(&self, conn: Connection, request: Request) -> Result<RecordBatchStream> {
        let recv = self.endpoint.send_request(&conn, request).await?;
        let mut state = ScanState {
            recv,
            decoder: IpcDecoder::default(),
            ready: VecDeque::new(),
            done: false,
            frame_timeout: self.endpoint.timeouts.scan_frame,
            node: self.node,
            address: self.address.clone(),
        };
        state.read_frame().await?;
        Ok(futures::stream::unfold(state, ScanState::next).boxed())
    }
}

/// Checks a slice server's `Pong`: our protocol, and registered as
/// `node` of `cluster` (`node == None`: not registered with any cluster yet).
pub fn check_identity(pong: &SliceResponse, node: Option<NodeId>, cluster: u64) -> Result<()> {
    let SliceResponse::Pong {
        node_id,
        cluster_id,
        version,
        protocol,
    } = pong
    else {
        return Err(Error::connection(format!("unexpected answer to ping: {pong:?}")));
    };
    if *protocol != PROTOCOL_VERSION {
        return Err(err!(
            ObjectNotInPrerequisiteState,
            "slice server speaks protocol {protocol} (slicedb {version}); this coordinator speaks {PROTOCOL_VERSION}"
        ));
    }
    let registered = node_id.zip(*cluster_id);
    match (node, registered) {
        (None, None) => Ok(()),
        (Some(n), Some((got_node, got_cluster))) if n == got_node && got_cluster == cluster => Ok(()),
        (_, Some((got_node, got_cluster))) if got_cluster != cluster => Err(err!(
            ObjectNotInPrerequisiteState,
            "slice server belongs to another cluster ({got_cluster:016x}, as node {got_node})"
        )),
        (Some(n), Some((got_node, _))) => Err(err!(
            ObjectNotInPrerequisiteState,
            "slice server is node {got_node} of this cluster, not node {n}"
        )),
        (None, Some((got_node, _))) => Err(err!(
            DuplicateObject,
            "slice server is already node {got_node} of this cluster"
        )),
        (Some(n), None) => Err(err!(
            ObjectNotInPrerequisiteState,
            "slice server at this address is not registered (expected node {n}); was its data directory replaced?"
        )),
    }
}

#[async_trait]
impl SliceClient for QuicClient {
    fn node_id(&self) -> NodeId {
        self.node
    }

    async fn call(&self, request: SliceRequest) -> Result<SliceResponse> {
        // Everything but a write or a one-phase commit may run twice (a
        // write of an INSERT would fail the second time with a duplicate
        // key; a one-phase commit that did commit would be refused as lost).
        let retry = !matches!(
            request,
            SliceRequest::Write { .. } | SliceRequest::Commit { one_phase: true, .. }
        );
        let request = Arc::new(request);
        self.with_connection(retry, |conn| {
            let request = request.clone();
            async move { self.endpoint.call_on(&conn, (*request).clone()).await }
        })
        .await
    }

    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream> {
        let request = Arc::new(Request::Scan(request));
        self.with_connection(true, |conn| {
            let request = request.clone();
            async move { self.start_stream(conn, (*request).clone()).await }
        })
        .await
    }

    async fn fragment(&self, plan: Vec<u8>) -> Result<RecordBatchStream> {
        let request = Arc::new(Request::Fragment(plan));
        self.with_connection(true, |conn| {
            let request = request.clone();
            async move { self.start_stream(conn, (*request).clone()).await }
        })
        .await
    }
}

/// A scan's incoming frames, decoded into record batches.
struct ScanState {
    recv: RecvStream,
    decoder: IpcDecoder,
    ready: VecDeque<RecordBatch>,
    done: bool,
    frame_timeout: Duration,
    node: NodeId,
    address: String,
}

impl ScanState {
    fn lost(&self, what: String) -> Error {
        err!(
            ConnectionFailure,
            "slice server {} ({}) is unreachable: {what}",
            self.node,
            self.address
        )
    }

    /// Reads one frame: its batches become ready, or the scan ends.
    async fn read_frame(&mut self) -> Result<()> {
        let frame = match tokio::time::timeout(self.frame_timeout, wire::read_frame(&mut self.recv)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                self.done = true;
                return Err(self.lost(e.message));
            }
            Err(_) => {
                self.done = true;
                return Err(self.lost(format!("no rows within {:?}", self.frame_timeout)));
            }
        };
        match frame {
            Some((Tag::Ipc, bytes)) => {
                let batches = self.decoder.push(bytes).inspect_err(|_| self.done = true)?;
                self.ready.extend(batches);
                Ok(())
            }
            Some((Tag::End, _)) => {
                self.done = true;
                Ok(())
            }
            Some((Tag::Error, payload)) => {
                self.done = true;
                Err(wire::decode::<Error>(&payload).unwrap_or_else(|e| e))
            }
            Some((tag, _)) => {
                self.done = true;
                Err(self.lost(format!("protocol error: unexpected {tag:?} frame in a scan")))
            }
            None => {
                self.done = true;
                Err(self.lost("the scan ended without its end marker".into()))
            }
        }
    }

    async fn next(mut self) -> Option<(Result<RecordBatch>, ScanState)> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some((Ok(b), self));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.read_frame().await {
                return Some((Err(e), self));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(node: Option<NodeId>, cluster: Option<u64>, protocol: u32) -> SliceResponse {
        SliceResponse::Pong {
            node_id: node,
            cluster_id: cluster,
            version: "test".into(),
            protocol,
        }
    }

    #[test]
    fn identity_checks() {
        // A fresh slice server may be registered; a registered one is what it says.
        assert!(check_identity(&pong(None, None, PROTOCOL_VERSION), None, 7).is_ok());
        assert!(check_identity(&pong(Some(2), Some(7), PROTOCOL_VERSION), Some(2), 7).is_ok());
        let code = |r: Result<()>| r.unwrap_err().state.code();
        assert_eq!(
            code(check_identity(&pong(None, None, PROTOCOL_VERSION + 1), None, 7)),
            "55000"
        );
        assert_eq!(
            code(check_identity(&pong(Some(2), Some(8), PROTOCOL_VERSION), None, 7)),
            "55000"
        );
        assert_eq!(
            code(check_identity(&pong(Some(2), Some(7), PROTOCOL_VERSION), None, 7)),
            "42710"
        );
        assert_eq!(
            code(check_identity(&pong(Some(3), Some(7), PROTOCOL_VERSION), Some(2), 7)),
            "55000"
        );
        assert_eq!(
            code(check_identity(&pong(None, None, PROTOCOL_VERSION), Some(2), 7)),
            "55000"
        );
    }

    /// A QUIC round trip in one process: a call, a scan streamed as Arrow
    /// IPC, and a server error keeping its SQLSTATE.
    #[tokio::test]
    async fn calls_and_scans_over_quic() {
        use crate::tls::CertDir;
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};

        struct Echo;
        #[async_trait]
        impl SliceService for Echo {
            async fn call(&self, request: SliceRequest) -> Result<SliceResponse> {
                match request {
                    SliceRequest::Ping => Ok(pong(Some(1), Some(9), PROTOCOL_VERSION)),
                    _ => Err(slicedb_common::err!(UniqueViolation, "dup")),
                }
            }
            async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream> {
                let schema = Arc::new(Schema::new(vec![Field::new("c0", DataType::Int64, true)]));
                let batches: Vec<Result<RecordBatch>> = (0..3)
                    .map(|i| {
                        let values = Int64Array::from_iter_values((0..request.batch_size as i64).map(|v| v + i));
                        Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap())
                    })
                    .collect();
                Ok(futures::stream::iter(batches).boxed())
            }
            async fn fragment(&self, _plan: Vec<u8>) -> Result<RecordBatchStream> {
                Err(slicedb_common::err!(FeatureNotSupported, "no fragments here"))
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let certs = CertDir::new(dir.path());
        certs.init_ca().unwrap();
        certs.issue("server").unwrap();
        certs.issue("client").unwrap();
        let loopback = "127.0.0.1:0".parse().unwrap();
        let server =
            Arc::new(QuicEndpoint::bind(loopback, &certs.identity("server").unwrap(), Timeouts::default()).unwrap());
        let addr = server.local_addr().unwrap();
        let serving = server.clone();
        tokio::spawn(async move { serving.serve(Arc::new(Echo)).await });
        let client_end =
            Arc::new(QuicEndpoint::bind(loopback, &certs.identity("client").unwrap(), Timeouts::default()).unwrap());
        let client = QuicClient::new(1, &addr.to_string(), 9, client_end);

        assert!(matches!(
            client.call(SliceRequest::Ping).await.unwrap(),
            SliceResponse::Pong { .. }
        ));
        let e = client.call(SliceRequest::DropTable { table_id: 1 }).await.unwrap_err();
        assert_eq!(e.state.code(), "23505", "the server's SQLSTATE survives the trip");
        let request = ScanRequest {
            table_id: 1,
            column_types: vec![],
            projection: vec![],
            with_key: false,
            buckets: vec![(0, 65535)],
            keys: None,
            predicate: None,
            limit: None,
            batch_size: 1000,
            at: slicedb_codec::ReadAt::LATEST,
            missing: vec![],
            dropped: vec![],
        };
        let rows: Vec<usize> = client
            .scan(request)
            .await
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .collect()
            .await;
        assert_eq!(rows, vec![1000, 1000, 1000]);
        let e = client.fragment(vec![1, 2, 3]).await.err().unwrap();
        assert_eq!(e.state.code(), "0A000");

        // A client that expects another node refuses the server.
        let other = QuicClient::new(2, &addr.to_string(), 9, client.endpoint.clone());
        let e = other.call(SliceRequest::Ping).await.unwrap_err();
        assert!(e.message.contains("slice server 2"), "{e:?}");
    }
}
