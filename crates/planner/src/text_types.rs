//! SQL over the types stored as text (`uuid`, `json`, `jsonb`; see
//! `slicedb_common::text_types`): the cast targets, `gen_random_uuid()`,
//! and jsonb's operators.
//!
//! - [`TextTypePlanner`] lets `x::uuid`, `x::json` and `x::jsonb` plan, as
//!   casts to text (a value is checked and put in canonical form when it
//!   is written to a column of the type), and hands every other type to
//!   datafusion-pg-catalog's planner of PostgreSQL's oid types.
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
        if text {
            return Ok(Some(Arc::new(Field::new("", DataType::Utf8, true))));
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

fn typed_text(name: &str, pg_type: &str) -> FieldRef {
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
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
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

/// `gen_random_uuid()`, to register in the session context.
pub fn functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(JsonFunction::new(Kind::RandomUuid))]
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
