//! jsonb's functions and the operators that build new documents.
//!
//! - `a || b` of two `jsonb` values (when either side is `jsonb`, as
//!   PostgreSQL resolves the operator): objects merge (the right side's
//!   members win), arrays concatenate, anything else is wrapped as a
//!   one-element array first.
//! - `a - 'key'` removes a member of an object, or the string elements of
//!   an array equal to it; `a - n` removes the `n`th element of an array
//!   (from the end when negative).
//! - `to_json(x)`, `to_jsonb(x)`: a value as JSON, as `json_build_array`
//!   makes its elements (`crate::text_types`).
//! - `jsonb_typeof(j)`, `jsonb_array_length(j)` (`22023` for a non-array),
//!   `jsonb_set(j, path, new [, create_missing])`.
//! - `jsonb_array_elements(j)`, `jsonb_array_elements_text(j)` and
//!   `jsonb_object_keys(j)` (and their `json_` names): set-returning in
//!   PostgreSQL, here functions returning a list, which a select list
//!   unnests into rows (the coordinator's `names::unnest_set_returning`);
//!   an object's keys come in `jsonb`'s order (shorter first). `22023` for
//!   a document of the wrong kind.
//!
//! Errors are PostgreSQL's (`22023` "cannot delete from scalar", …).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int32Builder, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::planner::RawBinaryExpr;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use serde_json::Value;
use slicedb_common::err;
use slicedb_common::text_types::{self, PG_TYPE_KEY};

use crate::text_types::{json_text, json_value, typed_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Concat,
    Delete,
    ToJson,
    ToJsonb,
    TypeOf,
    ArrayLength,
    Set,
    ArrayElements,
    ArrayElementsText,
    ObjectKeys,
}

/// The set-returning functions of this module, by every name they have.
pub const SET_RETURNING: &[&str] = &[
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_object_keys",
    "json_array_elements",
    "json_array_elements_text",
    "json_object_keys",
];

/// One of the functions of the module comment.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonbFunction {
    kind: Kind,
    signature: Signature,
}

impl JsonbFunction {
    fn udf(kind: Kind) -> ScalarUDF {
        let signature = match kind {
            Kind::ToJson | Kind::ToJsonb | Kind::TypeOf | Kind::ArrayLength => Signature::any(1, Volatility::Stable),
            Kind::ArrayElements | Kind::ArrayElementsText | Kind::ObjectKeys => {
                Signature::any(1, Volatility::Immutable)
            }
            Kind::Concat | Kind::Delete => Signature::any(2, Volatility::Immutable),
            Kind::Set => Signature::variadic_any(Volatility::Immutable),
        };
        ScalarUDF::new_from_impl(JsonbFunction { kind, signature })
    }
}

/// The functions to register (the operators are planned by
/// [`plan_operator`]).
pub fn functions() -> Vec<ScalarUDF> {
    [
        Kind::ToJson,
        Kind::ToJsonb,
        Kind::TypeOf,
        Kind::ArrayLength,
        Kind::Set,
        Kind::ArrayElements,
        Kind::ArrayElementsText,
        Kind::ObjectKeys,
    ]
    .into_iter()
    .map(|k| {
        let f = JsonbFunction::udf(k);
        match k {
            Kind::ArrayElements => f.with_aliases(["json_array_elements"]),
            Kind::ArrayElementsText => f.with_aliases(["json_array_elements_text"]),
            Kind::ObjectKeys => f.with_aliases(["json_object_keys"]),
            _ => f,
        }
    })
    .collect()
}

fn is_jsonb(e: &Expr, schema: &DFSchema) -> DfResult<bool> {
    let (_, field) = e.to_field(schema)?;
    Ok(field.metadata().get(PG_TYPE_KEY).map(String::as_str) == Some("jsonb"))
}

/// `a || b` with a `jsonb` side and `a - b` with a `jsonb` left side, as
/// calls of this module's functions; `None` for any other operator.
pub fn plan_operator(expr: &RawBinaryExpr, schema: &DFSchema) -> DfResult<Option<Expr>> {
    let kind = match expr.op {
        BinaryOperator::StringConcat if is_jsonb(&expr.left, schema)? || is_jsonb(&expr.right, schema)? => Kind::Concat,
        BinaryOperator::Minus if is_jsonb(&expr.left, schema)? => Kind::Delete,
        _ => return Ok(None),
    };
    Ok(Some(
        JsonbFunction::udf(kind).call(vec![expr.left.clone(), expr.right.clone()]),
    ))
}

