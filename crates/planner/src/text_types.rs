//! SQL over the types stored as text (`uuid`, `json`, `jsonb`; see
//! `slicedb_common::text_types`): the cast targets, `gen_random_uuid()`,
//! and jsonb's operators.
//!
//! - `x::float` is `double precision`, `x::float(24)` `real`, as in
//!   PostgreSQL.
//! - In queries and writes, `x::uuid`, `x::json` and `x::jsonb` become
//!   calls that check the value, put it in canonical form and type it
//!   ([`casts_as_functions`]); elsewhere [`TextTypePlanner`] lets them plan
//!   as casts to text (the value is checked when written to a column), and
//!   hands every other type to datafusion-pg-catalog's planner of
//!   PostgreSQL's oid types.
//! - `json_build_object`, `jsonb_build_object`, `json_build_array` and
//!   `jsonb_build_array` ([`functions`]).
//! - [`JsonOperators`] puts a text literal compared with a `uuid` in
//!   canonical form (`id = 'A0EE…'` finds the row), and plans `j -> k`
//!   (member or element, as `jsonb`),
//!   `j ->> k` (the same as text), `j #> path`, `j #>> path`, `a @> b`
//!   (containment) and `j ? k` (key exists) when the left side is text, as
//!   calls of the functions of [`functions`]. `@>` over arrays stays
//!   DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr, TypePlanner};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{BinaryOperator, DataType as SqlDataType};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use serde_json::Value;
use slicedb_common::text_types::{self, PG_TYPE_KEY};
use slicedb_common::{Datum, SqlType};

/// Plans casts to `uuid`, `json` and `jsonb` (see the module comment).
#[derive(Debug, Default)]
pub struct TextTypePlanner {
    oid_types: PgOidTypePlanner,
}

impl TypePlanner for TextTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlDataType) -> DfResult<Option<FieldRef>> {
        let text = match sql_type {
            SqlDataType::Uuid | SqlDataType::JSON | SqlDataType::JSONB => true,
            SqlDataType::Custom(name, args) if args.is_empty() => {
                let name = name.to_string().to_ascii_lowercase();
                matches!(name.rsplit('.').next(), Some("uuid" | "json" | "jsonb"))
            }
            _ => false,
        };
        // `character varying`, `character(n)` and `bpchar`, which pg_dump
        // writes in defaults (`'free'::character varying`), are text as
        // `varchar` and `char` are to DataFusion: a cast neither pads nor
        // cuts (a column of the type checks the length when written).
        let character = match sql_type {
            SqlDataType::CharacterVarying(_) | SqlDataType::CharVarying(_) | SqlDataType::Character(_) => true,
            SqlDataType::Custom(name, _) => {
                matches!(name.to_string().to_ascii_lowercase().rsplit('.').next(), Some("bpchar"))
            }
            _ => false,
        };
        if text || character {
            return Ok(Some(Arc::new(Field::new("", DataType::Utf8, true))));
        }
        // `float` and `float(25)`…`float(53)` are `double precision` in
        // PostgreSQL (DataFusion makes every `float` a `real`), as the
        // catalog's column types have them (`SqlType::from_ast`).
        if let SqlDataType::Float(_) = sql_type {
            let t = match SqlType::from_ast(sql_type) {
                Ok(SqlType::Real) => DataType::Float32,
                _ => DataType::Float64,
            };
            return Ok(Some(Arc::new(Field::new("", t, true))));
        }
        self.oid_types.plan_type_field(sql_type)
    }
}

