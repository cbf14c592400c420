//! Typed errors with PostgreSQL SQLSTATEs.
//!
//! Every error that can reach a client is an [`Error`]: a [`SqlState`] plus a
//! message. The pgwire front end sends `state.code()` as the SQLSTATE, so a
//! driver can tell a syntax error (`42601`) from a duplicate key (`23505`)
//! from a lost slice server (`08006`) without parsing text.
//!
//! Errors cross DataFusion as `DataFusionError::External`, and
//! [`Error::from_datafusion`] recovers them (or classifies DataFusion's own).

use std::fmt;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// The SQLSTATEs slicedb reports. See PostgreSQL's Appendix A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SqlState {
    /// 42601
    SyntaxError,
    /// 42P01
    UndefinedTable,
    /// 42703
    UndefinedColumn,
    /// 42704
    UndefinedObject,
    /// 42P07
    DuplicateTable,
    /// 42710
    DuplicateObject,
    /// 42701
    DuplicateColumn,
    /// 42P16
    InvalidTableDefinition,
    /// 42P17
    InvalidRecursion,
    /// 42804
    DatatypeMismatch,
    /// 42883
    UndefinedFunction,
    /// 42P18
    IndeterminateDatatype,
    /// 23505
    UniqueViolation,
    /// 23502
    NotNullViolation,
    /// 23503
    ForeignKeyViolation,
    /// 42830
    InvalidForeignKey,
    /// 23514
    CheckViolation,
    /// 21000
    CardinalityViolation,
    /// 42P10
    InvalidColumnReference,
    /// 2200H
    SequenceGeneratorLimitExceeded,
    /// 42809
    WrongObjectType,
    /// 428C9
    GeneratedAlways,
    /// 42P05
    DuplicatePreparedStatement,
    /// 26000
    InvalidSqlStatementName,
    /// 22P02
    InvalidTextRepresentation,
    /// 22P03
    InvalidBinaryRepresentation,
    /// 22001
    StringDataRightTruncation,
    /// 22003
    NumericValueOutOfRange,
    /// A value or row larger than slicedb can store.
    ProgramLimitExceeded,
    /// 22007
    InvalidDatetimeFormat,
    /// 22008
    DatetimeFieldOverflow,
    /// 22021: bytes that are not valid UTF-8.
    CharacterNotInRepertoire,
    /// 22012
    DivisionByZero,
    /// 22023
    InvalidParameterValue,
    /// 22004
    NullValueNotAllowed,
    /// 22P04
    BadCopyFileFormat,
    /// 0A000
    FeatureNotSupported,
    /// 2BP01
    DependentObjectsStillExist,
    /// 55006
    ObjectInUse,
    /// 55000
    ObjectNotInPrerequisiteState,
    /// 08006
    ConnectionFailure,
    /// 08P01
    ProtocolViolation,
    /// 57014
    QueryCanceled,
    /// 55P03
    LockNotAvailable,
    /// 40P01
    DeadlockDetected,
    SerializationFailure,
    StatementCompletionUnknown,
    ActiveSqlTransaction,
    NoActiveSqlTransaction,
    InFailedSqlTransaction,
    ReadOnlySqlTransaction,
    InvalidSavepointSpecification,
    /// 3F000
    InvalidSchemaName,
    /// 42939: a name reserved for the system (`public`, `none` as a role).
    ReservedName,
    /// 42501: the role lacks a privilege the statement needs.
    InsufficientPrivilege,
    /// 28000: no host rule admits the connection, the role does not
    /// exist, or it may not log in.
    InvalidAuthorizationSpecification,
    /// 28P01: a wrong password.
    InvalidPassword,
    /// 58030
    IoError,
    /// XX000
    InternalError,
}

