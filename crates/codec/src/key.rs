//! The order-preserving key encoding.
//!
//! A [`RowKey`] is the part of a storage key after the table id: the bucket
//! (2 bytes, big-endian) then the encoded primary key. The coordinator builds
//! row keys (it knows the primary key); the slice server prefixes the table id.

use serde::Serialize;
use slicedb_common::{Datum, Error, Result, TableId};

/// `[bucket: u16 BE][primary key]`: a row's address inside its table.
pub type RowKey = Vec<u8>;

/// Table id reserved for slice-server metadata keys.
pub const META_TABLE: TableId = 0;

/// The 4-byte prefix of all keys of a table.
pub fn table_prefix(table: TableId) -> [u8; 4] {
    table.to_be_bytes()
}

/// The first storage key of `bucket` of `table`.
pub fn bucket_start(table: TableId, bucket: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(6);
    k.extend_from_slice(&table_prefix(table));
    k.extend_from_slice(&bucket.to_be_bytes());
    k
}

/// The first storage key after the last bucket `bucket` of `table`.
pub fn bucket_end_exclusive(table: TableId, bucket: u16) -> Vec<u8> {
    match bucket.checked_add(1) {
        Some(next) => bucket_start(table, next),
        None => (table as u64 + 1).to_be_bytes()[4..].to_vec(),
    }
}

/// The full storage key of a row.
pub fn storage_key(table: TableId, row_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + row_key.len());
    k.extend_from_slice(&table_prefix(table));
    k.extend_from_slice(row_key);
    k
}

/// Builds a row key from a bucket and primary-key values.
///
/// ```
/// use slicedb_common::Datum;
/// use slicedb_codec::key::row_key;
/// let a = row_key(7, &[Datum::Int64(-5)]).unwrap();
/// let b = row_key(7, &[Datum::Int64(3)]).unwrap();
/// assert!(a < b); // byte order is SQL order
/// ```
pub fn row_key(bucket: u16, pk: &[Datum]) -> Result<RowKey> {
    let mut ser = memcomparable::Serializer::new(bucket.to_be_bytes().to_vec());
    for d in pk {
        let r = match d {
            Datum::Null => {
                return Err(Error::new(
                    slicedb_common::SqlState::NotNullViolation,
                    "primary key columns cannot be null",
                ))
            }
            Datum::Bool(v) => v.serialize(&mut ser),
            Datum::Int16(v) => v.serialize(&mut ser),
            Datum::Int32(v) => v.serialize(&mut ser),
            Datum::Int64(v) => v.serialize(&mut ser),
            Datum::Float32(v) => v.serialize(&mut ser),
            Datum::Float64(v) => v.serialize(&mut ser),
            Datum::Decimal { value, .. } => value.serialize(&mut ser),
            Datum::Text(v) => v.serialize(&mut ser),
            Datum::Bytes(v) => serde_bytes_like(v, &mut ser),
            Datum::Date(v) => v.serialize(&mut ser),
            Datum::Timestamp(v) => v.serialize(&mut ser),
            Datum::Time(v) => v.serialize(&mut ser),
            // By length, as intervals compare: '1 mon' and '30 days' are
            // one key.
            Datum::Interval { .. } => d.interval_micros().unwrap_or_default().serialize(&mut ser),
            Datum::Array(_) => {
                return Err(Error::new(
                    slicedb_common::SqlState::FeatureNotSupported,
                    "arrays cannot be part of a key or an index",
                ))
            }
        };
        r.map_err(|e| Error::internal(format!("key encoding: {e}")))?;
    }
    Ok(ser.into_inner())
}

fn serde_bytes_like(v: &[u8], ser: &mut memcomparable::Serializer<Vec<u8>>) -> memcomparable::Result<()> {
    use serde::Serializer;
    ser.serialize_bytes(v)
}

/// A row key for a hidden row id (tables without a primary key).
pub fn rowid_key(bucket: u16, rowid: u64) -> RowKey {
    let mut k = Vec::with_capacity(10);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(&rowid.to_be_bytes());
    k
}

/// The bucket of a row key.
pub fn bucket_of_row_key(row_key: &[u8]) -> Result<u16> {
    match row_key {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(Error::internal("row key shorter than a bucket")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_preserves_order() {
        let ints = [-1_000_000i64, -1, 0, 1, 42, 1 << 40];
        let keys: Vec<_> = ints.iter().map(|i| row_key(3, &[Datum::Int64(*i)]).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let texts = ["", "a", "ab", "b", "ba"];
        let keys: Vec<_> = texts
            .iter()
            .map(|t| row_key(3, &[Datum::Text(t.to_string())]).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // composite keys order by the first column first
        let a = row_key(3, &[Datum::Text("a".into()), Datum::Int32(9)]).unwrap();
        let b = row_key(3, &[Datum::Text("ab".into()), Datum::Int32(1)]).unwrap();
        assert!(a < b);
    }

    #[test]
    fn buckets_are_contiguous_ranges() {
        let k = storage_key(5, &row_key(0xffff, &[Datum::Int64(1)]).unwrap());
        assert!(k.as_slice() >= bucket_start(5, 0xffff).as_slice());
        assert!(k.as_slice() < bucket_end_exclusive(5, 0xffff).as_slice());
        assert_eq!(bucket_end_exclusive(5, 0xffff), table_prefix(6).to_vec());
        assert_eq!(
            bucket_of_row_key(&row_key(513, &[Datum::Int64(1)]).unwrap()).unwrap(),
            513
        );
    }
}
