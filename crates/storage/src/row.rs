//! The stored value of a row.
//!
//! ```text
//! [format: u8 = 1][version: u64 BE][flags: u8][postcard(Vec<Datum>)]
//! ```
//!
//! `version` is the commit timestamp of the write; it is 0 until
//! snapshot-isolated transactions use it. `flags` bit 0 marks a tombstone,
//! so a later MVCC layer can record deletes as versions.

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
    }
}
