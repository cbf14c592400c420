//! PostgreSQL's text input for `bytea`: `'\xdeadbeef'` means the bytes
//! `de ad be ef`, not the ten characters.
//!
//! Arrow's cast from a string to binary copies the characters. The
//! text-input analyzer rule (`crate::text_input`) replaces every text →
//! bytea cast (which DataFusion inserts for `INSERT … VALUES ('\x…')`,
//! comparisons and `'…'::bytea`) with [`ByteaIn`], which decodes the hex form.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use slicedb_common::{err, Result};

/// Decodes PostgreSQL's bytea text input (hex form `\x…`; anything else is taken as is).
pub fn decode_bytea(s: &str) -> Result<Vec<u8>> {
    let Some(hex) = s.strip_prefix("\\x") else {
        return Ok(s.as_bytes().to_vec());
    };
    if !hex.is_ascii() {
        return Err(err!(
            InvalidTextRepresentation,
            "invalid hexadecimal digit in bytea input"
        ));
    }
    if hex.len() % 2 != 0 {
        return Err(err!(
            InvalidTextRepresentation,
            "invalid hexadecimal data: odd number of digits"
        ));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| {
                err!(
                    InvalidTextRepresentation,
                    "invalid hexadecimal digit: \"{}\"",
                    &hex[i..i + 2]
                )
            })
        })
        .collect()
}

/// `bytea_in(text) → bytea`, PostgreSQL's text input for bytea.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ByteaIn {
    signature: Signature,
}

impl Default for ByteaIn {
    fn default() -> Self {
        ByteaIn {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ByteaIn {
    fn name(&self) -> &str {
        "bytea_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let input = cast(&input, &DataType::Utf8)?;
        let strings = input
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("bytea_in expects text".into()))?;
        let mut out = BinaryBuilder::new();
        for v in strings.iter() {
            match v {
                None => out.append_null(),
                Some(s) => out.append_value(decode_bytea(s).map_err(|e| e.into_datafusion())?),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_input_decodes() {
        assert_eq!(decode_bytea("\\xdead").unwrap(), vec![0xde, 0xad]);
        assert_eq!(decode_bytea("plain").unwrap(), b"plain".to_vec());
        assert_eq!(decode_bytea("\\xabc").unwrap_err().state.code(), "22P02");
        assert_eq!(decode_bytea("\\x0é0").unwrap_err().state.code(), "22P02");
    }
}
