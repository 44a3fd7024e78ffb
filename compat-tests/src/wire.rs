//! A blocking Kafka connection that sends requests built with the
//! `kafka-protocol` crate and decodes their answers: the benchmarks' way to
//! speak to the broker with no client library's costs or policies in between.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest answer accepted (the broker's own fetch cap is 55 MiB).
const MAX_RESPONSE_BYTES: i32 = 200 << 20;

pub struct Conn {
    stream: TcpStream,
    correlation_id: i32,
    client_id: &'static str,
}

impl Conn {
    pub fn connect(bootstrap: &str, client_id: &'static str) -> anyhow::Result<Conn> {
        let stream =
            TcpStream::connect(bootstrap).with_context(|| format!("connect {bootstrap}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            stream,
            correlation_id: 0,
            client_id,
        })
    }

    /// Sends one request and waits for its answer.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        self.correlation_id += 1;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)))
            .encode(&mut body, api_key.request_header_version(version))?;
        request.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        if !(0..=MAX_RESPONSE_BYTES).contains(&size) {
            bail!("implausible response size {size}");
        }
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf)?;
        let mut buf = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "answer to correlation id {} while waiting for {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        let response = Resp::decode(&mut buf, version)?;
        if buf.has_remaining() {
            bail!(
                "{} bytes left after the {api_key:?} answer",
                buf.remaining()
            );
        }
        Ok(response)
    }
}