fn invalid(msg: &str) -> datafusion::error::DataFusionError {
    err!(InvalidParameterValue, "{msg}").into_datafusion()
}

fn parse(text: &str) -> DfResult<Value> {
    text_types::parse_stored(text).map_err(|e| e.into_datafusion())
}

/// `a || b`.
fn concat(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            a.extend(b);
            Value::Object(a)
        }
        (Value::Array(mut a), Value::Array(b)) => {
            a.extend(b);
            Value::Array(a)
        }
        (Value::Array(mut a), b) => {
            a.push(b);
            Value::Array(a)
        }
        (a, Value::Array(b)) => Value::Array(std::iter::once(a).chain(b).collect()),
        (a, b) => Value::Array(vec![a, b]),
    }
}

/// `a - key` (text) or `a - n` (an element position).
fn delete(a: Value, key: &ScalarValue) -> DfResult<Value> {
    let position = match key {
        ScalarValue::Int8(Some(n)) => Some(*n as i64),
        ScalarValue::Int16(Some(n)) => Some(*n as i64),
        ScalarValue::Int32(Some(n)) => Some(*n as i64),
        ScalarValue::Int64(Some(n)) => Some(*n),
        _ => None,
    };
    match (a, position) {
        (Value::Array(mut items), Some(n)) => {
            let at = if n < 0 { items.len() as i64 + n } else { n };
            if let Ok(at) = usize::try_from(at) {
                if at < items.len() {
                    items.remove(at);
                }
            }
            Ok(Value::Array(items))
        }
        (Value::Object(_), Some(_)) => Err(invalid("cannot delete from object using integer index")),
        (Value::Object(mut o), None) => {
            o.remove(&key.to_string());
            Ok(Value::Object(o))
        }
        (Value::Array(items), None) => {
            let key = key.to_string();
            Ok(Value::Array(
                items.into_iter().filter(|v| v.as_str() != Some(&key)).collect(),
            ))
        }
        _ => Err(invalid("cannot delete from scalar")),
    }
}

/// The steps of a path literal `'{a,0,b}'`.
fn path_steps(path: &str) -> DfResult<Vec<String>> {
    let inner = path
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .ok_or_else(|| err!(InvalidTextRepresentation, "malformed array literal: \"{path}\"").into_datafusion())?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `jsonb_set(doc, path, new, create_missing)`: `new` at `path`; a missing
/// last step is created when `create_missing` (an object member, or an
/// element before the first or after the last); anything else missing
/// leaves `doc` as it is.
fn set(doc: &mut Value, steps: &[String], new: Value, create_missing: bool) -> DfResult<()> {
    let Some((step, rest)) = steps.split_first() else {
        *doc = new;
        return Ok(());
    };
    match doc {
        Value::Object(o) => match (o.get_mut(step), rest.is_empty()) {
            (Some(v), _) => set(v, rest, new, create_missing)?,
            (None, true) if create_missing => {
                o.insert(step.clone(), new);
            }
            _ => {}
        },
        Value::Array(items) => {
            let n: i64 = step.parse().map_err(|_| {
                err!(
                    InvalidTextRepresentation,
                    "path element at position 1 is not an integer: \"{step}\""
                )
                .into_datafusion()
            })?;
            let at = if n < 0 { items.len() as i64 + n } else { n };
            match usize::try_from(at).ok().filter(|a| *a < items.len()) {
                Some(at) => set(&mut items[at], rest, new, create_missing)?,
                None if rest.is_empty() && create_missing => {
                    if at < 0 {
                        items.insert(0, new);
                    } else {
                        items.push(new);
                    }
                }
                None => {}
            }
        }
        _ => return Err(invalid("cannot set path in scalar")),
    }
    Ok(())
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        _ => "a scalar",
    }
}

