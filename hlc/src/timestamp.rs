//! The 64-bit hybrid timestamp and its text form.

use core::fmt;
use core::str::FromStr;

/// A hybrid logical time: 48 bits of Unix milliseconds above a 16-bit logical counter.
///
/// The whole value is one `u64`, so the derived order is the order of the physical part, then of
/// the counter. [`Timestamp::to_bytes`] gives the value big-endian, so comparing the byte
/// arrays gives the same order as comparing the timestamps; the byte form can serve as a
/// sortable key in a store.
///
/// The text form is an RFC 3339 UTC time with milliseconds, then `/` and the counter as four
/// hex digits: `2026-11-22T03:00:00.123Z/0001`. For years up to 9999 the text form sorts like
/// the value, too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Bits of the logical counter, the low part of the value.
    pub const LOGICAL_BITS: u32 = 16;
    /// The largest physical part: 2^48 - 1 milliseconds, in the year 10889.
    pub const MAX_MILLIS: u64 = (1 << (64 - Self::LOGICAL_BITS)) - 1;
    /// The Unix epoch with a zero counter; lower than every timestamp a clock issues.
    pub const ZERO: Self = Self(0);
    /// The largest timestamp. A clock at this value cannot issue another.
    pub const MAX: Self = Self(u64::MAX);

    /// The timestamp with physical part `millis` and counter `logical`, or `None` if `millis`
    /// is above [`Timestamp::MAX_MILLIS`].
    #[inline]
    pub const fn new(millis: u64, logical: u16) -> Option<Self> {
        if millis > Self::MAX_MILLIS {
            return None;
        }
        Some(Self((millis << Self::LOGICAL_BITS) | logical as u64))
    }

    /// The timestamp whose 64-bit value is `raw`. Every `u64` is a valid timestamp.
    #[inline]
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The 64-bit value: the physical part shifted above the counter.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The physical part, in milliseconds since the Unix epoch.
    #[inline]
    pub const fn millis(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    /// The logical counter.
    #[inline]
    pub const fn logical(self) -> u16 {
        // Truncation keeps exactly the low 16 bits, which is the counter.
        self.0 as u16
    }

    /// The value as eight big-endian bytes, whose byte order equals the timestamp order.
    #[inline]
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The timestamp from the eight big-endian bytes of [`Timestamp::to_bytes`].
    #[inline]
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(u64::from_be_bytes(bytes))
    }

    /// The next timestamp in order, or `None` at [`Timestamp::MAX`]. A counter at `0xffff`
    /// carries into the physical part.
    #[inline]
    pub const fn successor(self) -> Option<Self> {
        match self.0.checked_add(1) {
            Some(raw) => Some(Self(raw)),
            None => None,
        }
    }
}

impl From<Timestamp> for u64 {
    fn from(ts: Timestamp) -> u64 {
        ts.0
    }
}

impl From<u64> for Timestamp {
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}

impl TryFrom<&[u8]> for Timestamp {
    type Error = ParseTimestampError;

    /// Reads exactly eight big-endian bytes.
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let array: [u8; 8] = bytes
            .try_into()
            .map_err(|_| ParseTimestampError::new("a timestamp is exactly 8 bytes"))?;
        Ok(Self::from_bytes(array))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.millis();
        let days = millis / MILLIS_PER_DAY;
        let in_day = millis % MILLIS_PER_DAY;
        let (year, month, day) = civil_from_days(days);
        let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
        let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z/{:04x}",
            self.logical()
        )
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses the text form that `Display` writes, and nothing else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = Parser { rest: s.as_bytes() };
        let year = p.year()?;
        p.expect(b'-')?;
        let month = p.number(2)?;
        p.expect(b'-')?;
        let day = p.number(2)?;
        p.expect(b'T')?;
        let hour = p.number(2)?;
        p.expect(b':')?;
        let minute = p.number(2)?;
        p.expect(b':')?;
        let second = p.number(2)?;
        p.expect(b'.')?;
        let milli = p.number(3)?;
        p.expect(b'Z')?;
        p.expect(b'/')?;
        let logical = p.hex4()?;
        if !p.rest.is_empty() {
            return Err(ParseTimestampError::new("trailing characters"));
        }
        if !(1..=12).contains(&month) || day == 0 || hour > 23 || minute > 59 || second > 59 {
            return Err(ParseTimestampError::new("date or time field out of range"));
        }
        let days = days_from_civil(year, month, day);
        if civil_from_days(days) != (year, month, day) {
            return Err(ParseTimestampError::new("no such day in that month"));
        }
        let millis = days
            .checked_mul(MILLIS_PER_DAY)
            .and_then(|m| m.checked_add(((hour * 60 + minute) * 60 + second) * 1000 + milli))
            .ok_or_else(|| ParseTimestampError::new("time is past the year 10889"))?;
        Self::new(millis, logical)
            .ok_or_else(|| ParseTimestampError::new("time is past the year 10889"))
    }
}

/// Text or bytes that are not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTimestampError {
    reason: &'static str,
}

impl ParseTimestampError {
    const fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid timestamp ({}); expected e.g. 2026-11-22T03:00:00.123Z/0001",
            self.reason
        )
    }
}