/// Plans jsonb's operators (see the module comment).
#[derive(Debug)]
pub struct JsonOperators;

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        if matches!(
            expr.op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        ) {
            return Ok(PlannerResult::Original(canonical_uuid_literals(expr, schema)?));
        }
        if let Some(planned) = crate::json_functions::plan_operator(&expr, schema)? {
            return Ok(PlannerResult::Planned(planned));
        }
        let kind = match expr.op {
            BinaryOperator::Arrow => Kind::Get,
            BinaryOperator::LongArrow => Kind::GetText,
            BinaryOperator::HashArrow => Kind::Path,
            BinaryOperator::HashLongArrow => Kind::PathText,
            BinaryOperator::AtArrow => Kind::Contains,
            BinaryOperator::Question => Kind::Exists,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        if !is_text(&expr.left.get_type(schema)?) {
            return Ok(PlannerResult::Original(expr));
        }
        let f = ScalarUDF::new_from_impl(JsonFunction::new(kind));
        Ok(PlannerResult::Planned(f.call(vec![expr.left, expr.right])))
    }
}

/// `uuid_column = 'A0EE…'`: the text literal in canonical form, so that it
/// compares as the uuid it spells (22P02 if it spells none).
fn canonical_uuid_literals(mut expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<RawBinaryExpr> {
    let is_uuid = |e: &Expr| -> DfResult<bool> {
        let (_, field) = e.to_field(schema)?;
        Ok(field.metadata().get(PG_TYPE_KEY).map(String::as_str) == Some("uuid"))
    };
    let canonical = |e: &mut Expr| -> DfResult<()> {
        if let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = e {
            *text = text_types::canonical_uuid(text).map_err(|e| e.into_datafusion())?;
        }
        Ok(())
    };
    if is_uuid(&expr.left)? {
        canonical(&mut expr.right)?;
    } else if is_uuid(&expr.right)? {
        canonical(&mut expr.left)?;
    }
    Ok(expr)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Get,
    GetText,
    Path,
    PathText,
    Contains,
    Exists,
    RandomUuid,
}

/// One of the functions behind the operators, or `gen_random_uuid()`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    kind: Kind,
    signature: Signature,
    aliases: Vec<String>,
}

impl JsonFunction {
    fn new(kind: Kind) -> Self {
        let signature = match kind {
            Kind::RandomUuid => Signature::nullary(Volatility::Volatile),
            _ => Signature::any(2, Volatility::Immutable),
        };
        // uuid-ossp's name for the same function.
        let aliases = match kind {
            Kind::RandomUuid => vec!["uuid_generate_v4".to_string()],
            _ => Vec::new(),
        };
        JsonFunction {
            kind,
            signature,
            aliases,
        }
    }
}

