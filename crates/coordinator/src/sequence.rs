//! Sequences as SQL sees them: `nextval`, `currval`, `setval`, `lastval`,
//! and the ranges of values a coordinator caches.
//!
//! Values come from ranges the catalog hands out durably
//! ([`slicedb_catalog::sequence`]); this module keeps the unused rest of a
//! range in memory. A range holds at least the sequence's `CACHE` values
//! and 32 (the values PostgreSQL logs ahead); a sequence that needs a new
//! range again within a second gets one twice as large (up to 65,536), so
//! that a bulk load with a serial key does not sync the catalog per row.
//! `setval` drops the cached range; `ALTER SEQUENCE` gives its unused values
//! back to the sequence ([`UnusedRange`]) when no range was taken after it.
//!
//! `currval` and `lastval` are per session: the functions find the
//! session's [`SessionValues`](crate::session::SessionValues) among the statement's config extensions,
//! which the coordinator sets for each statement it runs.

pub use crate::session::SessionValues;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use slicedb_catalog::Catalog;
use slicedb_common::{err, Error, Result};

/// The smallest range a coordinator takes from the catalog.
const MIN_RANGE: i64 = 32;
/// The largest range, however fast values are used.
const MAX_RANGE: i64 = 65_536;
/// A refill sooner than this after the last one doubles the range.
const FAST_REFILL: Duration = Duration::from_secs(1);

/// The rest of a range this coordinator holds.
struct Cached {
    next: i64,
    left: i64,
    increment: i64,
    size: i64,
    refilled: Instant,
}

/// The unused rest of a range a coordinator had cached.
pub struct UnusedRange(Cached);

impl UnusedRange {
    /// Makes `seq` hand out this range's unused values again, if no range
    /// was allocated after it (its `next` is still this range's end).
    pub fn give_back(&self, seq: &mut slicedb_catalog::sequence::SequenceDef) {
        let c = &self.0;
        let end = c.next as i128 + c.left as i128 * c.increment as i128;
        if seq.next.map(i128::from) == Some(end) && c.increment == seq.increment {
            seq.next = Some(c.next);
        }
    }
}

/// The coordinator's cached sequence ranges.
pub struct Sequences {
    catalog: Arc<Catalog>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Sequences {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Sequences {
            catalog,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `count` next values of sequence `name`, in order.
    ///
    /// The cache's lock is never held across the catalog's synced write:
    /// a session that finds the range used up takes a new one unlocked (off
    /// the executor, as every catalog write), and others keep drawing
    /// meanwhile. If two take
    /// one at once, the second range's rest replaces the first's (a gap).
    pub fn next_values(&self, name: &str, count: usize) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(count);
        // A dropped sequence gives no more values, even from a cached range.
        self.check_exists(name)?;
        while out.len() < count {
            let size = {
                let mut cache = self.lock()?;
                match cache.get_mut(name).filter(|c| c.left > 0) {
                    Some(c) => {
                        let take = c.left.min((count - out.len()) as i64);
                        for i in 0..take {
                            out.push(c.next + i * c.increment);
                        }
                        c.next += take * c.increment;
                        c.left -= take;
                        continue;
                    }
                    None => {
                        let snapshot = self.catalog.snapshot();
                        let seq = snapshot.sequence(name)?;
                        let mut size = seq.cache.max(MIN_RANGE);
                        if let Some(p) = cache.get(name) {
                            if p.refilled.elapsed() < FAST_REFILL {
                                size = (p.size * 2).min(MAX_RANGE).max(size);
                            }
                        }
                        size
                    }
                }
            };
            let wanted = size.max((count - out.len()) as i64);
            let (first, taken) = self.catalog.allocate_sequence(name, wanted)?;
            let increment = self.catalog.snapshot().sequence(name)?.increment;
            let used = taken.min((count - out.len()) as i64);
            for i in 0..used {
                out.push(first + i * increment);
            }
            self.lock()?.insert(
                name.to_string(),
                Cached {
                    next: first + used * increment,
                    left: taken - used,
                    increment,
                    size,
                    refilled: Instant::now(),
                },
            );
        }
        Ok(out)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Cached>>> {
        self.cache
            .lock()
            .map_err(|_| Error::internal("sequence cache poisoned"))
    }

    /// Fails with 42P01 unless sequence `name` exists.
    fn check_exists(&self, name: &str) -> Result<()> {
        self.catalog.snapshot().sequence(name).map(|_| ())
    }

    /// Takes this coordinator's cached range of `name` out of the cache,
    /// for `ALTER SEQUENCE` to give its unused values back to the catalog
    /// ([`UnusedRange::give_back`]); [`Sequences::put_back`] returns it if
    /// the change fails. Sessions that draw meanwhile take a new range.
    pub fn take_range(&self, name: &str) -> Option<UnusedRange> {
        let cached = self.lock().ok()?.remove(name)?;
        (cached.left > 0).then_some(UnusedRange(cached))
    }

    /// Puts back a range [`Sequences::take_range`] took, unless another was
    /// cached meanwhile (then its values are skipped: a gap).
    pub fn put_back(&self, name: &str, range: UnusedRange) {
        if let Ok(mut cache) = self.lock() {
            cache.entry(name.to_string()).or_insert(range.0);
        }
    }

    /// Forgets the cached range of `name` (after `setval`, `ALTER` or `DROP`).
    pub fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(name);
        }
    }

