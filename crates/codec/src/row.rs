//! The stored value of a row: a header, then the columns behind an offset
//! table, so that a reader finds column `c` without decoding the others.
//!
//! ```text
//! [format: u8 = 2][version: u64 BE][flags: u8][count: u16 LE]
//! [tag: u8] × count                      (the kind of each value, 0 for NULL)
//! [end: u16 LE, or u32 LE if flags & WIDE] × count
//! [data]                                 (value c is data[end(c-1)..end(c)])
//! ```
//!
//! `version` is the commit timestamp of the transaction that wrote the
//! row (0 until it commits; see `slicedb_storage::mvcc`). `flags` bit 0
//! marks a tombstone: a delete, kept as a version so that older snapshots
//! still see the row and later writers see that it changed. Bit 1 says the
//! end offsets are four bytes wide (a row of more than 64 KiB of data).
//! Bit 2 marks a *back-filled* version: an index entry that an online
//! index build wrote beneath later writes, at the timestamp of the
//! snapshot it read (`slicedb_storage`'s `backfill`). It records no change
//! of the row, so it is never a write conflict.
//!
//! A value's position is its **column id** (its place in
//! `TableDef::columns`; ids only grow, see `docs/architecture.md`). A row
//! written before a column was added has a smaller `count`: [`RowView::get`]
//! answers `None` for such a column, and the reader substitutes the
//! column's missing value.
//!
//! Values are stored in place and little-endian: integers, dates and
//! timestamps in the fewest of 1, 2, 4 or 8 bytes that hold the value (as
//! TiDB does; the offsets give the width), floats at their width, a numeric
//! as its scale (1 byte) and its unscaled `i128`, text as UTF-8 and bytea
//! as bytes. Each value carries a
//! tag, so a row decodes into [`Datum`]s without its table's schema
//! ([`decode_row`]), and a reader that knows the schema appends values
//! straight into Arrow builders ([`crate::columns`]) without a `Datum` or an
//! allocation per cell.
//!
//! Format 1 (`postcard(Vec<Datum>)` behind the same 10-byte header) was the
//! format of earlier versions; [`crate::legacy`] reads it to upgrade a data
//! directory, and nothing else does.

use std::cmp::Ordering;

use slicedb_common::{Datum, Error, Result};

/// The format byte of rows written by this version.
pub const FORMAT: u8 = 2;
/// Format byte, version, flags.
pub const HEADER: usize = 10;
/// The value is a tombstone.
pub const FLAG_TOMBSTONE: u8 = 1;
/// End offsets are `u32`.
const FLAG_WIDE: u8 = 2;
/// The version was back-filled by an index build (see the module comment).
pub const FLAG_BACKFILLED: u8 = 4;

mod tag {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT16: u8 = 2;
    pub const INT32: u8 = 3;
    pub const INT64: u8 = 4;
    pub const FLOAT32: u8 = 5;
    pub const FLOAT64: u8 = 6;
    pub const DECIMAL: u8 = 7;
    pub const TEXT: u8 = 8;
    pub const BYTES: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIMESTAMP: u8 = 11;
    pub const TIME: u8 = 12;
    pub const INTERVAL: u8 = 13;
    pub const ARRAY: u8 = 14;
}

