//! `current_setting(name [, missing_ok])` and `set_config(name, value,
//! is_local)`: the function forms of `SHOW` and `SET`.
//!
//! A statement's functions cannot reach its session, so both work through
//! the statement's [`SessionValues`]: `current_setting` reads the snapshot
//! of the settings taken as the statement started, and `set_config` queues
//! the change, which the session takes on before its next statement (or
//! before it reports changed settings to the client), as `SET` would. A
//! name slicedb does not know is 42704, as in PostgreSQL (asyncpg, for one,
//! asks for `jit` and takes 42704 to mean "no JIT here").
//!
//! ```sql
//! SELECT current_setting('TimeZone');             -- UTC
//! SELECT current_setting('no.such', true);        -- NULL
//! SELECT set_config('application_name', 'x', false);
//! ```

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use slicedb_common::err;

use crate::session::SessionValues;

/// `current_setting(name [, missing_ok])`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(CurrentSetting {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        })
    }
}

/// `set_config(name, value, is_local)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SetConfig {
    signature: Signature,
}

impl SetConfig {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SetConfig {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
        })
    }
}

/// The statement's session values (absent outside a session: the
/// coordinator's own queries).
fn values(args: &ScalarFunctionArgs) -> Option<SessionValues> {
    args.config_options.extensions.get::<SessionValues>().cloned()
}

/// A setting's value, its name matched without regard to case.
fn lookup<'a>(settings: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn unrecognized(name: &str) -> DataFusionError {
    err!(UndefinedObject, "unrecognized configuration parameter \"{name}\"").into_datafusion()
}

/// The arguments as arrays of `rows` values.
fn arrays(args: &ScalarFunctionArgs) -> DfResult<Vec<ArrayRef>> {
    args.args
        .iter()
        .map(|a| a.to_array(args.number_rows))
        .collect::<DfResult<Vec<_>>>()
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let settings = values(&args).map(|v| v.settings).unwrap_or_default();
        let arrays = arrays(&args)?;
        let names = arrays[0].as_string::<i32>();
        let missing_ok: Option<&BooleanArray> = arrays.get(1).map(|a| a.as_boolean());
        let mut out = StringBuilder::new();
        for i in 0..names.len() {
            if names.is_null(i) {
                out.append_null();
                continue;
            }
            let name = names.value(i);
            match lookup(&settings, name) {
                Some(v) => out.append_value(v),
                None if missing_ok.is_some_and(|m| m.is_valid(i) && m.value(i)) => out.append_null(),
                None => return Err(unrecognized(name)),
            }
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(out.finish())))
    }
}

impl ScalarUDFImpl for SetConfig {
    fn name(&self) -> &str {
        "set_config"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(values) = values(&args) else {
            return Err(err!(FeatureNotSupported, "set_config outside a session").into_datafusion());
        };
        let arrays = arrays(&args)?;
        let (names, settings, local) = (
            arrays[0].as_string::<i32>(),
            arrays[1].as_string::<i32>(),
            arrays[2].as_boolean(),
        );
        let mut out = StringBuilder::new();
        for i in 0..names.len() {
            if names.is_null(i) {
                return Err(err!(NullValueNotAllowed, "SET requires parameter name").into_datafusion());
            }
            if local.is_valid(i) && local.value(i) {
                return Err(err!(
                    FeatureNotSupported,
                    "set_config with is_local = true (SET LOCAL) is not supported"
                )
                .into_datafusion());
            }
            let name = names.value(i);
            // Custom settings (`app.user_id`) may be made up; others must exist.
            if !name.contains('.') && lookup(&values.settings, name).is_none() {
                return Err(unrecognized(name));
            }
            // PostgreSQL resets a setting given a NULL value.
            let value = match settings.is_null(i) {
                true => crate::session::default_settings()
                    .into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
                    .unwrap_or_default(),
                false => settings.value(i).to_string(),
            };
            values
                .set_configs
                .lock()
                .map_err(|_| DataFusionError::Internal("set_config queue poisoned".into()))?
                .push((name.to_string(), value.clone()));
            out.append_value(value);
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(out.finish())))
    }
}
