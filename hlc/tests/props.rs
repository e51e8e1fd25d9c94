//! Property tests of the clock over arbitrary histories of ticks, observations, restores and
//! physical-time jumps, and of the timestamp's encodings.
//!
//! proptest prints the failing input and persists its seed under `proptest-regressions/`, so a
//! failure replays with a plain `cargo test`.

use hlc::{Config, Hlc, ObserveError, Timestamp};
use proptest::prelude::*;

/// One step of a history. Physical time moves by `jump` before the step (possibly backwards).
#[derive(Debug, Clone)]
enum Step {
    Tick {
        jump: i64,
    },
    /// A remote timestamp `ahead` ms from local physical time (negative: behind).
    Observe {
        jump: i64,
        ahead: i64,
        logical: u16,
    },
    Restore {
        jump: i64,
        ahead: i64,
        logical: u16,
    },
}

fn jump() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..3,                       // many events per millisecond
        3 => -5i64..50,                     // small jitter, sometimes backwards
        1 => -10_000_000i64..10_000_000,    // NTP corrections, sleep/resume
    ]
}

fn ahead() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => -1_000i64..1_000,
        2 => 59_990i64..60_010,             // either side of the default drift limit
        1 => -100_000_000i64..100_000_000,
    ]
}

fn logical() -> impl Strategy<Value = u16> {
    prop_oneof![3 => 0u16..8, 1 => (u16::MAX - 3)..=u16::MAX, 1 => any::<u16>()]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => jump().prop_map(|jump| Step::Tick { jump }),
        3 => (jump(), ahead(), logical())
            .prop_map(|(jump, ahead, logical)| Step::Observe { jump, ahead, logical }),
        1 => (jump(), ahead(), logical())
            .prop_map(|(jump, ahead, logical)| Step::Restore { jump, ahead, logical }),
    ]
}

fn shift(now: u64, by: i64) -> u64 {
    now.saturating_add_signed(by)
}

fn remote_at(now: u64, ahead: i64, logical: u16) -> Timestamp {
    Timestamp::new(shift(now, ahead).min(Timestamp::MAX_MILLIS), logical).unwrap()
}

