//! Interop driver for interop/iso8583: reads JSON lines on stdin, answers one JSON line each.
//!
//! - `{"op":"decode","frame":"<hex>"}` → `{"ok":true,"mti":…,"envelope":"<hex>","fields":{…},
//!   "reencoded":"<hex>"}`: decodes a whole UnionPay frame and re-encodes it.
//! - `{"op":"encode","mti":…,"envelope":"<hex>","fields":{…}}` → `{"ok":true,"frame":"<hex>"}`.
//!
//! Field values are strings in logical form (digits, track `=`, text); `b` fields are uppercase
//! hex. Failures answer `{"ok":false,"error":…}` and the driver goes on with the next line.

use std::error::Error;
use std::io::{self, BufRead, Write};

use kassa_iso8583::frame::{encode_frame, Envelope, Frame, Tpdu, ENVELOPE_BYTES, TPDU_ID};
use kassa_iso8583::spec::Kind;
use kassa_iso8583::{Message, Mti, UNIONPAY};
use serde_json::{json, Map, Value};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn is_binary(field: u8) -> bool {
    UNIONPAY.field(field).is_some_and(|spec| spec.kind == Kind::B)
}

fn envelope_hex(envelope: &Envelope) -> String {
    let mut bytes = vec![TPDU_ID];
    bytes.extend(envelope.tpdu.destination);
    bytes.extend(envelope.tpdu.source);
    bytes.extend(envelope.header);
    hex::encode_upper(bytes)
}

fn parse_envelope(text: &str) -> Result<Envelope> {
    let bytes = hex::decode(text)?;
    let frame = [&[0u8, ENVELOPE_BYTES as u8][..], &bytes].concat();
    Ok(Frame::parse(&frame)?.envelope)
}

fn decode(request: &Value) -> Result<Value> {
    let wire = hex::decode(request["frame"].as_str().ok_or("frame missing")?)?;
    let frame = Frame::parse(&wire)?;
    let message = UNIONPAY.decode(frame.message_bytes)?;
    let mut fields = Map::new();
    for field in message.fields() {
        let value = message.field(field).unwrap_or_default();
        let shown = if is_binary(field) { hex::encode_upper(value) } else { String::from_utf8(value.to_vec())? };
        fields.insert(field.to_string(), Value::String(shown));
    }
    let mut reencoded = Vec::new();
    encode_frame(&UNIONPAY, &frame.envelope, &message, &mut reencoded)?;
    Ok(json!({
        "ok": true,
        "mti": message.mti().as_str(),
        "envelope": envelope_hex(&frame.envelope),
        "fields": fields,
        "reencoded": hex::encode_upper(reencoded),
    }))
}

fn encode(request: &Value) -> Result<Value> {
    let mut message = Message::new(Mti::parse(request["mti"].as_str().ok_or("mti missing")?)?);
    let fields = request["fields"].as_object().ok_or("fields missing")?;
    for (key, value) in fields {
        let field: u8 = key.parse()?;
        let text = value.as_str().ok_or("field values are strings")?;
        if is_binary(field) {
            message.set(field, hex::decode(text)?);
        } else {
            message.set(field, text);
        }
    }
    let envelope = match request["envelope"].as_str() {
        Some(text) => parse_envelope(text)?,
        None => Envelope { tpdu: Tpdu { destination: [0, 0], source: [0, 0] }, header: [0x60, 0, 0, 0, 0, 0] },
    };
    let mut wire = Vec::new();
    encode_frame(&UNIONPAY, &envelope, &message, &mut wire)?;
    Ok(json!({"ok": true, "frame": hex::encode_upper(wire)}))
}

fn answer(line: &str) -> Value {
    let result =
        serde_json::from_str::<Value>(line).map_err(Into::into).and_then(|request| match request["op"].as_str() {
            Some("decode") => decode(&request),
            Some("encode") => encode(&request),
            _ => Err("op must be decode or encode".into()),
        });
    result.unwrap_or_else(|error| json!({"ok": false, "error": error.to_string()}))
}

fn main() -> Result<()> {
    let stdin = io::stdin();
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(stdout, "{}", answer(&line))?;
    }
    stdout.flush()?;
    Ok(())
}