impl SqlState {
    /// The five-character SQLSTATE code.
    pub fn code(self) -> &'static str {
        use SqlState::*;
        match self {
            SyntaxError => "42601",
            UndefinedTable => "42P01",
            UndefinedColumn => "42703",
            UndefinedObject => "42704",
            DuplicateTable => "42P07",
            DuplicateObject => "42710",
            DuplicateColumn => "42701",
            InvalidTableDefinition => "42P16",
            InvalidRecursion => "42P17",
            DatatypeMismatch => "42804",
            UndefinedFunction => "42883",
            IndeterminateDatatype => "42P18",
            UniqueViolation => "23505",
            ForeignKeyViolation => "23503",
            InvalidForeignKey => "42830",
            NotNullViolation => "23502",
            CheckViolation => "23514",
            CardinalityViolation => "21000",
            InvalidColumnReference => "42P10",
            SequenceGeneratorLimitExceeded => "2200H",
            WrongObjectType => "42809",
            GeneratedAlways => "428C9",
            DuplicatePreparedStatement => "42P05",
            InvalidSqlStatementName => "26000",
            InvalidTextRepresentation => "22P02",
            InvalidBinaryRepresentation => "22P03",
            StringDataRightTruncation => "22001",
            NumericValueOutOfRange => "22003",
            ProgramLimitExceeded => "54000",
            InvalidDatetimeFormat => "22007",
            DatetimeFieldOverflow => "22008",
            CharacterNotInRepertoire => "22021",
            DivisionByZero => "22012",
            InvalidParameterValue => "22023",
            NullValueNotAllowed => "22004",
            BadCopyFileFormat => "22P04",
            FeatureNotSupported => "0A000",
            DependentObjectsStillExist => "2BP01",
            ObjectInUse => "55006",
            ObjectNotInPrerequisiteState => "55000",
            ConnectionFailure => "08006",
            ProtocolViolation => "08P01",
            QueryCanceled => "57014",
            LockNotAvailable => "55P03",
            DeadlockDetected => "40P01",
            SerializationFailure => "40001",
            StatementCompletionUnknown => "40003",
            ActiveSqlTransaction => "25001",
            NoActiveSqlTransaction => "25P01",
            InFailedSqlTransaction => "25P02",
            ReadOnlySqlTransaction => "25006",
            InvalidSavepointSpecification => "3B001",
            InvalidSchemaName => "3F000",
            ReservedName => "42939",
            InsufficientPrivilege => "42501",
            InvalidAuthorizationSpecification => "28000",
            InvalidPassword => "28P01",
            IoError => "58030",
            InternalError => "XX000",
        }
    }
}

/// A slicedb error: what went wrong, and the SQLSTATE the client sees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Error {
    pub state: SqlState,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Builds an [`Error`] with a `format!` message: `err!(UndefinedTable, "relation \"{}\" does not exist", name)`.
#[macro_export]
macro_rules! err {
    ($state:ident, $($arg:tt)*) => {
        $crate::Error::new($crate::SqlState::$state, format!($($arg)*))
    };
}

impl Error {
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        Error {
            state,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(SqlState::InternalError, message)
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Error::new(SqlState::SyntaxError, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(SqlState::FeatureNotSupported, message)
    }

    /// A slice server could not be reached or answered with a transport failure.
    pub fn connection(message: impl Into<String>) -> Self {
        Error::new(SqlState::ConnectionFailure, message)
    }

    pub fn io(message: impl Into<String>) -> Self {
        Error::new(SqlState::IoError, message)
    }

    /// Wraps this error so it can travel through DataFusion and be recovered
    /// intact by [`Error::from_datafusion`].
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }

