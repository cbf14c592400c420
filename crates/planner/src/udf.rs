//! What slicedb's own SQL functions share: a call of one written into a
//! statement's tree, and the shape of a result.

use datafusion::arrow::array::ArrayRef;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
use datafusion::sql::sqlparser::ast;

/// `name(args…)` as a statement's expression.
pub fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// A function's result: one value when every argument was one (`scalar`),
/// else the array.
pub fn result(array: ArrayRef, scalar: bool) -> DfResult<ColumnarValue> {
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
    } else {
        ColumnarValue::Array(array)
    })
}

/// A call's arguments as arrays of the same length, that length, and
/// whether every argument was one value (then the arrays hold one row, and
/// the result is one value: see [`result`]).
pub fn arguments(args: &ScalarFunctionArgs) -> DfResult<(Vec<ArrayRef>, usize, bool)> {
    let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let n = if scalar { 1 } else { args.number_rows };
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(n))
        .collect::<DfResult<Vec<ArrayRef>>>()?;
    Ok((arrays, n, scalar))
}

/// A text function's one argument as text, and a builder for its result
/// of about the same size.
pub fn text_argument(
    args: &ScalarFunctionArgs,
) -> DfResult<(
    datafusion::arrow::array::StringArray,
    datafusion::arrow::array::StringBuilder,
)> {
    use datafusion::arrow::array::{Array, AsArray, StringBuilder};
    let input = datafusion::arrow::compute::cast(
        &args.args[0].to_array(args.number_rows)?,
        &datafusion::arrow::datatypes::DataType::Utf8,
    )?;
    let strings = input.as_string::<i32>().clone();
    let out = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
    Ok((strings, out))
}
