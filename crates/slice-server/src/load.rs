//! Load per bucket: the reads and writes each bucket of each table takes
//! on this slice server, over a sliding 10-second window and a 5-minute
//! average.
//!
//! Every point read, scan and write a slice server serves is counted
//! against the buckets of the rows it touched: a read counts the rows it
//! returned (a point read that finds nothing counts one, since it cost a
//! look-up), a write counts rows and their bytes. A scan adds its rows
//! bucket by bucket as it crosses bucket boundaries, so a counter is
//! touched once per bucket, not once per row.
//!
//! Time is cut into 10-second *slots*. Each bucket keeps the counts of the
//! slot under way and of the one before; the 10-second rate is the count of
//! the last 10 seconds, taking the earlier slot in proportion to how much
//! of it still lies in the window (the approximation rate limiters use).
//! The 5-minute figure is an exponentially weighted moving average of the
//! completed slots with a time constant of 5 minutes (as Unix load
//! averages are), so it needs no ring of 30 slots per bucket.
//!
//! Counters live in sharded maps keyed by table and bucket, holding only
//! buckets that saw traffic; a bucket idle for half an hour is forgotten
//! the next time the counters are read (at most 65,536 per table between).
//! The coordinator gathers them with `SliceRequest::BucketLoad` (see
//! `slicedb.bucket_load` and `SHOW SLICE LOAD`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use slicedb_common::{Datum, TableId};

/// The length of a slot, in milliseconds.
const SLOT_MS: u64 = 10_000;
/// The time constant of the long average, in seconds.
const LONG_WINDOW_SECS: f64 = 300.0;
/// Slots after which an idle bucket is forgotten (30 minutes).
const FORGET_AFTER_SLOTS: u64 = 180;
/// Independent locks over the counters.
const SHARDS: usize = 16;

/// Counts of one slot.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    /// Rows read (a point read that found nothing counts one).
    pub reads: u64,
    /// Rows written.
    pub writes: u64,
    /// Bytes of the rows written (keys and values as sent).
    pub write_bytes: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.write_bytes += other.write_bytes;
    }
}

/// Rates per second of one bucket.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Over the last 10 seconds.
    pub reads_per_s: f64,
    pub writes_per_s: f64,
    pub write_bytes_per_s: f64,
    /// The 5-minute average.
    pub reads_per_s_5m: f64,
    pub writes_per_s_5m: f64,
}

/// One bucket's counters.
#[derive(Debug, Clone)]
struct Counters {
    /// The slot `current` counts.
    slot: u64,
    current: Tally,
    previous: Tally,
    /// The long averages of reads and writes per second, as of the start
    /// of `slot`.
    long_reads: f64,
    long_writes: f64,
}

impl Counters {
    fn new(slot: u64) -> Counters {
        Counters {
            slot,
            current: Tally::default(),
            previous: Tally::default(),
            long_reads: 0.0,
            long_writes: 0.0,
        }
    }

    /// Moves on to `slot`: the slot under way is complete, and the slots
    /// between (if any) saw nothing.
    fn roll(&mut self, slot: u64) {
        if slot <= self.slot {
            return;
        }
        let gap = slot - self.slot;
        let keep = decay(1);
        let secs = (SLOT_MS / 1000) as f64;
        self.long_reads = self.long_reads * keep + (1.0 - keep) * self.current.reads as f64 / secs;
        self.long_writes = self.long_writes * keep + (1.0 - keep) * self.current.writes as f64 / secs;
        if gap > 1 {
            let idle = decay(gap - 1);
            self.long_reads *= idle;
            self.long_writes *= idle;
        }
        self.previous = if gap == 1 { self.current } else { Tally::default() };
        self.current = Tally::default();
        self.slot = slot;
    }

