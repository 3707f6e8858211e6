//! A test terminal: builds requests like a UnionPay POS, with PIN blocks and MACs under the
//! working keys of its sign-in, and checks every response MAC it receives.

use std::net::SocketAddr;

use kassa_crypto::{encrypt_pin_block, unwrap_working_keys, x9_19_mac, Pin, TdesKey, WorkingKeys};
use kassa_iso8583::fields::{Field60, Field61};
use kassa_iso8583::frame::{encode_frame, encode_frame_with_mac, Envelope, Frame, Tpdu};
use kassa_iso8583::{Message, Mti, UNIONPAY};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{MERCHANT, TMK};

pub const ENVELOPE: Envelope =
    Envelope { tpdu: Tpdu { destination: [0, 1], source: [0, 2] }, header: [0x60, 0x31, 0, 0x31, 0, 0] };

/// A terminal's connection: plain TCP or TLS.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub struct Terminal {
    pub stream: Box<dyn Duplex>,
    pub terminal_id: String,
    pub keys: Option<WorkingKeys>,
    pub batch: u32,
    pub stan: u32,
}

/// A response and whether it carried a MAC (already verified when it did).
pub struct Answer {
    pub message: Message,
    pub mac_verified: bool,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.message.field_str(39).unwrap_or("")
    }
    pub fn rrn(&self) -> &str {
        self.message.field_str(37).unwrap_or("")
    }
    pub fn auth_code(&self) -> &str {
        self.message.field_str(38).unwrap_or("")
    }
}

impl Terminal {
    pub async fn connect(addr: SocketAddr, terminal_id: &str) -> Terminal {
        let stream = TcpStream::connect(addr).await.unwrap();
        Terminal::over(stream, terminal_id)
    }

    /// A terminal on a connection made by the caller (from another source address, over TLS).
    pub fn over(stream: impl Duplex + 'static, terminal_id: &str) -> Terminal {
        Terminal { stream: Box::new(stream), terminal_id: terminal_id.into(), keys: None, batch: 1, stan: 0 }
    }

    pub fn next_stan(&mut self) -> u32 {
        self.stan += 1;
        self.stan
    }

    fn base(&self, mti: &str, stan: u32, type_code: &str, network: &str) -> Message {
        let mut message = Message::new(Mti::parse(mti).unwrap());
        message.set(11, format!("{stan:06}")).set(41, &self.terminal_id).set(42, MERCHANT);
        message.set_typed(&Field60 {
            message_type_code: type_code.as_bytes().try_into().unwrap(),
            batch_number: self.batch,
            network_management_code: network.as_bytes().try_into().unwrap(),
        });
        message
    }

