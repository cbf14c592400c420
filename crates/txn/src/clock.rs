//! The timestamp oracle: strictly increasing timestamps that never go back,
//! not even across a restart (see `docs/transactions.md`, "Timestamps").

use std::sync::{Arc, Mutex};

use slicedb_catalog::Catalog;
use slicedb_common::{Error, Result};
use slicedb_storage::Timestamp;

/// How far ahead of the last timestamp the durable ceiling is set.
const CEILING_STEP: u64 = 10_000_000;

/// The timestamp oracle.
///
/// The durable ceiling is raised ahead of need: once the timestamps come
/// within half a step of it, a blocking task raises it by a step, with no
/// lock of the clock held during the fsync. A caller waits for the fsync
/// only if the timestamps reach the ceiling before that raise lands (the
/// first timestamp after a restart, or a wall clock that jumped forward).
pub struct Clock {
    catalog: Arc<Catalog>,
    state: Arc<Mutex<ClockState>>,
    /// The ceiling as last written; held while writing one, so that the
    /// durable ceiling never goes down.
    durable: Arc<Mutex<Timestamp>>,
}

struct ClockState {
    /// The last timestamp handed out.
    last: Timestamp,
    /// Timestamps must stay below this; it is durable.
    ceiling: Timestamp,
    /// A raise of the ceiling is under way.
    raising: bool,
}

fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes ceiling `to` unless a higher one is written already.
fn raise_ceiling(catalog: &Catalog, durable: &Mutex<Timestamp>, to: Timestamp) -> Result<()> {
    let mut written = durable
        .lock()
        .map_err(|_| Error::internal("clock ceiling lock poisoned"))?;
    if to > *written {
        catalog.set_clock_ceiling(to)?;
        *written = to;
    }
    Ok(())
}

impl Clock {
    pub fn open(catalog: Arc<Catalog>) -> Result<Clock> {
        let ceiling = catalog.clock_ceiling()?;
        Ok(Clock {
            catalog,
            state: Arc::new(Mutex::new(ClockState {
                last: ceiling,
                ceiling,
                raising: false,
            })),
            durable: Arc::new(Mutex::new(ceiling)),
        })
    }

    /// A timestamp greater than every one handed out before, by this
    /// process or an earlier one.
    pub fn now(&self) -> Result<Timestamp> {
        let mut state = self.state.lock().map_err(|_| Error::internal("clock lock poisoned"))?;
        let ts = (state.last + 1).max(wall_micros());
        if ts >= state.ceiling {
            let ceiling = ts + CEILING_STEP;
            raise_ceiling(&self.catalog, &self.durable, ceiling)?;
            state.ceiling = ceiling;
        } else if !state.raising && ts + CEILING_STEP / 2 >= state.ceiling {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                state.raising = true;
                let (catalog, durable, shared) = (self.catalog.clone(), self.durable.clone(), self.state.clone());
                let to = ts + CEILING_STEP;
                rt.spawn_blocking(move || {
                    let raised = raise_ceiling(&catalog, &durable, to);
                    if let Err(e) = &raised {
                        tracing::warn!("could not raise the clock ceiling: {e}");
                    }
                    if let Ok(mut state) = shared.lock() {
                        state.raising = false;
                        if raised.is_ok() {
                            state.ceiling = state.ceiling.max(to);
                        }
                    }
                });
            }
        }
        state.last = ts;
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_clock_raises_its_durable_ceiling_before_reaching_it() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
        let clock = Clock::open(catalog.clone()).unwrap();
        let first = clock.now().unwrap();
        let ceiling = catalog.clock_ceiling().unwrap();
        assert!(ceiling > first, "the first timestamp waits for a durable ceiling");
        // Come within half a step of the ceiling: the next timestamp starts
        // a raise in the background and does not wait for it.
        clock.state.lock().unwrap().last = ceiling - CEILING_STEP / 2;
        let near = clock.now().unwrap();
        assert!(near < ceiling);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while catalog.clock_ceiling().unwrap() == ceiling {
            assert!(std::time::Instant::now() < deadline, "the ceiling was not raised");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(catalog.clock_ceiling().unwrap() > near + CEILING_STEP / 2);
        // Timestamps only grow, and a reopened clock starts above them all.
        let later: Vec<Timestamp> = (0..100).map(|_| clock.now().unwrap()).collect();
        assert!(later.windows(2).all(|w| w[0] < w[1]) && later[0] > near);
        drop(clock);
        let reopened = Clock::open(catalog).unwrap();
        assert!(reopened.now().unwrap() > *later.last().unwrap());
    }
}
