//! `COPY … FROM STDIN` and `COPY … TO STDOUT`, in PostgreSQL's text, CSV
//! and binary formats (the binary one in [`crate::copy_binary`]).
//!
//! COPY IN parses the client's data as it arrives, turns every 8,192 rows
//! into an Arrow batch of strings, casts each column to its type with
//! Arrow's parsers, and routes the rows to their slice servers through the
//! same [`RowRouter`] as INSERT. Memory stays bounded by the batch size.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget};
use futures::StreamExt;
use slicedb_common::{err, Datum, Error, Result, SqlType, TableDef};
use slicedb_planner::txn::StatementTxn;
use slicedb_planner::write::{check_rows, check_value, insert_write, RowRouter};
use slicedb_planner::SliceTable;

use crate::ddl::{normalize, relation_name};
use crate::{Coordinator, Output};

const COPY_BATCH_ROWS: usize = 8192;

/// How COPY data is laid out.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    pub csv: bool,
    pub binary: bool,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyFormat {
    fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
        let mut csv = false;
        let mut binary = false;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) = (None, None, false, b'"', None);
        for o in options {
            match o {
                CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                    "csv" => (csv, binary) = (true, false),
                    "text" => (csv, binary) = (false, false),
                    "binary" => (csv, binary) = (false, true),
                    other => return Err(err!(FeatureNotSupported, "COPY format \"{other}\" is not supported")),
                },
                CopyOption::Delimiter(c) => delimiter = Some(ascii(*c)?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = ascii(*c)?,
                CopyOption::Escape(c) => escape = Some(ascii(*c)?),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                other => return Err(err!(FeatureNotSupported, "COPY option {other} is not supported")),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Csv(opts) => {
                    csv = true;
                    for o in opts {
                        match o {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = ascii(*c)?,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(ascii(*c)?),
                            other => return Err(err!(FeatureNotSupported, "COPY option {other} is not supported")),
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(ascii(*c)?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Binary => binary = true,
                other => return Err(err!(FeatureNotSupported, "COPY option {other} is not supported")),
            }
        }
        if binary && (delimiter.is_some() || null.is_some() || header || csv) {
            return Err(err!(
                SyntaxError,
                "cannot specify DELIMITER, NULL, HEADER or CSV options in BINARY mode"
            ));
        }
        if header && !csv {
            return Err(err!(FeatureNotSupported, "COPY HEADER available only in CSV mode"));
        }
        Ok(CopyFormat {
            csv,
            binary,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }
}

fn ascii(c: char) -> Result<u8> {
    u8::try_from(c as u32)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| err!(FeatureNotSupported, "COPY delimiter, quote and escape must be ASCII"))
}

/// An open `COPY … FROM STDIN`.
pub struct CopyIn {
    table: Arc<TableDef>,
    /// Table column of each field in the data.
    columns: Vec<usize>,
    format: CopyFormat,
    buffer: Vec<u8>,
    rows: Vec<Vec<Option<String>>>,
    /// Rows of binary COPY data, decoded (see [`crate::copy_binary::decode`]).
    binary_rows: Vec<Vec<Datum>>,
    /// Binary data: the header has been read.
    binary_header: bool,
    router: RowRouter,
    /// Columns left out of the column list that have a default, with it.
    defaults: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    /// The table's CHECK constraints.
    checks: Vec<(String, Arc<dyn PhysicalExpr>)>,
    /// The implicit transaction of a COPY outside a transaction block,
    /// committed when the data ends.
    pub(crate) implicit: Option<slicedb_txn::Transaction>,
    skip_header: bool,
    line: u64,
    count: u64,
    done: bool,
}

impl CopyIn {
    /// Fields per row.
    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    /// Whether the data is in the binary format (the CopyInResponse says so).
    pub fn binary(&self) -> bool {
        self.format.binary
    }

    /// Takes the next chunk of COPY data.
    pub async fn push(&mut self, data: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(data);
        let consumed = self.parse_buffer(false)?;
        self.buffer.drain(..consumed);
        if self.rows.len() + self.binary_rows.len() >= COPY_BATCH_ROWS {
            self.write_rows().await?;
        }
        Ok(())
    }

    /// Ends the COPY; returns the number of rows loaded.
    pub async fn finish(mut self) -> Result<u64> {
        let consumed = self.parse_buffer(true)?;
        self.buffer.drain(..consumed);
        self.write_rows().await?;
        self.router.flush().await?;
        Ok(self.count)
    }

    /// Parses whole records from the buffer; returns the bytes consumed.
    fn parse_buffer(&mut self, at_end: bool) -> Result<usize> {
        if self.format.binary {
            return self.parse_binary(at_end);
        }
        let mut pos = 0;
        let buf = std::mem::take(&mut self.buffer);
        loop {
            if self.done || pos >= buf.len() {
                break;
            }
            let parsed = if self.format.csv {
                parse_csv_record(&buf[pos..], &self.format, at_end)?
            } else {
                parse_text_record(&buf[pos..], &self.format, at_end)?
            };
            let Some((fields, used)) = parsed else { break };
            pos += used;
            self.line += 1;
            let Some(fields) = fields else {
                self.done = true; // the `\.` end marker
                break;
            };
            if self.skip_header {
                self.skip_header = false;
                continue;
            }
            if fields.len() != self.columns.len() {
                self.buffer = buf;
                return Err(err!(
                    BadCopyFileFormat,
                    "{} data for COPY {}, line {}",
                    if fields.len() < self.columns.len() {
                        "missing"
                    } else {
                        "extra"
                    },
                    self.table.name,
                    self.line
                ));
            }
            self.rows.push(fields);
        }
        self.buffer = buf;
        Ok(pos)
    }

    /// [`Self::parse_buffer`] of binary data: the header, then tuples
    /// decoded into datums.
    fn parse_binary(&mut self, at_end: bool) -> Result<usize> {
        let mut pos = 0;
        if !self.binary_header {
            match crate::copy_binary::parse_header(&self.buffer)? {
                Some(n) => {
                    pos = n;
                    self.binary_header = true;
                }
                None if at_end => return Err(err!(BadCopyFileFormat, "COPY file signature not recognized")),
                None => return Ok(0),
            }
        }
        while !self.done {
            let Some((tuple, used)) = crate::copy_binary::parse_tuple(&self.buffer[pos..])? else {
                if at_end && pos < self.buffer.len() {
                    return Err(err!(BadCopyFileFormat, "unexpected EOF in COPY data"));
                }
                break;
            };
            pos += used;
            self.line += 1;
            let Some(fields) = tuple else {
                self.done = true;
                break;
            };
            if fields.len() != self.columns.len() {
                return Err(err!(
                    BadCopyFileFormat,
                    "row field count is {}, expected {} (COPY {}, row {})",
                    fields.len(),
                    self.columns.len(),
                    self.table.name,
                    self.line
                ));
            }
            let mut row = Vec::with_capacity(fields.len());
            for (field, col) in fields.into_iter().zip(&self.columns) {
                row.push(match field {
                    None => Datum::Null,
                    Some(b) => crate::copy_binary::decode(b, self.table.columns[*col].sql_type)?,
                });
            }
            self.binary_rows.push(row);
        }
        Ok(pos)
    }

    async fn write_rows(&mut self) -> Result<()> {
        if self.rows.is_empty() && self.binary_rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let binary_rows = std::mem::take(&mut self.binary_rows);
        let n = rows.len() + binary_rows.len();
        let table = self.table.clone();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; table.columns.len()];
        for (field, col) in self.columns.iter().enumerate() {
            let ty = table.columns[*col].sql_type;
            let name = &table.columns[*col].name;
            columns[*col] = Some(match (self.format.binary, ty) {
                // A binary numeric arrives as its text: cast as text COPY's.
                (true, SqlType::Numeric { .. }) => parse_column(
                    binary_rows.iter().map(|r| match &r[field] {
                        Datum::Text(t) => Some(t.as_str()),
                        _ => None,
                    }),
                    ty,
                    name,
                )?,
                (true, _) => slicedb_common::datum::build_array(ty, binary_rows.iter().map(|r| &r[field]))?,
                (false, _) => parse_column(rows.iter().map(|r| r[field].as_deref()), ty, name)?,
            });
        }
        if !self.defaults.is_empty() {
            let none = RecordBatch::try_new_with_options(
                Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(n)),
            )?;
            for (c, expr) in &self.defaults {
                columns[*c] = Some(expr.evaluate(&none)?.into_array(n)?);
            }
        }
        if !self.checks.is_empty() {
            let full: Vec<ArrayRef> = columns
                .iter()
                .zip(&table.columns)
                .map(|(a, c)| a.clone().unwrap_or_else(|| new_null_array(&c.sql_type.arrow_type(), n)))
                .collect();
            check_rows(&table, &self.checks, &full, n)?;
        }
        let mut writes = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = Vec::with_capacity(table.columns.len());
            for (c, array) in columns.iter().enumerate() {
                let d = match array {
                    Some(a) => Datum::from_array(a.as_ref(), i, table.columns[c].sql_type)?,
                    None => Datum::Null,
                };
                row.push(check_value(&table, c, d)?);
            }
            writes.push(insert_write(&table, row)?);
        }
        for (bucket, w) in writes {
            self.router.push(bucket, w);
        }
        self.router.flush_if_full().await?;
        self.count += n as u64;
        Ok(())
    }
}

