//! Columns of the types slicedb stores as text (`uuid`, `json`, `jsonb`):
//! their PostgreSQL type in RowDescription, and their binary wire form.
//!
//! Their Arrow arrays are `Utf8`, which arrow-pg reports as `text`; the
//! field's metadata ([`PG_TYPE_KEY`]) names the real type, so that drivers
//! decode a `uuid` as a UUID and a `jsonb` as JSON. In the text format the
//! value is the string itself. In the binary format a `uuid` is its 16
//! bytes and a `jsonb` its text after a version byte (1), which the
//! columns are converted to before encoding; a `json` is its text in both.

use std::sync::Arc;

use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;
use slicedb_common::text_types::PG_TYPE_KEY;
use slicedb_common::Error;

/// The PostgreSQL type a field's metadata names, if any.
pub fn pg_type(field: &Field) -> Option<Type> {
    match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("uuid") => Some(Type::UUID),
        Some("json") => Some(Type::JSON),
        Some("jsonb") => Some(Type::JSONB),
        _ => None,
    }
}

/// arrow-pg's fields for `schema`, with the types stored as text reported
/// as themselves.
pub fn pg_fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, options)?;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| match pg_type(field) {
            Some(t) => FieldInfo::new(
                info.name().to_string(),
                info.table_id(),
                info.column_id(),
                t,
                info.format(),
            )
            .with_format_options(info.format_options().clone()),
            None => info,
        })
        .collect())
}

/// `batch` with its binary-format `uuid` and `jsonb` columns in their wire
/// form (see the module comment); other batches unchanged.
pub fn for_binary(fields: &[FieldInfo], batch: RecordBatch) -> Result<RecordBatch, Error> {
    let converts = |i: usize| {
        fields.get(i).is_some_and(|f| {
            f.format() == FieldFormat::Binary && (*f.datatype() == Type::UUID || *f.datatype() == Type::JSONB)
        })
    };
    if !(0..batch.num_columns()).any(converts) {
        return Ok(batch);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let mut schema_fields = Vec::with_capacity(batch.num_columns());
    for (i, (column, field)) in batch.columns().iter().zip(batch.schema().fields()).enumerate() {
        if !converts(i) || column.data_type() != &DataType::Utf8 {
            columns.push(column.clone());
            schema_fields.push(field.as_ref().clone());
            continue;
        }
        let text = column.as_string::<i32>();
        let mut out = BinaryBuilder::new();
        for row in 0..text.len() {
            if text.is_null(row) {
                out.append_null();
            } else if *fields[i].datatype() == Type::UUID {
                let uuid = uuid::Uuid::parse_str(text.value(row))
                    .map_err(|e| Error::internal(format!("stored uuid {:?}: {e}", text.value(row))))?;
                out.append_value(uuid.as_bytes());
            } else {
                let mut bytes = Vec::with_capacity(text.value(row).len() + 1);
                bytes.push(1);
                bytes.extend_from_slice(text.value(row).as_bytes());
                out.append_value(bytes);
            }
        }
        columns.push(Arc::new(out.finish()));
        schema_fields.push(Field::new(field.name(), DataType::Binary, true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns).map_err(|e| Error::internal(e.to_string()))
}

/// `portal` with its `uuid`, `json` and `jsonb` parameters (by the
/// client's declared type, else by `inferred`) in the text format and
/// undeclared, which arrow-pg decodes into text; `None` when it has none.
pub fn text_parameters<S: Clone>(portal: &Portal<S>, inferred: &[Option<Type>]) -> Result<Option<Portal<S>>, Error> {
    let kind = |i: usize| {
        let declared = portal.statement.parameter_types.get(i).cloned().flatten();
        declared
            .filter(|t| [Type::UUID, Type::JSON, Type::JSONB].contains(t))
            .or_else(|| inferred.get(i).cloned().flatten())
    };
    let rewrite: Vec<usize> = (0..portal.parameters.len()).filter(|i| kind(*i).is_some()).collect();
    if rewrite.is_empty() {
        return Ok(None);
    }
    // arrow-pg decodes a parameter declared as one of these types only
    // into a string it cannot make of it: the declaration goes, the text
    // form stays.
    let mut declared = portal.statement.parameter_types.clone();
    for i in &rewrite {
        if let Some(t) = declared.get_mut(*i) {
            *t = None;
        }
    }
    let mut parameters = portal.parameters.clone();
    let mut codes: Vec<i16> = (0..parameters.len())
        .map(|i| i16::from(portal.parameter_format.is_binary(i)))
        .collect();
    for i in rewrite {
        let binary = codes[i] == 1;
        codes[i] = 0;
        let Some(bytes) = parameters[i].as_ref().filter(|_| binary) else {
            continue;
        };
        let text = if kind(i) == Some(Type::UUID) {
            uuid::Uuid::from_slice(bytes)
                .map_err(|_| {
                    slicedb_common::err!(
                        InvalidBinaryRepresentation,
                        "incorrect binary data format in parameter ${}",
                        i + 1
                    )
                })?
                .hyphenated()
                .to_string()
        } else {
            // jsonb: a version byte (1), then the text; json: the text.
            let body = match (kind(i), bytes.first()) {
                (Some(Type::JSONB), Some(1)) => &bytes[1..],
                _ => &bytes[..],
            };
            String::from_utf8(body.to_vec()).map_err(|_| {
                slicedb_common::err!(
                    InvalidBinaryRepresentation,
                    "incorrect binary data format in parameter ${}",
                    i + 1
                )
            })?
        };
        parameters[i] = Some(bytes::Bytes::from(text));
    }
    let result_codes = match &portal.result_column_format {
        Format::UnifiedText => Vec::new(),
        Format::UnifiedBinary => vec![1],
        Format::Individual(codes) => codes.clone(),
    };
    let bind =
        pgwire::messages::extendedquery::Bind::new(Some(portal.name.clone()), None, codes, parameters, result_codes);
    let statement = pgwire::api::stmt::StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        declared,
    );
    Portal::try_new(&bind, Arc::new(statement))
        .map(Some)
        .map_err(|e| Error::internal(e.to_string()))
}