pub(crate) fn typed_text(name: &str, pg_type: &str) -> FieldRef {
    Arc::new(
        Field::new(name, DataType::Utf8, true).with_metadata([(PG_TYPE_KEY.to_string(), pg_type.to_string())].into()),
    )
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Get => "slicedb_jsonb_get",
            Kind::GetText => "slicedb_jsonb_get_text",
            Kind::Path => "slicedb_jsonb_path",
            Kind::PathText => "slicedb_jsonb_path_text",
            Kind::Contains => "slicedb_jsonb_contains",
            Kind::Exists => "slicedb_jsonb_exists",
            Kind::RandomUuid => "gen_random_uuid",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal("return_field_from_args is used".into()))
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(match self.kind {
            Kind::Get | Kind::Path => typed_text(self.name(), "jsonb"),
            Kind::RandomUuid => typed_text(self.name(), "uuid"),
            Kind::GetText | Kind::PathText => Arc::new(Field::new(self.name(), DataType::Utf8, true)),
            Kind::Contains | Kind::Exists => Arc::new(Field::new(self.name(), DataType::Boolean, true)),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        if self.kind == Kind::RandomUuid {
            let mut out = StringBuilder::new();
            for _ in 0..rows.max(1) {
                out.append_value(text_types::random_uuid());
            }
            let array: ArrayRef = Arc::new(out.finish());
            return Ok(if rows == 0 {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            });
        }
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if scalar { 1 } else { rows };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let left = text_values(&arrays[0])?;
        let array: ArrayRef = match self.kind {
            Kind::Contains | Kind::Exists => {
                let right = text_values(&arrays[1])?;
                let mut out = BooleanBuilder::new();
                for (l, r) in left.iter().zip(&right) {
                    match (l, r) {
                        (Some(l), Some(r)) => {
                            let l = stored(l)?;
                            out.append_value(if self.kind == Kind::Contains {
                                contains(&l, &stored(r)?)
                            } else {
                                exists(&l, r)
                            });
                        }
                        _ => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            _ => {
                let keys = Keys::of(&arrays[1])?;
                let mut out = StringBuilder::new();
                for (row, left) in left.iter().enumerate() {
                    let value = match left {
                        Some(l) => {
                            let doc = stored(l)?;
                            let found = match self.kind {
                                Kind::Get | Kind::GetText => keys.step(&doc, row),
                                _ => path(&doc, keys.text[row].as_deref())?,
                            };
                            found.and_then(|v| match self.kind {
                                Kind::GetText | Kind::PathText => as_text(v),
                                _ => Some(text_types::jsonb_text(v)),
                            })
                        }
                        None => None,
                    };
                    out.append_option(value);
                }
                Arc::new(out.finish())
            }
        };
        crate::udf::result(array, scalar)
    }
}

fn text_values(a: &ArrayRef) -> DfResult<Vec<Option<String>>> {
    let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect())
}

fn stored(text: &str) -> DfResult<Value> {
    text_types::parse_stored(text).map_err(|e| e.into_datafusion())
}

/// The right side of `->` or `#>`, read once for all rows: member names
/// (or paths) as text, or element positions.
struct Keys {
    text: Vec<Option<String>>,
    positions: Option<Vec<Option<i64>>>,
}

impl Keys {
    fn of(a: &ArrayRef) -> DfResult<Keys> {
        let positions = if is_text(a.data_type()) {
            None
        } else {
            let i = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
            Some(
                i.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .iter()
                    .collect(),
            )
        };
        Ok(Keys {
            text: text_values(a)?,
            positions,
        })
    }

    /// `doc -> key`: a member by name, or an element by position (from the
    /// end when negative).
    fn step<'a>(&self, doc: &'a Value, row: usize) -> Option<&'a Value> {
        match &self.positions {
            Some(p) => element(doc, p[row]?),
            None => doc.as_object()?.get(self.text[row].as_deref()?),
        }
    }
}

fn element(doc: &Value, i: i64) -> Option<&Value> {
    let items = doc.as_array()?;
    let i = if i < 0 { items.len() as i64 + i } else { i };
    usize::try_from(i).ok().and_then(|i| items.get(i))
}

/// `doc #> '{a,0,b}'`: each step a member name, or an element position.
fn path<'a>(doc: &'a Value, path: Option<&str>) -> DfResult<Option<&'a Value>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let inner = path
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .ok_or_else(|| {
            slicedb_common::err!(InvalidTextRepresentation, "malformed array literal: \"{path}\"").into_datafusion()
        })?;
    let mut at = doc;
    for step in inner
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
    {
        let next = match at {
            Value::Object(o) => o.get(step),
            Value::Array(_) => step.parse::<i64>().ok().and_then(|i| element(at, i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// A value as `->>` gives it: a string without quotes, NULL for null.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(text_types::jsonb_text(other)),
    }
}

/// `a @> b`, as PostgreSQL defines jsonb containment: at the top level
/// (only), an array also contains a scalar that is one of its elements.
fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(items), b) if !b.is_array() && !b.is_object() => items.iter().any(|v| same(v, b)),
        _ => contained(a, b),
    }
}

fn contained(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => b.iter().all(|(k, bv)| a.get(k).is_some_and(|av| contained(av, bv))),
        (Value::Array(a), Value::Array(b)) => b.iter().all(|bv| {
            a.iter().any(|av| {
                if bv.is_array() || bv.is_object() {
                    contained(av, bv)
                } else {
                    same(av, bv)
                }
            })
        }),
        (a, b) => same(a, b),
    }
}

/// Equal scalars (numbers by value: `1` is `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (a, b) => a == b,
    }
}

