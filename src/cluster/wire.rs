//! What nodes say to each other on the Redis bus, and its byte layout.
//!
//! A small binary layout rather than JSON: a relayed message is the hot path and its
//! frame travels as the exact bytes the receiving node writes to its sockets. Every
//! event starts with its kind byte and the sending node's id:
//!
//! ```text
//! M node project frame          a `message` broadcast (frame = `42["message",<string>]`)
//! R node project 0|1 [hash]     keys revoked (1 + the surviving key's hash on regeneration)
//! S node project settings-json  settings changed
//! C node 0|1 (project count)*   live connections per project (1 = full snapshot)
//! L node                        the node is leaving
//! ```
//!
//! `project` is a u16 big-endian length and UTF-8 bytes; counts are u64 big-endian.
//! Anything malformed decodes to a [`WireError`], never a panic: the bus is shared
//! infrastructure, and a bad publisher must not take a node down.

use crate::platform::types::{ProjectId, ProjectSettings};
use bytes::{Buf, BufMut, Bytes};

/// A node's identity on the bus, random per process start.
pub type NodeId = [u8; 16];

/// One event on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    /// A `message` to broadcast to the project's room (the encoded Socket.IO frame).
    Message {
        /// The project whose room gets it.
        project: ProjectId,
        /// `42["message",<json string>]`, as written to sockets.
        frame: Bytes,
    },
    /// The project's keys were revoked: all but `surviving` (none when deleted).
    Revoke {
        /// The project.
        project: ProjectId,
        /// The new key's hash after a regeneration; `None` when the project was deleted.
        surviving: Option<[u8; 32]>,
    },
    /// The project's settings changed.
    Settings {
        /// The project.
        project: ProjectId,
        /// Its new effective settings.
        settings: ProjectSettings,
    },
    /// The sender's live connections per project.
    Connections {
        /// Whether this lists every project (absent ones have none) or only changes.
        full: bool,
        /// Project and its live connection count on the sender.
        counts: Vec<(ProjectId, u64)>,
    },
    /// The sender is shutting down: forget its connections now.
    Leave,
}

/// An event and the node that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The sending node.
    pub node: NodeId,
    /// What it says.
    pub event: BusEvent,
}

/// Why bytes from the bus were not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes ended before the event did.
    #[error("truncated event")]
    Truncated,
    /// The first byte names no event kind.
    #[error("unknown event kind {0:#04x}")]
    UnknownKind(u8),
    /// A project id was not UTF-8.
    #[error("project id is not UTF-8")]
    BadProject,
    /// A relayed frame was not a `message` event with one JSON string.
    #[error("relayed frame is not a message event")]
    BadFrame,
    /// The settings were not valid JSON settings.
    #[error("settings are not valid: {0}")]
    BadSettings(String),
    /// Bytes were left after the event.
    #[error("trailing bytes after the event")]
    Trailing,
}

impl Envelope {
    /// The bytes published for this event.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match &self.event {
            BusEvent::Message { project, frame } => {
                return encode_message(&self.node, project.as_str(), frame);
            }
            BusEvent::Revoke { project, surviving } => {
                header(&mut out, b'R', &self.node);
                put_project(&mut out, project.as_str());
                match surviving {
                    Some(hash) => {
                        out.put_u8(1);
                        out.put_slice(hash);
                    }
                    None => out.put_u8(0),
                }
            }
            BusEvent::Settings { project, settings } => {
                header(&mut out, b'S', &self.node);
                put_project(&mut out, project.as_str());
                // Serializing plain numbers and strings cannot fail.
                out.put_slice(&serde_json::to_vec(settings).unwrap_or_default());
            }
            BusEvent::Connections { full, counts } => {
                header(&mut out, b'C', &self.node);
                out.put_u8(u8::from(*full));
                for (project, count) in counts {
                    put_project(&mut out, project.as_str());
                    out.put_u64(*count);
                }
            }
            BusEvent::Leave => header(&mut out, b'L', &self.node),
        }
        out
    }

    /// Parses bytes read from the bus.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut buf = bytes;
        if buf.remaining() < 17 {
            return Err(WireError::Truncated);
        }
        let kind = buf.get_u8();
        let mut node = [0u8; 16];
        buf.copy_to_slice(&mut node);
        let event = match kind {
            b'M' => {
                let project = get_project(&mut buf)?;
                let frame = Bytes::copy_from_slice(buf);
                buf = &[];
                if !is_message_frame(&frame) {
                    return Err(WireError::BadFrame);
                }
                BusEvent::Message { project, frame }
            }
            b'R' => {
                let project = get_project(&mut buf)?;
                if !buf.has_remaining() {
                    return Err(WireError::Truncated);
                }
                let surviving = match buf.get_u8() {
                    0 => None,
                    _ if buf.remaining() < 32 => return Err(WireError::Truncated),
                    _ => {
                        let mut hash = [0u8; 32];
                        buf.copy_to_slice(&mut hash);
                        Some(hash)
                    }
                };
                BusEvent::Revoke { project, surviving }
            }
            b'S' => {
                let project = get_project(&mut buf)?;
                let settings = serde_json::from_slice(buf)
                    .map_err(|e| WireError::BadSettings(e.to_string()))?;
                buf = &[];
                BusEvent::Settings { project, settings }
            }
            b'C' => {
                if !buf.has_remaining() {
                    return Err(WireError::Truncated);
                }
                let full = buf.get_u8() != 0;
                let mut counts = Vec::new();
                while buf.has_remaining() {
                    let project = get_project(&mut buf)?;
                    if buf.remaining() < 8 {
                        return Err(WireError::Truncated);
                    }
                    counts.push((project, buf.get_u64()));
                }
                BusEvent::Connections { full, counts }
            }
            b'L' => BusEvent::Leave,
            other => return Err(WireError::UnknownKind(other)),
        };
        if buf.has_remaining() {
            return Err(WireError::Trailing);
        }
        Ok(Self { node, event })
    }
}

