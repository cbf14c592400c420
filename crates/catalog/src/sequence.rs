//! Sequences: their definition and the durable high-water mark from which
//! coordinators take ranges of values.
//!
//! A sequence is stored as one document, `sequence/<name>`, whose `next` is
//! the first value no coordinator has been handed yet. `nextval` is served
//! from a range cached in the coordinator's memory; when the range is used
//! up, [`Catalog::allocate_sequence`] moves `next` past a new range in one
//! synced write before any value of it is returned. So every value is
//! handed out at most once, across sessions and restarts, and a crash loses
//! at most the rest of the cached range (a gap, as PostgreSQL also leaves
//! after a crash: it logs 32 values ahead).
//!
//! Allocation does not change the catalog version: no plan depends on it.

use serde::{Deserialize, Serialize};
use slicedb_common::{err, Result, SqlType};

/// A sequence, as `CREATE SEQUENCE` (or a serial or identity column) defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceDef {
    pub name: String,
    /// `smallint`, `integer` or `bigint`: bounds the default limits.
    pub data_type: SqlType,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    /// Values a coordinator takes per allocation, at least.
    pub cache: i64,
    pub cycle: bool,
    /// The column whose default uses it (`serial`, identity, `OWNED BY`):
    /// the sequence is dropped with the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<(String, String)>,
    /// The first value not handed out yet; `None` once a sequence without
    /// CYCLE has handed out its last value.
    pub next: Option<i64>,
}

impl SequenceDef {
    /// A sequence of `data_type` with PostgreSQL's defaults: ascending from
    /// 1 by 1 up to the type's maximum.
    pub fn new(name: impl Into<String>, data_type: SqlType) -> SequenceDef {
        let max = type_max(data_type);
        SequenceDef {
            name: name.into(),
            data_type,
            start: 1,
            increment: 1,
            min: 1,
            max,
            cache: 1,
            cycle: false,
            owned_by: None,
            next: Some(1),
        }
    }

    /// Checks the options against each other, as `CREATE SEQUENCE` does.
    pub fn validate(&self) -> Result<()> {
        if self.increment == 0 {
            return Err(err!(InvalidParameterValue, "INCREMENT must not be zero"));
        }
        let (lo, hi) = (type_min(self.data_type), type_max(self.data_type));
        if self.min < lo || self.max > hi {
            return Err(err!(
                InvalidParameterValue,
                "MINVALUE ({}) and MAXVALUE ({}) are out of range for sequence data type {}",
                self.min,
                self.max,
                self.data_type.pg_name()
            ));
        }
        if self.min >= self.max {
            return Err(err!(
                InvalidParameterValue,
                "MINVALUE ({}) must be less than MAXVALUE ({})",
                self.min,
                self.max
            ));
        }
        if self.start < self.min {
            return Err(err!(
                InvalidParameterValue,
                "START value ({}) cannot be less than MINVALUE ({})",
                self.start,
                self.min
            ));
        }
        if self.start > self.max {
            return Err(err!(
                InvalidParameterValue,
                "START value ({}) cannot be greater than MAXVALUE ({})",
                self.start,
                self.max
            ));
        }
        if self.cache < 1 {
            return Err(err!(
                InvalidParameterValue,
                "CACHE ({}) must be greater than zero",
                self.cache
            ));
        }
        Ok(())
    }

    /// Takes up to `count` values from `next` on: the first value and how
    /// many were taken (fewer at the end of a sequence without CYCLE, or at
    /// the wrap of one with it). Fails with 2200H when none is left.
    pub fn take(&mut self, count: i64) -> Result<(i64, i64)> {
        let next = match self.next {
            Some(n) => n,
            None => return Err(self.exhausted()),
        };
        let inc = self.increment as i128;
        // How many values fit from `next` to the limit in this direction.
        let room = if inc > 0 {
            (self.max as i128 - next as i128) / inc + 1
        } else {
            (self.min as i128 - next as i128) / inc + 1
        };
        let taken = (count.max(1) as i128).min(room.max(0));
        if taken <= 0 {
            return Err(self.exhausted());
        }
        let after = next as i128 + taken * inc;
        self.next = if after > self.max as i128 || after < self.min as i128 {
            if self.cycle {
                Some(if inc > 0 { self.min } else { self.max })
            } else {
                None
            }
        } else {
            Some(after as i64)
        };
        Ok((next, taken as i64))
    }

    /// `setval(v, is_called)`: the next value is `v` (not called) or the one after it.
    pub fn set(&mut self, value: i64, is_called: bool) -> Result<()> {
        if value < self.min || value > self.max {
            return Err(err!(
                NumericValueOutOfRange,
                "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                self.name,
                self.min,
                self.max
            ));
        }
        if !is_called {
            self.next = Some(value);
            return Ok(());
        }
        let after = value as i128 + self.increment as i128;
        self.next = if after > self.max as i128 || after < self.min as i128 {
            if self.cycle {
                Some(if self.increment > 0 { self.min } else { self.max })
            } else {
                None
            }
        } else {
            Some(after as i64)
        };
        Ok(())
    }

    fn exhausted(&self) -> slicedb_common::Error {
        if self.increment > 0 {
            err!(
                SequenceGeneratorLimitExceeded,
                "nextval: reached maximum value of sequence \"{}\" ({})",
                self.name,
                self.max
            )
        } else {
            err!(
                SequenceGeneratorLimitExceeded,
                "nextval: reached minimum value of sequence \"{}\" ({})",
                self.name,
                self.min
            )
        }
    }
}

/// The largest value of a sequence's data type.
pub fn type_max(t: SqlType) -> i64 {
    match t {
        SqlType::SmallInt => i16::MAX as i64,
        SqlType::Integer => i32::MAX as i64,
        _ => i64::MAX,
    }
}

/// The smallest value of a sequence's data type.
pub fn type_min(t: SqlType) -> i64 {
    match t {
        SqlType::SmallInt => i16::MIN as i64,
        SqlType::Integer => i32::MIN as i64,
        _ => i64::MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_run_to_the_limit_then_fail_or_cycle() {
        let mut s = SequenceDef::new("s", SqlType::SmallInt);
        s.max = 10;
        assert_eq!(s.take(4).unwrap(), (1, 4));
        assert_eq!(s.take(100).unwrap(), (5, 6), "only what is left up to MAXVALUE");
        assert_eq!(s.take(1).unwrap_err().state.code(), "2200H");
        s.cycle = true;
        s.set(10, true).unwrap();
        assert_eq!(s.take(3).unwrap(), (1, 3), "CYCLE starts again at MINVALUE");
    }

    #[test]
    fn descending_sequences_and_setval() {
        let mut s = SequenceDef::new("d", SqlType::BigInt);
        s.increment = -2;
        s.min = -5;
        s.max = -1;
        s.start = -1;
        s.next = Some(-1);
        assert_eq!(s.take(10).unwrap(), (-1, 3));
        assert!(s.take(1).is_err());
        s.set(-3, false).unwrap();
        assert_eq!(s.take(1).unwrap(), (-3, 1));
        assert_eq!(s.set(7, true).unwrap_err().state.code(), "22003");
    }

    #[test]
    fn options_are_checked() {
        let mut s = SequenceDef::new("s", SqlType::Integer);
        s.increment = 0;
        assert_eq!(s.validate().unwrap_err().state.code(), "22023");
        let mut s = SequenceDef::new("s", SqlType::Integer);
        s.max = i64::MAX;
        assert!(s.validate().is_err(), "MAXVALUE past the integer range");
    }
}
