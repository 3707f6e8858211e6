//! TCP framing of the UnionPay dialect:
//! `[length: 2 bytes BE][TPDU: 0x60, destination 2, source 2][header 6][message]`.

use crate::codec::Salvage;
use crate::error::{EncodeError, FrameError};
use crate::message::Message;
use crate::spec::Dialect;

/// Largest frame, counted as the length prefix counts: the bytes after the prefix. A larger
/// announced length closes the connection.
pub const FRAME_BYTES_MAX: usize = 4096;
/// Size of the big-endian length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 2;
/// Size of the TPDU.
pub const TPDU_BYTES: usize = 5;
/// Size of the header that follows the TPDU.
pub const HEADER_BYTES: usize = 6;
/// TPDU plus header.
pub const ENVELOPE_BYTES: usize = TPDU_BYTES + HEADER_BYTES;
/// First byte of every TPDU.
pub const TPDU_ID: u8 = 0x60;

/// Transport protocol data unit: who the frame is for and from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tpdu {
    /// Destination address.
    pub destination: [u8; 2],
    /// Source address.
    pub source: [u8; 2],
}

impl Tpdu {
    /// The TPDU of the response: destination and source swapped.
    pub fn swapped(&self) -> Tpdu {
        Tpdu { destination: self.source, source: self.destination }
    }
}

/// Everything between the length prefix and the message: TPDU and header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// The TPDU.
    pub tpdu: Tpdu,
    /// The 6-byte header (first byte `0x60` by convention; echoed as is).
    pub header: [u8; HEADER_BYTES],
}

impl Envelope {
    /// The envelope of the response: TPDU swapped, header echoed.
    pub fn response(&self) -> Envelope {
        Envelope { tpdu: self.tpdu.swapped(), header: self.header }
    }

    /// Reads the 11 envelope bytes without judging them (salvage path).
    fn read_raw(bytes: &[u8]) -> Option<(u8, Envelope)> {
        let bytes: &[u8; ENVELOPE_BYTES] = bytes.get(..ENVELOPE_BYTES)?.try_into().ok()?;
        let tpdu = Tpdu { destination: [bytes[1], bytes[2]], source: [bytes[3], bytes[4]] };
        let mut header = [0u8; HEADER_BYTES];
        header.copy_from_slice(&bytes[TPDU_BYTES..]);
        Some((bytes[0], Envelope { tpdu, header }))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(TPDU_ID);
        out.extend_from_slice(&self.tpdu.destination);
        out.extend_from_slice(&self.tpdu.source);
        out.extend_from_slice(&self.header);
    }
}

/// A frame split into its envelope and its still-encoded message, borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// TPDU and header.
    pub envelope: Envelope,
    /// The message bytes, MTI to last field; decode with a [`Dialect`].
    pub message_bytes: &'a [u8],
}

/// The number of bytes that follow a length prefix, checked against the frame limits. Read
/// the prefix, call this, then read that many bytes (or close the connection on error).
pub fn frame_length(prefix: [u8; LENGTH_PREFIX_BYTES]) -> Result<usize, FrameError> {
    let length = usize::from(u16::from_be_bytes(prefix));
    if length > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong { length, max: FRAME_BYTES_MAX });
    }
    if length < ENVELOPE_BYTES {
        return Err(FrameError::TooShort { length, min: ENVELOPE_BYTES });
    }
    Ok(length)
}

impl<'a> Frame<'a> {
    /// Splits a complete frame, length prefix included, that must hold exactly the announced
    /// bytes.
    pub fn parse(frame_bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let actual = frame_bytes.len().saturating_sub(LENGTH_PREFIX_BYTES);
        let announced = match frame_bytes {
            [high, low, ..] => frame_length([*high, *low])?,
            _ => return Err(FrameError::LengthMismatch { announced: 0, actual }),
        };
        if announced != actual {
            return Err(FrameError::LengthMismatch { announced, actual });
        }
        Frame::parse_body(&frame_bytes[LENGTH_PREFIX_BYTES..])
    }

    /// Takes the first complete frame off the front of a stream buffer: `Ok(None)` when more
    /// bytes are needed, else the frame and how many bytes it used.
    pub fn split(buffer: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        let [high, low, ..] = buffer else { return Ok(None) };
        let length = frame_length([*high, *low])?;
        let Some(body) = buffer.get(LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + length) else {
            return Ok(None);
        };
        Ok(Some((Frame::parse_body(body)?, LENGTH_PREFIX_BYTES + length)))
    }

    /// Splits the bytes after the length prefix.
    pub fn parse_body(body: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let (tpdu_id, envelope) =
            Envelope::read_raw(body).ok_or(FrameError::TooShort { length: body.len(), min: ENVELOPE_BYTES })?;
        if tpdu_id != TPDU_ID {
            return Err(FrameError::TpduId(tpdu_id));
        }
        Ok(Frame { envelope, message_bytes: &body[ENVELOPE_BYTES..] })
    }
}

/// What could be read from a frame that failed to parse or decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSalvage {
    /// The envelope bytes as read (TPDU id unchecked), to address a `30` answer.
    pub envelope: Option<Envelope>,
    /// MTI and terminal id, when readable.
    pub message: Salvage,
}

impl FrameSalvage {
    /// Whether the gateway can answer `30`: MTI and terminal id were readable.
    pub fn answerable(&self) -> bool {
        self.envelope.is_some() && self.message.mti.is_some() && self.message.terminal_id.is_some()
    }
}

/// Reads what it can of the bytes after a length prefix that did not decode.
pub fn salvage_frame(dialect: &Dialect, body: &[u8]) -> FrameSalvage {
    let envelope = Envelope::read_raw(body).map(|(_, envelope)| envelope);
    let message_bytes = body.get(ENVELOPE_BYTES..).unwrap_or_default();
    FrameSalvage { envelope, message: dialect.salvage(message_bytes) }
}

/// Appends a whole frame (length prefix, envelope, message) to `out`. On error `out` is left
/// as it was.
pub fn encode_frame(
    dialect: &Dialect,
    envelope: &Envelope,
    message: &Message,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    envelope.write(out);
    dialect.encode_into(message, out).inspect_err(|_| out.truncate(start))?;
    patch_length(out, start)
}

/// Like [`encode_frame`], computing field 64 over the MAB with `mac` (see
/// [`Dialect::encode_with_mac`]).
pub fn encode_frame_with_mac(
    dialect: &Dialect,
    envelope: &Envelope,
    message: &mut Message,
    out: &mut Vec<u8>,
    mac: impl FnOnce(&[u8]) -> [u8; 8],
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    envelope.write(out);
    dialect.encode_with_mac(message, out, mac).inspect_err(|_| out.truncate(start))?;
    patch_length(out, start)
}

fn patch_length(out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    let bytes = out.len() - start - LENGTH_PREFIX_BYTES;
    let length = match u16::try_from(bytes) {
        Ok(length) if bytes <= FRAME_BYTES_MAX => length,
        _ => {
            out.truncate(start);
            return Err(EncodeError::FrameTooLong { bytes, max: FRAME_BYTES_MAX });
        }
    };
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(())
}
