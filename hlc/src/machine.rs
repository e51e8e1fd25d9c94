//! The clock as a pure state machine: physical time is an argument.

use core::fmt;

use crate::Timestamp;

/// Settings of a hybrid logical clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How far, in milliseconds, a remote timestamp's physical part may be ahead of local
    /// physical time before [`Hlc::observe`] rejects it. Default 60,000 (60 s).
    pub max_drift_ms: u64,
}

impl Config {
    /// The default maximum drift: 60 seconds.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

    /// This configuration with another maximum drift, in milliseconds.
    pub const fn with_max_drift_ms(mut self, max_drift_ms: u64) -> Self {
        self.max_drift_ms = max_drift_ms;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_drift_ms: Self::DEFAULT_MAX_DRIFT_MS,
        }
    }
}

/// A hybrid logical clock, as a state machine without IO.
///
/// It holds the last timestamp it issued or observed; every timestamp it issues is strictly
/// greater, whatever physical time does. Physical time is passed in as milliseconds since the
/// Unix epoch; [`ClockedHlc`](crate::ClockedHlc) reads it from a [`Clock`](crate::Clock).
///
/// - [`Hlc::tick`] stamps a local event.
/// - [`Hlc::observe`] takes in a timestamp from a peer, after checking it against the drift
///   limit, and stamps the receipt.
/// - [`Hlc::restore`] resumes above a timestamp recovered from storage.
///
/// When the counter would pass `0xffff` within one millisecond it carries into the physical
/// part: the timestamp is the next 64-bit value, and the clock runs up to a millisecond ahead
/// of physical time per 65,536 events, catching up as soon as physical time passes it.
///
/// ```
/// use hlc::{Config, Hlc, Timestamp};
///
/// let mut a = Hlc::new(Config::default());
/// let mut b = Hlc::new(Config::default());
/// let t1 = a.tick(1_000).unwrap();
/// // b's physical clock is behind a's, yet what b stamps after hearing from a is later.
/// let t2 = b.observe(900, t1).unwrap();
/// assert!(t2 > t1);
/// // A timestamp more than 60 s ahead of local time is refused and leaves b as it was.
/// let bogus = Timestamp::new(900 + 60_001, 0).unwrap();
/// assert!(b.observe(900, bogus).is_err());
/// assert_eq!(b.last(), t2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hlc {
    last: Timestamp,
    config: Config,
}

impl Hlc {
    /// A clock that has issued nothing yet.
    pub const fn new(config: Config) -> Self {
        Self {
            last: Timestamp::ZERO,
            config,
        }
    }

    /// The last timestamp this clock issued, observed or was restored to.
    pub const fn last(&self) -> Timestamp {
        self.last
    }

    /// The clock's settings.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Stamps a local event at physical time `now_ms`: the physical time itself if it is past
    /// the last timestamp, else the successor of the last timestamp.
    ///
    /// Fails only when the last timestamp is [`Timestamp::MAX`]; the clock is then unchanged.
    #[inline]
    pub fn tick(&mut self, now_ms: u64) -> Result<Timestamp, ClockExhausted> {
        let next = Self::next_after(now_ms, self.last)?;
        self.last = next;
        Ok(next)
    }

    /// Checks `remote` against the drift limit at physical time `now_ms`, without changing the
    /// clock. A remote physical part exactly `max_drift_ms` ahead is accepted; one millisecond
    /// more is not.
    #[inline]
    pub fn check(&self, now_ms: u64, remote: Timestamp) -> Result<(), DriftError> {
        if remote.millis() > now_ms.saturating_add(self.config.max_drift_ms) {
            return Err(DriftError {
                remote,
                now_ms,
                max_drift_ms: self.config.max_drift_ms,
            });
        }
        Ok(())
    }