/// The bytes of a [`BusEvent::Message`] from `node`, without building the event.
pub fn encode_message(node: &NodeId, project: &str, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + node.len() + 2 + project.len() + frame.len());
    header(&mut out, b'M', node);
    put_project(&mut out, project);
    out.put_slice(frame);
    out
}

/// Whether `frame` is `42["message",<one JSON string>]`, the only frame nodes relay.
pub fn is_message_frame(frame: &[u8]) -> bool {
    let Some(literal) = frame
        .strip_prefix(crate::realtime::MESSAGE_FRAME_PREFIX.as_bytes())
        .and_then(|rest| rest.strip_suffix(b"]"))
    else {
        return false;
    };
    literal.first() == Some(&b'"')
        && serde_json::from_slice::<&serde_json::value::RawValue>(literal).is_ok()
}

fn header(out: &mut Vec<u8>, kind: u8, node: &NodeId) {
    out.put_u8(kind);
    out.put_slice(node);
}

fn put_project(out: &mut Vec<u8>, project: &str) {
    // Project ids are UUIDs; anything longer than a u16 is not one of ours.
    let bytes = &project.as_bytes()[..project.len().min(usize::from(u16::MAX))];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

fn get_project(buf: &mut &[u8]) -> Result<ProjectId, WireError> {
    if buf.remaining() < 2 {
        return Err(WireError::Truncated);
    }
    let len = usize::from(buf.get_u16());
    if buf.remaining() < len {
        return Err(WireError::Truncated);
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| WireError::BadProject)?;
    let project = ProjectId(text.to_owned());
    buf.advance(len);
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::types::Limits;

    const NODE: NodeId = [7; 16];

    fn round_trip(event: BusEvent) {
        let envelope = Envelope { node: NODE, event };
        assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
    }

    #[test]
    fn every_event_survives_the_round_trip() {
        let project = ProjectId("0b6c1d2e-aaaa-bbbb-cccc-000000000001".into());
        round_trip(BusEvent::Message {
            project: project.clone(),
            frame: Bytes::from_static(b"42[\"message\",\"h\\u00e9llo \\\"x\\\"\"]"),
        });
        round_trip(BusEvent::Revoke {
            project: project.clone(),
            surviving: Some([9; 32]),
        });
        round_trip(BusEvent::Revoke {
            project: project.clone(),
            surviving: None,
        });
        let mut settings = ProjectSettings::defaults(&Limits::default());
        settings.allowed_origins = vec!["https://app.example".into()];
        round_trip(BusEvent::Settings {
            project: project.clone(),
            settings,
        });
        round_trip(BusEvent::Connections {
            full: true,
            counts: vec![(project.clone(), 3), (ProjectId("other".into()), 0)],
        });
        round_trip(BusEvent::Connections {
            full: false,
            counts: vec![],
        });
        round_trip(BusEvent::Leave);
    }

    #[test]
    fn only_message_events_with_one_string_are_relayed() {
        for frame in [
            &b"42[\"message\",\"ok\"]"[..],
            b"42[\"message\",\"\"]",
            b"42[\"message\",\"\\\"],[1\"]",
        ] {
            assert!(
                is_message_frame(frame),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
        for frame in [
            &b"42[\"message\",1]"[..],
            b"42[\"message\",\"a\",\"b\"]",
            b"42[\"message\",\"a\"],[\"x\"]",
            b"42[\"other\",\"a\"]",
            b"41",
            b"42[\"message\",\"unterminated]",
            b"",
        ] {
            assert!(
                !is_message_frame(frame),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let good = Envelope {
            node: NODE,
            event: BusEvent::Revoke {
                project: ProjectId("p".into()),
                surviving: Some([1; 32]),
            },
        }
        .encode();
        // Every truncation of a valid event is refused.
        for len in 0..good.len() {
            assert!(
                Envelope::decode(&good[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Envelope::decode(&trailing), Err(WireError::Trailing));

        let mut unknown = good.clone();
        unknown[0] = b'Z';
        assert_eq!(
            Envelope::decode(&unknown),
            Err(WireError::UnknownKind(b'Z'))
        );

        let mut bad_utf8 = vec![b'R'];
        bad_utf8.extend_from_slice(&NODE);
        bad_utf8.extend_from_slice(&[0, 2, 0xff, 0xfe, 0]);
        assert_eq!(Envelope::decode(&bad_utf8), Err(WireError::BadProject));

        let mut bad_frame = vec![b'M'];
        bad_frame.extend_from_slice(&NODE);
        bad_frame.extend_from_slice(&[0, 1, b'p']);
        bad_frame.extend_from_slice(b"42[\"hijack\",\"x\"]");
        assert_eq!(Envelope::decode(&bad_frame), Err(WireError::BadFrame));

        let mut bad_settings = vec![b'S'];
        bad_settings.extend_from_slice(&NODE);
        bad_settings.extend_from_slice(&[0, 1, b'p']);
        bad_settings.extend_from_slice(b"{\"max_message_bytes\":-1}");
        assert!(matches!(
            Envelope::decode(&bad_settings),
            Err(WireError::BadSettings(_))
        ));

        let mut short_count = vec![b'C'];
        short_count.extend_from_slice(&NODE);
        short_count.extend_from_slice(&[1, 0, 1, b'p', 0, 0, 0]);
        assert_eq!(Envelope::decode(&short_count), Err(WireError::Truncated));
    }
}
