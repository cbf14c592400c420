//! Types stored as text: `uuid`, `json` and `jsonb`.
//!
//! Their values travel and are stored as Arrow `Utf8` / [`Datum::Text`],
//! always in the canonical form this module gives them when a value is
//! written, so that equal values are equal strings (and hash to the same
//! bucket) whatever the input spelled:
//!
//! - `uuid`: lower-case hex in the 8-4-4-4-12 form (PostgreSQL also accepts
//!   upper case, braces and no hyphens on input);
//! - `json`: the input text, checked to be JSON;
//! - `jsonb`: PostgreSQL's output form: object keys unique (the last wins)
//!   and ordered shorter first, then bytewise; `", "` between elements and
//!   `": "` after a key.
//!
//! Which of them a `Utf8` column holds is told by the Arrow field's
//! metadata ([`PG_TYPE_KEY`]), which the front end reads to report the
//! PostgreSQL type to clients.
//!
//! [`Datum::Text`]: crate::Datum::Text

use serde_json::Value;

use crate::{err, Result};

/// Arrow field metadata naming the PostgreSQL type of a `Utf8` column.
pub const PG_TYPE_KEY: &str = "slicedb.pg_type";

/// `text` in canonical `uuid` form, or 22P02.
pub fn canonical_uuid(text: &str) -> Result<String> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            err!(
                InvalidTextRepresentation,
                "invalid input syntax for type uuid: \"{text}\""
            )
        })
}

/// A new random (version 4) `uuid`.
pub fn random_uuid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

fn parse(text: &str, type_name: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        err!(
            InvalidTextRepresentation,
            "invalid input syntax for type {type_name}: {e}"
        )
    })
}

/// `text`, checked to be `json`, or 22P02.
pub fn canonical_json(text: &str) -> Result<String> {
    parse(text, "json")?;
    Ok(text.to_string())
}

/// `text` in canonical `jsonb` form, or 22P02.
pub fn canonical_jsonb(text: &str) -> Result<String> {
    Ok(jsonb_text(&parse(text, "json")?))
}

/// A JSON value as `jsonb` prints it.
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_jsonb(&map[key], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Parses stored `json` or `jsonb` text (already checked when written).
pub fn parse_stored(text: &str) -> Result<Value> {
    parse(text, "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_lower_case_and_hyphenated() {
        let want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for input in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert_eq!(canonical_uuid(input).unwrap(), want);
        }
        assert_eq!(
            canonical_uuid("xyz").unwrap_err().state,
            crate::SqlState::InvalidTextRepresentation
        );
    }

    #[test]
    fn jsonb_prints_as_postgresql_does() {
        assert_eq!(
            canonical_jsonb(r#"{"bb":1,"a":[1,2,{"z":null,"y":true}],"a":"last"}"#).unwrap(),
            r#"{"a": "last", "bb": 1}"#
        );
        assert_eq!(
            canonical_jsonb(r#"[1, "x", {"k": 2.5}]"#).unwrap(),
            r#"[1, "x", {"k": 2.5}]"#
        );
        assert!(canonical_jsonb("{").is_err());
        assert_eq!(canonical_json(r#"{"b":1, "a":2}"#).unwrap(), r#"{"b":1, "a":2}"#);
    }
}