    /// Takes in `remote`, received at physical time `now_ms`, and stamps the receipt: the
    /// result is greater than `remote` and than every timestamp this clock issued before.
    ///
    /// A remote timestamp too far ahead (see [`Hlc::check`]) is rejected and leaves the clock
    /// unchanged, so one peer with a wrong clock cannot drag every replica into the future.
    #[inline]
    pub fn observe(&mut self, now_ms: u64, remote: Timestamp) -> Result<Timestamp, ObserveError> {
        self.check(now_ms, remote)?;
        let next = Self::next_after(now_ms, self.last.max(remote))?;
        self.last = next;
        Ok(next)
    }

    /// Resumes after a restart: the clock will only issue timestamps above `at_least` (the
    /// highest timestamp in the log, or a persisted high-water mark). Never moves it back.
    #[inline]
    pub fn restore(&mut self, at_least: Timestamp) {
        self.last = self.last.max(at_least);
    }
}

impl Hlc {
    /// The HLC rule: `(now, 0)` if `now` is past `seen`'s physical part, else `seen + 1`.
    ///
    /// `(now, 0) > seen` exactly when `now > seen.millis()`, so the rule is the larger of the
    /// two candidates: no branch on the hot path but the (predictable) exhaustion check.
    #[inline]
    fn next_after(now_ms: u64, seen: Timestamp) -> Result<Timestamp, ClockExhausted> {
        let physical =
            Timestamp::from_u64(now_ms.min(Timestamp::MAX_MILLIS) << Timestamp::LOGICAL_BITS);
        let successor = seen.successor().ok_or(ClockExhausted)?;
        Ok(physical.max(successor))
    }
}

impl Default for Hlc {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

/// The clock stands at [`Timestamp::MAX`] and can issue no further timestamp.
///
/// Only reachable with physical time in the year 10889 or after restoring to a timestamp near
/// the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockExhausted;

impl fmt::Display for ClockExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hybrid logical clock exhausted: it stands at the largest timestamp")
    }
}

impl std::error::Error for ClockExhausted {}

/// A remote timestamp further ahead of local physical time than the maximum drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriftError {
    /// The rejected timestamp.
    pub remote: Timestamp,
    /// Local physical time when it was checked, in Unix milliseconds.
    pub now_ms: u64,
    /// The configured limit, in milliseconds.
    pub max_drift_ms: u64,
}

impl DriftError {
    /// How far ahead of local physical time the remote timestamp was, in milliseconds.
    pub const fn ahead_ms(&self) -> u64 {
        self.remote.millis().saturating_sub(self.now_ms)
    }
}

impl fmt::Display for DriftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "remote timestamp {} is {} ms ahead of local time, more than the maximum drift of {} ms",
            self.remote,
            self.ahead_ms(),
            self.max_drift_ms
        )
    }
}

impl std::error::Error for DriftError {}

/// Why [`Hlc::observe`] refused a remote timestamp. The clock is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserveError {
    /// The remote timestamp is too far ahead of local physical time.
    Drift(DriftError),
    /// No timestamp above the remote one exists.
    Exhausted(ClockExhausted),
}

impl fmt::Display for ObserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drift(e) => e.fmt(f),
            Self::Exhausted(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ObserveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Drift(e) => Some(e),
            Self::Exhausted(e) => Some(e),
        }
    }
}

impl From<DriftError> for ObserveError {
    fn from(e: DriftError) -> Self {
        Self::Drift(e)
    }
}

