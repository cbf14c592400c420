//! PostgreSQL's binary COPY format (`COPY … WITH (FORMAT binary)`), which
//! asyncpg's `copy_records_to_table`, psycopg's binary copy and JDBC's
//! `CopyManager` speak.
//!
//! The data is an 11-byte signature (`PGCOPY\n\xff\r\n\0`), a 32-bit flags
//! field (bit 16 says OIDs follow: refused, as PostgreSQL refuses them for
//! tables without OIDs) and a header extension of a given length, skipped.
//! Then tuples: a 16-bit field count (-1 ends the data) and per field a
//! 32-bit length (-1 for NULL) and the value in its type's binary send
//! format, in network byte order. Integers are integers and floats IEEE
//! bits; `date` counts days and `timestamp[tz]` microseconds from
//! 2000-01-01; `uuid` is 16 bytes; `jsonb` a version byte (1) and the text;
//! `numeric` base-10000 digits with a weight, a sign and a display scale;
//! `time` microseconds since midnight; `interval` microseconds, days and
//! months; an array its dimension count (0 or 1 here), a has-NULLs flag,
//! its element type's oid, the length and lower bound of its dimension,
//! then its elements as fields (arrays of `numeric` are refused).
//!
//! [`parse_header`] and [`parse_tuple`] read from a buffer that may end
//! anywhere (COPY data arrives in arbitrary chunks): they answer `None`
//! until a whole piece is there. [`decode`] turns one field into a
//! [`Datum`] of the column's type, a `numeric` into its decimal text (cast
//! to the column's precision and scale as text COPY is); [`encode`] is the
//! reverse, for `COPY … TO STDOUT`.
//!
//! ```
//! use slicedb_common::{Datum, SqlType};
//! use slicedb_coordinator::copy_binary::{decode, encode};
//! let mut out = Vec::new();
//! encode(&Datum::Date(0), SqlType::Date, &mut out).unwrap();
//! // Length 4, then 1970-01-01 as days before 2000-01-01.
//! assert_eq!(out, [0, 0, 0, 4, 0xff, 0xff, 0xd5, 0x33]);
//! assert_eq!(decode(&out[4..], SqlType::Date).unwrap(), Datum::Date(0));
//! ```

use slicedb_common::{err, Datum, Result, SqlType};

/// The first bytes of every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Days from 1970-01-01 (slicedb's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_DAYS: i32 = 10_957;
/// The same, in microseconds.
const EPOCH_MICROS: i64 = EPOCH_DAYS as i64 * 86_400_000_000;

fn bad(msg: impl std::fmt::Display) -> slicedb_common::Error {
    err!(BadCopyFileFormat, "{msg}")
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The header, once `buf` holds all of it: the bytes it takes.
pub fn parse_header(buf: &[u8]) -> Result<Option<usize>> {
    let n = SIGNATURE.len();
    if buf.len() < n + 8 {
        if !SIGNATURE.starts_with(&buf[..buf.len().min(n)]) {
            return Err(bad("COPY file signature not recognized"));
        }
        return Ok(None);
    }
    if &buf[..n] != SIGNATURE {
        return Err(bad("COPY file signature not recognized"));
    }
    let flags = be_i32(&buf[n..]);
    if flags & (1 << 16) != 0 {
        return Err(err!(FeatureNotSupported, "COPY data with OIDs is not supported"));
    }
    if flags & !0xffff & !(1 << 16) != 0 {
        return Err(bad("unrecognized critical flags in COPY file header"));
    }
    let extension = be_i32(&buf[n + 4..]);
    let extension = usize::try_from(extension).map_err(|_| bad("invalid COPY file header (missing length)"))?;
    let total = n + 8 + extension;
    Ok((buf.len() >= total).then_some(total))
}

/// A tuple's fields (`None` for NULL), or `None` for the end marker.
pub type Tuple<'a> = Option<Vec<Option<&'a [u8]>>>;

/// The next tuple, once `buf` holds all of it, with the bytes it takes.
pub fn parse_tuple(buf: &[u8]) -> Result<Option<(Tuple<'_>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let count = be_i16(buf);
    if count == -1 {
        return Ok(Some((None, 2)));
    }
    let count = usize::try_from(count).map_err(|_| bad(format!("invalid field count {count} in COPY data")))?;
    let mut fields = Vec::with_capacity(count);
    let mut pos = 2;
    for _ in 0..count {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let len = be_i32(&buf[pos..]);
        pos += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad(format!("invalid field size {len} in COPY data")))?;
        if buf.len() < pos + len {
            return Ok(None);
        }
        fields.push(Some(&buf[pos..pos + len]));
        pos += len;
    }
    Ok(Some((Some(fields), pos)))
}

