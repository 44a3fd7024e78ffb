//! A produce batch, validated as sent and again with its CRC made right, so
//! that the fuzzer gets past the CRC to the record walk and the codecs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::records::RecordChecks;

fuzz_target!(|data: &[u8]| {
    let checks = RecordChecks {
        require_key: data.first().is_some_and(|b| b & 1 == 1),
        // Small, so that bombs end quickly and the fuzzer stays fast.
        max_decompressed_bytes: 1 << 20,
        ..RecordChecks::default()
    };
    let _ = protocol::batch::validate_produce_batch(data, &checks);
    if data.len() > 21 {
        let mut fixed = data.to_vec();
        let crc = crc32c::crc32c(&fixed[21..]);
        fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        if let Ok(valid) = protocol::batch::validate_produce_batch(&fixed, &checks) {
            // What passes must be what the header says.
            assert_eq!(valid.summary.count, valid.header.records_count);
        }
    }
});