    /// The rates at `now_ms`.
    fn rates(&self, now_ms: u64) -> Rates {
        let mut c = self.clone();
        c.roll(now_ms / SLOT_MS);
        // The window is the part of this slot gone by plus the tail of the
        // one before.
        let earlier = 1.0 - (now_ms % SLOT_MS) as f64 / SLOT_MS as f64;
        let secs = SLOT_MS as f64 / 1000.0;
        let rate = |cur: u64, prev: u64| (cur as f64 + prev as f64 * earlier) / secs;
        Rates {
            reads_per_s: rate(c.current.reads, c.previous.reads),
            writes_per_s: rate(c.current.writes, c.previous.writes),
            write_bytes_per_s: rate(c.current.write_bytes, c.previous.write_bytes),
            reads_per_s_5m: c.long_reads,
            writes_per_s_5m: c.long_writes,
        }
    }
}

/// The weight the long average keeps after `slots` slots.
fn decay(slots: u64) -> f64 {
    (-((slots * SLOT_MS) as f64 / 1000.0) / LONG_WINDOW_SECS).exp()
}

type Shard = HashMap<(TableId, u16), Counters>;

/// The environment variable that turns counting off (`off`), to measure
/// what it costs.
pub const DISABLE_ENV: &str = "SLICEDB_BUCKET_LOAD";

/// The load counters of one slice server.
pub struct LoadTracker {
    started: Instant,
    shards: Vec<Mutex<Shard>>,
    /// False when [`DISABLE_ENV`] is `off`: nothing is counted.
    enabled: bool,
}

impl Default for LoadTracker {
    fn default() -> Self {
        LoadTracker {
            started: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            enabled: std::env::var(DISABLE_ENV).map_or(true, |v| v != "off"),
        }
    }
}

impl LoadTracker {
    /// Counts `tally` against `bucket` of `table`.
    pub fn record(&self, table: TableId, bucket: u16, tally: Tally) {
        if self.enabled {
            self.record_at(table, bucket, tally, self.now_ms());
        }
    }

    /// The rates of the buckets of `table` in `first..=last` that saw
    /// traffic in the last half hour, in bucket order.
    pub fn rates(&self, table: TableId, first: u16, last: u16) -> Vec<(u16, Rates)> {
        self.rates_at(table, first, last, self.now_ms())
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn shard(&self, table: TableId, bucket: u16) -> &Mutex<Shard> {
        // Neighbouring buckets go to different shards.
        let h = (table as usize).wrapping_mul(31).wrapping_add(bucket as usize);
        &self.shards[h % SHARDS]
    }

    fn record_at(&self, table: TableId, bucket: u16, tally: Tally, now_ms: u64) {
        let slot = now_ms / SLOT_MS;
        let mut shard = self.shard(table, bucket).lock().unwrap_or_else(|e| e.into_inner());
        let c = shard.entry((table, bucket)).or_insert_with(|| Counters::new(slot));
        c.roll(slot);
        c.current.add(tally);
    }

    fn rates_at(&self, table: TableId, first: u16, last: u16, now_ms: u64) -> Vec<(u16, Rates)> {
        let slot = now_ms / SLOT_MS;
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, c| c.slot + FORGET_AFTER_SLOTS > slot);
            out.extend(
                shard
                    .iter()
                    .filter(|((t, b), _)| *t == table && (first..=last).contains(b))
                    .map(|((_, b), c)| (*b, c.rates(now_ms))),
            );
        }
        out.sort_by_key(|(b, _)| *b);
        out
    }
}

/// Counts rows per bucket as a scan or a batch of writes goes by, and
/// hands each bucket's count to the tracker once.
pub struct BucketCounter<'a> {
    tracker: &'a LoadTracker,
    table: TableId,
    bucket: Option<u16>,
    tally: Tally,
}

impl<'a> BucketCounter<'a> {
    pub fn new(tracker: &'a LoadTracker, table: TableId) -> Self {
        BucketCounter {
            tracker,
            table,
            bucket: None,
            tally: Tally::default(),
        }
    }

