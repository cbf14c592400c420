//! `format_type(oid, typmod)` for arrays whose element has a modifier.
//!
//! datafusion-pg-catalog's `format_type` prints `numeric(6,2)` for oid 1700
//! and a modifier, but an array of it (oid 1231) as `numeric[]`;
//! PostgreSQL prints `numeric(6,2)[]`, and psql's `\d` shows that. The
//! wrapper here prints the arrays slicedb stores with a modifier (of
//! `numeric`) itself and asks the wrapped function for everything else.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

/// The oid of `numeric[]`.
const NUMERIC_ARRAY: i64 = 1231;

/// `format_type`, with `numeric(p,s)[]` (see the module comment).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FormatType {
    inner: Arc<ScalarUDF>,
}

impl FormatType {
    /// Wraps datafusion-pg-catalog's `format_type`.
    pub fn wrapping(inner: Arc<ScalarUDF>) -> ScalarUDF {
        ScalarUDF::new_from_impl(FormatType { inner })
    }
}

/// `numeric(p,s)` of a `numeric` modifier (`(p << 16 | s) + 4`).
fn numeric_with(typmod: i64) -> String {
    let m = typmod - 4;
    format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
}

impl ScalarUDFImpl for FormatType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let theirs = self.inner.invoke_with_args(args)?.into_array(rows)?;
        let (Some(oids), Some(mods)) = (arrays.first(), arrays.get(1)) else {
            return Ok(ColumnarValue::Array(theirs));
        };
        let oids = cast(oids, &DataType::Int64)?;
        let mods = cast(mods, &DataType::Int64)?;
        let (oids, mods) = (oids.as_primitive::<Int64Type>(), mods.as_primitive::<Int64Type>());
        let theirs = cast(&theirs, &DataType::Utf8)?;
        let theirs = theirs.as_string::<i32>();
        let mut out = StringBuilder::new();
        for i in 0..theirs.len() {
            let modified = oids.is_valid(i) && mods.is_valid(i) && mods.value(i) >= 4;
            if modified && oids.value(i) == NUMERIC_ARRAY {
                out.append_value(format!("{}[]", numeric_with(mods.value(i))));
            } else {
                out.append_option(theirs.is_valid(i).then(|| theirs.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_numeric_modifier() {
        assert_eq!(numeric_with((6 << 16 | 2) + 4), "numeric(6,2)");
    }
}
