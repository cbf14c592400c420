//! The byte format of one request on one QUIC stream.
//!
//! Every request gets its own bidirectional stream. The client writes one
//! frame holding the [`Request`] and finishes its side; the server answers
//! with frames and finishes its side:
//!
//! ```text
//! frame    = [tag: u8][length: u32 BE][payload]
//! request  = REQUEST(postcard Request)
//! call     → REPLY(postcard Result<SliceResponse, Error>)
//! scan     → IPC(bytes)* (ERROR(postcard Error) | END)
//! fragment → IPC(bytes)* (ERROR(postcard Error) | END)
//! ```
//!
//! A scan's rows travel as one Arrow IPC stream (schema, then record
//! batches) cut into `IPC` frames, one per batch. The server writes a frame
//! only when the stream has room, so QUIC's flow control carries the
//! client's pace back to the slice server's scan (backpressure). An error
//! met mid-scan ends the stream with an `ERROR` frame, so the client tells
//! a failed scan from a finished one.

use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::ipc::reader::StreamDecoder;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use slicedb_common::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{ScanRequest, SliceRequest, SliceResponse};

/// Largest frame accepted: a write batch of many wide rows fits easily.
pub const MAX_FRAME: usize = 512 << 20;

/// What a client asks on one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Call(SliceRequest),
    Scan(ScanRequest),
    /// A physical plan fragment, encoded with datafusion-proto.
    Fragment(Vec<u8>),
}

/// Frame tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    Request = 1,
    Reply = 2,
    Ipc = 3,
    Error = 4,
    End = 5,
}

impl Tag {
    fn from_u8(b: u8) -> Result<Tag> {
        Ok(match b {
            1 => Tag::Request,
            2 => Tag::Reply,
            3 => Tag::Ipc,
            4 => Tag::Error,
            5 => Tag::End,
            other => return Err(Error::connection(format!("protocol error: unknown frame tag {other}"))),
        })
    }
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::internal(format!("encoding a message: {e}")))
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::connection(format!("protocol error: undecodable message: {e}")))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, tag: Tag, payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(Error::internal(format!(
            "message of {} bytes exceeds the {MAX_FRAME}-byte frame limit",
            payload.len()
        )));
    }
    let mut header = [0u8; 5];
    header[0] = tag as u8;
    header[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&header).await.map_err(lost)?;
    w.write_all(payload).await.map_err(lost)?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream before any byte.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<(Tag, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match r.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(lost(e)),
    }
    r.read_exact(&mut header[1..]).await.map_err(lost)?;
    let tag = Tag::from_u8(header[0])?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(Error::connection(format!("protocol error: frame of {len} bytes")));
    }
    // The buffer grows with the bytes that arrive, not with the length the
    // header claims: a peer that announces 512 MiB and sends ten bytes
    // costs ten bytes (and a first read of at most FIRST_READ).
    let mut payload = Vec::with_capacity(len.min(FIRST_READ));
    r.take(len as u64).read_to_end(&mut payload).await.map_err(lost)?;
    if payload.len() != len {
        return Err(Error::connection(format!(
            "stream failed: a frame of {len} bytes ended after {}",
            payload.len()
        )));
    }
    Ok(Some((tag, payload)))
}

/// What [`read_frame`] reserves before a frame's bytes arrive.
const FIRST_READ: usize = 64 << 10;

fn lost(e: std::io::Error) -> Error {
    Error::connection(format!("stream failed: {e}"))
}

/// Cuts a stream of record batches into IPC frames.
#[derive(Default)]
pub struct IpcEncoder {
    writer: Option<StreamWriter<Vec<u8>>>,
}

impl IpcEncoder {
    /// The bytes that carry `batch` (and the schema, before the first one).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(Error::from)?),
        };
        writer.write(batch).map_err(Error::from)?;
        Ok(std::mem::take(writer.get_mut()))
    }

    /// The end-of-stream marker, if any batch was written.
    pub fn finish(&mut self) -> Result<Vec<u8>> {
        match &mut self.writer {
            Some(w) => {
                w.finish().map_err(Error::from)?;
                Ok(std::mem::take(w.get_mut()))
            }
            None => Ok(Vec::new()),
        }
    }
}

