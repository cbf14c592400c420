//! Arrow builders fed straight from stored rows.
//!
//! A scan knows the SQL type of each column it returns; a
//! [`ColumnBuilder`] of that type takes each row's value as a
//! [`ValueRef`] borrowed from the stored bytes and appends it in place:
//! text is copied once, into the Arrow buffer, and no `Datum` is built.
//! The Arrow types are those of `SqlType::arrow_type`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::IntervalMonthDayNano;
use slicedb_common::{Datum, Error, Result, SqlType};

use crate::row::ValueRef;

/// Builds one Arrow column of a SQL type from stored values.
///
/// ```
/// use slicedb_codec::columns::ColumnBuilder;
/// use slicedb_codec::row::ValueRef;
/// use slicedb_common::SqlType;
/// let mut b = ColumnBuilder::new(SqlType::Text, 2).unwrap();
/// b.append(ValueRef::Text("a")).unwrap();
/// b.append(ValueRef::Null).unwrap();
/// let array = b.finish();
/// assert_eq!((array.len(), array.null_count()), (2, 1));
/// ```
pub enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    /// Arrays: their datums, turned into a `List` by `finish`.
    Array(SqlType, Vec<Datum>),
}

impl ColumnBuilder {
    /// A builder for `capacity` values of type `ty`.
    pub fn new(ty: SqlType, capacity: usize) -> Result<ColumnBuilder> {
        Ok(match ty {
            SqlType::SmallInt => ColumnBuilder::Int16(Int16Builder::with_capacity(capacity)),
            SqlType::Integer => ColumnBuilder::Int32(Int32Builder::with_capacity(capacity)),
            SqlType::BigInt => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            SqlType::Real => ColumnBuilder::Float32(Float32Builder::with_capacity(capacity)),
            SqlType::Double => ColumnBuilder::Float64(Float64Builder::with_capacity(capacity)),
            SqlType::Numeric { precision, scale } => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| Error::internal(e.to_string()))?,
                scale,
            ),
            SqlType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Uuid | SqlType::Json | SqlType::Jsonb => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, 16 * capacity))
            }
            SqlType::Bytea => ColumnBuilder::Bytes(BinaryBuilder::with_capacity(capacity, 16 * capacity)),
            SqlType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            SqlType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity)),
            SqlType::TimestampTz => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("+00:00"))
            }
            SqlType::Time => ColumnBuilder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            SqlType::Interval => ColumnBuilder::Interval(IntervalMonthDayNanoBuilder::with_capacity(capacity)),
            SqlType::Array(_) => ColumnBuilder::Array(ty, Vec::with_capacity(capacity)),
        })
    }

    /// Appends one value; a value of another kind than the column's is an
    /// error (a row that does not match its table).
    pub fn append(&mut self, v: ValueRef<'_>) -> Result<()> {
        match (self, v) {
            (ColumnBuilder::Bool(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Int16(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Int32(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Int64(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Float32(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Float64(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Decimal(b, _), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Text(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Bytes(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Date(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Time(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Interval(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Array(_, v), ValueRef::Null) => v.push(Datum::Null),
            (ColumnBuilder::Bool(b), ValueRef::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Int16(b), ValueRef::Int16(v)) => b.append_value(v),
            (ColumnBuilder::Int32(b), ValueRef::Int32(v)) => b.append_value(v),
            (ColumnBuilder::Int64(b), ValueRef::Int64(v)) => b.append_value(v),
            (ColumnBuilder::Float32(b), ValueRef::Float32(v)) => b.append_value(v),
            (ColumnBuilder::Float64(b), ValueRef::Float64(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b, s), ValueRef::Decimal { value, scale }) if *s == scale => b.append_value(value),
            (ColumnBuilder::Text(b), ValueRef::Text(v)) => b.append_value(v),
            (ColumnBuilder::Bytes(b), ValueRef::Bytes(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), ValueRef::Date(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), ValueRef::Timestamp(v)) => b.append_value(v),
            (ColumnBuilder::Time(b), ValueRef::Time(v)) => b.append_value(v),
            (ColumnBuilder::Interval(b), ValueRef::Interval { months, days, micros }) => {
                b.append_value(IntervalMonthDayNano::new(months, days, micros * 1000))
            }
            (ColumnBuilder::Array(ty, v), a @ (ValueRef::Array(_) | ValueRef::Elements(_))) => {
                let d = a.to_datum();
                if !d.fits(*ty) {
                    return Err(Error::internal(format!("stored array {d:?} does not fit its column")));
                }
                v.push(d)
            }
            (_, v) => return Err(Error::internal(format!("stored value {v:?} does not fit its column"))),
        }
        Ok(())
    }

    /// Appends a value held as a [`Datum`] (a column's missing value).
    pub fn append_datum(&mut self, d: &Datum) -> Result<()> {
        self.append(ValueRef::of(d))
    }

    /// The column built so far; the builder starts again empty.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Interval(b) => Arc::new(b.finish()),
            ColumnBuilder::Array(ty, v) => {
                let datums = std::mem::take(v);
                // Every datum was checked by `append`, so this builds.
                slicedb_common::datum::build_array(*ty, datums.iter())
                    .unwrap_or_else(|_| arrow::array::new_null_array(&ty.arrow_type(), datums.len()))
            }
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, _) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Bytes(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::{encode_row, RowView};

    #[test]
    fn builds_the_types_of_the_columns() {
        let types = [
            SqlType::BigInt,
            SqlType::Numeric {
                precision: 12,
                scale: 2,
            },
            SqlType::TimestampTz,
            SqlType::Varchar(Some(5)),
        ];
        let rows = [
            vec![
                Datum::Int64(1),
                Datum::Decimal { value: 150, scale: 2 },
                Datum::Timestamp(3),
                Datum::Text("ab".into()),
            ],
            vec![Datum::Int64(2), Datum::Null, Datum::Timestamp(4), Datum::Null],
        ];
        let mut builders: Vec<_> = types.iter().map(|t| ColumnBuilder::new(*t, 2).unwrap()).collect();
        for r in &rows {
            let bytes = encode_row(0, r).unwrap();
            let view = RowView::new(&bytes).unwrap();
            for (c, b) in builders.iter_mut().enumerate() {
                b.append(view.get(c).unwrap().unwrap()).unwrap();
            }
        }
        for (t, b) in types.iter().zip(&mut builders) {
            let array = b.finish();
            assert_eq!(array.data_type(), &t.arrow_type(), "{t:?}");
            let expected: Vec<Datum> = rows
                .iter()
                .map(|r| r[types.iter().position(|x| x == t).unwrap()].clone())
                .collect();
            let from_datums = slicedb_common::datum::build_array(*t, expected.iter()).unwrap();
            assert_eq!(&array, &from_datums);
        }
        let mut wrong = ColumnBuilder::new(SqlType::Integer, 1).unwrap();
        assert!(wrong.append(ValueRef::Int64(1)).is_err());
    }
}
