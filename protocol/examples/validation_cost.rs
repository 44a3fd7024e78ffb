//! What reading every record of a produce batch costs: CPU seconds per GB
//! of batches validated, uncompressed and in each codec, against the CRC
//! alone (what was checked before). A program, not a test: figures vary
//! with the machine; compare within one run.
//!
//!   cargo run --release -p protocol --example validation_cost [MiB]

use protocol::batch::{check_produce_header, validate_produce_batch, verify_crc};
use protocol::records::RecordChecks;
use protocol::testing::{batch_with_payload, compress, record_bytes};

/// CPU seconds (user + system) of this process so far, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("linux /proc");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let total_mib: usize = std::env::args()
        .nth(1)
        .map_or(2048, |a| a.parse().expect("MiB"));
    // 1 MiB of 1 KiB records with keys and a header: a typical producer batch.
    let value: Vec<u8> = (0..1000).map(|i| b"lightstream-"[i % 12]).collect();
    let records: Vec<u8> = (0..1000)
        .flat_map(|i| {
            record_bytes(
                i,
                i as i64,
                Some(format!("key-{i}").as_bytes()),
                Some(&value),
                &[(b"h", Some(b"v"))],
            )
        })
        .collect();
    println!(
        "records per batch: 1000, uncompressed batch payload {} KiB",
        records.len() / 1024
    );
    println!(
        "{:<8} {:>10} {:>14} {:>16} {:>16}",
        "codec", "batch KiB", "batches", "CRC only s/GB", "full check s/GB"
    );
    for (name, codec) in [
        ("none", 0),
        ("gzip", 1),
        ("snappy", 2),
        ("lz4", 3),
        ("zstd", 4),
    ] {
        let batch = batch_with_payload(&compress(codec, &records), 1000, codec);
        // The same uncompressed volume for every codec: GB of records produced.
        let rounds = (total_mib * 1024 * 1024 / records.len()).max(1);
        let gb = (rounds * records.len()) as f64 / 1e9;
        let start = cpu_seconds();
        for _ in 0..rounds {
            let header = check_produce_header(&batch).unwrap();
            verify_crc(&header, &batch).unwrap();
        }
        let crc_only = (cpu_seconds() - start) / gb;
        let start = cpu_seconds();
        for _ in 0..rounds {
            let valid = validate_produce_batch(&batch, &RecordChecks::default()).unwrap();
            assert_eq!(valid.summary.count, 1000);
        }
        let full = (cpu_seconds() - start) / gb;
        println!(
            "{name:<8} {:>10} {rounds:>14} {crc_only:>16.3} {full:>16.3}",
            batch.len() / 1024
        );
    }
}
