//! Prints, as JSON, values kassa-crypto computes for random keys, PINs, PANs and messages, so
//! that `interop/crypto/check.py` can recompute each with an independent implementation (psec,
//! and the `cryptography` package for the at-rest format) and compare.
//!
//! Usage: `cargo run -p kassa-crypto --example crypto_interop -- [SEED] [CASES]`

#![allow(clippy::print_stdout, reason = "the JSON on stdout is this program's output")]

use std::error::Error;

use kassa_crypto::pin::{PAN_DIGITS_MAX, PAN_DIGITS_MIN, PIN_DIGITS_MAX, PIN_DIGITS_MIN};
use kassa_crypto::{
    api_key_digest, generate_working_keys, unionpay_ecb_mac, x9_19_mac, x9_9_mac, ClearPinBlock, DesKey, MasterKey,
    Pin, TdesKey,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{json, Value};

const SEED_DEFAULT: u64 = 20_260_101;
const CASES_DEFAULT: usize = 200;
const MESSAGE_BYTES_MAX: usize = 300;

fn main() -> Result<(), Box<dyn Error>> {
    let mut arguments = std::env::args().skip(1);
    let seed = match arguments.next() {
        Some(text) => text.parse()?,
        None => SEED_DEFAULT,
    };
    let cases = match arguments.next() {
        Some(text) => text.parse()?,
        None => CASES_DEFAULT,
    };
    let mut rng = StdRng::seed_from_u64(seed);

    let mut output = json!({
        "seed": seed,
        "tdes_ecb": [], "kcv": [], "x9_9": [], "x9_19": [], "unionpay_ecb": [],
        "pin_blocks": [], "field_62": [], "sealed": [], "pepper": [], "api_key_digest": [],
    });
    for _ in 0..cases {
        push(&mut output, "tdes_ecb", tdes_ecb_case(&mut rng)?);
        push(&mut output, "kcv", kcv_case(&mut rng)?);
        push(&mut output, "x9_9", x9_9_case(&mut rng));
        push(&mut output, "x9_19", x9_19_case(&mut rng)?);
        push(&mut output, "unionpay_ecb", unionpay_case(&mut rng)?);
        push(&mut output, "pin_blocks", pin_block_case(&mut rng)?);
        push(&mut output, "field_62", field_62_case(&mut rng)?);
        push(&mut output, "sealed", sealed_case(&mut rng)?);
        push(&mut output, "pepper", pepper_case(&mut rng));
        push(&mut output, "api_key_digest", api_key_case(&mut rng));
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn push(output: &mut Value, section: &str, case: Value) {
    if let Some(Value::Array(cases)) = output.get_mut(section) {
        cases.push(case);
    }
}

fn random_bytes(rng: &mut StdRng, length: usize) -> Vec<u8> {
    let mut bytes = vec![0_u8; length];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn random_message(rng: &mut StdRng) -> Vec<u8> {
    let length = rng.gen_range(0..=MESSAGE_BYTES_MAX);
    random_bytes(rng, length)
}

fn random_digits(rng: &mut StdRng, length: usize) -> String {
    (0..length).map(|_| char::from(b'0' + rng.gen_range(0..10_u8))).collect()
}

fn random_tdes_key(rng: &mut StdRng) -> Result<TdesKey, Box<dyn Error>> {
    let length = if rng.gen_bool(0.5) { 16 } else { 24 };
    Ok(TdesKey::from_slice(&random_bytes(rng, length))?)
}

fn tdes_ecb_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let key = random_tdes_key(rng)?;
    let mut block = [0_u8; 8];
    rng.fill_bytes(&mut block);
    Ok(json!({
        "key": hex::encode_upper(key.expose_secret()),
        "block": hex::encode_upper(block),
        "encrypted": hex::encode_upper(key.encrypt_block(&block)),
    }))
}

fn kcv_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let key = random_tdes_key(rng)?;
    Ok(json!({
        "key": hex::encode_upper(key.expose_secret()),
        "kcv": key.check_value().to_string(),
    }))
}

fn x9_9_case(rng: &mut StdRng) -> Value {
    let mut key_bytes = [0_u8; 8];
    rng.fill_bytes(&mut key_bytes);
    let key = DesKey::from_bytes(key_bytes);
    let message = random_message(rng);
    json!({
        "key": hex::encode_upper(key_bytes),
        "message": hex::encode_upper(&message),
        "mac": hex::encode_upper(x9_9_mac(&key, &message).as_bytes()),
    })
}

fn x9_19_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let key = TdesKey::from_slice(&random_bytes(rng, 16))?;
    let message = random_message(rng);
    Ok(json!({
        "key": hex::encode_upper(key.expose_secret()),
        "message": hex::encode_upper(&message),
        "mac": hex::encode_upper(x9_19_mac(&key, &message)?.as_bytes()),
    }))
}

fn unionpay_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let key = TdesKey::from_slice(&random_bytes(rng, 16))?;
    let message = random_message(rng);
    let mac = unionpay_ecb_mac(&key, &message);
    Ok(json!({
        "key": hex::encode_upper(key.expose_secret()),
        "message": hex::encode_upper(&message),
        "mac_ascii": String::from_utf8(mac.as_bytes().to_vec())?,
    }))
}

