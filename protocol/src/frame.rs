//! Length-prefixed framing: every Kafka request and response is a 4-byte
//! big-endian size followed by that many bytes.
//!
//! `split_frame` takes one whole frame off the front of a read buffer once it
//! has fully arrived. It reserves nothing: the caller grows the buffer as
//! bytes arrive, so a length prefix alone (up to `socket.request.max.bytes`)
//! costs the broker nothing, and a frame over the cap closes the connection.

use bytes::{Buf, BytesMut};

use crate::Error;

/// Kafka's default `socket.request.max.bytes`: 100 MiB. A frame above it closes
/// the connection, as Kafka's `NetworkReceive` does.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Size of the length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Removes one complete frame (without its length prefix) from the front of
/// `buf`, or returns `Ok(None)` when more bytes are needed.
///
/// Errors (the connection must be closed): a negative length, or a length over
/// `max_frame_bytes`.
pub fn split_frame(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<BytesMut>, Error> {
    if buf.len() < LENGTH_PREFIX_BYTES {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(Error::InvalidFrameSize { size: size as i64 });
    }
    let size = size as usize;
    if size > max_frame_bytes {
        return Err(Error::FrameTooLarge {
            size,
            max: max_frame_bytes,
        });
    }
    if buf.len() < LENGTH_PREFIX_BYTES + size {
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buf.split_to(size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_whole_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert!(split_frame(&mut buf, 100).unwrap().is_none());
        buf.extend_from_slice(&[3, 9]);
        let frame = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3]);
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn a_length_prefix_alone_reserves_nothing() {
        let mut buf = BytesMut::with_capacity(8);
        buf.extend_from_slice(&(50i32 * 1024 * 1024).to_be_bytes());
        assert!(
            split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES)
                .unwrap()
                .is_none()
        );
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
    }

    #[test]
    fn short_buffer_is_not_an_error() {
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert!(split_frame(&mut buf, 100).unwrap().is_none());
    }

    #[test]
    fn rejects_frame_over_cap() {
        let mut buf = BytesMut::from(&[0x7fu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES),
            Err(Error::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_negative_length() {
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xf0][..]);
        assert!(matches!(
            split_frame(&mut buf, 100),
            Err(Error::InvalidFrameSize { .. })
        ));
    }
}
