//! `localtimestamp` and `localtime`: the statement's start as a
//! `timestamp` and a `time` of day without a time zone, in the session's
//! time zone (UTC).
//!
//! sqlparser reads both words as calls without parentheses, which
//! DataFusion resolves to these functions by name (the names PostgreSQL
//! gives the columns, too). Like `now()`, each is folded to a constant
//! when the statement is planned, so every row of a statement sees the
//! same value.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `localtimestamp` (`time` false) or `localtime`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LocalTime {
    time: bool,
    signature: Signature,
}

impl LocalTime {
    /// The function's name, the word it stands for.
    pub const NAMES: [&str; 2] = ["localtimestamp", "localtime"];

    /// Both functions, to register.
    pub fn udfs() -> Vec<ScalarUDF> {
        [false, true]
            .map(|time| {
                ScalarUDF::new_from_impl(LocalTime {
                    time,
                    signature: Signature::nullary(Volatility::Stable),
                })
            })
            .to_vec()
    }

    /// The value at `micros` since the epoch (UTC).
    fn at(&self, micros: i64) -> ScalarValue {
        match self.time {
            false => ScalarValue::TimestampMicrosecond(Some(micros), None),
            true => ScalarValue::Time64Microsecond(Some(micros.rem_euclid(MICROS_PER_DAY))),
        }
    }
}

impl ScalarUDFImpl for LocalTime {
    fn name(&self) -> &str {
        Self::NAMES[self.time as usize]
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.time {
            false => DataType::Timestamp(TimeUnit::Microsecond, None),
            true => DataType::Time64(TimeUnit::Microsecond),
        })
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        Ok(match info.query_execution_start_time() {
            Some(start) => ExprSimplifyResult::Simplified(Expr::Literal(self.at(start.timestamp_micros()), None)),
            None => ExprSimplifyResult::Original(args),
        })
    }

    /// Never called: the call is folded when planned (an error here also
    /// keeps DataFusion's constant folding from calling it before then,
    /// as it does for `now()`).
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(datafusion::error::DataFusionError::Internal(format!(
            "{} is folded when the statement is planned",
            self.name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_instant_without_a_zone() {
        let [stamp, time] = [false, true].map(|time| LocalTime {
            time,
            signature: Signature::nullary(Volatility::Stable),
        });
        // 2024-01-01 10:00:00.25 UTC.
        let at = 1_704_103_200_250_000;
        assert_eq!(stamp.at(at), ScalarValue::TimestampMicrosecond(Some(at), None));
        assert_eq!(time.at(at), ScalarValue::Time64Microsecond(Some(36_000_250_000)));
    }
}
