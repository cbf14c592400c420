//! The stable bucket hash.
//!
//! `bucket = xxh3_64(canonical(k1) ‖ canonical(k2) ‖ …) >> 48`, over the
//! distribution-key values in key order, where `canonical` is:
//!
//! | value                         | bytes                                        |
//! |-------------------------------|----------------------------------------------|
//! | NULL                          | `00`                                         |
//! | smallint / integer / bigint   | `01` + the value as i64, 8 bytes big-endian  |
//! | real / double                 | `02` + the value as f64 bits, big-endian (−0 → +0, one NaN) |
//! | numeric                       | `03` + unscaled i128 big-endian + scale (1 byte), trailing zeros stripped |
//! | text / varchar / char         | `04` + length u32 big-endian + UTF-8 bytes   |
//! | bytea                         | `05` + length u32 big-endian + bytes         |
//! | boolean                       | `06` + `00`/`01`                             |
//! | date                          | `07` + days since 1970-01-01, i32 big-endian |
//! | timestamp / timestamptz       | `08` + µs since 1970-01-01 UTC, i64 big-endian |
//! | time                          | `09` + µs since midnight, i64 big-endian     |
//! | interval                      | `0a` + its length in µs (a month as 30 days), i128 big-endian |
//! | array                         | `0b` + element count u32 big-endian + each element's encoding |
//!
//! All integer widths share one encoding, so `int` and `bigint` keys with the
//! same value land in the same bucket (joins on them stay co-located), and
//! `1.50::numeric(4,2)` and `1.5::numeric(3,1)` do too. The function is pinned
//! by golden vectors in the tests below: changing it would strand every stored
//! row in the wrong bucket. It is deliberately not DataFusion's repartition
//! hash, which promises no stability.

use slicedb_common::Datum;
use xxhash_rust::xxh3::xxh3_64;

/// A bucket number, 0..=65535.
pub type Bucket = u16;

/// Number of buckets in every hash map.
pub const BUCKET_COUNT: usize = 65_536;

/// Appends the canonical encoding of `datum` to `out`.
pub fn encode_canonical(datum: &Datum, out: &mut Vec<u8>) {
    match datum {
        Datum::Null => out.push(0x00),
        Datum::Int16(v) => int(*v as i64, out),
        Datum::Int32(v) => int(*v as i64, out),
        Datum::Int64(v) => int(*v, out),
        Datum::Float32(v) => float(*v as f64, out),
        Datum::Float64(v) => float(*v, out),
        Datum::Decimal { value, scale } => {
            let (mut value, mut scale) = (*value, *scale);
            while scale > 0 && value % 10 == 0 {
                value /= 10;
                scale -= 1;
            }
            if value == 0 {
                scale = 0;
            }
            out.push(0x03);
            out.extend_from_slice(&value.to_be_bytes());
            out.push(scale as u8);
        }
        Datum::Text(s) => bytes(0x04, s.as_bytes(), out),
        Datum::Bytes(b) => bytes(0x05, b, out),
        Datum::Bool(b) => {
            out.push(0x06);
            out.push(*b as u8);
        }
        Datum::Date(d) => {
            out.push(0x07);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Datum::Timestamp(t) => {
            out.push(0x08);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Datum::Time(t) => {
            out.push(0x09);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Datum::Interval { .. } => {
            // Equal intervals ('1 mon' and '30 days') hash alike.
            out.push(0x0a);
            out.extend_from_slice(&datum.interval_micros().unwrap_or_default().to_be_bytes());
        }
        Datum::Array(elements) => {
            out.push(0x0b);
            out.extend_from_slice(&(elements.len() as u32).to_be_bytes());
            for e in elements {
                encode_canonical(e, out);
            }
        }
    }
}

fn int(v: i64, out: &mut Vec<u8>) {
    out.push(0x01);
    out.extend_from_slice(&v.to_be_bytes());
}

fn float(v: f64, out: &mut Vec<u8>) {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    out.push(0x02);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

fn bytes(tag: u8, b: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// The bucket of a row whose distribution-key values are `key`.
///
/// ```
/// use slicedb_common::Datum;
/// use slicedb_hashmap::bucket_of;
/// // integer widths hash alike
/// assert_eq!(bucket_of(&[Datum::Int32(42)]), bucket_of(&[Datum::Int64(42)]));
/// ```
pub fn bucket_of<'a>(key: impl IntoIterator<Item = &'a Datum>) -> Bucket {
    let mut buf = Vec::with_capacity(16);
    for d in key {
        encode_canonical(d, &mut buf);
    }
    (xxh3_64(&buf) >> 48) as Bucket
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors: these values must never change.
    #[test]
    fn golden_vectors() {
        let cases: Vec<(Vec<Datum>, Bucket)> = vec![
            (vec![Datum::Int64(0)], GOLDEN[0]),
            (vec![Datum::Int64(1)], GOLDEN[1]),
            (vec![Datum::Int64(-1)], GOLDEN[2]),
            (vec![Datum::Int64(1_000_000)], GOLDEN[3]),
            (vec![Datum::Text("".into())], GOLDEN[4]),
            (vec![Datum::Text("alice".into())], GOLDEN[5]),
            (vec![Datum::Decimal { value: 150, scale: 2 }], GOLDEN[6]),
            (vec![Datum::Null], GOLDEN[7]),
            (vec![Datum::Int64(7), Datum::Text("x".into())], GOLDEN[8]),
            (vec![Datum::Date(19_000)], GOLDEN[9]),
            (vec![Datum::Timestamp(1_700_000_000_000_000)], GOLDEN[10]),
            (vec![Datum::Bool(true)], GOLDEN[11]),
            (vec![Datum::Float64(2.5)], GOLDEN[12]),
            (vec![Datum::Bytes(vec![0xde, 0xad])], GOLDEN[13]),
        ];
        let got: Vec<Bucket> = cases.iter().map(|(k, _)| bucket_of(k)).collect();
        let want: Vec<Bucket> = cases.iter().map(|(_, b)| *b).collect();
        assert_eq!(got, want, "the bucket hash changed; stored rows would be lost");
    }

    const GOLDEN: [Bucket; 14] = [
        12604, 38978, 21413, 48896, 35192, 25503, 52341, 50251, 24120, 43792, 26171, 47953, 52926, 24109,
    ];

    #[test]
    fn equal_values_of_different_widths_share_a_bucket() {
        assert_eq!(bucket_of(&[Datum::Int16(5)]), bucket_of(&[Datum::Int64(5)]));
        assert_eq!(
            bucket_of(&[Datum::Decimal { value: 150, scale: 2 }]),
            bucket_of(&[Datum::Decimal { value: 15, scale: 1 }])
        );
        assert_eq!(bucket_of(&[Datum::Float64(-0.0)]), bucket_of(&[Datum::Float32(0.0)]));
    }

    #[test]
    fn buckets_spread_evenly() {
        let mut counts = vec![0u32; 16];
        for i in 0..160_000i64 {
            counts[(bucket_of(&[Datum::Int64(i)]) >> 12) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven spread: {c}");
        }
    }
}
