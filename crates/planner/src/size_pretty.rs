//! `pg_size_pretty(bigint)`: a size in bytes as PostgreSQL 15 prints it,
//! in the largest unit (`bytes`, `kB`, `MB`, `GB`, `TB`, `PB`) that keeps
//! the number below 10240 bytes or, from kB up, below 20 * 1024 half-units,
//! rounded half away from zero.
//!
//! ```
//! use slicedb_planner::size_pretty::size_pretty;
//! assert_eq!(size_pretty(10_239), "10239 bytes");
//! assert_eq!(size_pretty(123_456), "121 kB");
//! assert_eq!(size_pretty(-10_240), "-10 kB");
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// Units: name, limit (below which the unit is used), half-rounded, bits.
const UNITS: [(&str, i64, bool, u32); 6] = [
    ("bytes", 10 * 1024, false, 0),
    ("kB", 20 * 1024 - 1, true, 10),
    ("MB", 20 * 1024 - 1, true, 20),
    ("GB", 20 * 1024 - 1, true, 30),
    ("TB", 20 * 1024 - 1, true, 40),
    ("PB", 20 * 1024 - 1, true, 50),
];

/// `size` bytes as PostgreSQL 15's `pg_size_pretty` prints it.
pub fn size_pretty(mut size: i64) -> String {
    for (i, (name, limit, round, bits)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1);
        if next.is_none() || size.unsigned_abs() < *limit as u64 {
            if *round {
                size = (size + if size < 0 { -1 } else { 1 }) / 2;
            }
            return format!("{size} {name}");
        }
        let (_, _, next_round, next_bits) = next.expect("checked above");
        let shift = next_bits - bits - u32::from(*next_round) + u32::from(*round);
        size /= 1i64 << shift;
    }
    unreachable!("the last unit is always used")
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SizePretty {
    signature: Signature,
}

/// The function, to register.
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(SizePretty {
        signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
    })
}

impl ScalarUDFImpl for SizePretty {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, _, scalar) = crate::udf::arguments(&args)?;
        let mut out = StringBuilder::new();
        for v in arrays[0].as_primitive::<Int64Type>() {
            out.append_option(v.map(size_pretty));
        }
        let array: ArrayRef = Arc::new(out.finish());
        crate::udf::result(array, scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's answers for the same sizes.
    #[test]
    fn sizes_print_as_postgresql_prints_them() {
        let cases = [
            (0, "0 bytes"),
            (10_240, "10 kB"),
            (10_241, "10 kB"),
            (20_971_519, "20 MB"),
            (1_000_000_000_000, "931 GB"),
            (1_000_000_000_000_000, "909 TB"),
            (1_000_000_000_000_000_000, "888 PB"),
            (-123_456, "-121 kB"),
            (i64::MAX, "8192 PB"),
        ];
        for (size, pg) in cases {
            assert_eq!(size_pretty(size), pg, "{size}");
        }
    }
}