impl std::error::Error for ParseTimestampError {}

const MILLIS_PER_DAY: u64 = 86_400_000;

/// A cursor over the ASCII text form.
struct Parser<'a> {
    rest: &'a [u8],
}

impl Parser<'_> {
    fn expect(&mut self, byte: u8) -> Result<(), ParseTimestampError> {
        match self.rest.split_first() {
            Some((&b, rest)) if b == byte => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(ParseTimestampError::new("unexpected character")),
        }
    }

    /// Exactly `len` decimal digits.
    fn number(&mut self, len: usize) -> Result<u64, ParseTimestampError> {
        let digits = self
            .rest
            .get(..len)
            .ok_or_else(|| ParseTimestampError::new("too short"))?;
        let mut value = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(ParseTimestampError::new("expected a digit"));
            }
            value = value * 10 + u64::from(d - b'0');
        }
        self.rest = &self.rest[len..];
        Ok(value)
    }

    /// Four or five digits: the years 1970 to 10889 that a timestamp can hold.
    fn year(&mut self) -> Result<u64, ParseTimestampError> {
        let len = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(4..=5).contains(&len) || (len == 5 && self.rest[0] == b'0') {
            // Five digits only from the year 10000, so that each timestamp has one text form.
            return Err(ParseTimestampError::new(
                "the year has four digits, or five from 10000",
            ));
        }
        let year = self.number(len)?;
        if year < 1970 {
            return Err(ParseTimestampError::new("time is before the Unix epoch"));
        }
        Ok(year)
    }

    fn hex4(&mut self) -> Result<u16, ParseTimestampError> {
        let digits = self
            .rest
            .get(..4)
            .ok_or_else(|| ParseTimestampError::new("the counter has four hex digits"))?;
        let mut value = 0u16;
        for &d in digits {
            let nibble = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                _ => {
                    return Err(ParseTimestampError::new(
                        "the counter has four lowercase hex digits",
                    ));
                }
            };
            value = (value << 4) | u16::from(nibble);
        }
        self.rest = &self.rest[4..];
        Ok(value)
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
///
/// Counts 400-year eras of 146,097 days from 0000-03-01, so that the leap day ends a year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const EPOCH_SHIFT: u64 = 719_468; // days from 0000-03-01 to 1970-01-01
    let z = days + EPOCH_SHIFT;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`] for years from 1970; callers check the day exists.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    const EPOCH_SHIFT: u64 = 719_468;
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // Saturating: a day before the epoch is only reachable from malformed text, and the
    // caller's round-trip check rejects it.
    (era * 146_097 + day_of_era).saturating_sub(EPOCH_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_millis_above_the_counter() {
        let ts = Timestamp::new(5, 3).unwrap();
        assert_eq!(ts.as_u64(), (5 << 16) | 3);
        assert_eq!(ts.millis(), 5);
        assert_eq!(ts.logical(), 3);
        assert_eq!(Timestamp::new(Timestamp::MAX_MILLIS + 1, 0), None);
        assert_eq!(
            Timestamp::new(Timestamp::MAX_MILLIS, u16::MAX),
            Some(Timestamp::MAX)
        );
    }

    #[test]
    fn text_form_matches_known_dates() {
        assert_eq!(Timestamp::ZERO.to_string(), "1970-01-01T00:00:00.000Z/0000");
        // 2026-11-22T03:00:00.123Z is 1,795,316,400,123 ms after the epoch.
        let ts = Timestamp::new(1_795_316_400_123, 0x1f).unwrap();
        assert_eq!(ts.to_string(), "2026-11-22T03:00:00.123Z/001f");
        // 2000-02-29 exists, a leap day of a year divisible by 400.
        let leap = Timestamp::new(951_782_400_000, 0).unwrap();
        assert_eq!(leap.to_string(), "2000-02-29T00:00:00.000Z/0000");
        assert_eq!(Timestamp::MAX.to_string(), "10889-08-02T05:31:50.655Z/ffff");
    }

    #[test]
    fn parse_rejects_impossible_and_malformed_text() {
        for bad in [
            "",
            "2026-11-22",
            "2026-02-29T00:00:00.000Z/0000",
            "1900-03-01T00:00:00.000Z/0000",
            "2026-13-01T00:00:00.000Z/0000",
            "2026-11-22T24:00:00.000Z/0000",
            "2026-11-22T03:00:00.000Z/001F",
            "2026-11-22T03:00:00.000Z/0001 ",
            "10889-08-02T05:31:50.656Z/0000",
            "99999-01-01T00:00:00.000Z/0000",
            "+2026-11-22T03:00:00.000Z/0000",
            "02026-11-22T03:00:00.000Z/0000",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn slice_conversion_needs_exactly_eight_bytes() {
        let ts = Timestamp::new(1234, 5).unwrap();
        assert_eq!(Timestamp::try_from(&ts.to_bytes()[..]), Ok(ts));
        assert!(Timestamp::try_from(&[0u8; 7][..]).is_err());
        assert!(Timestamp::try_from(&[0u8; 9][..]).is_err());
    }
}