/// `a ? key`: a member named `key`, an element that is the string `key`,
/// or the string `key` itself.
fn exists(a: &Value, key: &str) -> bool {
    match a {
        Value::Object(o) => o.contains_key(key),
        Value::Array(items) => items.iter().any(|v| v.as_str() == Some(key)),
        Value::String(s) => s == key,
        _ => false,
    }
}

/// `json_build_object`, `jsonb_build_object`, `json_build_array`,
/// `jsonb_build_array`: JSON made of their arguments (text is a string,
/// unless it is a `json` or `jsonb` value).
#[derive(Debug, PartialEq, Eq, Hash)]
struct BuildJson {
    jsonb: bool,
    object: bool,
    signature: Signature,
}

impl BuildJson {
    fn new(jsonb: bool, object: bool) -> Self {
        BuildJson {
            jsonb,
            object,
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

/// Row `row` of `array` (of `field`) as a JSON value.
pub(crate) fn json_value(array: &ArrayRef, field: &Field, row: usize) -> DfResult<Value> {
    let value = ScalarValue::try_from_array(array, row)?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    Ok(match value {
        ScalarValue::Boolean(Some(b)) => Value::Bool(b),
        ScalarValue::Int8(Some(v)) => v.into(),
        ScalarValue::Int16(Some(v)) => v.into(),
        ScalarValue::Int32(Some(v)) => v.into(),
        ScalarValue::Int64(Some(v)) => v.into(),
        ScalarValue::UInt8(Some(v)) => v.into(),
        ScalarValue::UInt16(Some(v)) => v.into(),
        ScalarValue::UInt32(Some(v)) => v.into(),
        ScalarValue::UInt64(Some(v)) => v.into(),
        // With PostgreSQL's digits (`2`, not `2.0`); NaN and infinities as strings.
        ScalarValue::Float32(Some(v)) => float_json(slicedb_common::datum::float4_text(v)),
        ScalarValue::Float64(Some(v)) => float_json(slicedb_common::datum::float8_text(v)),
        // ISO 8601, as PostgreSQL's to_json prints them.
        ScalarValue::Date32(Some(d)) => Value::String(Datum::Date(d).pg_text(SqlType::Date).unwrap_or_default()),
        ScalarValue::TimestampSecond(Some(v), tz) => timestamp_json(v.saturating_mul(1_000_000), tz.is_some()),
        ScalarValue::TimestampMillisecond(Some(v), tz) => timestamp_json(v.saturating_mul(1000), tz.is_some()),
        ScalarValue::TimestampMicrosecond(Some(v), tz) => timestamp_json(v, tz.is_some()),
        ScalarValue::TimestampNanosecond(Some(v), tz) => timestamp_json(v.div_euclid(1000), tz.is_some()),
        ScalarValue::Decimal128(..) => {
            serde_json::from_str(&value.to_string()).unwrap_or(Value::String(value.to_string()))
        }
        ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text)) | ScalarValue::Utf8View(Some(text)) => {
            match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
                Some("json" | "jsonb") => stored(&text)?,
                _ => Value::String(text),
            }
        }
        other => Value::String(other.to_string()),
    })
}

/// Row `row` of `array` (of `field`, not NULL) as `to_json` prints it: a
/// `json` or `jsonb` value with its own text, a `numeric` with its digits
/// (`1.50`), anything else as [`json_value`] makes it.
pub(crate) fn json_text(array: &ArrayRef, field: &Field, row: usize) -> DfResult<String> {
    if matches!(
        field.metadata().get(PG_TYPE_KEY).map(String::as_str),
        Some("json" | "jsonb")
    ) {
        if let Some(strings) = array.as_string_opt::<i32>() {
            return Ok(strings.value(row).to_string());
        }
    }
    if matches!(array.data_type(), DataType::Decimal128(..)) {
        return Ok(ScalarValue::try_from_array(array, row)?.to_string());
    }
    Ok(json_value(array, field, row)?.to_string())
}

