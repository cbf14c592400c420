//! The SQL types slicedb stores, and their Arrow form.
//!
//! | SQL                     | Arrow                                   |
//! |-------------------------|-----------------------------------------|
//! | smallint                | Int16                                   |
//! | integer                 | Int32                                   |
//! | bigint                  | Int64                                   |
//! | real                    | Float32                                 |
//! | double precision        | Float64                                 |
//! | numeric(p,s)            | Decimal128(p,s) (unconstrained: 38,10)  |
//! | boolean                 | Boolean                                 |
//! | text, varchar(n), char(n) | Utf8 (char(n) is blank-padded)        |
//! | bytea                   | Binary                                  |
//! | date                    | Date32                                  |
//! | timestamp               | Timestamp(µs)                           |
//! | timestamptz             | Timestamp(µs, "+00:00")                 |
//! | uuid, json, jsonb       | Utf8, canonical form, the type in the field's metadata ([`crate::text_types`]) |
//! | time                    | Time64(µs)                              |
//! | interval                | Interval(MonthDayNano), whole µs        |
//! | `t[]` ([`ArrayElem`])   | List of `t`'s Arrow type (one dimension) |

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast;
use serde::{Deserialize, Serialize};

use crate::{err, Result};

/// Precision and scale used for a bare `numeric` with no modifiers.
pub const DEFAULT_NUMERIC: (u8, i8) = (38, 10);

/// A column type as declared in `CREATE TABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Numeric {
        precision: u8,
        scale: i8,
    },
    Boolean,
    Text,
    Varchar(Option<u32>),
    Char(u32),
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
    Time,
    Interval,
    /// A one-dimensional array of `ArrayElem` values.
    Array(ArrayElem),
}

/// The element types of the array columns slicedb stores (`text[]`,
/// `integer[]`…). An array column holds one-dimensional arrays with lower
/// bound 1, as almost every application's do; its Arrow form is a `List`
/// of the element's Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArrayElem {
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Numeric { precision: u8, scale: i8 },
    Boolean,
    Text,
    Varchar,
    Date,
    Timestamp,
    TimestampTz,
}

impl ArrayElem {
    /// The SQL type of one element.
    pub fn sql_type(self) -> SqlType {
        match self {
            ArrayElem::SmallInt => SqlType::SmallInt,
            ArrayElem::Integer => SqlType::Integer,
            ArrayElem::BigInt => SqlType::BigInt,
            ArrayElem::Real => SqlType::Real,
            ArrayElem::Double => SqlType::Double,
            ArrayElem::Numeric { precision, scale } => SqlType::Numeric { precision, scale },
            ArrayElem::Boolean => SqlType::Boolean,
            ArrayElem::Text => SqlType::Text,
            ArrayElem::Varchar => SqlType::Varchar(None),
            ArrayElem::Date => SqlType::Date,
            ArrayElem::Timestamp => SqlType::Timestamp,
            ArrayElem::TimestampTz => SqlType::TimestampTz,
        }
    }

    /// The element type of an array of `t`, if slicedb stores such arrays.
    pub fn of(t: SqlType) -> Option<ArrayElem> {
        Some(match t {
            SqlType::SmallInt => ArrayElem::SmallInt,
            SqlType::Integer => ArrayElem::Integer,
            SqlType::BigInt => ArrayElem::BigInt,
            SqlType::Real => ArrayElem::Real,
            SqlType::Double => ArrayElem::Double,
            SqlType::Numeric { precision, scale } => ArrayElem::Numeric { precision, scale },
            SqlType::Boolean => ArrayElem::Boolean,
            SqlType::Text => ArrayElem::Text,
            SqlType::Varchar(None) => ArrayElem::Varchar,
            SqlType::Date => ArrayElem::Date,
            SqlType::Timestamp => ArrayElem::Timestamp,
            SqlType::TimestampTz => ArrayElem::TimestampTz,
            _ => return None,
        })
    }

    /// PostgreSQL's oid of the array type (`_int4` is 1007…).
    fn array_oid(self) -> u32 {
        match self {
            ArrayElem::SmallInt => 1005,
            ArrayElem::Integer => 1007,
            ArrayElem::BigInt => 1016,
            ArrayElem::Real => 1021,
            ArrayElem::Double => 1022,
            ArrayElem::Numeric { .. } => 1231,
            ArrayElem::Boolean => 1000,
            ArrayElem::Text => 1009,
            ArrayElem::Varchar => 1015,
            ArrayElem::Date => 1182,
            ArrayElem::Timestamp => 1115,
            ArrayElem::TimestampTz => 1185,
        }
    }
}

impl SqlType {
    /// The Arrow type that carries values of this SQL type.
    pub fn arrow_type(&self) -> DataType {
        match self {
            SqlType::SmallInt => DataType::Int16,
            SqlType::Integer => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Real => DataType::Float32,
            SqlType::Double => DataType::Float64,
            SqlType::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
            SqlType::Boolean => DataType::Boolean,
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => DataType::Utf8,
            SqlType::Uuid | SqlType::Json | SqlType::Jsonb => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00"))),
            SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            SqlType::Array(e) => DataType::List(Arc::new(Field::new_list_field(e.sql_type().arrow_type(), true))),
        }
    }