    /// `setval(name, value, is_called)`.
    pub fn set_value(&self, name: &str, value: i64, is_called: bool) -> Result<()> {
        self.catalog.change_sequence(name, |seq| seq.set(value, is_called))?;
        self.lock()?.remove(name);
        Ok(())
    }
}

/// One session's `currval` values and `lastval`.
#[derive(Debug, Default)]
pub struct SessionSequenceValues {
    current: HashMap<String, i64>,
    last: Option<i64>,
}

impl SessionValues {
    fn record(&self, name: &str, value: i64) {
        if let Ok(mut v) = self.sequences.lock() {
            v.current.insert(name.to_string(), value);
            v.last = Some(value);
        }
    }

    fn current(&self, name: &str) -> Result<i64> {
        let v = self
            .sequences
            .lock()
            .map_err(|_| Error::internal("session sequences poisoned"))?;
        v.current.get(name).copied().ok_or_else(|| {
            err!(
                ObjectNotInPrerequisiteState,
                "currval of sequence \"{name}\" is not yet defined in this session"
            )
        })
    }

    fn last(&self) -> Result<i64> {
        let v = self
            .sequences
            .lock()
            .map_err(|_| Error::internal("session sequences poisoned"))?;
        v.last.ok_or_else(|| {
            err!(
                ObjectNotInPrerequisiteState,
                "lastval is not yet defined in this session"
            )
        })
    }
}

/// The name of the sequence a `regclass`-like text argument names:
/// `s`, `public.s` or `"S"`, folded as PostgreSQL folds identifiers.
pub fn sequence_name(text: &str) -> Result<String> {
    let parts: Vec<String> = split_qualified(text)?;
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == crate::SCHEMA => Ok(name.clone()),
        _ => Err(err!(UndefinedTable, "relation \"{text}\" does not exist")),
    }
}

/// `nextval('s'::regclass)`, as pg_dump and PostgreSQL's own `\d` write a
/// serial column's default, becomes `nextval('s')` (the same for
/// `currval` and `setval`): the functions take the sequence's name, and a
/// `regclass` cast of a literal would only turn it into an oid and back.
/// Returns whether anything changed.
pub fn literal_regclass_arguments(stmt: &mut datafusion::sql::sqlparser::ast::Statement) -> bool {
    use datafusion::sql::sqlparser::ast;
    let mut changed = false;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        let ast::Expr::Function(f) = e else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        let name = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase());
        if !matches!(name.as_deref(), Some("nextval" | "currval" | "setval")) {
            return std::ops::ControlFlow::Continue(());
        }
        if let ast::FunctionArguments::List(list) = &mut f.args {
            if let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))) = list.args.first_mut() {
                if let ast::Expr::Cast { expr, data_type, .. } = arg {
                    let regclass = match data_type {
                        ast::DataType::Regclass => true,
                        ast::DataType::Custom(n, m) => {
                            m.is_empty()
                                && n.0
                                    .last()
                                    .and_then(|p| p.as_ident())
                                    .is_some_and(|i| i.value.eq_ignore_ascii_case("regclass"))
                        }
                        _ => false,
                    };
                    let literal = matches!(expr.as_ref(), ast::Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)));
                    if regclass && literal {
                        *arg = expr.as_ref().clone();
                        changed = true;
                    }
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    changed
}

fn split_qualified(text: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(err!(InvalidParameterValue, "invalid name syntax")),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != '.') {
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(err!(InvalidParameterValue, "invalid name syntax"));
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => return Ok(parts),
            Some(_) => return Err(err!(InvalidParameterValue, "invalid name syntax")),
        }
    }
}

/// Which sequence function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Next,
    Current,
    Set,
    Last,
}

