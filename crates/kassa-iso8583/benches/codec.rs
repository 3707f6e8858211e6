//! Decode + encode of a typical swiped 0200 sale with PIN (fields 2/3/4/11/14/22/25/26/35/41/
//! 42/49/52/53/60/63/64, the `sale` vector of tests/it/vectors.rs, encoded by pyiso8583).
//!
//! `cargo bench -p kassa-iso8583`; interop/iso8583/bench.sh compares with pyiso8583.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kassa_iso8583::frame::Frame;
use kassa_iso8583::{Message, Mti, UNIONPAY};
use std::hint::black_box;

const SALE_FRAME_HEX: &str = "008560000100026031000000000200702404C020C098131962220212345678901280000000000000000100000005301202100012376222021234567890128D30121010000000000031303030303030313839383130303030303030303030313135360123456789ABCDEF2600000000000000001122000001000000033031201A2B3C4D5E6F7081";

fn sale_message_bytes() -> Vec<u8> {
    let wire = hex::decode(SALE_FRAME_HEX).unwrap();
    Frame::parse(&wire).unwrap().message_bytes.to_vec()
}

fn codec(criterion: &mut Criterion) {
    let bytes = sale_message_bytes();
    let message = UNIONPAY.decode(&bytes).unwrap();
    let mut group = criterion.benchmark_group("0200 sale");
    group.throughput(Throughput::Elements(1));

    group.bench_function("decode", |bencher| bencher.iter(|| UNIONPAY.decode(black_box(&bytes)).unwrap()));
    group.bench_function("encode", |bencher| bencher.iter(|| UNIONPAY.encode(black_box(&message)).unwrap()));
    group.bench_function("decode+encode", |bencher| {
        bencher.iter(|| {
            let decoded = UNIONPAY.decode(black_box(&bytes)).unwrap();
            UNIONPAY.encode(&decoded).unwrap()
        })
    });
    // The gateway's steady state: one message and one output buffer per connection, reused.
    let mut reused = Message::new(Mti::default());
    let mut out = Vec::with_capacity(256);
    group.bench_function("decode+encode, buffers reused", |bencher| {
        bencher.iter(|| {
            UNIONPAY.decode_into(black_box(&bytes), &mut reused).unwrap();
            out.clear();
            UNIONPAY.encode_into(&reused, &mut out).unwrap();
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
