//! Bytes from a socket: split into frames as a connection does, each frame
//! decoded as a request, and every Produce's batches validated. Nothing may
//! panic, abort or allocate without bound.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::kafka_protocol::messages::RequestKind;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // A small cap, so that the fuzzer reaches whole frames.
    while let Ok(Some(frame)) = protocol::frame::split_frame(&mut buf, 1 << 20) {
        let Ok(protocol::Decoded::Request(request)) = protocol::decode_request(frame.freeze())
        else {
            continue;
        };
        if let RequestKind::Produce(produce) = request.body {
            for topic in produce.topic_data {
                for partition in topic.partition_data {
                    if let Some(records) = partition.records {
                        let _ = protocol::batch::validate_produce_batch(&records, &Default::default());
                    }
                }
            }
        }
    }
});
