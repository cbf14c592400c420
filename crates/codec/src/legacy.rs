//! Row format 1, read only to upgrade a data directory written by an
//! earlier slicedb: `[format = 1][version u64 BE][flags u8][postcard(Vec<Datum>)]`.
//!
//! `slicedb_storage` rewrites every stored value of this format into the
//! current one ([`crate::row`]) when it opens such a directory; no read
//! path accepts it.

use slicedb_common::{Datum, Error, Result};

use crate::row::{self, HEADER};

/// The format byte of format-1 values.
pub const FORMAT: u8 = 1;

/// Is `bytes` a value of format 1?
pub fn is_v1(bytes: &[u8]) -> bool {
    bytes.first() == Some(&FORMAT)
}

/// Rewrites a format-1 value (row or tombstone) in the current format,
/// keeping its version and tombstone flag.
pub fn upgrade_value(bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(Error::internal("corrupt row value: not of format 1"));
    }
    let version = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    if bytes[9] & row::FLAG_TOMBSTONE != 0 {
        return Ok(row::encode_tombstone(version));
    }
    let values: Vec<Datum> = postcard::from_bytes(&bytes[HEADER..])
        .map_err(|e| Error::internal(format!("corrupt row value of format 1: {e}")))?;
    row::encode_row(version, &values)
}

/// A format-1 value, as earlier versions wrote it (for tests of the upgrade).
pub fn encode_row_v1(version: u64, values: &[Datum]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend_from_slice(&version.to_be_bytes());
    out.push(0);
    out.extend_from_slice(&postcard::to_stdvec(values).expect("datums encode"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_values_upgrade() {
        let values = vec![Datum::Int64(9), Datum::Text("x".into()), Datum::Null];
        let v1 = encode_row_v1(5, &values);
        assert!(is_v1(&v1));
        let v2 = upgrade_value(&v1).unwrap();
        let back = row::decode_row(&v2).unwrap();
        assert_eq!((back.version, back.tombstone, back.values), (5, false, values));
        let mut tomb = encode_row_v1(8, &[]);
        tomb[9] = row::FLAG_TOMBSTONE;
        assert_eq!(row::peek(&upgrade_value(&tomb).unwrap()).unwrap(), (8, true));
    }
}