/// `nextval(text)`, `currval(text)`, `setval(text, bigint [, boolean])`, `lastval()`.
#[derive(Debug)]
struct SequenceFunction {
    kind: Kind,
    signature: Signature,
    sequences: Arc<Sequences>,
}

impl PartialEq for SequenceFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.sequences, &other.sequences)
    }
}

impl Eq for SequenceFunction {}

impl std::hash::Hash for SequenceFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl std::fmt::Debug for Sequences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sequences")
    }
}

/// The session's values, or a fresh set for a statement run without one.
fn session_of(args: &ScalarFunctionArgs) -> SessionValues {
    args.config_options
        .extensions
        .get::<SessionValues>()
        .cloned()
        .unwrap_or_default()
}

/// The text of argument `i` at row `row`.
fn text_arg(args: &[ArrayRef], i: usize, row: usize) -> Option<String> {
    let a = &args[i];
    if a.is_null(row) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Some(a.as_string_view().value(row).to_string()),
        _ => None,
    }
}

impl SequenceFunction {
    fn run(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let rows = args.number_rows;
        let session = session_of(args);
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows.max(1)))
            .collect::<datafusion::common::Result<_>>()?;
        // The usual call names one sequence for every row: take its values in one go.
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if self.kind == Kind::Next && all_scalar {
            let Some(text) = text_arg(&arrays, 0, 0) else {
                return Ok(Arc::new(Int64Array::new_null(rows)));
            };
            let name = sequence_name(&text)?;
            let values = self.sequences.next_values(&name, rows)?;
            if let Some(last) = values.last() {
                session.record(&name, *last);
            }
            return Ok(Arc::new(Int64Array::from(values)));
        }
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let value = match self.kind {
                Kind::Last => Some(session.last()?),
                Kind::Next | Kind::Current | Kind::Set => {
                    let Some(text) = text_arg(&arrays, 0, row) else {
                        out.push(None);
                        continue;
                    };
                    let name = sequence_name(&text)?;
                    match self.kind {
                        Kind::Next => {
                            let v = self.sequences.next_values(&name, 1)?[0];
                            session.record(&name, v);
                            Some(v)
                        }
                        Kind::Current => {
                            self.sequences.check_exists(&name)?;
                            Some(session.current(&name)?)
                        }
                        _ => {
                            let values = arrays[1].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                            if values.is_null(row) {
                                out.push(None);
                                continue;
                            }
                            let value = values.value(row);
                            let is_called = match arrays.get(2) {
                                Some(b) if !b.is_null(row) => b.as_boolean().value(row),
                                Some(_) => {
                                    out.push(None);
                                    continue;
                                }
                                None => true,
                            };
                            self.sequences.set_value(&name, value, is_called)?;
                            if is_called {
                                session.record(&name, value);
                            }
                            Some(value)
                        }
                    }
                }
            };
            out.push(value);
        }
        Ok(Arc::new(Int64Array::from(out)))
    }
}

impl ScalarUDFImpl for SequenceFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Next => "nextval",
            Kind::Current => "currval",
            Kind::Set => "setval",
            Kind::Last => "lastval",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let array = self.run(&args).map_err(Error::into_datafusion)?;
        if rows == 0 && array.len() == 1 {
            // Called with no row context (a constant): one value.
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// The sequence functions, to register in the session context.
pub fn functions(sequences: Arc<Sequences>) -> Vec<ScalarUDF> {
    let text = || TypeSignature::Exact(vec![DataType::Utf8]);
    let make = |kind, signature| {
        ScalarUDF::new_from_impl(SequenceFunction {
            kind,
            signature,
            sequences: sequences.clone(),
        })
    };
    vec![
        make(Kind::Next, Signature::one_of(vec![text()], Volatility::Volatile)),
        make(Kind::Current, Signature::one_of(vec![text()], Volatility::Volatile)),
        make(
            Kind::Set,
            Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64, DataType::Boolean]),
                ],
                Volatility::Volatile,
            ),
        ),
        make(Kind::Last, Signature::nullary(Volatility::Volatile)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_like_identifiers() {
        assert_eq!(sequence_name("S").unwrap(), "s");
        assert_eq!(sequence_name("public.t_id_seq").unwrap(), "t_id_seq");
        assert_eq!(sequence_name("\"My\"\"Seq\"").unwrap(), "My\"Seq");
        assert_eq!(sequence_name("other.s").unwrap_err().state.code(), "42P01");
        assert!(sequence_name("a..b").is_err());
    }
}
