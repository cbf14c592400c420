//! The bytes each bucket of a table takes, from RocksDB's own estimate.
//!
//! A bucket is one contiguous key range in the rows family and one in the
//! history family (see the crate's key layout), so its size is what
//! RocksDB estimates for those two ranges: the part of each SST file's
//! index the range spans, plus an estimate of the range in the memtables.
//! Nothing is read or decoded, so asking for every bucket of a large
//! table costs index look-ups, not a scan. SST estimates are as fine as
//! a data block (4 KiB before compression): a bucket smaller than a block
//! may read as 0 or as a whole block, but the estimates of consecutive
//! buckets add up to the estimate of their whole run, which is what the
//! rebalancer and `SHOW SLICE LOAD` sum.
//!
//! `rust-rocksdb` wraps only the estimate that leaves memtables out (rows
//! written since the last flush would count as 0), so this module calls
//! RocksDB's C API for the one that includes them.

use std::os::raw::c_char;

use librocksdb_sys as ffi;
use rocksdb::AsRawPtr;
use slicedb_codec::key::{bucket_end_exclusive, bucket_start};
use slicedb_common::{Error, Result, TableId};

use crate::mvcc::HISTORY_CF;
use crate::slice_db::ROWS_CF;
use crate::store::SliceStore;

/// Ranges asked of RocksDB in one call.
const RANGES_PER_CALL: usize = 4096;

impl SliceStore {
    /// The approximate bytes (rows and their older versions) of each
    /// bucket in `first..=last` of `table`, in bucket order.
    pub fn bucket_sizes(&self, table: TableId, first: u16, last: u16) -> Result<Vec<u64>> {
        if first > last {
            return Ok(Vec::new());
        }
        let starts: Vec<Vec<u8>> = (first..=last).map(|b| bucket_start(table, b)).collect();
        let ends: Vec<Vec<u8>> = (first..=last).map(|b| bucket_end_exclusive(table, b)).collect();
        let mut sizes = vec![0u64; starts.len()];
        for role in [ROWS_CF, HISTORY_CF] {
            let cf = self.cf(role)?;
            for (i, (s, e)) in starts
                .chunks(RANGES_PER_CALL)
                .zip(ends.chunks(RANGES_PER_CALL))
                .enumerate()
            {
                let part = approximate_sizes(&self.db, cf, s, e)?;
                for (j, n) in part.into_iter().enumerate() {
                    sizes[i * RANGES_PER_CALL + j] += n;
                }
            }
        }
        Ok(sizes)
    }
}

/// RocksDB's estimate of the bytes of each `[starts[i], ends[i])` in `cf`,
/// SST files and memtables both.
fn approximate_sizes(
    db: &rocksdb::DB,
    cf: &rocksdb::ColumnFamily,
    starts: &[Vec<u8>],
    ends: &[Vec<u8>],
) -> Result<Vec<u64>> {
    use rocksdb::AsColumnFamilyRef;
    let n = starts.len();
    let start_ptrs: Vec<*const c_char> = starts.iter().map(|k| k.as_ptr() as *const c_char).collect();
    let start_lens: Vec<usize> = starts.iter().map(Vec::len).collect();
    let end_ptrs: Vec<*const c_char> = ends.iter().map(|k| k.as_ptr() as *const c_char).collect();
    let end_lens: Vec<usize> = ends.iter().map(Vec::len).collect();
    let mut sizes = vec![0u64; n];
    let mut err: *mut c_char = std::ptr::null_mut();
    let flags = (ffi::rocksdb_size_approximation_flags_include_memtable
        | ffi::rocksdb_size_approximation_flags_include_files) as u8;
    // SAFETY: `db` and `cf` outlive the call; every array holds `n`
    // elements and the key buffers they point to live until it returns;
    // RocksDB writes `n` sizes and, on failure, a malloc'ed message to
    // `err`, which is freed below.
    unsafe {
        ffi::rocksdb_approximate_sizes_cf_with_flags(
            db.as_raw_ptr(),
            cf.inner(),
            n as i32,
            start_ptrs.as_ptr(),
            start_lens.as_ptr(),
            end_ptrs.as_ptr(),
            end_lens.as_ptr(),
            flags,
            sizes.as_mut_ptr(),
            &mut err,
        );
        if !err.is_null() {
            let message = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
            ffi::rocksdb_free(err as *mut std::ffi::c_void);
            return Err(Error::io(format!("slice storage: approximate sizes: {message}")));
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use slicedb_common::Datum;

    use crate::key::{row_key, storage_key};
    use crate::store::SliceStore;

    #[test]
    fn sizes_count_unflushed_rows_and_sum_over_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = SliceStore::open(dir.path()).unwrap();
        let rows = store.rows().unwrap();
        // 200 rows of 1 KB in bucket 7, none in bucket 8, 50 in bucket 9.
        for (bucket, n) in [(7u16, 200i64), (9, 50)] {
            for i in 0..n {
                let k = storage_key(5, &row_key(bucket, &[Datum::Int64(i)]).unwrap());
                store.db.put_cf(rows, k, vec![b'x'; 1000]).unwrap();
            }
        }
        let before = store.bucket_sizes(5, 6, 10).unwrap();
        assert_eq!(before.len(), 5);
        assert!(before[1] > 100_000, "memtable rows count: {before:?}");
        assert!(before[1] > before[3], "{before:?}");
        assert_eq!(before[2], 0, "{before:?}");
        store.db.flush_cf(rows).unwrap();
        let after = store.bucket_sizes(5, 6, 10).unwrap();
        assert!(after[1] > 150_000 && after[1] < 300_000, "{after:?}");
        assert!(after[3] > 30_000 && after[3] < 80_000, "{after:?}");
        let whole = store.bucket_sizes(5, 0, u16::MAX).unwrap();
        assert_eq!(whole.len(), 65_536);
        let total: u64 = whole.iter().sum();
        assert!(total >= after[1] + after[3] && total < 400_000, "{total}");
        assert_eq!(store.bucket_sizes(6, 0, 3).unwrap(), vec![0; 4]);
        // A moved-away bucket stops counting once it is deleted.
        store.delete_buckets(5, &[(7, 7)]).unwrap();
        let gone = store.bucket_sizes(5, 6, 10).unwrap();
        assert!(gone[1] < 4096, "at most a block: {gone:?}");
        assert!(gone[3] > 30_000, "{gone:?}");
    }
}