fn pin_block_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let key = TdesKey::from_slice(&random_bytes(rng, 16))?;
    let pin_length = rng.gen_range(PIN_DIGITS_MIN..=PIN_DIGITS_MAX);
    let pan_length = rng.gen_range(PAN_DIGITS_MIN..=PAN_DIGITS_MAX);
    let pin_text = random_digits(rng, pin_length);
    let pan = random_digits(rng, pan_length);
    let pin = Pin::parse(&pin_text)?;
    let clear = ClearPinBlock::encode(&pin, &pan)?;
    Ok(json!({
        "key": hex::encode_upper(key.expose_secret()),
        "pin": pin_text,
        "pan": pan,
        "clear": hex::encode_upper(clear.expose_secret()),
        "encrypted": hex::encode_upper(clear.encrypt(&key).as_bytes()),
    }))
}

fn field_62_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let tmk = TdesKey::from_slice(&random_bytes(rng, 16))?;
    let (keys, wrapped) = generate_working_keys(&tmk, rng);
    Ok(json!({
        "tmk": hex::encode_upper(tmk.expose_secret()),
        "pin_key": hex::encode_upper(keys.pin_key().expose_secret()),
        "mac_key": hex::encode_upper(keys.mac_key().expose_secret()),
        "field_62": hex::encode_upper(wrapped.as_bytes()),
    }))
}

fn sealed_case(rng: &mut StdRng) -> Result<Value, Box<dyn Error>> {
    let master = MasterKey::generate(rng);
    let plaintext = random_message(rng);
    let context = format!("tmk:{}", random_digits(rng, 8));
    let sealed = master.seal(&plaintext, &context, rng)?;
    Ok(json!({
        "master_key": hex::encode_upper(master.expose_secret()),
        "key_id": hex::encode_upper(master.key_id()),
        "context": context,
        "plaintext": hex::encode_upper(&plaintext),
        "sealed": sealed.to_text(),
    }))
}

fn pepper_case(rng: &mut StdRng) -> Value {
    let master = MasterKey::generate(rng);
    let code_length = rng.gen_range(4..=8);
    let code = random_digits(rng, code_length);
    json!({
        "master_key": hex::encode_upper(master.expose_secret()),
        "code": code,
        "peppered": hex::encode_upper(*master.pepper().digit_code(&code)),
    })
}

fn api_key_case(rng: &mut StdRng) -> Value {
    let api_key = format!("kassa_{}", hex::encode(random_bytes(rng, 24)));
    json!({
        "api_key": api_key,
        "digest": hex::encode_upper(api_key_digest(&api_key)),
    })
}