/// Turns IPC frames back into record batches.
#[derive(Default)]
pub struct IpcDecoder {
    decoder: StreamDecoder,
}

impl IpcDecoder {
    /// Every batch completed by `bytes`.
    pub fn push(&mut self, bytes: Vec<u8>) -> Result<Vec<RecordBatch>> {
        let mut buffer = Buffer::from(bytes);
        let mut out = Vec::new();
        while !buffer.is_empty() {
            match self.decoder.decode(&mut buffer).map_err(Error::from)? {
                Some(batch) => out.push(batch),
                None => {
                    if buffer.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// An Arrow schema as bytes (an IPC stream with no batches).
pub fn schema_to_bytes(schema: &datafusion::arrow::datatypes::Schema) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(Error::from)?;
    writer.finish().map_err(Error::from)?;
    writer.into_inner().map_err(Error::from)
}

/// The schema written by [`schema_to_bytes`].
pub fn schema_from_bytes(bytes: &[u8]) -> Result<datafusion::arrow::datatypes::SchemaRef> {
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(Error::from)?;
    Ok(reader.schema())
}

/// Decodes a `REPLY` payload.
pub fn reply(payload: &[u8]) -> Result<SliceResponse> {
    decode::<std::result::Result<SliceResponse, Error>>(payload)?
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// A reader that remembers the largest buffer it was asked to fill.
    struct Watched<R> {
        inner: R,
        largest: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.largest = self.largest.max(buf.remaining());
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn a_frame_header_does_not_make_the_reader_allocate_what_it_claims() {
        let mut bytes = vec![Tag::Request as u8];
        bytes.extend_from_slice(&(MAX_FRAME as u32).to_be_bytes());
        bytes.extend_from_slice(b"ten bytes!");
        let mut r = Watched {
            inner: &bytes[..],
            largest: 0,
        };
        let e = read_frame(&mut r).await.unwrap_err();
        assert_eq!(e.state.code(), "08006", "{e}");
        assert!(e.message.contains("ended after 10"), "{e}");
        assert!(r.largest <= 1 << 20, "asked to fill {} bytes at once", r.largest);
        // Frames that do arrive whole still read, large or empty.
        for len in [0usize, 10, 3 << 20] {
            let mut out = Vec::new();
            write_frame(&mut out, Tag::Reply, &vec![7u8; len]).await.unwrap();
            let (tag, payload) = read_frame(&mut &out[..]).await.unwrap().unwrap();
            assert_eq!((tag, payload.len()), (Tag::Reply, len));
        }
    }

    #[tokio::test]
    async fn frames_and_ipc_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = |n: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(0..n)),
                    Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("v{i}")))),
                ],
            )
            .unwrap()
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let mut enc = IpcEncoder::default();
        for n in [3, 5] {
            write_frame(&mut a, Tag::Ipc, &enc.batch(&batch(n)).unwrap())
                .await
                .unwrap();
        }
        write_frame(&mut a, Tag::Ipc, &enc.finish().unwrap()).await.unwrap();
        write_frame(&mut a, Tag::End, &[]).await.unwrap();
        drop(a);
        let mut dec = IpcDecoder::default();
        let mut rows = Vec::new();
        while let Some((tag, payload)) = read_frame(&mut b).await.unwrap() {
            match tag {
                Tag::Ipc => rows.extend(dec.push(payload).unwrap().iter().map(|b| b.num_rows())),
                Tag::End => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(rows, vec![3, 5]);
        assert!(read_frame(&mut b).await.unwrap().is_none());

        assert_eq!(*schema_from_bytes(&schema_to_bytes(&schema).unwrap()).unwrap(), *schema);

        let e = slicedb_common::err!(UniqueViolation, "dup");
        let bytes = encode(&std::result::Result::<SliceResponse, Error>::Err(e.clone())).unwrap();
        assert_eq!(reply(&bytes).unwrap_err(), e);
    }
}