/// The value of one field of a column of type `ty`.
pub fn decode(b: &[u8], ty: SqlType) -> Result<Datum> {
    let width = |n: usize| -> Result<()> {
        match b.len() == n {
            true => Ok(()),
            false => Err(err!(
                InvalidBinaryRepresentation,
                "incorrect binary data format: {} bytes for type {}",
                b.len(),
                ty.pg_name()
            )),
        }
    };
    let text = |b: &[u8]| -> Result<String> {
        String::from_utf8(b.to_vec())
            .map_err(|_| err!(CharacterNotInRepertoire, "invalid byte sequence for encoding \"UTF8\""))
    };
    Ok(match ty {
        SqlType::SmallInt => {
            width(2)?;
            Datum::Int16(be_i16(b))
        }
        SqlType::Integer => {
            width(4)?;
            Datum::Int32(be_i32(b))
        }
        SqlType::BigInt => {
            width(8)?;
            Datum::Int64(i64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        SqlType::Real => {
            width(4)?;
            Datum::Float32(f32::from_bits(be_i32(b) as u32))
        }
        SqlType::Double => {
            width(8)?;
            Datum::Float64(f64::from_bits(u64::from_be_bytes(b.try_into().expect("8 bytes"))))
        }
        SqlType::Boolean => {
            width(1)?;
            Datum::Bool(b[0] != 0)
        }
        SqlType::Numeric { .. } => Datum::Text(numeric_text(b)?),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Json => Datum::Text(text(b)?),
        SqlType::Jsonb => match b.split_first() {
            Some((1, rest)) => Datum::Text(text(rest)?),
            _ => return Err(err!(InvalidBinaryRepresentation, "unsupported jsonb version number")),
        },
        SqlType::Uuid => {
            width(16)?;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Datum::Text(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        SqlType::Bytea => Datum::Bytes(b.to_vec()),
        SqlType::Date => {
            width(4)?;
            let days = be_i32(b);
            if days == i32::MAX || days == i32::MIN {
                return Err(err!(DatetimeFieldOverflow, "date out of range: infinity"));
            }
            Datum::Date(
                days.checked_add(EPOCH_DAYS)
                    .ok_or_else(|| err!(DatetimeFieldOverflow, "date out of range"))?,
            )
        }
        SqlType::Timestamp | SqlType::TimestampTz => {
            width(8)?;
            let us = i64::from_be_bytes(b.try_into().expect("8 bytes"));
            if us == i64::MAX || us == i64::MIN {
                return Err(err!(DatetimeFieldOverflow, "timestamp out of range: infinity"));
            }
            Datum::Timestamp(
                us.checked_add(EPOCH_MICROS)
                    .ok_or_else(|| err!(DatetimeFieldOverflow, "timestamp out of range"))?,
            )
        }
        SqlType::Time => {
            width(8)?;
            Datum::Time(i64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        SqlType::Interval => {
            width(16)?;
            Datum::Interval {
                micros: i64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
                days: be_i32(&b[8..]),
                months: be_i32(&b[12..]),
            }
        }
        SqlType::Array(elem) => decode_array(b, elem.sql_type())?,
    })
}

/// A binary array of elements of type `elem`.
fn decode_array(b: &[u8], elem: SqlType) -> Result<Datum> {
    if matches!(elem, SqlType::Numeric { .. }) {
        return Err(err!(
            FeatureNotSupported,
            "binary COPY of numeric arrays is not supported"
        ));
    }
    let short = || err!(InvalidBinaryRepresentation, "insufficient data left in message");
    let word = |at: usize| b.get(at..at + 4).map(be_i32).ok_or_else(short);
    let dims = word(0)?;
    let oid = word(8)?;
    if oid as u32 != elem.pg_oid() {
        return Err(err!(
            DatatypeMismatch,
            "wrong element type: array element oid {oid}, column element type {}",
            elem.pg_name()
        ));
    }
    let (count, mut pos) = match dims {
        0 => (0, 12),
        1 => (word(12)?, 20),
        _ => return Err(err!(FeatureNotSupported, "multidimensional arrays are not supported")),
    };
    // The count is the client's word: reserve no more than the bytes left
    // could hold (four per element at least).
    let mut elements = Vec::with_capacity((count.max(0) as usize).min(b.len().saturating_sub(pos) / 4));
    for _ in 0..count {
        let len = word(pos)?;
        pos += 4;
        if len == -1 {
            elements.push(Datum::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| short())?;
        let field = b.get(pos..pos + len).ok_or_else(short)?;
        elements.push(decode(field, elem)?);
        pos += len;
    }
    Ok(Datum::Array(elements))
}

/// A binary `numeric` as decimal text: `ndigits`, `weight` (of the first
/// base-10000 digit), `sign` and `dscale` (digits after the point), then
/// the digits.
fn numeric_text(b: &[u8]) -> Result<String> {
    let invalid = || err!(InvalidBinaryRepresentation, "invalid numeric in binary COPY data");
    if b.len() < 8 {
        return Err(invalid());
    }
    let ndigits = usize::try_from(be_i16(b)).map_err(|_| invalid())?;
    let weight = be_i16(&b[2..]) as i32;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = usize::try_from(be_i16(&b[6..])).map_err(|_| invalid())?;
    if b.len() != 8 + 2 * ndigits {
        return Err(invalid());
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err(err!(FeatureNotSupported, "numeric NaN cannot be stored")),
        0xD000 | 0xF000 => return Err(err!(FeatureNotSupported, "numeric infinity cannot be stored")),
        _ => return Err(invalid()),
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| u16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]))
        .collect();
    if digits.iter().any(|d| *d > 9999) {
        return Err(invalid());
    }
    // Digit i is worth 10000^(weight - i).
    let digit = |group: i32| -> u16 {
        usize::try_from(weight - group)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(weight).to_string());
        for g in (0..weight).rev() {
            out.push_str(&format!("{:04}", digit(g)));
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::new();
        let mut g = -1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(g)));
            g -= 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

/// Appends the field of `d`, a value of type `ty`: its length and bytes.
pub fn encode(d: &Datum, ty: SqlType, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match (ty, d) {
        (_, Datum::Null) => {
            out.truncate(start);
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        (_, Datum::Int16(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (_, Datum::Int32(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (_, Datum::Int64(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (_, Datum::Float32(v)) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
        (_, Datum::Float64(v)) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
        (_, Datum::Bool(v)) => out.push(*v as u8),
        (_, Datum::Decimal { value, scale }) => numeric_binary(*value, *scale, out),
        (SqlType::Uuid, Datum::Text(s)) => {
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            for i in (0..hex.len()).step_by(2) {
                let byte = u8::from_str_radix(hex.get(i..i + 2).unwrap_or(""), 16)
                    .map_err(|_| err!(InvalidTextRepresentation, "invalid input syntax for type uuid: \"{s}\""))?;
                out.push(byte);
            }
        }
        (SqlType::Jsonb, Datum::Text(s)) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
        (_, Datum::Text(s)) => out.extend_from_slice(s.as_bytes()),
        (_, Datum::Bytes(b)) => out.extend_from_slice(b),
        (_, Datum::Date(days)) => out.extend_from_slice(&(days - EPOCH_DAYS).to_be_bytes()),
        (_, Datum::Timestamp(us)) => out.extend_from_slice(&(us - EPOCH_MICROS).to_be_bytes()),
        (_, Datum::Time(us)) => out.extend_from_slice(&us.to_be_bytes()),
        (_, Datum::Interval { months, days, micros }) => {
            out.extend_from_slice(&micros.to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            out.extend_from_slice(&months.to_be_bytes());
        }
        (ty, Datum::Array(elements)) => {
            let elem = match ty {
                SqlType::Array(e) => e.sql_type(),
                other => {
                    return Err(err!(
                        DatatypeMismatch,
                        "an array is not a value of type {}",
                        other.pg_name()
                    ))
                }
            };
            let dims: i32 = if elements.is_empty() { 0 } else { 1 };
            out.extend_from_slice(&dims.to_be_bytes());
            out.extend_from_slice(&(elements.iter().any(Datum::is_null) as i32).to_be_bytes());
            out.extend_from_slice(&elem.pg_oid().to_be_bytes());
            if dims == 1 {
                out.extend_from_slice(&(elements.len() as i32).to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
            }
            for e in elements {
                encode(e, elem, out)?;
            }
        }
    }
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The binary `numeric` of `value` × 10^-`scale`.
fn numeric_binary(value: i128, scale: i8, out: &mut Vec<u8>) {
    let neg = value < 0;
    let mut magnitude = value.unsigned_abs();
    let mut scale = scale as i32;
    // A negative scale: scale up to an integer.
    while scale < 0 {
        magnitude *= 10;
        scale += 1;
    }
    let dscale = scale as usize;
    // Pad the fraction to whole base-10000 digits.
    let pad = (4 - dscale % 4) % 4;
    let mut m = magnitude * 10u128.pow(pad as u32);
    let frac_groups = (dscale + pad) / 4;
    let mut groups: Vec<u16> = Vec::new(); // least significant first
    while m > 0 {
        groups.push((m % 10_000) as u16);
        m /= 10_000;
    }
    while groups.len() < frac_groups {
        groups.push(0);
    }
    groups.reverse(); // most significant first
    let mut weight = groups.len() as i32 - frac_groups as i32 - 1;
    // Leading and trailing zero digits are not sent.
    let lead = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead);
    weight -= lead as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&(if neg && !groups.is_empty() { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(dscale as i16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(d: Datum, ty: SqlType) -> Datum {
        let mut out = Vec::new();
        encode(&d, ty, &mut out).unwrap();
        let data = [&[0u8, 1][..], &out].concat();
        let (tuple, used) = parse_tuple(&data).unwrap().unwrap();
        assert_eq!(used, out.len() + 2);
        match tuple.unwrap()[0] {
            None => Datum::Null,
            Some(b) => decode(b, ty).unwrap(),
        }
    }

    #[test]
    fn values_of_every_type_round_trip() {
        let cases = [
            (Datum::Int16(-7), SqlType::SmallInt),
            (Datum::Int32(1 << 30), SqlType::Integer),
            (Datum::Int64(-(1 << 40)), SqlType::BigInt),
            (Datum::Float32(1.5), SqlType::Real),
            (Datum::Float64(-2.25), SqlType::Double),
            (Datum::Bool(true), SqlType::Boolean),
            (Datum::Text("héllo".into()), SqlType::Text),
            (Datum::Text("{\"a\": 1}".into()), SqlType::Jsonb),
            (
                Datum::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                SqlType::Uuid,
            ),
            (Datum::Bytes(vec![0, 255, 10]), SqlType::Bytea),
            (Datum::Date(19_782), SqlType::Date),
            (Datum::Date(-1), SqlType::Date),
            (Datum::Time(45_000_250_000), SqlType::Time),
            (
                Datum::Interval {
                    months: 14,
                    days: -3,
                    micros: 7_200_000_001,
                },
                SqlType::Interval,
            ),
            (
                Datum::Array(vec![Datum::Text("a".into()), Datum::Null]),
                SqlType::Array(slicedb_common::ArrayElem::Text),
            ),
            (Datum::Array(vec![]), SqlType::Array(slicedb_common::ArrayElem::Integer)),
            (
                Datum::Array(vec![Datum::Int64(-1), Datum::Null, Datum::Int64(1 << 40)]),
                SqlType::Array(slicedb_common::ArrayElem::BigInt),
            ),
            (Datum::Timestamp(1_709_201_472_123_456), SqlType::TimestampTz),
            (Datum::Null, SqlType::Integer),
        ];
        for (d, ty) in cases {
            assert_eq!(round_trip(d.clone(), ty), d, "{ty:?}");
        }
    }

    /// Numerics come back as the decimal text PostgreSQL would print.
    #[test]
    fn numerics_round_trip_through_their_text() {
        let ty = SqlType::Numeric {
            precision: 38,
            scale: 4,
        };
        let cases = [
            (123_456_789, 4, "12345.6789"),
            (-5, 2, "-0.05"),
            (0, 2, "0.00"),
            (100_000_000, 0, "100000000"),
            (10_000, 0, "10000"),
            (12, -2, "1200"),
            (1, 5, "0.00001"),
            (-123_450_000, 4, "-12345.0000"),
        ];
        for (value, scale, text) in cases {
            assert_eq!(
                round_trip(Datum::Decimal { value, scale }, ty),
                Datum::Text(text.into()),
                "{value}e-{scale}"
            );
        }
    }

    /// PostgreSQL 15's own bytes for `SELECT 12345.6789::numeric`,
    /// `-0.05::numeric` and `'2000-01-02'::date` in binary.
    #[test]
    fn postgresql_encodings_decode() {
        let n = [0, 2, 0, 1, 0, 0, 0, 4, 0x00, 0x01, 0x09, 0x29, 0x1a, 0x85];
        let ty = SqlType::Numeric {
            precision: 38,
            scale: 4,
        };
        // 1 | 2345 | .6789: weight 1, three digits.
        let n3 = [0, 3, 0, 1, 0, 0, 0, 4, 0x00, 0x01, 0x09, 0x29, 0x1a, 0x85];
        assert!(decode(&n, ty).is_err(), "two digits announced, three sent");
        assert_eq!(decode(&n3, ty).unwrap(), Datum::Text("12345.6789".into()));
        let small = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(decode(&small, ty).unwrap(), Datum::Text("-0.05".into()));
        assert_eq!(
            decode(&[0, 0, 0, 1], SqlType::Date).unwrap(),
            Datum::Date(EPOCH_DAYS + 1)
        );
    }

    /// An array whose header claims more elements than its bytes hold is
    /// refused, without reserving room for the claim.
    #[test]
    fn an_array_claiming_too_many_elements_is_an_error() {
        let mut b = Vec::new();
        for word in [1i32, 0, 23, i32::MAX, 1] {
            b.extend_from_slice(&word.to_be_bytes());
        }
        let e = decode(&b, SqlType::Array(slicedb_common::ArrayElem::Integer)).unwrap_err();
        assert_eq!(e.state.code(), "22P03");
        b[8..12].copy_from_slice(&25i32.to_be_bytes());
        let e = decode(&b, SqlType::Array(slicedb_common::ArrayElem::Integer)).unwrap_err();
        assert_eq!(e.state.code(), "42804");
    }

    #[test]
    fn headers_and_tuples_wait_for_whole_pieces() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_header(&data[..5]).unwrap(), None);
        assert_eq!(parse_header(&data).unwrap(), Some(19));
        assert!(parse_header(b"PGCOPX").is_err());
        let tuple = [0u8, 2, 0, 0, 0, 1, 7, 0xff, 0xff, 0xff, 0xff];
        for cut in 0..tuple.len() {
            assert!(parse_tuple(&tuple[..cut]).unwrap().is_none(), "{cut}");
        }
        let (fields, used) = parse_tuple(&tuple).unwrap().unwrap();
        assert_eq!(used, tuple.len());
        assert_eq!(fields.unwrap(), vec![Some(&[7u8][..]), None]);
        assert_eq!(parse_tuple(&[0xff, 0xff]).unwrap().unwrap().0, None);
    }
}