    /// Counts `tally` against the bucket that row key `key` starts with.
    pub fn add(&mut self, key: &[u8], tally: Tally) {
        let Some(bucket) = key.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return;
        };
        self.add_to(bucket, tally);
    }

    /// Counts `tally` against `bucket`.
    pub fn add_to(&mut self, bucket: u16, tally: Tally) {
        if self.bucket != Some(bucket) {
            self.flush();
            self.bucket = Some(bucket);
        }
        self.tally.add(tally);
    }

    fn flush(&mut self) {
        if let Some(b) = self.bucket.take() {
            let tally = std::mem::take(&mut self.tally);
            if tally != Tally::default() {
                self.tracker.record(self.table, b, tally);
            }
        }
    }
}

impl Drop for BucketCounter<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// About the bytes a row takes as written: the row's key and values.
pub fn row_bytes(key_len: usize, row: &[Datum]) -> u64 {
    let values: usize = row
        .iter()
        .map(|d| match d {
            Datum::Null => 0,
            Datum::Bool(_) => 1,
            Datum::Int16(_) => 2,
            Datum::Int32(_) | Datum::Float32(_) | Datum::Date(_) => 4,
            Datum::Text(s) => s.len(),
            Datum::Bytes(b) => b.len(),
            Datum::Decimal { .. } => 16,
            _ => 8,
        })
        .sum();
    (key_len + values) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(n: u64) -> Tally {
        Tally {
            reads: n,
            ..Tally::default()
        }
    }

    #[test]
    fn the_short_rate_slides_over_two_slots() {
        let t = LoadTracker::default();
        // 100 reads in the first slot; nothing after.
        t.record_at(1, 5, reads(100), 1_000);
        let at = |ms| t.rates_at(1, 0, 10, ms)[0].1.reads_per_s;
        assert_eq!(at(9_999), 10.0);
        // Half of the earlier slot is still in the window.
        assert!((at(15_000) - 5.0).abs() < 1e-9, "{}", at(15_000));
        assert_eq!(at(20_000), 0.0);
        // Other buckets and tables are not reported.
        assert!(t.rates_at(1, 6, 10, 2_000).is_empty());
        assert!(t.rates_at(2, 0, 10, 2_000).is_empty());
    }

    #[test]
    fn the_long_average_tends_to_the_steady_rate_and_decays_when_idle() {
        let t = LoadTracker::default();
        // 50 writes per second for 30 minutes.
        for s in 0..1800u64 {
            t.record_at(
                3,
                9,
                Tally {
                    writes: 50,
                    write_bytes: 5_000,
                    ..Tally::default()
                },
                s * 1000,
            );
        }
        let r = t.rates_at(3, 9, 9, 1_800_000)[0].1;
        assert!((r.writes_per_s - 50.0).abs() < 1e-9, "{r:?}");
        assert!((r.write_bytes_per_s - 5_000.0).abs() < 1e-6, "{r:?}");
        assert!((r.writes_per_s_5m - 50.0).abs() < 0.2, "{r:?}");
        // Five idle minutes later: the short rate is 0, the long one has
        // kept about 1/e.
        let r = t.rates_at(3, 9, 9, 2_100_000)[0].1;
        assert_eq!(r.writes_per_s, 0.0);
        assert!(r.writes_per_s_5m > 15.0 && r.writes_per_s_5m < 21.0, "{r:?}");
        // Half an hour idle: forgotten.
        assert!(t.rates_at(3, 9, 9, 3_700_000).is_empty());
    }

    #[test]
    fn a_counter_touches_the_tracker_once_per_bucket_run() {
        let t = LoadTracker::default();
        {
            let mut c = BucketCounter::new(&t, 4);
            for key in [[0u8, 1, 9], [0, 1, 10], [0, 2, 1], [0, 1, 11]] {
                c.add(&key, reads(1));
            }
        }
        let r = t.rates(4, 0, u16::MAX);
        assert_eq!(r.iter().map(|(b, _)| *b).collect::<Vec<_>>(), vec![1, 2]);
        let per_bucket: Vec<f64> = r.iter().map(|(_, r)| r.reads_per_s).collect();
        // 3 and 1 reads in a window that may have just begun: rates in the
        // ratio 3:1.
        assert!((per_bucket[0] - 3.0 * per_bucket[1]).abs() < 1e-9, "{per_bucket:?}");
    }
}
