//! The stored value of a row.
//!
//! ```text
//! [format: u8 = 1][version: u64 BE][flags: u8][postcard(Vec<Datum>)]
//! ```
//!
//! `version` is the commit timestamp of the transaction that wrote it (0
//! for rows written before transactions existed: visible to every
//! snapshot). `flags` bit 0 marks a tombstone: a delete, kept as a version
//! so that older snapshots still see the row and later writers see that it
//! changed (see [`crate::mvcc`]).

use slicedb_common::{Datum, Error, Result};

const FORMAT: u8 = 1;
const HEADER: usize = 10;
pub const FLAG_TOMBSTONE: u8 = 1;

pub fn encode_row(version: u64, row: &[Datum]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + 16 * row.len());
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(0);
    postcard::to_io(row, &mut out).map_err(|e| Error::internal(format!("row encoding: {e}")))?;
    Ok(out)
}

/// A tombstone: the version that records a delete.
pub fn encode_tombstone(version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 1);
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(FLAG_TOMBSTONE);
    out.push(0); // postcard: an empty row
    out
}

/// A stored value's version and tombstone flag, without decoding the row.
pub fn peek(bytes: &[u8]) -> Result<(u64, bool)> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(Error::internal("corrupt row value: unknown format"));
    }
    let version = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    Ok((version, bytes[9] & FLAG_TOMBSTONE != 0))
}

/// Stamps an encoded value with its commit timestamp.
pub fn set_version(bytes: &mut [u8], version: u64) -> Result<()> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(Error::internal("corrupt row value: unknown format"));
    }
    bytes[1..9].copy_from_slice(&version.to_be_bytes());
    Ok(())
}

/// A decoded row value.
#[derive(Debug, PartialEq)]
pub struct StoredRow {
    pub version: u64,
    pub tombstone: bool,
    pub values: Vec<Datum>,
}

pub fn decode_row(bytes: &[u8]) -> Result<StoredRow> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(Error::internal("corrupt row value: unknown format"));
    }
    let version = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let tombstone = bytes[9] & FLAG_TOMBSTONE != 0;
    let values =
        postcard::from_bytes(&bytes[HEADER..]).map_err(|e| Error::internal(format!("corrupt row value: {e}")))?;
    Ok(StoredRow {
        version,
        tombstone,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let row = vec![Datum::Int64(1), Datum::Null, Datum::Text("x".into())];
        let bytes = encode_row(0, &row).unwrap();
        let back = decode_row(&bytes).unwrap();
        assert_eq!(
            back,
            StoredRow {
                version: 0,
                tombstone: false,
                values: row
            }
        );
        let mut bytes = bytes;
        set_version(&mut bytes, 42).unwrap();
        assert_eq!(peek(&bytes).unwrap(), (42, false));
        let t = encode_tombstone(7);
        assert_eq!(peek(&t).unwrap(), (7, true));
        assert!(decode_row(&t).unwrap().values.is_empty());
    }
}
