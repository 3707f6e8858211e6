//! The host's per-sale cryptography: verify the request MAC, generate the response MAC, and
//! decrypt and verify the PIN block, all through the security module as the gateway does.
//!
//! `cargo bench -p kassa-crypto --bench crypto`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed setup should stop it loudly")]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use kassa_crypto::{
    encrypt_pin_block, unionpay_ecb_mac, x9_19_mac, DesKey, KeyPurpose, MacAlgorithm, Pin, SecurityModule,
    SoftwareSecurityModule, TdesKey, Verdict,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A sale's MAB (MTI to field 63) is about 100 bytes; its response about 90.
const REQUEST_MAB_BYTES: usize = 100;
const RESPONSE_MAB_BYTES: usize = 90;
const DEMO_TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const PAN: &str = "6222021234567890123";

fn per_sale(criterion: &mut Criterion) {
    let module = SoftwareSecurityModule::new(StdRng::seed_from_u64(1), 1024);
    let tmk = TdesKey::from_hex(DEMO_TMK).unwrap();
    let tmk_handle = module.import_key(KeyPurpose::TerminalMaster, tmk.clone()).unwrap();
    let issued = module.issue_working_keys(tmk_handle).unwrap();
    let terminal = issued.field_62.unwrap(&tmk).unwrap();

    let request: Vec<u8> = (0..REQUEST_MAB_BYTES).map(|index| index as u8).collect();
    let response: Vec<u8> = (0..RESPONSE_MAB_BYTES).map(|index| !index as u8).collect();
    let request_mac = x9_19_mac(terminal.mac_key(), &request).unwrap();
    let pin = Pin::parse("123456").unwrap();
    let pin_block = encrypt_pin_block(terminal.pin_key(), &pin, PAN).unwrap();

    let mut group = criterion.benchmark_group("per_sale");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_request_mac_x9_19_100B", |bencher| {
        bencher.iter(|| {
            module
                .verify_mac(
                    issued.mac_key,
                    MacAlgorithm::X919Retail,
                    black_box(&request),
                    black_box(request_mac.as_bytes()),
                )
                .unwrap()
        })
    });
    group.bench_function("generate_response_mac_x9_19_90B", |bencher| {
        bencher.iter(|| module.generate_mac(issued.mac_key, MacAlgorithm::X919Retail, black_box(&response)).unwrap())
    });
    group.bench_function("verify_pin_block", |bencher| {
        bencher.iter(|| module.verify_pin(issued.pin_key, black_box(&pin_block), PAN, &pin).unwrap())
    });
    group.bench_function("whole_sale", |bencher| {
        bencher.iter(|| {
            let request_ok = module
                .verify_mac(issued.mac_key, MacAlgorithm::X919Retail, black_box(&request), request_mac.as_bytes())
                .unwrap();
            let pin_ok = module.verify_pin(issued.pin_key, black_box(&pin_block), PAN, &pin).unwrap();
            assert_eq!((request_ok, pin_ok), (Verdict::Match, Verdict::Match));
            module.generate_mac(issued.mac_key, MacAlgorithm::X919Retail, black_box(&response)).unwrap()
        })
    });
    group.finish();

    let mut primitives = criterion.benchmark_group("primitives");
    primitives.bench_function("x9_19_mac_100B", |bencher| {
        bencher.iter(|| x9_19_mac(terminal.mac_key(), black_box(&request)).unwrap())
    });
    primitives.bench_function("unionpay_ecb_mac_100B", |bencher| {
        bencher.iter(|| unionpay_ecb_mac(terminal.mac_key(), black_box(&request)))
    });
    primitives.bench_function("tdes_key_schedule", |bencher| bencher.iter(|| TdesKey::double(black_box([0x5A; 16]))));
    let des_key = DesKey::from_bytes([0x5A; 8]);
    primitives.bench_function("des_block", |bencher| bencher.iter(|| des_key.encrypt_block(black_box(&[0x11; 8]))));
    primitives.bench_function("tdes_block", |bencher| {
        bencher.iter(|| terminal.mac_key().encrypt_block(black_box(&[0x11; 8])))
    });
    // The RustCrypto `des` crate, which kassa-crypto used before its own DES, for comparison.
    let reference = des::Des::new(GenericArray::from_slice(&[0x5A; 8]));
    primitives.bench_function("des_block_rustcrypto", |bencher| {
        bencher.iter(|| {
            let mut block = GenericArray::from(*black_box(&[0x11_u8; 8]));
            reference.encrypt_block(&mut block);
            block
        })
    });
    primitives.finish();
}

criterion_group!(benches, per_sale);
criterion_main!(benches);