/// Reads text fields as values of a column's type, as PostgreSQL does
/// (`slicedb_planner::array_text::text_column`).
fn parse_column<'a>(values: impl Iterator<Item = Option<&'a str>>, ty: SqlType, column: &str) -> Result<ArrayRef> {
    slicedb_planner::array_text::text_column(&StringArray::from_iter(values), ty, Some(column))
}

type Record = Option<Vec<Option<String>>>;

/// Splits a text-format line at delimiters that are not backslash-escaped.
fn split_unescaped(line: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < line.len() {
        if line[i] == b'\\' {
            i += 2;
            continue;
        }
        if line[i] == delimiter {
            fields.push(&line[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    fields.push(&line[start.min(line.len())..]);
    fields
}

/// One text-format line: `Some((None, n))` is the `\.` end marker; `None` means "need more data".
fn parse_text_record(buf: &[u8], f: &CopyFormat, at_end: bool) -> Result<Option<(Record, usize)>> {
    let (line, used) = match buf.iter().position(|b| *b == b'\n') {
        Some(i) => (&buf[..i], i + 1),
        None if at_end && !buf.is_empty() => (buf, buf.len()),
        None => return Ok(None),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"\\." {
        return Ok(Some((None, used)));
    }
    let mut fields = Vec::new();
    for raw in split_unescaped(line, f.delimiter) {
        if raw == f.null.as_bytes() {
            fields.push(None);
            continue;
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() {
                i += 1;
                let c = raw[i];
                match c {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'0'..=b'7' => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                            v = v * 8 + (raw[i] - b'0') as u32;
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                        continue;
                    }
                    b'x' if i + 1 < raw.len() && raw[i + 1].is_ascii_hexdigit() => {
                        let mut v = 0u32;
                        let mut n = 0;
                        i += 1;
                        while n < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                            v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                        continue;
                    }
                    other => out.push(other),
                }
                i += 1;
            } else {
                out.push(raw[i]);
                i += 1;
            }
        }
        fields.push(Some(
            String::from_utf8(out).map_err(|_| err!(InvalidTextRepresentation, "invalid UTF-8 in COPY data"))?,
        ));
    }
    Ok(Some((Some(fields), used)))
}

/// One CSV record (which may span lines inside quotes).
fn parse_csv_record(buf: &[u8], f: &CopyFormat, at_end: bool) -> Result<Option<(Record, usize)>> {
    let mut fields = Vec::new();
    let mut field = Vec::new();
    let mut quoted_field = false;
    let mut in_quotes = false;
    let mut i = 0;
    let utf8 =
        |v: Vec<u8>| String::from_utf8(v).map_err(|_| err!(InvalidTextRepresentation, "invalid UTF-8 in COPY data"));
    // The end marker is a line of its own.
    let line_end = buf.iter().position(|b| *b == b'\n');
    match line_end {
        Some(e) => {
            let line = buf[..e].strip_suffix(b"\r").unwrap_or(&buf[..e]);
            if line == b"\\." {
                return Ok(Some((None, e + 1)));
            }
        }
        None if at_end && (buf == b"\\." || buf == b"\\.\r") => return Ok(Some((None, buf.len()))),
        None => {}
    }
    while i < buf.len() {
        let c = buf[i];
        if in_quotes {
            if c == f.escape
                && f.escape != f.quote
                && i + 1 < buf.len()
                && (buf[i + 1] == f.quote || buf[i + 1] == f.escape)
            {
                field.push(buf[i + 1]);
                i += 2;
                continue;
            }
            if c == f.quote {
                if f.escape == f.quote && i + 1 < buf.len() && buf[i + 1] == f.quote {
                    field.push(f.quote);
                    i += 2;
                    continue;
                }
                if i + 1 >= buf.len() && !at_end {
                    return Ok(None); // can't tell "" from " yet
                }
                in_quotes = false;
                i += 1;
                continue;
            }
            field.push(c);
            i += 1;
            continue;
        }
        if c == f.quote {
            in_quotes = true;
            quoted_field = true;
            i += 1;
        } else if c == f.delimiter {
            fields.push(finish_csv_field(std::mem::take(&mut field), quoted_field, f, &utf8)?);
            quoted_field = false;
            i += 1;
        } else if c == b'\n' || c == b'\r' {
            if c == b'\r' && i + 1 == buf.len() && !at_end {
                return Ok(None); // a \n may follow in the next chunk
            }
            fields.push(finish_csv_field(std::mem::take(&mut field), quoted_field, f, &utf8)?);
            let mut used = i + 1;
            if c == b'\r' && buf.get(i + 1) == Some(&b'\n') {
                used += 1;
            }
            return Ok(Some((Some(fields), used)));
        } else {
            field.push(c);
            i += 1;
        }
    }
    if !at_end || in_quotes {
        if in_quotes && at_end {
            return Err(err!(BadCopyFileFormat, "unterminated CSV quoted field"));
        }
        return Ok(None);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    fields.push(finish_csv_field(field, quoted_field, f, &utf8)?);
    Ok(Some((Some(fields), buf.len())))
}

fn finish_csv_field(
    field: Vec<u8>,
    quoted: bool,
    f: &CopyFormat,
    utf8: &dyn Fn(Vec<u8>) -> Result<String>,
) -> Result<Option<String>> {
    if !quoted && field == f.null.as_bytes() {
        return Ok(None);
    }
    utf8(field).map(Some)
}

fn escape_text(s: &str, delimiter: u8, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' if delimiter == b'\t' => out.extend_from_slice(b"\\t"),
            b if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

fn escape_csv(s: &str, f: &CopyFormat, out: &mut Vec<u8>) {
    let needs = s.is_empty() && f.null.is_empty()
        || s.bytes()
            .any(|b| b == f.delimiter || b == f.quote || b == b'\n' || b == b'\r')
        || s == f.null;
    if !needs {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(f.quote);
    for b in s.bytes() {
        if b == f.quote || b == f.escape {
            out.push(f.escape);
        }
        out.push(b);
    }
    out.push(f.quote);
}

impl Coordinator {
    pub async fn copy(
        &self,
        session: &mut crate::Session,
        source: CopySource,
        to: bool,
        target: CopyTarget,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<Output> {
        let format = CopyFormat::from_options(options, legacy)?;
        let (table_name, columns) = match source {
            CopySource::Table { table_name, columns } => (relation_name(&table_name)?, columns),
            CopySource::Query(_) => {
                return Err(err!(
                    FeatureNotSupported,
                    "COPY (query) is not supported; use COPY table"
                ))
            }
        };
        let mut state = self.ctx.state();
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(session.statement_values());
        state.mark_start_execution();
        let slice_table: SliceTable = self.slice_table(&table_name)?.with_constraints(&state)?;
        let table = slice_table.table.clone();
        let columns: Vec<usize> = if columns.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    let n = normalize(c);
                    table.column_index(&n).ok_or_else(|| {
                        err!(
                            UndefinedColumn,
                            "column \"{n}\" of relation \"{table_name}\" does not exist"
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        match (to, target) {
            (false, CopyTarget::Stdin) => {
                if session.in_block() && session.read_only {
                    return Err(err!(
                        ReadOnlySqlTransaction,
                        "cannot execute COPY FROM in a read-only transaction"
                    ));
                }
                let lock_timeout_ms = session.lock_timeout_ms();
                let (stmt, implicit) = match session.txn.as_mut() {
                    Some(txn) => {
                        txn.lock_timeout_ms = lock_timeout_ms;
                        (txn.statement(), None)
                    }
                    None => {
                        let mut txn = self.txns.begin().await?;
                        txn.lock_timeout_ms = lock_timeout_ms;
                        (txn.statement(), Some(txn))
                    }
                };
                let empty = datafusion::common::DFSchema::empty();
                // Defaults are folded as a planned statement's are: `now()`
                // and `localtimestamp` become the COPY's start, once.
                let simplifier = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(
                    datafusion::logical_expr::simplify::SimplifyContext::builder()
                        .with_config_options(state.config_options().clone())
                        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
                        .build(),
                );
                let mut defaults = Vec::new();
                for (c, default) in slice_table.constraints.defaults.iter().enumerate() {
                    if let (Some(e), false) = (default, columns.contains(&c)) {
                        let e = datafusion::logical_expr::ExprSchemable::cast_to(
                            e.clone(),
                            &table.columns[c].sql_type.arrow_type(),
                            &empty,
                        )?;
                        let e = simplifier.simplify(e)?;
                        defaults.push((c, state.create_physical_expr(e, &empty)?));
                    }
                }
                let checks = slice_table.physical_checks(&state)?;
                Ok(Output::CopyIn(Box::new(CopyIn {
                    table,
                    columns,
                    defaults,
                    checks,
                    skip_header: format.header,
                    format,
                    buffer: Vec::new(),
                    rows: Vec::new(),
                    binary_rows: Vec::new(),
                    binary_header: false,
                    router: RowRouter::new(slice_table, stmt),
                    implicit,
                    line: 0,
                    count: 0,
                    done: false,
                })))
            }
            (true, CopyTarget::Stdout) => {
                let (snapshot, stmt) = match session.txn.as_mut() {
                    Some(txn) => (None, txn.statement()),
                    None => {
                        let (s, stmt) = self.txns.read_only_statement().await?;
                        (Some(s), stmt)
                    }
                };
                let out = self.copy_out(table, columns, format, stmt).await?;
                Ok(crate::execute::keep_until_read(out, snapshot))
            }
            _ => Err(err!(
                FeatureNotSupported,
                "COPY to or from a file or program is not supported; use STDIN or STDOUT (psql's \\copy)"
            )),
        }
    }

    async fn copy_out(
        &self,
        table: Arc<TableDef>,
        columns: Vec<usize>,
        format: CopyFormat,
        stmt: Arc<StatementTxn>,
    ) -> Result<Output> {
        let names: Vec<String> = columns
            .iter()
            .map(|c| format!("\"{}\"", table.columns[*c].name.replace('"', "\"\"")))
            .collect();
        let sql = format!(
            "SELECT {} FROM \"{}\"",
            names.join(", "),
            table.name.replace('"', "\"\"")
        );
        let mut state = self.ctx.state();
        state.config_mut().set_extension(stmt);
        let plan = state.create_logical_plan(&sql).await?;
        let stream = datafusion::dataframe::DataFrame::new(state, plan)
            .execute_stream()
            .await?;
        let types: Vec<SqlType> = columns.iter().map(|c| table.columns[*c].sql_type).collect();
        let n = columns.len();
        let mut header = Vec::new();
        if format.header {
            for (i, c) in columns.iter().enumerate() {
                if i > 0 {
                    header.push(format.delimiter);
                }
                escape_csv(&table.columns[*c].name, &format, &mut header);
            }
            header.push(b'\n');
        }
        if format.binary {
            header.extend_from_slice(crate::copy_binary::SIGNATURE);
            header.extend_from_slice(&[0; 8]); // no flags, no header extension
        }
        // One CopyData message per row, as PostgreSQL sends them: pgwire
        // counts the messages for the command tag (`COPY n`). The header
        // goes out with the first row (alone when there is none, which
        // pgwire then counts as a row); pgwire appends the binary trailer.
        let header = Arc::new(std::sync::Mutex::new((!header.is_empty()).then_some(header)));
        let first = header.clone();
        let binary = format.binary;
        let rows = stream.flat_map(move |batch| {
            let mut messages: Vec<Result<Vec<u8>>> = Vec::new();
            let encode = || -> Result<()> {
                let batch = batch.map_err(Error::from)?;
                for i in 0..batch.num_rows() {
                    let mut out = first.lock().expect("copy header").take().unwrap_or_default();
                    if binary {
                        out.extend_from_slice(&(n as i16).to_be_bytes());
                        for (c, ty) in types.iter().enumerate() {
                            let d = Datum::from_array(batch.column(c).as_ref(), i, *ty)?;
                            crate::copy_binary::encode(&d, *ty, &mut out)?;
                        }
                    } else {
                        for (c, ty) in types.iter().enumerate() {
                            if c > 0 {
                                out.push(format.delimiter);
                            }
                            match Datum::from_array(batch.column(c).as_ref(), i, *ty)?.pg_text(*ty) {
                                None => out.extend_from_slice(format.null.as_bytes()),
                                Some(s) if format.csv => escape_csv(&s, &format, &mut out),
                                Some(s) => escape_text(&s, format.delimiter, &mut out),
                            }
                        }
                        out.push(b'\n');
                    }
                    messages.push(Ok(out));
                }
                Ok(())
            };
            if let Err(e) = encode() {
                messages.push(Err(e));
            }
            futures::stream::iter(messages)
        });
        let unsent = futures::stream::once(async move { header.lock().expect("copy header").take() })
            .filter_map(|h| async move { h.map(Ok) });
        Ok(Output::CopyOut {
            columns: n,
            binary,
            rows: rows.chain(unsent).boxed(),
        })
    }
}

impl Coordinator {
    /// Ends a `COPY … FROM STDIN` whose data is complete: the rows are
    /// written, and the implicit transaction of a COPY outside a block is
    /// committed.
    pub async fn finish_copy(&self, session: &mut crate::Session, mut copy: CopyIn) -> Result<u64> {
        let implicit = copy.implicit.take();
        let stmt = copy.router.statement().clone();
        let mut result = copy.finish().await;
        if result.is_ok() {
            // Foreign-key work, deferred work too outside a block.
            let sequences = session.statement_values();
            if let Err(e) = self.keep_foreign_keys(&stmt, &sequences, implicit.is_some()).await {
                result = Err(e);
            }
        }
        if result.is_err() {
            let seq = stmt.write.map(|w| w.seq).unwrap_or(0);
            stmt.take_fk_events(|e| e.seq() < seq)?;
        }
        self.end_copy(session, implicit, result).await
    }

    /// Ends a `COPY … FROM STDIN` that failed with `error`: its rows are
    /// rolled back (with the block it ran in, if any).
    pub async fn abort_copy(&self, session: &mut crate::Session, mut copy: CopyIn, error: Error) -> Error {
        let implicit = copy.implicit.take();
        match self.end_copy(session, implicit, Err(error)).await {
            Err(e) => e,
            Ok(_) => Error::internal("a failed COPY succeeded"),
        }
    }

    async fn end_copy(
        &self,
        session: &mut crate::Session,
        implicit: Option<slicedb_txn::Transaction>,
        result: Result<u64>,
    ) -> Result<u64> {
        match (result, implicit) {
            (Ok(n), Some(mut txn)) => {
                self.txns.commit(&mut txn).await?;
                Ok(n)
            }
            (Err(e), Some(mut txn)) => {
                self.txns.rollback(&mut txn).await;
                Err(e)
            }
            (Ok(n), None) => Ok(n),
            (Err(e), None) => {
                session.failed |= session.in_block();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).unwrap()
    }

    fn csv() -> CopyFormat {
        CopyFormat::from_options(&[CopyOption::Format("csv".into())], &[]).unwrap()
    }

    #[test]
    fn text_format_escapes_and_nulls() {
        let (rec, used) = parse_text_record(b"1\t\\N\ta\\tb\\\\c\nrest", &text(), false)
            .unwrap()
            .unwrap();
        assert_eq!(used, 13);
        assert_eq!(rec.unwrap(), vec![Some("1".into()), None, Some("a\tb\\c".into())]);
        assert!(parse_text_record(b"partial", &text(), false).unwrap().is_none());
        assert!(parse_text_record(b"\\.\n", &text(), false)
            .unwrap()
            .unwrap()
            .0
            .is_none());
    }

    #[test]
    fn csv_quotes_newlines_and_nulls() {
        let (rec, _) = parse_csv_record(b"1,\"a,\"\"b\"\"\nc\",,\"\"\n", &csv(), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            rec.unwrap(),
            vec![Some("1".into()), Some("a,\"b\"\nc".into()), None, Some("".into())]
        );
        assert!(parse_csv_record(b"1,\"open", &csv(), false).unwrap().is_none());
        let (rec, _) = parse_csv_record(b"7,x", &csv(), true).unwrap().unwrap();
        assert_eq!(rec.unwrap().len(), 2);
    }

    #[test]
    fn chunk_boundaries_and_escaped_delimiters() {
        // \r\n split across chunks: wait for the \n
        assert!(parse_csv_record(b"1,a\r", &csv(), false).unwrap().is_none());
        let (rec, used) = parse_csv_record(b"1,a\r\n2,b", &csv(), false).unwrap().unwrap();
        assert_eq!((rec.unwrap().len(), used), (2, 5));
        // the end marker as the very last bytes
        assert!(parse_csv_record(b"\\.", &csv(), true).unwrap().unwrap().0.is_none());
        assert!(parse_text_record(b"\\.", &text(), true).unwrap().unwrap().0.is_none());
        // an escaped delimiter is data
        let pipe = CopyFormat {
            delimiter: b'|',
            ..text()
        };
        let (rec, _) = parse_text_record(b"a\\|b|c\n", &pipe, false).unwrap().unwrap();
        assert_eq!(rec.unwrap(), vec![Some("a|b".into()), Some("c".into())]);
    }

    #[test]
    fn bad_values_name_the_type() {
        let e = parse_column([Some("12"), Some("x1")].into_iter(), SqlType::BigInt, "id").unwrap_err();
        assert_eq!(e.state.code(), "22P02");
        assert!(e.message.contains("bigint: \"x1\""), "{}", e.message);
    }
}
