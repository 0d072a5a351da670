//! RFC 6455 framing for the server side: the opening-handshake answer, a pure frame
//! parser for client frames, and header encoding for server frames.
//!
//! Why our own framing instead of driving tungstenite/fastwebsockets' streams: both own
//! the socket and keep a per-connection read buffer (tungstenite: 128 KiB by default)
//! and copy every outgoing payload into their own write buffer. roomcast shares one
//! encoded payload between every recipient of a broadcast and writes a socket's whole
//! backlog with one `writev`, and keeps no buffer at all on an idle connection; neither
//! crate's API allows that. We still use tungstenite for the accept-key derivation.

use bytes::{Buf, BytesMut};

/// Frame opcodes we accept or send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation,
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
    /// Close handshake.
    Close,
    /// Ping (answered with a pong).
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Why a client's frame stream is refused; each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Reserved bits set (we negotiate no extensions).
    #[error("reserved bits set")]
    ReservedBits,
    /// Unknown opcode.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// Client frames must be masked.
    #[error("unmasked client frame")]
    Unmasked,
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("invalid control frame")]
    InvalidControl,
    /// Over the configured maximum message size.
    #[error("message too large")]
    TooLarge,
    /// Continuation without a start, or a new message inside a fragmented one.
    #[error("bad fragmentation")]
    BadFragmentation,
    /// A text message that is not UTF-8.
    #[error("text is not UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// The close code to send for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge => 1009,
            Self::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// One parsed client frame, payload unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// Whether this frame ends its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The unmasked payload.
    pub payload: BytesMut,
}

/// Takes one complete frame off the front of `buf`, or `None` if more bytes are needed.
/// A frame whose declared length exceeds `max_len` is refused before it is buffered.
pub fn parse_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::UnknownOpcode(b0 & 0x0F))?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let short_len = (b1 & 0x7F) as usize;
    if opcode.is_control() && (!fin || short_len > 125) {
        return Err(FrameError::InvalidControl);
    }
    let (len, len_bytes) = match short_len {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(raw), 8)
        }
        n => (n as u64, 0),
    };
    if len > max_len as u64 {
        return Err(FrameError::TooLarge);
    }
    let len = len as usize;
    let header_len = 2 + len_bytes + 4;
    if buf.len() < header_len + len {
        buf.reserve(header_len + len - buf.len());
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[2 + len_bytes..header_len]);
    buf.advance(header_len);
    let mut payload = buf.split_to(len);
    unmask(&mut payload, mask);
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Longest server frame header.
pub const MAX_HEADER_LEN: usize = 10;

/// Writes the header of an unmasked, final server frame into `out`; returns its length.
pub fn encode_header(opcode: OpCode, payload_len: usize, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    out[0] = 0x80 | opcode.as_u8();
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if payload_len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// A whole close frame with `code`, ready to write.
pub fn close_frame(code: u16) -> [u8; 4] {
    let c = code.to_be_bytes();
    [0x88, 0x02, c[0], c[1]]
}

/// Reassembles fragmented messages; holds nothing between whole messages.
#[derive(Default)]
pub struct Reassembler {
    partial: Option<(OpCode, BytesMut)>,
}

/// A whole message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (UTF-8 checked).
    Text(BytesMut),
    /// A binary message.
    Binary(BytesMut),
    /// A ping to answer with this payload.
    Ping(BytesMut),
    /// A pong (ignored).
    Pong,
    /// The client started the close handshake.
    Close,
}

impl Reassembler {
    /// Feeds one frame; returns a message when one is complete.
    pub fn push(&mut self, frame: Frame, max_len: usize) -> Result<Option<Message>, FrameError> {
        match frame.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(frame.payload))),
            OpCode::Pong => Ok(Some(Message::Pong)),
            OpCode::Close => Ok(Some(Message::Close)),
            OpCode::Continuation => {
                let Some((_, buf)) = self.partial.as_mut() else {
                    return Err(FrameError::BadFragmentation);
                };
                if buf.len() + frame.payload.len() > max_len {
                    return Err(FrameError::TooLarge);
                }
                buf.extend_from_slice(&frame.payload);
                if !frame.fin {
                    return Ok(None);
                }
                let (opcode, payload) = self.partial.take().expect("checked above");
                finish(opcode, payload).map(Some)
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(FrameError::BadFragmentation);
                }
                if !frame.fin {
                    self.partial = Some((frame.opcode, frame.payload));
                    return Ok(None);
                }
                finish(frame.opcode, frame.payload).map(Some)
            }
        }
    }
}