    /// The PostgreSQL spelling, as `\d` and `SHOW` print it.
    pub fn pg_name(&self) -> String {
        match self {
            SqlType::SmallInt => "smallint".into(),
            SqlType::Integer => "integer".into(),
            SqlType::BigInt => "bigint".into(),
            SqlType::Real => "real".into(),
            SqlType::Double => "double precision".into(),
            SqlType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            SqlType::Boolean => "boolean".into(),
            SqlType::Text => "text".into(),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Char(n) => format!("character({n})"),
            SqlType::Bytea => "bytea".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Uuid | SqlType::Json | SqlType::Jsonb => self.stored_as_text().unwrap_or_default().into(),
            SqlType::Time => "time without time zone".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Array(e) => format!("{}[]", e.sql_type().pg_name()),
        }
    }

    /// The name of a type stored as text whose Arrow field says which it is
    /// (see [`crate::text_types`]).
    pub fn stored_as_text(&self) -> Option<&'static str> {
        match self {
            SqlType::Uuid => Some("uuid"),
            SqlType::Json => Some("json"),
            SqlType::Jsonb => Some("jsonb"),
            _ => None,
        }
    }

    /// The Arrow field of a column `name` of this type.
    pub fn field(&self, name: &str, nullable: bool) -> datafusion::arrow::datatypes::Field {
        let field = datafusion::arrow::datatypes::Field::new(name, self.arrow_type(), nullable);
        match self.stored_as_text() {
            Some(t) => field.with_metadata([(crate::text_types::PG_TYPE_KEY.to_string(), t.to_string())].into()),
            None => field,
        }
    }

    /// PostgreSQL's type oid, as `pg_attribute.atttypid` reports it.
    pub fn pg_oid(&self) -> u32 {
        match self {
            SqlType::SmallInt => 21,
            SqlType::Integer => 23,
            SqlType::BigInt => 20,
            SqlType::Real => 700,
            SqlType::Double => 701,
            SqlType::Numeric { .. } => 1700,
            SqlType::Boolean => 16,
            SqlType::Text => 25,
            SqlType::Varchar(_) => 1043,
            SqlType::Char(_) => 1042,
            SqlType::Bytea => 17,
            SqlType::Date => 1082,
            SqlType::Timestamp => 1114,
            SqlType::TimestampTz => 1184,
            SqlType::Uuid => 2950,
            SqlType::Json => 114,
            SqlType::Jsonb => 3802,
            SqlType::Time => 1083,
            SqlType::Interval => 1186,
            SqlType::Array(e) => e.array_oid(),
        }
    }

    /// PostgreSQL's type modifier (`pg_attribute.atttypmod`): the declared
    /// length plus 4 for `varchar(n)` and `char(n)`, `(p << 16 | s) + 4`
    /// for `numeric(p,s)`, -1 where the type has none.
    pub fn pg_typmod(&self) -> i32 {
        match self {
            SqlType::Varchar(Some(n)) | SqlType::Char(n) => *n as i32 + 4,
            SqlType::Numeric { precision, scale } => ((*precision as i32) << 16 | (*scale as u8) as i32) + 4,
            SqlType::Array(e) => e.sql_type().pg_typmod(),
            _ => -1,
        }
    }

    /// PostgreSQL's storage length (`typlen`): bytes for fixed-width
    /// types, -1 for variable-length ones.
    pub fn pg_len(&self) -> i16 {
        match self {
            SqlType::SmallInt => 2,
            SqlType::Integer | SqlType::Real | SqlType::Date => 4,
            SqlType::BigInt | SqlType::Double | SqlType::Timestamp | SqlType::TimestampTz | SqlType::Time => 8,
            SqlType::Boolean => 1,
            SqlType::Uuid | SqlType::Interval => 16,
            _ => -1,
        }
    }

    /// True for the types PostgreSQL collates (the text types).
    pub fn is_text(&self) -> bool {
        matches!(self, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_))
    }

    /// Maps a parsed SQL type to a storable one, or fails with 0A000.
    pub fn from_ast(dt: &ast::DataType) -> Result<SqlType> {
        use ast::DataType as D;
        let t = match dt {
            D::SmallInt(_) | D::Int2(_) => SqlType::SmallInt,
            D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Integer,
            D::BigInt(_) | D::Int8(_) => SqlType::BigInt,
            D::Real | D::Float4 => SqlType::Real,
            D::Double(_) | D::DoublePrecision | D::Float8 | D::Float64 => SqlType::Double,
            D::Float(info) => match info {
                ast::ExactNumberInfo::Precision(p) | ast::ExactNumberInfo::PrecisionAndScale(p, _) if *p <= 24 => {
                    SqlType::Real
                }
                _ => SqlType::Double,
            },
            D::Numeric(info) | D::Decimal(info) | D::Dec(info) => {
                let (precision, scale) = match info {
                    ast::ExactNumberInfo::None => DEFAULT_NUMERIC,
                    ast::ExactNumberInfo::Precision(p) => (*p as u8, 0),
                    ast::ExactNumberInfo::PrecisionAndScale(p, s) => (*p as u8, *s as i8),
                };
                if precision == 0 || precision > 38 {
                    return Err(err!(
                        InvalidParameterValue,
                        "NUMERIC precision {precision} must be between 1 and 38"
                    ));
                }
                if scale < 0 || scale as u8 > precision {
                    return Err(err!(
                        InvalidParameterValue,
                        "NUMERIC scale {scale} must be between 0 and precision {precision}"
                    ));
                }
                SqlType::Numeric { precision, scale }
            }
            D::Boolean | D::Bool => SqlType::Boolean,
            D::Text | D::String(_) => SqlType::Text,
            D::Varchar(len) | D::CharacterVarying(len) => SqlType::Varchar(char_len(len)),
            D::Char(len) | D::Character(len) => SqlType::Char(char_len(len).unwrap_or(1)),
            D::Bytea => SqlType::Bytea,
            D::Uuid => SqlType::Uuid,
            D::JSON => SqlType::Json,
            D::JSONB => SqlType::Jsonb,
            D::Date => SqlType::Date,
            D::Time(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => SqlType::Time,
            D::Interval { fields: None, .. } => SqlType::Interval,
            D::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _) | ast::ArrayElemTypeDef::AngleBracket(inner)) => {
                let elem = SqlType::from_ast(inner)?;
                match ArrayElem::of(elem) {
                    Some(e) => SqlType::Array(e),
                    None => {
                        return Err(err!(
                            FeatureNotSupported,
                            "arrays of {} are not supported",
                            elem.pg_name()
                        ))
                    }
                }
            }
            D::Timestamp(_, tz) => match tz {
                ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => SqlType::TimestampTz,
                _ => SqlType::Timestamp,
            },
            D::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
                "timestamptz" => SqlType::TimestampTz,
                "int2" => SqlType::SmallInt,
                "int4" => SqlType::Integer,
                "int8" => SqlType::BigInt,
                "float4" => SqlType::Real,
                "float8" => SqlType::Double,
                "bpchar" => SqlType::Char(1),
                "uuid" => SqlType::Uuid,
                "json" => SqlType::Json,
                "jsonb" => SqlType::Jsonb,
                "_text" => SqlType::Array(ArrayElem::Text),
                "_int4" => SqlType::Array(ArrayElem::Integer),
                "_int8" => SqlType::Array(ArrayElem::BigInt),
                other => return Err(err!(UndefinedObject, "type \"{other}\" does not exist")),
            },
            other => return Err(err!(FeatureNotSupported, "type {other} is not supported")),
        };
        Ok(t)
    }

    /// The SQL type a query's column is stored as by `CREATE TABLE … AS`:
    /// a type stored as text when the field's metadata names one, else
    /// [`SqlType::from_arrow`].
    pub fn from_field(f: &datafusion::arrow::datatypes::Field) -> Option<SqlType> {
        match f.metadata().get(crate::text_types::PG_TYPE_KEY).map(String::as_str) {
            Some("uuid") => Some(SqlType::Uuid),
            Some("json") => Some(SqlType::Json),
            Some("jsonb") => Some(SqlType::Jsonb),
            _ => SqlType::from_arrow(f.data_type()),
        }
    }

    /// The SQL type a query's Arrow column is stored as by `CREATE TABLE …
    /// AS` (`None` for types slicedb does not store).
    pub fn from_arrow(t: &DataType) -> Option<SqlType> {
        Some(match t {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => SqlType::SmallInt,
            DataType::Int32 | DataType::UInt16 => SqlType::Integer,
            DataType::Int64 | DataType::UInt32 => SqlType::BigInt,
            DataType::Float32 => SqlType::Real,
            DataType::Float64 => SqlType::Double,
            DataType::Decimal128(p, s) if *p <= 38 && *s >= 0 => SqlType::Numeric {
                precision: *p,
                scale: *s,
            },
            DataType::Boolean => SqlType::Boolean,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => SqlType::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytea,
            DataType::Date32 => SqlType::Date,
            DataType::Timestamp(_, None) => SqlType::Timestamp,
            DataType::Timestamp(_, Some(_)) => SqlType::TimestampTz,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::Interval(_) => SqlType::Interval,
            DataType::List(f) | DataType::LargeList(f) => {
                SqlType::Array(ArrayElem::of(SqlType::from_arrow(f.data_type())?)?)
            }
            _ => return None,
        })
    }

    /// True for the integer types, which share one hash encoding.
    pub fn is_integer(&self) -> bool {
        matches!(self, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
    }
}

fn char_len(len: &Option<ast::CharacterLength>) -> Option<u32> {
    match len {
        Some(ast::CharacterLength::IntegerLength { length, .. }) => Some(*length as u32),
        _ => None,
    }
}