    /// Sends raw bytes and reads one response frame (`None` when the host closed).
    pub async fn raw_exchange(&mut self, wire: &[u8]) -> Option<Vec<u8>> {
        self.stream.write_all(wire).await.unwrap();
        self.stream.flush().await.unwrap();
        let mut prefix = [0u8; 2];
        if self.stream.read_exact(&mut prefix).await.is_err() {
            return None;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        self.stream.read_exact(&mut body).await.ok()?;
        let mut frame = prefix.to_vec();
        frame.extend_from_slice(&body);
        Some(frame)
    }

    pub fn encode(&self, message: &Message, mac: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut message = message.clone();
        if mac {
            let key = self.keys.as_ref().expect("signed in").mac_key().clone();
            encode_frame_with_mac(&UNIONPAY, &ENVELOPE, &mut message, &mut wire, |mab| {
                *x9_19_mac(&key, mab).unwrap().as_bytes()
            })
            .unwrap();
        } else {
            encode_frame(&UNIONPAY, &ENVELOPE, &message, &mut wire).unwrap();
        }
        wire
    }

    pub async fn exchange(&mut self, message: &Message, mac: bool) -> Answer {
        let wire = self.encode(message, mac);
        let frame = self.raw_exchange(&wire).await.expect("the host answers");
        self.decode(&frame)
    }

    pub fn decode(&self, frame: &[u8]) -> Answer {
        let frame = Frame::parse(frame).unwrap();
        assert_eq!(frame.envelope, ENVELOPE.response());
        let message = UNIONPAY.decode(frame.message_bytes).unwrap();
        let mac_verified = match message.field(64) {
            None => false,
            Some(mac) => {
                let key = self.keys.as_ref().expect("a MAC needs keys").mac_key();
                let mab = UNIONPAY.mab(frame.message_bytes).unwrap();
                assert_eq!(mac, x9_19_mac(key, mab).unwrap().as_bytes(), "response MAC");
                true
            }
        };
        Answer { message, mac_verified }
    }

    pub async fn sign_in(&mut self) -> Answer {
        let stan = self.next_stan();
        let mut request = self.base("0800", stan, "00", "003");
        request.set(63, "01 ");
        let answer = self.exchange(&request, false).await;
        assert_eq!(answer.code(), "00", "sign-in");
        let field_62 = answer.message.field(62).unwrap();
        self.keys = Some(unwrap_working_keys(&TdesKey::from_hex(TMK).unwrap(), field_62).unwrap());
        self.batch = answer.message.typed::<Field60>().unwrap().unwrap().batch_number;
        answer
    }

    /// A swiped sale with an optional PIN.
    pub fn sale(&mut self, amount_minor: u64, pan: &str, pin: Option<&str>) -> Message {
        let stan = self.next_stan();
        let mut request = self.base("0200", stan, "22", "000");
        request
            .set(3, "000000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, if pin.is_some() { "021" } else { "022" })
            .set(25, "00")
            .set(35, format!("{pan}={}1010000000000", expiry_of(pan)))
            .set(49, "156");
        if let Some(pin) = pin {
            let key = self.keys.as_ref().unwrap().pin_key();
            let block = encrypt_pin_block(key, &Pin::parse(pin).unwrap(), pan).unwrap();
            request.set(26, "12").set(52, block.as_bytes()).set(53, "2600000000000000");
        }
        request
    }

    pub fn balance_inquiry(&mut self, pan: &str, pin: &str) -> Message {
        let mut request = self.sale(0, pan, Some(pin));
        request.remove(4).set(3, "310000");
        let mut field60 = request.typed::<Field60>().unwrap().unwrap();
        field60.message_type_code = *b"01";
        request.set_typed(&field60);
        request
    }

    /// The reversal of `original` (docs/reference/iso8583.md: no track data, no PIN).
    pub fn reversal_of(&self, original: &Message, pan: &str) -> Message {
        let mut request = original.clone();
        request.set_mti(Mti::parse("0400").unwrap());
        for field in [26u8, 35, 36, 52, 53, 64] {
            request.remove(field);
        }
        request.set(2, pan).set(39, "98");
        request
    }

    pub fn void_of(&mut self, amount_minor: u64, rrn: &str, auth_code: &str, original_stan: u32) -> Message {
        let stan = self.next_stan();
        let mut request = self.base("0200", stan, "23", "000");
        request
            .set(3, "200000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "012")
            .set(25, "00")
            .set(37, rrn)
            .set(38, auth_code)
            .set(49, "156")
            .set(63, "01 ");
        request.set_typed(&Field61 { original_batch_number: self.batch, original_stan, original_date_mmdd: None });
        request
    }
}

impl Terminal {
    pub fn refund_of(&mut self, amount_minor: u64, rrn: &str, original: Field61) -> Message {
        let stan = self.next_stan();
        let mut request = self.base("0220", stan, "25", "000");
        request
            .set(3, "200000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "012")
            .set(25, "00")
            .set(37, rrn)
            .set(49, "156")
            .set(63, "01 ");
        request.set_typed(&original);
        request
    }

    pub fn offline_sale(&mut self, amount_minor: u64, pan: &str) -> Message {
        let mut request = self.sale(amount_minor, pan, None);
        request.set_mti(Mti::parse("0220").unwrap());
        let mut field60 = request.typed::<Field60>().unwrap().unwrap();
        field60.message_type_code = *b"30";
        request.set_typed(&field60);
        request
    }

    pub fn settlement(&mut self, totals: kassa_iso8583::fields::SettlementTotals) -> Message {
        let stan = self.next_stan();
        let mut request = self.base("0500", stan, "00", "201");
        request.set(49, "156").set(63, "01 ");
        request.set_typed(&totals);
        request
    }

    pub fn batch_upload_end(&mut self, count: u16) -> Message {
        let stan = self.next_stan();
        let mut request = self.base("0320", stan, "00", "202");
        request.set_typed(&kassa_iso8583::fields::BatchUploadCount(count));
        request
    }
}

impl Terminal {
    fn with_type(mut request: Message, mti: &str, processing: &str, condition: &str, type_code: &str) -> Message {
        request.set_mti(Mti::parse(mti).unwrap()).set(3, processing).set(25, condition);
        let mut field60 = request.typed::<Field60>().unwrap().unwrap();
        field60.message_type_code = type_code.as_bytes().try_into().unwrap();
        request.set_typed(&field60);
        request
    }

    pub fn preauth(&mut self, amount_minor: u64, pan: &str, pin: Option<&str>) -> Message {
        let request = self.sale(amount_minor, pan, pin);
        Self::with_type(request, "0100", "030000", "06", "10")
    }

    pub fn completion_of(&mut self, amount_minor: u64, rrn: &str, auth_code: &str, original_stan: u32) -> Message {
        let request = self.void_of(amount_minor, rrn, auth_code, original_stan);
        Self::with_type(request, "0200", "000000", "06", "20")
    }

    pub fn completion_void_of(&mut self, amount_minor: u64, rrn: &str, auth_code: &str, original_stan: u32) -> Message {
        let request = self.void_of(amount_minor, rrn, auth_code, original_stan);
        Self::with_type(request, "0200", "200000", "06", "21")
    }

    pub fn preauth_void_of(&mut self, amount_minor: u64, rrn: &str, auth_code: &str, original_stan: u32) -> Message {
        let request = self.void_of(amount_minor, rrn, auth_code, original_stan);
        Self::with_type(request, "0100", "200000", "06", "11")
    }
}

fn expiry_of(pan: &str) -> &'static str {
    if pan == "6222021234567890144" {
        "2001"
    } else {
        "3012"
    }
}

impl Terminal {
    /// One 0320 item of a batch upload: the transaction's kind and fields, its own batch and
    /// STAN in 61; field 11 is the upload message's own STAN.
    pub fn batch_item(&mut self, stan: u32, type_code: &str, amount_minor: u64, pan: &str, rrn: &str) -> Message {
        let own_stan = self.next_stan();
        let mut request = self.base("0320", own_stan, type_code, "201");
        request.set_typed(&Field61 {
            original_batch_number: self.batch,
            original_stan: stan,
            original_date_mmdd: None,
        });
        let processing = if matches!(type_code, "23" | "25" | "21" | "11") { "200000" } else { "000000" };
        request
            .set(2, pan)
            .set(3, processing)
            .set(4, format!("{amount_minor:012}"))
            .set(22, "022")
            .set(37, rrn)
            .set(38, "123456");
        request
    }
}