/// Appends an integer in the fewest of 1, 2, 4 or 8 little-endian bytes
/// that hold it (the value's length in the offset table says which).
fn push_int(data: &mut Vec<u8>, v: i64) {
    if let Ok(v) = i8::try_from(v) {
        data.push(v as u8);
    } else if let Ok(v) = i16::try_from(v) {
        data.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i32::try_from(v) {
        data.extend_from_slice(&v.to_le_bytes());
    } else {
        data.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads an integer written by [`push_int`].
fn read_int(b: &[u8]) -> Result<i64> {
    Ok(match b.len() {
        1 => b[0] as i8 as i64,
        2 => i16::from_le_bytes([b[0], b[1]]) as i64,
        4 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64,
        8 => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        _ => return Err(corrupt("integer of the wrong width")),
    })
}

fn narrow<T: TryFrom<i64>>(v: i64) -> Result<T> {
    T::try_from(v).map_err(|_| corrupt("integer out of its column's range"))
}

fn corrupt(what: &str) -> Error {
    Error::internal(format!("corrupt row value: {what}"))
}

/// Appends value `d` to `data` and answers its tag.
fn push_value(data: &mut Vec<u8>, d: &Datum) -> Result<u8> {
    Ok(match d {
        Datum::Null => tag::NULL,
        Datum::Bool(v) => {
            data.push(*v as u8);
            tag::BOOL
        }
        Datum::Int16(v) => {
            push_int(data, *v as i64);
            tag::INT16
        }
        Datum::Int32(v) => {
            push_int(data, *v as i64);
            tag::INT32
        }
        Datum::Int64(v) => {
            push_int(data, *v);
            tag::INT64
        }
        Datum::Float32(v) => {
            data.extend_from_slice(&v.to_le_bytes());
            tag::FLOAT32
        }
        Datum::Float64(v) => {
            data.extend_from_slice(&v.to_le_bytes());
            tag::FLOAT64
        }
        Datum::Decimal { value, scale } => {
            data.push(*scale as u8);
            data.extend_from_slice(&value.to_le_bytes());
            tag::DECIMAL
        }
        Datum::Text(s) => {
            data.extend_from_slice(s.as_bytes());
            tag::TEXT
        }
        Datum::Bytes(b) => {
            data.extend_from_slice(b);
            tag::BYTES
        }
        Datum::Date(v) => {
            push_int(data, *v as i64);
            tag::DATE
        }
        Datum::Timestamp(v) => {
            push_int(data, *v);
            tag::TIMESTAMP
        }
        Datum::Time(v) => {
            push_int(data, *v);
            tag::TIME
        }
        Datum::Interval { months, days, micros } => {
            data.extend_from_slice(&months.to_le_bytes());
            data.extend_from_slice(&days.to_le_bytes());
            data.extend_from_slice(&micros.to_le_bytes());
            tag::INTERVAL
        }
        Datum::Array(elements) => {
            if elements.len() > u16::MAX as usize {
                return Err(Error::new(
                    slicedb_common::SqlState::ProgramLimitExceeded,
                    "an array of more than 65535 elements",
                ));
            }
            data.extend_from_slice(&encode_row(0, elements)?);
            tag::ARRAY
        }
    })
}

/// Encodes a row stamped with `version`.
///
/// ```
/// use slicedb_codec::row::{encode_row, RowView, ValueRef};
/// use slicedb_common::Datum;
/// let bytes = encode_row(7, &[Datum::Int64(1), Datum::Null, Datum::Text("x".into())]).unwrap();
/// let row = RowView::new(&bytes).unwrap();
/// assert_eq!(row.version(), 7);
/// assert_eq!(row.get(2).unwrap(), Some(ValueRef::Text("x")));
/// assert_eq!(row.get(3).unwrap(), None); // a column this row predates
/// ```
pub fn encode_row(version: u64, row: &[Datum]) -> Result<Vec<u8>> {
    let count = u16::try_from(row.len()).map_err(|_| Error::internal("a row of more than 65535 columns"))?;
    let mut data = Vec::with_capacity(16 * row.len());
    let mut ends = Vec::with_capacity(row.len());
    let mut tags = Vec::with_capacity(row.len());
    for d in row {
        tags.push(push_value(&mut data, d)?);
        ends.push(data.len());
    }
    let wide = data.len() > u16::MAX as usize;
    if u32::try_from(data.len()).is_err() {
        return Err(Error::new(
            slicedb_common::SqlState::ProgramLimitExceeded,
            "a row of more than 4 GiB",
        ));
    }
    let width = if wide { 4 } else { 2 };
    let mut out = Vec::with_capacity(HEADER + 2 + row.len() * (1 + width) + data.len());
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(if wide { FLAG_WIDE } else { 0 });
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&tags);
    for end in ends {
        if wide {
            out.extend_from_slice(&(end as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(end as u16).to_le_bytes());
        }
    }
    out.extend_from_slice(&data);
    Ok(out)
}

/// A tombstone: the version that records a delete.
pub fn encode_tombstone(version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 2);
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(FLAG_TOMBSTONE);
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn check_header(bytes: &[u8]) -> Result<()> {
    match bytes.first() {
        Some(&FORMAT) if bytes.len() >= HEADER + 2 => Ok(()),
        Some(&FORMAT) => Err(corrupt("truncated header")),
        Some(&crate::legacy::FORMAT) => Err(Error::internal(
            "row format 1 found in a data directory that was not upgraded (see docs/operations.md)",
        )),
        Some(f) => Err(corrupt(&format!("unknown row format {f}"))),
        None => Err(corrupt("empty value")),
    }
}

/// A stored value's version and tombstone flag, without decoding the row.
pub fn peek(bytes: &[u8]) -> Result<(u64, bool)> {
    check_header(bytes)?;
    let version = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    Ok((version, bytes[9] & FLAG_TOMBSTONE != 0))
}

/// Was the stored value back-filled by an index build (see the module
/// comment)?
pub fn is_backfilled(bytes: &[u8]) -> Result<bool> {
    check_header(bytes)?;
    Ok(bytes[9] & FLAG_BACKFILLED != 0)
}

/// Marks an encoded value as back-filled, stamped with `version`.
///
/// ```
/// use slicedb_codec::row::{encode_row, is_backfilled, mark_backfilled, peek};
/// use slicedb_common::Datum;
/// let mut v = encode_row(0, &[Datum::Int64(7)]).unwrap();
/// mark_backfilled(&mut v, 42).unwrap();
/// assert_eq!(peek(&v).unwrap(), (42, false));
/// assert!(is_backfilled(&v).unwrap());
/// ```
pub fn mark_backfilled(bytes: &mut [u8], version: u64) -> Result<()> {
    set_version(bytes, version)?;
    bytes[9] |= FLAG_BACKFILLED;
    Ok(())
}

/// The stored values of a row after its header (its tags, offsets and
/// data): equal for two versions that hold the same values.
pub fn payload(bytes: &[u8]) -> Result<&[u8]> {
    check_header(bytes)?;
    Ok(&bytes[HEADER..])
}

/// Stamps an encoded value with its commit timestamp.
pub fn set_version(bytes: &mut [u8], version: u64) -> Result<()> {
    check_header(bytes)?;
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

/// Decodes a whole row into [`Datum`]s.
pub fn decode_row(bytes: &[u8]) -> Result<StoredRow> {
    let view = RowView::new(bytes)?;
    let mut values = Vec::with_capacity(view.len());
    for c in 0..view.len() {
        values.push(view.get(c)?.map(|v| v.to_datum()).unwrap_or(Datum::Null));
    }
    Ok(StoredRow {
        version: view.version(),
        tombstone: view.is_tombstone(),
        values,
    })
}

/// One value of a stored row, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Decimal {
        value: i128,
        scale: i8,
    },
    Text(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    Timestamp(i64),
    Time(i64),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    /// An array's elements, encoded as a row of version 0.
    Array(&'a [u8]),
    /// An array's elements held as datums (a constant, or a column's
    /// missing value).
    Elements(&'a [Datum]),
}

impl<'a> ValueRef<'a> {
    /// The same value, borrowed from a [`Datum`].
    pub fn of(d: &'a Datum) -> ValueRef<'a> {
        match d {
            Datum::Null => ValueRef::Null,
            Datum::Bool(v) => ValueRef::Bool(*v),
            Datum::Int16(v) => ValueRef::Int16(*v),
            Datum::Int32(v) => ValueRef::Int32(*v),
            Datum::Int64(v) => ValueRef::Int64(*v),
            Datum::Float32(v) => ValueRef::Float32(*v),
            Datum::Float64(v) => ValueRef::Float64(*v),
            Datum::Decimal { value, scale } => ValueRef::Decimal {
                value: *value,
                scale: *scale,
            },
            Datum::Text(s) => ValueRef::Text(s),
            Datum::Bytes(b) => ValueRef::Bytes(b),
            Datum::Date(v) => ValueRef::Date(*v),
            Datum::Timestamp(v) => ValueRef::Timestamp(*v),
            Datum::Time(v) => ValueRef::Time(*v),
            Datum::Interval { months, days, micros } => ValueRef::Interval {
                months: *months,
                days: *days,
                micros: *micros,
            },
            Datum::Array(v) => ValueRef::Elements(v),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, ValueRef::Null)
    }

    pub fn to_datum(self) -> Datum {
        match self {
            ValueRef::Null => Datum::Null,
            ValueRef::Bool(v) => Datum::Bool(v),
            ValueRef::Int16(v) => Datum::Int16(v),
            ValueRef::Int32(v) => Datum::Int32(v),
            ValueRef::Int64(v) => Datum::Int64(v),
            ValueRef::Float32(v) => Datum::Float32(v),
            ValueRef::Float64(v) => Datum::Float64(v),
            ValueRef::Decimal { value, scale } => Datum::Decimal { value, scale },
            ValueRef::Text(s) => Datum::Text(s.to_string()),
            ValueRef::Bytes(b) => Datum::Bytes(b.to_vec()),
            ValueRef::Date(v) => Datum::Date(v),
            ValueRef::Timestamp(v) => Datum::Timestamp(v),
            ValueRef::Time(v) => Datum::Time(v),
            ValueRef::Interval { months, days, micros } => Datum::Interval { months, days, micros },
            ValueRef::Array(bytes) => match decode_row(bytes) {
                Ok(row) => Datum::Array(row.values),
                // Checked when the row was read (`RowView::get`).
                Err(_) => Datum::Null,
            },
            ValueRef::Elements(v) => Datum::Array(v.to_vec()),
        }
    }

    /// SQL comparison with a constant, as [`Datum::sql_cmp`] compares:
    /// `None` if either is NULL or they do not compare.
    pub fn sql_cmp(&self, other: &Datum) -> Option<Ordering> {
        match (self, other) {
            (ValueRef::Text(a), Datum::Text(b)) => Some((*a).cmp(b.as_str())),
            (ValueRef::Bytes(a), Datum::Bytes(b)) => Some((*a).cmp(b.as_slice())),
            (ValueRef::Text(_) | ValueRef::Bytes(_), _) => None,
            // The kinds a scan's filter compares most, without a detour.
            (ValueRef::Int64(a), Datum::Int64(b)) => Some(a.cmp(b)),
            (ValueRef::Int32(a), Datum::Int32(b)) => Some(a.cmp(b)),
            (ValueRef::Date(a), Datum::Date(b)) => Some(a.cmp(b)),
            (ValueRef::Timestamp(a), Datum::Timestamp(b)) => Some(a.cmp(b)),
            (ValueRef::Decimal { value: a, scale: sa }, Datum::Decimal { value: b, scale: sb }) if sa == sb => {
                Some(a.cmp(b))
            }
            (v, d) => v.to_datum().sql_cmp(d),
        }
    }
}

/// A stored row read in place: its header and offset table parsed, its
/// values decoded one at a time on request.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    version: u64,
    flags: u8,
    tags: &'a [u8],
    ends: &'a [u8],
    data: &'a [u8],
}

impl<'a> RowView<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<RowView<'a>> {
        check_header(bytes)?;
        let version = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let flags = bytes[9];
        let count = u16::from_le_bytes([bytes[HEADER], bytes[HEADER + 1]]) as usize;
        let width = if flags & FLAG_WIDE != 0 { 4 } else { 2 };
        let rest = &bytes[HEADER + 2..];
        if rest.len() < count * (1 + width) {
            return Err(corrupt("truncated offset table"));
        }
        let (tags, rest) = rest.split_at(count);
        let (ends, data) = rest.split_at(count * width);
        Ok(RowView {
            version,
            flags,
            tags,
            ends,
            data,
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }

    /// How many columns the row was written with.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    fn end(&self, c: usize) -> usize {
        if self.flags & FLAG_WIDE != 0 {
            u32::from_le_bytes(self.ends[4 * c..4 * c + 4].try_into().expect("4 bytes")) as usize
        } else {
            u16::from_le_bytes([self.ends[2 * c], self.ends[2 * c + 1]]) as usize
        }
    }

    /// Column `c`'s value; `None` if the row was written before column `c`
    /// existed.
    pub fn get(&self, c: usize) -> Result<Option<ValueRef<'a>>> {
        let Some(&t) = self.tags.get(c) else {
            return Ok(None);
        };
        if t == tag::NULL {
            return Ok(Some(ValueRef::Null));
        }
        let start = if c == 0 { 0 } else { self.end(c - 1) };
        let end = self.end(c);
        let bytes = self
            .data
            .get(start..end)
            .ok_or_else(|| corrupt("offset out of range"))?;
        fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N]> {
            b.try_into().map_err(|_| corrupt("value of the wrong width"))
        }
        Ok(Some(match t {
            tag::BOOL => ValueRef::Bool(fixed::<1>(bytes)?[0] != 0),
            tag::INT16 => ValueRef::Int16(narrow(read_int(bytes)?)?),
            tag::INT32 => ValueRef::Int32(narrow(read_int(bytes)?)?),
            tag::INT64 => ValueRef::Int64(read_int(bytes)?),
            tag::FLOAT32 => ValueRef::Float32(f32::from_le_bytes(fixed(bytes)?)),
            tag::FLOAT64 => ValueRef::Float64(f64::from_le_bytes(fixed(bytes)?)),
            tag::DECIMAL => {
                let b = fixed::<17>(bytes)?;
                ValueRef::Decimal {
                    scale: b[0] as i8,
                    value: i128::from_le_bytes(b[1..].try_into().expect("16 bytes")),
                }
            }
            tag::TEXT => ValueRef::Text(std::str::from_utf8(bytes).map_err(|_| corrupt("text is not UTF-8"))?),
            tag::BYTES => ValueRef::Bytes(bytes),
            tag::DATE => ValueRef::Date(narrow(read_int(bytes)?)?),
            tag::TIMESTAMP => ValueRef::Timestamp(read_int(bytes)?),
            tag::TIME => ValueRef::Time(read_int(bytes)?),
            tag::INTERVAL => {
                let b = fixed::<16>(bytes)?;
                ValueRef::Interval {
                    months: i32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
                    days: i32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
                    micros: i64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
                }
            }
            tag::ARRAY => {
                decode_row(bytes)?;
                ValueRef::Array(bytes)
            }
            other => return Err(corrupt(&format!("unknown value tag {other}"))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Datum> {
        vec![
            Datum::Int64(1),
            Datum::Null,
            Datum::Text("x é".into()),
            Datum::Bool(true),
            Datum::Int16(-3),
            Datum::Int32(70_000),
            Datum::Float32(1.5),
            Datum::Float64(-2.25),
            Datum::Decimal {
                value: -123_456_789_012_345_678_901_234,
                scale: 4,
            },
            Datum::Bytes(vec![0, 255, 7]),
            Datum::Date(-1),
            Datum::Timestamp(1_700_000_000_000_000),
            Datum::Text(String::new()),
            Datum::Int64(-129),
            Datum::Int64(40_000),
            Datum::Int64(i64::MIN),
            Datum::Int32(i32::MAX),
            Datum::Int16(-1),
            Datum::Time(86_399_999_999),
            Datum::Interval {
                months: -14,
                days: 3,
                micros: -1,
            },
        ]
    }

    /// An array is stored as a row of its elements, nested in the value.
    #[test]
    fn arrays_round_trip() {
        let array = Datum::Array(vec![Datum::Text("a".into()), Datum::Null, Datum::Text(String::new())]);
        let row = vec![Datum::Int64(1), array.clone(), Datum::Array(vec![])];
        let bytes = encode_row(9, &row).unwrap();
        assert_eq!(decode_row(&bytes).unwrap().values, row);
        let view = RowView::new(&bytes).unwrap();
        let got = view.get(1).unwrap().unwrap();
        assert!(matches!(got, ValueRef::Array(_)));
        assert_eq!(got.to_datum(), array);
        // A corrupt nested row (here the empty array's element count) is an
        // error when read.
        let mut bad = bytes.clone();
        let at = bad.len() - 2;
        bad[at..].fill(0xff);
        assert!(RowView::new(&bad).unwrap().get(2).is_err());
    }

    #[test]
    fn rows_round_trip() {
        let row = all_kinds();
        let bytes = encode_row(0, &row).unwrap();
        let back = decode_row(&bytes).unwrap();
        assert_eq!(
            back,
            StoredRow {
                version: 0,
                tombstone: false,
                values: row.clone()
            }
        );
        let view = RowView::new(&bytes).unwrap();
        for (c, d) in row.iter().enumerate() {
            assert_eq!(view.get(c).unwrap(), Some(ValueRef::of(d)));
        }
        assert_eq!(view.get(row.len()).unwrap(), None);
        let mut bytes = bytes;
        set_version(&mut bytes, 42).unwrap();
        assert_eq!(peek(&bytes).unwrap(), (42, false));
        let t = encode_tombstone(7);
        assert_eq!(peek(&t).unwrap(), (7, true));
        assert!(decode_row(&t).unwrap().values.is_empty());
    }

    #[test]
    fn small_integers_take_few_bytes() {
        // header, count, one tag, one end offset, one byte of value
        assert_eq!(encode_row(0, &[Datum::Int64(3)]).unwrap().len(), HEADER + 2 + 1 + 2 + 1);
        assert_eq!(
            encode_row(0, &[Datum::Int64(1 << 40)]).unwrap().len(),
            HEADER + 2 + 1 + 2 + 8
        );
        let mut short_for_int16 = encode_row(0, &[Datum::Int64(70_000)]).unwrap();
        short_for_int16[HEADER + 2] = tag::INT16;
        assert!(RowView::new(&short_for_int16).unwrap().get(0).is_err());
    }

    #[test]
    fn large_rows_use_wide_offsets() {
        let row = vec![
            Datum::Text("a".repeat(70_000)),
            Datum::Int32(5),
            Datum::Bytes(vec![1; 10]),
        ];
        let bytes = encode_row(3, &row).unwrap();
        assert_eq!(decode_row(&bytes).unwrap().values, row);
        assert_eq!(RowView::new(&bytes).unwrap().get(1).unwrap(), Some(ValueRef::Int32(5)));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let bytes = encode_row(0, &all_kinds()).unwrap();
        for cut in 0..bytes.len() {
            let short = &bytes[..cut];
            if let Ok(view) = RowView::new(short) {
                for c in 0..view.len() + 1 {
                    let _ = view.get(c);
                }
            }
        }
        let mut flipped = bytes.clone();
        flipped[HEADER + 2] = 99; // an unknown tag
        assert!(RowView::new(&flipped).unwrap().get(0).is_err());
        let legacy = crate::legacy::encode_row_v1(0, &[Datum::Int64(1)]);
        let e = peek(&legacy).unwrap_err();
        assert!(e.to_string().contains("row format 1"), "{e}");
    }

    #[test]
    fn compares_in_place() {
        let bytes = encode_row(0, &[Datum::Text("b".into()), Datum::Int32(5)]).unwrap();
        let view = RowView::new(&bytes).unwrap();
        let text = view.get(0).unwrap().unwrap();
        assert_eq!(text.sql_cmp(&Datum::Text("a".into())), Some(Ordering::Greater));
        assert_eq!(text.sql_cmp(&Datum::Int64(1)), None);
        let int = view.get(1).unwrap().unwrap();
        assert_eq!(int.sql_cmp(&Datum::Int64(5)), Some(Ordering::Equal));
        assert_eq!(int.sql_cmp(&Datum::Null), None);
    }
}