/// A timestamp of `micros` since the epoch as `to_json` prints it
/// (`2024-01-01T10:00:00`, with `+00:00` for a `timestamptz`).
fn timestamp_json(micros: i64, tz: bool) -> Value {
    let text = Datum::Timestamp(micros).pg_text(SqlType::Timestamp).unwrap_or_default();
    let text = text.replacen(' ', "T", 1);
    Value::String(if tz { text + "+00:00" } else { text })
}

/// A float's PostgreSQL text as a JSON number, or a string for `NaN` and
/// the infinities.
fn float_json(text: String) -> Value {
    serde_json::from_str::<serde_json::Number>(&text).map_or(Value::String(text), Value::Number)
}

impl ScalarUDFImpl for BuildJson {
    fn name(&self) -> &str {
        match (self.jsonb, self.object) {
            (false, true) => "json_build_object",
            (true, true) => "jsonb_build_object",
            (false, false) => "json_build_array",
            (true, false) => "jsonb_build_array",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal("return_field_from_args is used".into()))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if self.object && !args.arg_fields.len().is_multiple_of(2) {
            return Err(
                slicedb_common::err!(InvalidParameterValue, "argument list must have even number of elements")
                    .into_datafusion(),
            );
        }
        Ok(typed_text(self.name(), if self.jsonb { "jsonb" } else { "json" }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, n, scalar) = crate::udf::arguments(&args)?;
        let mut out = StringBuilder::new();
        for row in 0..n {
            let values = arrays
                .iter()
                .zip(&args.arg_fields)
                .map(|(a, f)| json_value(a, f, row))
                .collect::<DfResult<Vec<Value>>>()?;
            // `json` keeps a json or jsonb argument's own text.
            let texts: Vec<String> = arrays
                .iter()
                .zip(&args.arg_fields)
                .zip(&values)
                .map(
                    |((a, f), v)| match (f.metadata().get(PG_TYPE_KEY).map(String::as_str), a.is_null(row)) {
                        (Some("json" | "jsonb"), false) => a.as_string::<i32>().value(row).to_string(),
                        _ => v.to_string(),
                    },
                )
                .collect();
            let text = if self.object {
                let mut pairs = Vec::with_capacity(values.len() / 2);
                for pair in values.chunks(2) {
                    let key = match &pair[0] {
                        Value::Null => {
                            return Err(slicedb_common::err!(
                                InvalidParameterValue,
                                "null value cannot be used as object key"
                            )
                            .into_datafusion())
                        }
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    pairs.push((key, pair[1].clone()));
                }
                if self.jsonb {
                    text_types::jsonb_text(&Value::Object(pairs.into_iter().collect()))
                } else {
                    let items: Vec<String> = pairs
                        .iter()
                        .zip(texts.chunks(2))
                        .map(|((k, _), t)| format!("{} : {}", Value::String(k.clone()), t[1]))
                        .collect();
                    format!("{{{}}}", items.join(", "))
                }
            } else if self.jsonb {
                text_types::jsonb_text(&Value::Array(values))
            } else {
                format!("[{}]", texts.join(", "))
            };
            out.append_value(text);
        }
        let array: ArrayRef = Arc::new(out.finish());
        crate::udf::result(array, scalar)
    }
}

/// The functions casts to `uuid`, `json` and `jsonb` become in queries and
/// writes, with the type each gives.
pub const CASTS: [(&str, &str); 3] = [
    ("slicedb_to_uuid", "uuid"),
    ("slicedb_to_json", "json"),
    ("slicedb_to_jsonb", "jsonb"),
];

/// The type a cast target names, if it is one stored as text.
fn text_type(t: &SqlDataType) -> Option<&'static str> {
    match t {
        SqlDataType::Uuid => Some("uuid"),
        SqlDataType::JSON => Some("json"),
        SqlDataType::JSONB => Some("jsonb"),
        SqlDataType::Custom(name, args) if args.is_empty() => {
            let name = name.to_string().to_ascii_lowercase();
            match name.rsplit('.').next() {
                Some("uuid") => Some("uuid"),
                Some("json") => Some("json"),
                Some("jsonb") => Some("jsonb"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Rewrites the casts to `uuid`, `json` and `jsonb` of a query or a write
/// as calls of [`CASTS`]' functions, which check the value, put it in
/// canonical form and give it its type (a cast to text carries no type).
/// DDL keeps its casts, as written. Returns whether anything changed.
pub fn casts_as_functions(stmt: &mut datafusion::sql::sqlparser::ast::Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{self, Statement};
    if !matches!(
        stmt,
        Statement::Query(_) | Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_)
    ) {
        return false;
    }
    let mut changed = false;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Cast { expr, data_type, .. } = e {
            if let Some(t) = text_type(data_type) {
                let (name, _) = CASTS
                    .iter()
                    .find(|(_, ty)| *ty == t)
                    .expect("every type has its function");
                let arg = std::mem::replace(expr.as_mut(), ast::Expr::Value(ast::Value::Null.with_empty_span()));
                *e = crate::udf::call(name, vec![arg]);
                changed = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// One of [`CASTS`]' functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextCast {
    name: &'static str,
    pg_type: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for TextCast {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal("return_field_from_args is used".into()))
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(typed_text(self.name, self.pg_type))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let n = if scalar { 1 } else { args.number_rows };
        let values = text_values(&args.args[0].to_array(n)?)?;
        let mut out = StringBuilder::new();
        for v in values {
            let canonical = match v {
                None => None,
                Some(text) => Some(
                    match self.pg_type {
                        "uuid" => text_types::canonical_uuid(&text),
                        "json" => text_types::canonical_json(&text),
                        _ => text_types::canonical_jsonb(&text),
                    }
                    .map_err(|e| e.into_datafusion())?,
                ),
            };
            out.append_option(canonical);
        }
        let array: ArrayRef = Arc::new(out.finish());
        crate::udf::result(array, scalar)
    }
}

/// `gen_random_uuid()`, the JSON builders and the casts' functions, to
/// register in the session context.
pub fn functions() -> Vec<ScalarUDF> {
    let mut out = vec![ScalarUDF::new_from_impl(JsonFunction::new(Kind::RandomUuid))];
    for (name, pg_type) in CASTS {
        out.push(ScalarUDF::new_from_impl(TextCast {
            name,
            pg_type,
            signature: Signature::any(1, Volatility::Immutable),
        }));
    }
    for (jsonb, object) in [(false, true), (true, true), (false, false), (true, false)] {
        out.push(ScalarUDF::new_from_impl(BuildJson::new(jsonb, object)));
    }
    out.extend(crate::json_functions::functions());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn containment_follows_postgresql() {
        assert!(contains(
            &json(r#"{"a": 1, "b": {"c": [1, 2]}}"#),
            &json(r#"{"b": {"c": [2]}}"#)
        ));
        assert!(!contains(&json(r#"{"a": 1}"#), &json(r#"{"a": 2}"#)));
        assert!(contains(&json("[1, 2, [3]]"), &json("[[3], 1]")));
        assert!(contains(&json("[1, 2]"), &json("1")));
        assert!(!contains(&json(r#"{"a": [1]}"#), &json(r#"{"a": 1}"#)));
    }

    #[test]
    fn paths_walk_members_and_elements() {
        let doc = json(r#"{"a": [10, {"b": "x"}]}"#);
        assert_eq!(path(&doc, Some("{a,1,b}")).unwrap(), Some(&json(r#""x""#)));
        assert_eq!(path(&doc, Some("{a,-2}")).unwrap(), Some(&json("10")));
        assert_eq!(path(&doc, Some("{z}")).unwrap(), None);
    }

    #[test]
    fn keys_exist_in_objects_and_string_arrays() {
        assert!(exists(&json(r#"{"a": null}"#), "a"));
        assert!(exists(&json(r#"["a", "b"]"#), "b"));
        assert!(!exists(&json("[1]"), "1"));
    }
}