fn finish(opcode: OpCode, payload: BytesMut) -> Result<Message, FrameError> {
    if opcode == OpCode::Text {
        if std::str::from_utf8(&payload).is_err() {
            return Err(FrameError::InvalidUtf8);
        }
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &[u8]) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(client_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = BytesMut::new();
        out.extend_from_slice(&[first]);
        match payload.len() {
            n if n < 126 => out.extend_from_slice(&[0x80 | n as u8]),
            n if n <= 65535 => {
                out.extend_from_slice(&[0x80 | 126]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.extend_from_slice(&[0x80 | 127]);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn parses_masked_text_in_pieces() {
        let whole = masked(0x81, b"4hello");
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(parse_frame(&mut buf, 100).unwrap(), None, "cut at {cut}");
        }
        let mut buf = whole.clone();
        let frame = parse_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(frame.opcode, OpCode::Text);
        assert_eq!(&frame.payload[..], b"4hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn parses_extended_lengths() {
        for len in [125usize, 126, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let mut buf = masked(0x82, &payload);
            let frame = parse_frame(&mut buf, 100_000).unwrap().unwrap();
            assert_eq!(frame.payload.len(), len);
            assert!(frame.payload.iter().all(|b| *b == b'a'));
        }
    }

    #[test]
    fn refuses_malformed_frames() {
        let mut unmasked = BytesMut::from(&[0x81u8, 0x01, b'a'][..]);
        assert_eq!(parse_frame(&mut unmasked, 10), Err(FrameError::Unmasked));
        let mut rsv = masked(0xC1, b"a");
        assert_eq!(parse_frame(&mut rsv, 10), Err(FrameError::ReservedBits));
        let mut opcode = masked(0x83, b"a");
        assert_eq!(
            parse_frame(&mut opcode, 10),
            Err(FrameError::UnknownOpcode(3))
        );
        let mut control = masked(0x09, b"a");
        assert_eq!(
            parse_frame(&mut control, 10),
            Err(FrameError::InvalidControl)
        );
        let mut big = masked(0x81, &[b'a'; 11]);
        assert_eq!(parse_frame(&mut big, 10), Err(FrameError::TooLarge));
        // A huge declared length is refused from the header alone.
        let mut header = BytesMut::from(&[0x82u8, 0xFF, 0x7F, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(parse_frame(&mut header, 1000), Err(FrameError::TooLarge));
    }

    #[test]
    fn reassembles_fragments_and_checks_utf8() {
        let mut r = Reassembler::default();
        let mut buf = masked(0x01, b"4he");
        buf.extend_from_slice(&masked(0x89, b"p"));
        buf.extend_from_slice(&masked(0x80, b"llo"));
        let f1 = parse_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(r.push(f1, 100).unwrap(), None);
        let ping = parse_frame(&mut buf, 100).unwrap().unwrap();
        assert!(matches!(r.push(ping, 100).unwrap(), Some(Message::Ping(_))));
        let f2 = parse_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(
            r.push(f2, 100).unwrap(),
            Some(Message::Text(BytesMut::from(&b"4hello"[..])))
        );
        let mut bad = masked(0x81, &[0xff, 0xfe]);
        let f = parse_frame(&mut bad, 100).unwrap().unwrap();
        assert_eq!(r.push(f, 100), Err(FrameError::InvalidUtf8));
        let mut orphan = masked(0x80, b"x");
        let f = parse_frame(&mut orphan, 100).unwrap().unwrap();
        assert_eq!(r.push(f, 100), Err(FrameError::BadFragmentation));
        let mut r = Reassembler::default();
        let mut parts = masked(0x02, &[1; 6]);
        parts.extend_from_slice(&masked(0x80, &[1; 6]));
        let f = parse_frame(&mut parts, 10).unwrap().unwrap();
        assert_eq!(r.push(f, 10).unwrap(), None);
        let f = parse_frame(&mut parts, 10).unwrap().unwrap();
        assert_eq!(r.push(f, 10), Err(FrameError::TooLarge));
    }

    #[test]
    fn encodes_headers() {
        let mut out = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(OpCode::Text, 5, &mut out), 2);
        assert_eq!(&out[..2], &[0x81, 5]);
        assert_eq!(encode_header(OpCode::Binary, 300, &mut out), 4);
        assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
        assert_eq!(encode_header(OpCode::Text, 70_000, &mut out), 10);
        assert_eq!(out[1], 127);
    }

    #[test]
    fn derives_the_rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