/// The rows a set-returning function of this module gives for `doc`: the
/// elements of an array (as `jsonb`, or as text: a string unquoted, `null`
/// as NULL), or the keys of an object in `jsonb`'s order.
fn set_items(kind: Kind, doc: Value) -> DfResult<Vec<Option<String>>> {
    match (kind, doc) {
        (Kind::ArrayElements, Value::Array(items)) => {
            Ok(items.iter().map(|v| Some(text_types::jsonb_text(v))).collect())
        }
        (Kind::ArrayElementsText, Value::Array(items)) => Ok(items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(text_types::jsonb_text(&other)),
            })
            .collect()),
        (Kind::ObjectKeys, Value::Object(map)) => {
            let mut keys: Vec<String> = map.into_iter().map(|(k, _)| k).collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            Ok(keys.into_iter().map(Some).collect())
        }
        (Kind::ObjectKeys, other) => Err(invalid(&format!(
            "cannot call jsonb_object_keys on {}",
            kind_name(&other)
        ))),
        (_, other) => Err(invalid(&format!("cannot extract elements from {}", kind_name(&other)))),
    }
}

impl ScalarUDFImpl for JsonbFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Concat => "slicedb_jsonb_concat",
            Kind::Delete => "slicedb_jsonb_delete",
            Kind::ToJson => "to_json",
            Kind::ToJsonb => "to_jsonb",
            Kind::TypeOf => "jsonb_typeof",
            Kind::ArrayLength => "jsonb_array_length",
            Kind::Set => "jsonb_set",
            Kind::ArrayElements => "jsonb_array_elements",
            Kind::ArrayElementsText => "jsonb_array_elements_text",
            Kind::ObjectKeys => "jsonb_object_keys",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Err(datafusion::error::DataFusionError::Internal(
            "return_field_from_args is used".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if self.kind == Kind::Set && !(3..=4).contains(&args.arg_fields.len()) {
            return Err(err!(UndefinedFunction, "jsonb_set takes 3 or 4 arguments").into_datafusion());
        }
        Ok(match self.kind {
            Kind::ToJson => typed_text(self.name(), "json"),
            Kind::TypeOf => Arc::new(Field::new(self.name(), DataType::Utf8, true)),
            Kind::ArrayLength => Arc::new(Field::new(self.name(), DataType::Int32, true)),
            Kind::ArrayElements | Kind::ArrayElementsText | Kind::ObjectKeys => Arc::new(Field::new(
                self.name(),
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            )),
            _ => typed_text(self.name(), "jsonb"),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, n, scalar) = crate::udf::arguments(&args)?;
        let fields = &args.arg_fields;
        // Argument `i` of `row` as a document (NULL: None).
        let doc = |i: usize, row: usize| -> DfResult<Option<Value>> {
            let a = &arrays[i];
            if a.is_null(row) {
                return Ok(None);
            }
            match fields[i].metadata().get(PG_TYPE_KEY).map(String::as_str) {
                Some("json" | "jsonb") => parse(a.as_string::<i32>().value(row)).map(Some),
                // An untyped literal ('{"a":1}') is read as jsonb.
                _ if a.data_type() == &DataType::Utf8 => parse(a.as_string::<i32>().value(row)).map(Some),
                _ => json_value(a, &fields[i], row).map(Some),
            }
        };
        let array: ArrayRef = match self.kind {
            Kind::ArrayLength => {
                let mut out = Int32Builder::new();
                for row in 0..n {
                    match doc(0, row)? {
                        Some(Value::Array(items)) => out.append_value(items.len() as i32),
                        Some(_) => return Err(invalid("cannot get array length of a non-array")),
                        None => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            Kind::ArrayElements | Kind::ArrayElementsText | Kind::ObjectKeys => {
                let mut out = ListBuilder::new(StringBuilder::new());
                for row in 0..n {
                    match doc(0, row)? {
                        Some(v) => {
                            for item in set_items(self.kind, v)? {
                                out.values().append_option(item);
                            }
                            out.append(true);
                        }
                        None => out.append(false),
                    }
                }
                Arc::new(out.finish())
            }
            _ => {
                let mut out = StringBuilder::new();
                for row in 0..n {
                    let text = match self.kind {
                        Kind::ToJson | Kind::ToJsonb if arrays[0].is_null(row) => None,
                        Kind::ToJson => Some(json_text(&arrays[0], &fields[0], row)?),
                        Kind::ToJsonb => {
                            let text = json_text(&arrays[0], &fields[0], row)?;
                            Some(text_types::jsonb_text(&parse(&text)?))
                        }
                        Kind::TypeOf => doc(0, row)?.map(|v| {
                            match v {
                                Value::Object(_) => "object",
                                Value::Array(_) => "array",
                                Value::String(_) => "string",
                                Value::Number(_) => "number",
                                Value::Bool(_) => "boolean",
                                Value::Null => "null",
                            }
                            .to_string()
                        }),
                        Kind::Concat => match (doc(0, row)?, doc(1, row)?) {
                            (Some(a), Some(b)) => Some(text_types::jsonb_text(&concat(a, b))),
                            _ => None,
                        },
                        Kind::Delete => match (doc(0, row)?, ScalarValue::try_from_array(&arrays[1], row)?) {
                            (Some(a), key) if !key.is_null() => Some(text_types::jsonb_text(&delete(a, &key)?)),
                            _ => None,
                        },
                        Kind::Set => {
                            let path = ScalarValue::try_from_array(&arrays[1], row)?;
                            let create = match arrays.get(3) {
                                Some(c) => ScalarValue::try_from_array(c, row)? != ScalarValue::Boolean(Some(false)),
                                None => true,
                            };
                            match (doc(0, row)?, path.is_null(), doc(2, row)?) {
                                (Some(mut target), false, Some(new)) => {
                                    set(&mut target, &path_steps(&path.to_string())?, new, create)?;
                                    Some(text_types::jsonb_text(&target))
                                }
                                _ => None,
                            }
                        }
                        Kind::ArrayLength | Kind::ArrayElements | Kind::ArrayElementsText | Kind::ObjectKeys => {
                            unreachable!("handled above")
                        }
                    };
                    out.append_option(text);
                }
                Arc::new(out.finish())
            }
        };
        crate::udf::result(array, scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenation_and_deletion_follow_postgresql() {
        let json = |s: &str| parse(s).unwrap();
        let cases = [
            (r#"{"a":1,"b":2}"#, r#"{"b":3,"c":4}"#, r#"{"a":1,"b":3,"c":4}"#),
            ("[1,2]", "[3]", "[1,2,3]"),
            ("[1]", r#"{"a":1}"#, r#"[1,{"a":1}]"#),
            (r#"{"a":1}"#, "[1]", r#"[{"a":1},1]"#),
            ("1", "2", "[1,2]"),
        ];
        for (a, b, want) in cases {
            assert_eq!(concat(json(a), json(b)), json(want), "{a} || {b}");
        }
        let key = ScalarValue::Utf8(Some("a".into()));
        assert_eq!(delete(json(r#"{"a":1,"b":2}"#), &key).unwrap(), json(r#"{"b":2}"#));
        assert_eq!(delete(json(r#"["a","b","a"]"#), &key).unwrap(), json(r#"["b"]"#));
        assert_eq!(
            delete(json("[1,2,3]"), &ScalarValue::Int32(Some(-1))).unwrap(),
            json("[1,2]")
        );
        assert!(delete(json("1"), &key).is_err());
        assert!(delete(json(r#"{"a":1}"#), &ScalarValue::Int64(Some(0))).is_err());
    }

    #[test]
    fn set_replaces_or_creates_the_last_step() {
        let json = |s: &str| parse(s).unwrap();
        let mut doc = json(r#"{"a":[1,{"b":2}]}"#);
        set(&mut doc, &path_steps("{a,1,b}").unwrap(), json("3"), true).unwrap();
        assert_eq!(doc, json(r#"{"a":[1,{"b":3}]}"#));
        set(&mut doc, &path_steps("{a,5}").unwrap(), json("9"), true).unwrap();
        assert_eq!(doc, json(r#"{"a":[1,{"b":3},9]}"#));
        set(&mut doc, &path_steps("{x}").unwrap(), json("0"), false).unwrap();
        assert_eq!(doc, json(r#"{"a":[1,{"b":3},9]}"#));
        set(&mut doc, &path_steps("{x,y}").unwrap(), json("0"), true).unwrap();
        assert_eq!(doc, json(r#"{"a":[1,{"b":3},9]}"#), "only the last step is created");
    }
}
