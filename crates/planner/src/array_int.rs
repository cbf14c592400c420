//! PostgreSQL's integer-valued array functions, on DataFusion's.
//!
//! DataFusion's `array_length`, `cardinality` and `array_position` answer
//! `UInt64`, which the wire protocol can only send as a `numeric`;
//! PostgreSQL's answer `integer`. And PostgreSQL's `array_length(a, 1)` of
//! an empty array is NULL (the array has no dimension 1), where
//! DataFusion's is 0. [`ArrayInt`] wraps each of DataFusion's functions
//! under its own name, casts its answer to `integer`, and, for
//! `array_length` and `array_upper` (the same for the one-dimensional
//! arrays that start at 1, which are all slicedb stores), turns 0 into
//! NULL.
//!
//! ```
//! use datafusion::prelude::SessionContext;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let ctx = SessionContext::new();
//! for f in slicedb_planner::array_int::udfs() {
//!     ctx.register_udf(f);
//! }
//! let batches = ctx
//!     .sql("SELECT array_length(ARRAY[7, 8], 1) AS n, array_length(make_array(), 1) AS e")
//!     .await.unwrap().collect().await.unwrap();
//! let n = batches[0].column(0);
//! assert_eq!(n.data_type(), &datafusion::arrow::datatypes::DataType::Int32);
//! assert!(batches[0].column(1).is_null(0));
//! # });
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

/// One of DataFusion's array functions, answering `integer` (see the
/// module comment).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayInt {
    name: &'static str,
    inner: Arc<ScalarUDF>,
    /// 0 means "no such dimension": NULL.
    zero_is_null: bool,
}

/// `array_length`, `array_upper`, `cardinality` and `array_position`.
pub fn udfs() -> Vec<ScalarUDF> {
    use datafusion::functions_nested::{length::array_length_udf, position::array_position_udf};
    let cardinality = datafusion::functions_nested::cardinality::cardinality_udf();
    [
        ("array_length", array_length_udf(), true),
        ("array_upper", array_length_udf(), true),
        ("cardinality", cardinality, false),
        ("array_position", array_position_udf(), false),
    ]
    .into_iter()
    .map(|(name, inner, zero_is_null)| {
        ScalarUDF::new_from_impl(ArrayInt {
            name,
            inner,
            zero_is_null,
        })
    })
    .collect()
}

impl ScalarUDFImpl for ArrayInt {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let inner_args = ScalarFunctionArgs {
            return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                self.name,
                DataType::UInt64,
                true,
            )),
            ..args
        };
        let answer: ArrayRef = self.inner.invoke_with_args(inner_args)?.into_array(rows)?;
        let ints = cast(&answer, &DataType::Int32)?;
        let ints = ints.as_primitive::<Int32Type>();
        let out: Int32Array = match self.zero_is_null {
            true => ints.iter().map(|v| v.filter(|n| *n != 0)).collect(),
            false => ints.clone(),
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_datafusion_under_its_names() {
        let names: Vec<String> = udfs().iter().map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["array_length", "array_upper", "cardinality", "array_position"]);
        assert!(udfs().iter().all(|f| f.return_type(&[]).unwrap() == DataType::Int32));
    }
}