impl From<ClockExhausted> for ObserveError {
    fn from(e: ClockExhausted) -> Self {
        Self::Exhausted(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(millis: u64, logical: u16) -> Timestamp {
        Timestamp::new(millis, logical).unwrap()
    }

    #[test]
    fn tick_follows_physical_time_and_counts_within_a_millisecond() {
        let mut hlc = Hlc::default();
        assert_eq!(hlc.tick(10).unwrap(), ts(10, 0));
        assert_eq!(hlc.tick(10).unwrap(), ts(10, 1));
        assert_eq!(hlc.tick(11).unwrap(), ts(11, 0));
        // Physical time going backwards does not move the clock back.
        assert_eq!(hlc.tick(5).unwrap(), ts(11, 1));
    }

    #[test]
    fn counter_overflow_carries_into_the_physical_part() {
        let mut hlc = Hlc::default();
        hlc.restore(ts(10, u16::MAX - 1));
        assert_eq!(hlc.tick(10).unwrap(), ts(10, u16::MAX));
        assert_eq!(hlc.tick(10).unwrap(), ts(11, 0));
        assert_eq!(hlc.tick(10).unwrap(), ts(11, 1));
        // Physical time catching up resets the counter.
        assert_eq!(hlc.tick(12).unwrap(), ts(12, 0));
    }

    #[test]
    fn observe_carries_past_a_remote_counter_at_its_maximum() {
        let mut hlc = Hlc::default();
        let remote = ts(10, u16::MAX);
        assert_eq!(hlc.observe(10, remote).unwrap(), ts(11, 0));
    }

    #[test]
    fn exhausted_clock_errors_and_stays_put() {
        let mut hlc = Hlc::default();
        hlc.restore(Timestamp::MAX);
        assert_eq!(hlc.tick(0), Err(ClockExhausted));
        assert_eq!(hlc.tick(u64::MAX), Err(ClockExhausted));
        assert_eq!(hlc.last(), Timestamp::MAX);

        let mut hlc = Hlc::new(Config::default().with_max_drift_ms(u64::MAX));
        assert_eq!(
            hlc.observe(0, Timestamp::MAX),
            Err(ObserveError::Exhausted(ClockExhausted))
        );
        assert_eq!(hlc.last(), Timestamp::ZERO);
    }

    #[test]
    fn physical_time_beyond_the_layout_is_clamped() {
        let mut hlc = Hlc::default();
        assert_eq!(hlc.tick(u64::MAX).unwrap(), ts(Timestamp::MAX_MILLIS, 0));
        assert_eq!(hlc.tick(u64::MAX).unwrap(), ts(Timestamp::MAX_MILLIS, 1));
    }

    #[test]
    fn drift_limit_is_inclusive() {
        let now = 1_000_000;
        let mut hlc = Hlc::default();
        let limit = Config::DEFAULT_MAX_DRIFT_MS;
        let at_limit = ts(now + limit, u16::MAX);
        let past_limit = ts(now + limit + 1, 0);

        let err = hlc.observe(now, past_limit).unwrap_err();
        assert_eq!(
            err,
            ObserveError::Drift(DriftError {
                remote: past_limit,
                now_ms: now,
                max_drift_ms: limit
            })
        );
        assert_eq!(hlc.last(), Timestamp::ZERO);
        let ObserveError::Drift(drift) = err else {
            unreachable!()
        };
        assert_eq!(drift.ahead_ms(), limit + 1);

        let accepted = hlc.observe(now, at_limit).unwrap();
        assert!(accepted > at_limit);
    }

    #[test]
    fn zero_drift_accepts_only_remote_time_not_ahead() {
        let mut hlc = Hlc::new(Config::default().with_max_drift_ms(0));
        assert!(hlc.observe(100, ts(100, 7)).is_ok());
        assert!(hlc.observe(100, ts(101, 0)).is_err());
    }

    #[test]
    fn drift_check_near_the_end_of_time_does_not_overflow() {
        let hlc = Hlc::default();
        assert!(hlc.check(u64::MAX, Timestamp::MAX).is_ok());
    }

    #[test]
    fn restore_never_moves_back() {
        let mut hlc = Hlc::default();
        hlc.tick(500).unwrap();
        hlc.restore(ts(100, 0));
        assert_eq!(hlc.last(), ts(500, 0));
        hlc.restore(ts(900, 3));
        assert_eq!(hlc.tick(10).unwrap(), ts(900, 4));
    }
}
