//! Where physical time comes from: the [`Clock`] trait, the system clock, a manual clock for
//! tests, and [`ClockedHlc`], which reads a clock for each call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ClockExhausted, Config, DriftError, Hlc, ObserveError, Timestamp};

/// A source of physical time, in milliseconds since the Unix epoch.
pub trait Clock {
    /// The current physical time.
    fn now_ms(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// The operating system's real-time clock. A time before the Unix epoch reads as 0.
///
/// This is the one place in the libraries below the transport that reads ambient time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    #[allow(
        clippy::disallowed_methods,
        reason = "the real clock is the one allowed reader"
    )]
    fn now_ms(&self) -> u64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => since.as_secs() * 1000 + u64::from(since.subsec_millis()),
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to, for tests and simulations. Clones share one time.
///
/// It may be set backwards, to test what happens when the system clock jumps.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(now_ms)),
        }
    }

    /// Sets the time, forwards or backwards.
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `ms`, saturating at `u64::MAX`.
    pub fn advance(&self, ms: u64) {
        // A lost update between concurrent advances is impossible with fetch_update.
        let _ = self
            .now_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

/// An [`Hlc`] that reads physical time from a [`Clock`] on every call.
///
/// ```
/// use hlc::{ClockedHlc, Config, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(1_000);
/// let mut hlc = ClockedHlc::new(clock.clone(), Config::default());
/// let a = hlc.now().unwrap();
/// clock.set(500); // the system clock jumps back
/// let b = hlc.now().unwrap();
/// assert!(b > a);
/// assert_eq!(b, Timestamp::new(1_000, 1).unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct ClockedHlc<C> {
    hlc: Hlc,
    clock: C,
}

impl<C: Clock> ClockedHlc<C> {
    /// A clock reading `clock`, that has issued nothing yet.
    pub const fn new(clock: C, config: Config) -> Self {
        Self {
            hlc: Hlc::new(config),
            clock,
        }
    }

    /// Stamps a local event. See [`Hlc::tick`].
    #[inline]
    pub fn now(&mut self) -> Result<Timestamp, ClockExhausted> {
        self.hlc.tick(self.clock.now_ms())
    }

    /// Takes in a remote timestamp. See [`Hlc::observe`].
    pub fn observe(&mut self, remote: Timestamp) -> Result<Timestamp, ObserveError> {
        self.hlc.observe(self.clock.now_ms(), remote)
    }

    /// Checks a remote timestamp against the drift limit. See [`Hlc::check`].
    pub fn check(&self, remote: Timestamp) -> Result<(), DriftError> {
        self.hlc.check(self.clock.now_ms(), remote)
    }

    /// Resumes above `at_least`. See [`Hlc::restore`].
    pub fn restore(&mut self, at_least: Timestamp) {
        self.hlc.restore(at_least);
    }

    /// The last timestamp issued, observed or restored.
    pub const fn last(&self) -> Timestamp {
        self.hlc.last()
    }

    /// The state machine inside.
    pub const fn hlc(&self) -> &Hlc {
        &self.hlc
    }

    /// The clock it reads.
    pub const fn clock(&self) -> &C {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_reads_a_time_after_this_code_was_written() {
        // 2026-01-01T00:00:00Z; a machine clock before that is broken, not a test failure
        // of ours, but a reading of 0 or garbage in the unit conversion would show here.
        assert!(SystemClock.now_ms() > 1_767_225_600_000);
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new(5);
        let b = a.clone();
        a.advance(10);
        assert_eq!(b.now_ms(), 15);
        b.set(1);
        assert_eq!(a.now_ms(), 1);
        a.set(u64::MAX - 1);
        a.advance(5);
        assert_eq!(a.now_ms(), u64::MAX);
    }

    #[test]
    fn clocked_hlc_rejects_drift_relative_to_its_clock() {
        let clock = ManualClock::new(1_000);
        let mut hlc = ClockedHlc::new(&clock, Config::default().with_max_drift_ms(100));
        let ahead = Timestamp::new(1_101, 0).unwrap();
        assert!(hlc.check(ahead).is_err());
        assert!(hlc.observe(ahead).is_err());
        clock.advance(1);
        assert!(hlc.observe(ahead).unwrap() > ahead);
    }
}