    /// Recovers a slicedb error carried through DataFusion, or classifies one
    /// of DataFusion's own errors by SQLSTATE.
    pub fn from_datafusion(e: DataFusionError) -> Error {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(e) => *e,
                Err(other) => Error::internal(other.to_string()),
            },
            DataFusionError::Context(_, inner) => Error::from_datafusion(*inner),
            DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
                Ok(e) => Error::from_datafusion(e),
                // Shared by several partitions (a join's build side): find
                // a slicedb error inside without taking it.
                Err(shared) => Error::find_in(&shared)
                    .unwrap_or_else(|| Error::classify_message(&shared.to_string(), SqlState::InternalError)),
            },
            DataFusionError::Diagnostic(_, inner) => Error::from_datafusion(*inner),
            DataFusionError::Collection(mut errors) if !errors.is_empty() => Error::from_datafusion(errors.remove(0)),
            DataFusionError::ArrowError(inner, _) => Error::from_arrow(*inner),
            DataFusionError::SQL(inner, _) => Error::syntax(inner.to_string()),
            DataFusionError::SchemaError(inner, _) => {
                let msg = inner.to_string();
                let state = if msg.contains("No field named") || msg.contains("not found") {
                    SqlState::UndefinedColumn
                } else {
                    SqlState::InternalError
                };
                Error::classify_message(&msg, state)
            }
            DataFusionError::Plan(msg) => Error::classify_message(&msg, SqlState::SyntaxError),
            DataFusionError::NotImplemented(msg) => Error::new(SqlState::FeatureNotSupported, msg),
            DataFusionError::Execution(msg) => Error::classify_message(&msg, SqlState::InternalError),
            other => Error::classify_message(&other.to_string(), SqlState::InternalError),
        }
    }

    /// A slicedb error carried somewhere inside `e`, by reference.
    fn find_in(e: &DataFusionError) -> Option<Error> {
        match e {
            DataFusionError::External(inner) => inner.downcast_ref::<Error>().cloned(),
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => Error::find_in(inner),
            DataFusionError::Shared(inner) => Error::find_in(inner),
            DataFusionError::Collection(errors) => errors.first().and_then(Error::find_in),
            DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
                ArrowError::ExternalError(x) => x.downcast_ref::<Error>().cloned(),
                _ => None,
            },
            _ => None,
        }
    }

    /// Maps Arrow's errors: cast and parse failures are bad input (22P02).
    pub fn from_arrow(e: ArrowError) -> Error {
        match e {
            ArrowError::ExternalError(inner) => match inner.downcast::<Error>() {
                Ok(e) => *e,
                Err(other) => Error::internal(other.to_string()),
            },
            ArrowError::CastError(msg) | ArrowError::ParseError(msg) => {
                Error::classify_message(&msg, SqlState::InvalidTextRepresentation)
            }
            ArrowError::DivideByZero => Error::new(SqlState::DivisionByZero, "division by zero"),
            ArrowError::ArithmeticOverflow(msg) => Error::new(SqlState::NumericValueOutOfRange, msg),
            ArrowError::InvalidArgumentError(msg) => Error::classify_message(&msg, SqlState::InvalidParameterValue),
            other => Error::internal(other.to_string()),
        }
    }

    /// DataFusion reports many user errors as plain strings; pick the
    /// SQLSTATE a PostgreSQL user would expect from the wording, and
    /// PostgreSQL's wording where it is well known.
    fn classify_message(msg: &str, default: SqlState) -> Error {
        if let Some(rest) = msg.trim().strip_prefix("table '") {
            if let Some(name) = rest.strip_suffix("' not found") {
                let relation = name.rsplit('.').next().unwrap_or(name);
                return Error::new(
                    SqlState::UndefinedTable,
                    format!("relation \"{relation}\" does not exist"),
                );
            }
        }
        let lower = msg.to_ascii_lowercase();
        // A number that does not fit its target type: Arrow's casts say
        // "Can't cast value 2147483659 to type Int32" (or "Overflowing" for
        // decimals); PostgreSQL says which type is out of range.
        if lower.starts_with("can't cast value") || lower.contains("cannot cast") && lower.contains("overflow") {
            let message = if lower.ends_with("type int16") {
                "smallint out of range"
            } else if lower.ends_with("type int32") {
                "integer out of range"
            } else if lower.ends_with("type int64") {
                "bigint out of range"
            } else if lower.contains("decimal") {
                "numeric field overflow"
            } else {
                msg.trim()
            };
            return Error::new(SqlState::NumericValueOutOfRange, message);
        }
        // A numeric value past its column's precision: Arrow names its own
        // type ("… is too large to store in a Decimal128 of precision 10.
        // Max is 99999999.99"); PostgreSQL says "numeric field overflow".
        if lower.contains("too large to store in a decimal") {
            let detail = lower
                .find("precision ")
                .map(|at| {
                    let p: String = lower[at + 10..].chars().take_while(char::is_ascii_digit).collect();
                    format!(" (precision {p})")
                })
                .unwrap_or_default();
            return Error::new(
                SqlState::NumericValueOutOfRange,
                format!("numeric field overflow{detail}"),
            );
        }
        // Text that is not an interval is a bad datetime format in
        // PostgreSQL (22007), as for dates and timestamps.
        if lower.contains("invalid input syntax for type interval") {
            return Error::new(
                SqlState::InvalidDatetimeFormat,
                msg.trim().replacen("Invalid input", "invalid input", 1),
            );
        }
        let state = if lower.contains("table '") && lower.contains("not found") || lower.contains("table not found") {
            SqlState::UndefinedTable
        } else if lower.contains("no field named") || lower.contains("column") && lower.contains("not found") {
            SqlState::UndefinedColumn
        } else if lower.contains("invalid function") || lower.contains("function") && lower.contains("not found") {
            SqlState::UndefinedFunction
        } else if lower.contains("divide by zero") || lower.contains("division by zero") {
            SqlState::DivisionByZero
        } else if lower.contains("cannot cast")
            || lower.contains("cast error")
            || lower.contains("error parsing")
            || lower.contains("invalid") && lower.contains("value")
        {
            SqlState::InvalidTextRepresentation
        } else if lower.contains("overflow") || lower.contains("out of range") || lower.contains("too large") {
            SqlState::NumericValueOutOfRange
        } else if lower.contains("returned more than one row") {
            SqlState::CardinalityViolation
        } else if lower.contains("non-nullable") || lower.contains("null value") && lower.contains("not-null") {
            SqlState::NotNullViolation
        } else {
            default
        };
        Error::new(state, msg.trim().to_string())
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error::from_datafusion(e)
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Error::from_arrow(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_a_trip_through_datafusion() {
        let e = err!(UniqueViolation, "duplicate key value violates unique constraint");
        let back = Error::from_datafusion(e.clone().into_datafusion());
        assert_eq!(back, e);
        let ctx = DataFusionError::Context("scan".into(), Box::new(e.clone().into_datafusion()));
        assert_eq!(Error::from_datafusion(ctx).state, SqlState::UniqueViolation);
    }

    #[test]
    fn cast_failures_are_bad_input() {
        let e = Error::from_arrow(ArrowError::CastError(
            "Cannot cast string 'x' to value of Int64 type".into(),
        ));
        assert_eq!(e.state.code(), "22P02");
    }

    #[test]
    fn numbers_that_do_not_fit_are_out_of_range() {
        let e = Error::from_arrow(ArrowError::CastError(
            "Can't cast value 2147483659 to type Int32".into(),
        ));
        assert_eq!((e.state.code(), e.message.as_str()), ("22003", "integer out of range"));
        let e = Error::from_arrow(ArrowError::CastError(
            "Cannot cast to Decimal128(4, 2). Overflowing on 12345".into(),
        ));
        assert_eq!(
            (e.state.code(), e.message.as_str()),
            ("22003", "numeric field overflow")
        );
        let e = Error::from_arrow(ArrowError::InvalidArgumentError(
            "100000000.00 is too large to store in a Decimal128 of precision 10. Max is 99999999.99".into(),
        ));
        assert_eq!(
            (e.state.code(), e.message.as_str()),
            ("22003", "numeric field overflow (precision 10)")
        );
    }
}
