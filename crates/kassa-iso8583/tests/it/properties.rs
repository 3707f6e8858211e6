//! Property tests: random valid messages, generated from the dialect tables themselves,
//! round-trip; random bytes never panic.

use kassa_iso8583::spec::{Dialect, FieldSpec, Kind, Length};
use kassa_iso8583::{EncodeError, Message, Mti, ISO8583_1987_ASCII, UNIONPAY};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::sync::atomic::{AtomicUsize, Ordering};

static TOO_LONG: AtomicUsize = AtomicUsize::new(0);
static ROUND_TRIPPED: AtomicUsize = AtomicUsize::new(0);

fn characters(kind: Kind) -> Vec<u8> {
    match kind {
        Kind::N => (b'0'..=b'9').collect(),
        Kind::Z => (b'0'..=b'9').chain([b'=']).collect(),
        Kind::An => (b'0'..=b'9').chain(b'A'..=b'Z').chain(b'a'..=b'z').chain([b' ']).collect(),
        Kind::Ans => (0x20..=0x7E).collect(),
        Kind::AnsGbk => (0x20..=0x7E).chain(0x80..=0xFE).collect(),
        Kind::B => (0..=0xFF).collect(),
    }
}

/// Any valid value of a field spec.
fn value(spec: FieldSpec) -> BoxedStrategy<Vec<u8>> {
    let length = match spec.length {
        Length::Fixed(units) => Just(usize::from(units)).boxed(),
        // Mostly short values, sometimes up to the maximum: ASCII messages full of 999-byte
        // fields would mostly exceed the message limit and test nothing.
        Length::Var { max, .. } => prop_oneof![3 => 0..=usize::from(max).min(32), 1 => 0..=usize::from(max)].boxed(),
    };
    let alphabet = characters(spec.kind);
    length.prop_flat_map(move |units| prop::collection::vec(prop::sample::select(alphabet.clone()), units)).boxed()
}

/// Any valid message of a dialect: a random subset of its fields, each with a valid value.
fn message(dialect: &'static Dialect, presence: f64) -> impl Strategy<Value = Message> {
    let fields: Vec<(u8, BoxedStrategy<Option<Vec<u8>>>)> = (2..=128u8)
        .filter_map(|field| {
            dialect.field(field).map(|spec| (field, prop::option::weighted(presence, value(*spec)).boxed()))
        })
        .collect();
    let (numbers, values): (Vec<u8>, Vec<_>) = fields.into_iter().unzip();
    (prop::array::uniform4(0u8..=9), values).prop_map(move |(mti, values)| {
        let mut message = Message::new(Mti::from_bytes(&mti.map(|digit| b'0' + digit)).unwrap());
        for (field, value) in numbers.iter().zip(values) {
            if let Some(value) = value {
                message.set(*field, value);
            }
        }
        message
    })
}

fn round_trip(dialect: &Dialect, message: &Message) -> Result<(), TestCaseError> {
    let bytes = match dialect.encode(message) {
        Err(EncodeError::MessageTooLong { bytes, max }) => {
            prop_assert!(bytes > max);
            TOO_LONG.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        encoded => encoded.unwrap(),
    };
    ROUND_TRIPPED.fetch_add(1, Ordering::Relaxed);
    let decoded = dialect.decode(&bytes).unwrap();
    prop_assert_eq!(&decoded, message);
    prop_assert_eq!(&dialect.encode(&decoded).unwrap(), &bytes);
    // Reusing a message buffer gives the same result.
    let mut reused = Message::new(Mti::default());
    reused.set(2, "999");
    dialect.decode_into(&bytes, &mut reused).unwrap();
    prop_assert_eq!(&reused, message);
    Ok(())
}

fn no_panic(dialect: &Dialect, bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = dialect.salvage(bytes);
    let _ = dialect.mab(bytes);
    if let Ok(message) = dialect.decode(bytes) {
        let reencoded = dialect.encode(&message).unwrap();
        prop_assert_eq!(dialect.decode(&reencoded).unwrap(), message);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn unionpay_round_trips(message in message(&UNIONPAY, 0.4)) {
        round_trip(&UNIONPAY, &message)?;
    }

    #[test]
    fn ascii_round_trips(message in message(&ISO8583_1987_ASCII, 0.1)) {
        round_trip(&ISO8583_1987_ASCII, &message)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        no_panic(&UNIONPAY, &bytes)?;
        no_panic(&ISO8583_1987_ASCII, &bytes)?;
        let _ = kassa_iso8583::frame::Frame::split(&bytes);
        let _ = kassa_iso8583::frame::salvage_frame(&UNIONPAY, &bytes);
    }

    /// Random bytes behind a valid MTI and bitmap reach the field decoders far more often.
    #[test]
    fn plausible_headers_never_panic(bitmap in any::<u64>(), tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![0x02, 0x00];
        bytes.extend((bitmap & !(1 << 63)).to_be_bytes());
        bytes.extend(&tail);
        no_panic(&UNIONPAY, &bytes)?;
    }

    /// A message built for one dialect that fits the other round-trips there too: the
    /// message is dialect-independent.
    #[test]
    fn unionpay_messages_round_trip_in_ascii_where_they_fit(message in message(&UNIONPAY, 0.4)) {
        if let Ok(bytes) = ISO8583_1987_ASCII.encode(&message) {
            prop_assert_eq!(ISO8583_1987_ASCII.decode(&bytes).unwrap(), message);
        }
    }
}

/// Guards against a vacuous property: most random messages must fit and round-trip.
#[test]
fn most_random_messages_fit_the_message_limit() {
    let mut runner = proptest::test_runner::TestRunner::default();
    let strategy = message(&ISO8583_1987_ASCII, 0.1);
    for _ in 0..256 {
        let message = strategy.new_tree(&mut runner).unwrap().current();
        round_trip(&ISO8583_1987_ASCII, &message).unwrap();
    }
    let (fit, too_long) = (ROUND_TRIPPED.load(Ordering::Relaxed), TOO_LONG.load(Ordering::Relaxed));
    assert!(fit > 4 * too_long, "{fit} round-tripped, {too_long} too long");
}