/// Failing cases are kept beside this file, in `props.proptest-regressions`, and replayed first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    /// The clock never goes backwards and never repeats; a remote timestamp it accepts is
    /// exceeded; one it rejects leaves it unchanged and was beyond the drift limit; it is never
    /// behind physical time; a restore is exceeded by everything issued after it; and with
    /// fewer than 65,536 events it is never more than 1 ms ahead of the largest physical time,
    /// accepted remote time or restore point it has seen.
    #[test]
    fn clock_histories_keep_the_invariants(
        start in 1_600_000_000_000u64..1_900_000_000_000,
        drift in prop_oneof![Just(Config::DEFAULT_MAX_DRIFT_MS), 0u64..120_000],
        steps in prop::collection::vec(step(), 1..200),
    ) {
        let mut hlc = Hlc::new(Config::default().with_max_drift_ms(drift));
        let mut now = start;
        let mut issued: Vec<Timestamp> = Vec::new();
        let mut floor = Timestamp::ZERO; // everything issued from here on must exceed it
        let mut seen_millis = 0u64;

        for step in steps {
            let before = hlc.last();
            match step {
                Step::Tick { jump } => {
                    now = shift(now, jump);
                    let t = hlc.tick(now).unwrap();
                    prop_assert!(t > before && t > floor);
                    issued.push(t);
                }
                Step::Observe { jump, ahead, logical } => {
                    now = shift(now, jump);
                    let remote = remote_at(now, ahead, logical);
                    match hlc.observe(now, remote) {
                        Ok(t) => {
                            prop_assert!(remote.millis() <= now + drift);
                            prop_assert!(t > remote && t > before && t > floor);
                            prop_assert!(t.millis() >= now);
                            seen_millis = seen_millis.max(remote.millis());
                            issued.push(t);
                        }
                        Err(ObserveError::Drift(e)) => {
                            prop_assert!(remote.millis() > now + drift);
                            prop_assert_eq!(e.remote, remote);
                            prop_assert_eq!(hlc.last(), before);
                        }
                        Err(other) => prop_assert!(false, "unexpected {other}"),
                    }
                }
                Step::Restore { jump, ahead, logical } => {
                    now = shift(now, jump);
                    let at = remote_at(now, ahead, logical);
                    hlc.restore(at);
                    prop_assert_eq!(hlc.last(), before.max(at));
                    floor = floor.max(at);
                    seen_millis = seen_millis.max(at.millis());
                }
            }
            seen_millis = seen_millis.max(now);
            let last = hlc.last();
            prop_assert!(last >= before);
            prop_assert!(last.millis() <= seen_millis + 1);
        }
        prop_assert!(issued.windows(2).all(|w| w[0] < w[1]), "issued out of order");
    }

    /// A tick is never behind physical time.
    #[test]
    fn tick_is_at_least_physical_time(
        start in 0u64..=Timestamp::MAX_MILLIS,
        jumps in prop::collection::vec(jump(), 1..100),
    ) {
        let mut hlc = Hlc::default();
        let mut now = start;
        for jump in jumps {
            now = shift(now, jump).min(Timestamp::MAX_MILLIS);
            let t = hlc.tick(now).unwrap();
            prop_assert!(t.millis() >= now);
        }
    }

    /// After a restart, the restored clock issues only timestamps above the log's highest.
    #[test]
    fn restore_resumes_above_the_log(
        log in prop::collection::vec(any::<u64>().prop_map(|r| Timestamp::from_u64(r >> 1)), 1..50),
        now in any::<u64>(),
    ) {
        let highest = *log.iter().max().unwrap();
        let mut hlc = Hlc::default();
        hlc.restore(highest);
        let t = hlc.tick(now).unwrap();
        prop_assert!(t > highest);
    }

    /// The byte order of two timestamps is their order.
    #[test]
    fn byte_order_is_timestamp_order(a in any::<u64>(), b in any::<u64>()) {
        let (a, b) = (Timestamp::from_u64(a), Timestamp::from_u64(b));
        prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
    }

    /// Bytes, text and the integer all decode to the timestamp that was encoded.
    #[test]
    fn encodings_round_trip(raw in any::<u64>()) {
        let t = Timestamp::from_u64(raw);
        prop_assert_eq!(Timestamp::from_bytes(t.to_bytes()), t);
        prop_assert_eq!(Timestamp::try_from(&t.to_bytes()[..]).unwrap(), t);
        prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        prop_assert_eq!(Timestamp::from(u64::from(t)), t);
        prop_assert_eq!(Timestamp::new(t.millis(), t.logical()), Some(t));
    }

    /// Text order is timestamp order for years up to 9999.
    #[test]
    fn text_order_is_timestamp_order_before_year_10000(
        a in 0u64..253_402_300_800_000, b in 0u64..253_402_300_800_000,
        la in any::<u16>(), lb in any::<u16>(),
    ) {
        let (a, b) = (Timestamp::new(a, la).unwrap(), Timestamp::new(b, lb).unwrap());
        prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
    }

    /// Arbitrary text never panics the parser.
    #[test]
    fn parsing_arbitrary_text_never_panics(s in "\\PC{0,40}") {
        let _ = s.parse::<Timestamp>();
    }

    /// Text that looks almost right never panics either, and what parses prints back the same.
    #[test]
    fn near_miss_text_parses_or_errors_cleanly(
        s in "[0-9]{4,5}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z/[0-9a-f]{4}"
    ) {
        if let Ok(t) = s.parse::<Timestamp>() {
            prop_assert_eq!(t.to_string(), s);
        }
    }
}

#[cfg(feature = "serde")]
mod serde_forms {
    use super::*;

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn postcard_is_eight_big_endian_bytes(raw in any::<u64>()) {
            let t = Timestamp::from_u64(raw);
            let bytes = postcard::to_allocvec(&t).unwrap();
            prop_assert_eq!(&bytes[..], &t.to_bytes()[..]);
            prop_assert_eq!(postcard::from_bytes::<Timestamp>(&bytes).unwrap(), t);
        }

        #[test]
        fn json_is_the_text_form(raw in any::<u64>()) {
            let t = Timestamp::from_u64(raw);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(&json, &format!("\"{t}\""));
            prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }

        #[test]
        fn short_postcard_input_is_an_error(bytes in prop::collection::vec(any::<u8>(), 0..8)) {
            prop_assert!(postcard::from_bytes::<Timestamp>(&bytes).is_err());
        }
    }

    #[test]
    fn golden_bytes() {
        let t = Timestamp::new(1_795_316_400_123, 0x1f).unwrap();
        assert_eq!(
            postcard::to_allocvec(&t).unwrap(),
            [0x01, 0xa2, 0x01, 0x32, 0x3f, 0xfb, 0x00, 0x1f]
        );
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-22T03:00:00.123Z/001f\""
        );
    }
}
