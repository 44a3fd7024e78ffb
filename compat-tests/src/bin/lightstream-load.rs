//! `lightstream-load`: a load tool on librdkafka (the `rdkafka` crate). It
//! produces N records of S bytes to P partitions with acks=all, then consumes
//! them back, and prints records/s, MB/s, produce latency percentiles and —
//! when given the broker's PID — the broker's CPU use, its peak RSS and its
//! mean RSS while the first and while the last million records were
//! acknowledged (sampled every 50 ms).
//!
//! It is a benchmark program, not a test: it asserts only that every record
//! came back. Run it through `compat-tests/bench/run.sh`, which starts a broker
//! and measures the machine's loopback and fdatasync bandwidth in the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../figures.rs"]
mod figures;
#[path = "../raw_fetch.rs"]
mod raw_fetch;
#[path = "../wire.rs"]
mod wire;

use anyhow::{Context, bail};
use clap::Parser;
use figures::percentile;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

#[derive(Parser, Debug)]
#[command(
    about = "Produce then consume N records against a Kafka-compatible broker and print figures"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "lightstream-load")]
    topic: String,
    /// Records to produce.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Offered load in MB/s (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate_mb_s: f64,
    /// The broker's PID, to read its memory from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    #[arg(long, default_value_t = false)]
    idempotence: bool,
    /// librdkafka max.in.flight.requests.per.connection (idempotence caps it
    /// at 5; set 5 without idempotence to compare the broker's cost alone).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// librdkafka linger.ms for the producer.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Skip the consume phase.
    #[arg(long, default_value_t = false)]
    no_consume: bool,
    /// Skip topic creation and the produce phase: consume what an earlier
    /// run left in the topic (for profiling the read path alone).
    #[arg(long, default_value_t = false)]
    no_produce: bool,
    /// Consume with raw Fetch requests instead of librdkafka: measures the
    /// broker's consume rate without librdkafka's per-record cost.
    #[arg(long, default_value_t = false)]
    raw_fetch: bool,
    /// Consumer threads (each reads every K-th partition).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Delivery latencies in microseconds, and the count of failures.
#[derive(Default)]
struct Deliveries {
    latencies_us: Mutex<Vec<u32>>,
    failed: AtomicU64,
    delivered: AtomicU64,
}

struct LatencyContext(Arc<Deliveries>);
impl ClientContext for LatencyContext {}
impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                let us = sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
                self.0.latencies_us.lock().expect("latency lock").push(us);
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads a `Vm…` field of /proc/PID/status in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.no_produce {
        recreate_topic(&args)?;
        produce(&args)?;
    }
    if !args.no_consume {
        consume(&args)?;
    }
    if let Some(pid) = args.broker_pid {
        let peak = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
        println!("broker_peak_rss_mib={:.1}", peak as f64 / 1024.0);
    }
    Ok(())
}

/// Runs one future to completion on this thread. The admin client's futures
/// need no runtime, so a thread-parking executor is all it takes.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn recreate_topic(args: &Args) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .create()
        .context("admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = block_on(admin.delete_topics(&[args.topic.as_str()], &options));
    let new = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    for result in block_on(admin.create_topics([&new], &options)).context("create topic")? {
        if let Err((topic, code)) = result {
            bail!("create topic {topic}: {code}");
        }
    }
    Ok(())
}

/// Produces every record and prints the figures of the produce phase.
fn produce(args: &Args) -> anyhow::Result<()> {
    let deliveries = Arc::new(Deliveries::default());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "all")
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", args.idempotence.to_string());
    if let Some(n) = args.max_in_flight {
        config.set("max.in.flight.requests.per.connection", n.to_string());
    }
    let producer: ThreadedProducer<LatencyContext> = config
        .create_with_context(LatencyContext(deliveries.clone()))
        .context("producer")?;
    let payload = vec![b'x'; args.size];
    let cpu_before = args.broker_pid.and_then(proc_cpu_seconds);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_s);
    let bytes_per_record = args.size as f64;
    let sampler = args
        .broker_pid
        .map(|pid| RssSampler::start(pid, deliveries.clone()));
    for i in 0..args.records {
        if args.rate_mb_s > 0.0 {
            let due = Duration::from_secs_f64(i as f64 * bytes_per_record / (args.rate_mb_s * 1e6));
            // Sleep only when a millisecond ahead: sleeping per record would
            // cost the machine more context switches than the broker's work.
            if let Some(wait) = due.checked_sub(started.elapsed())
                && wait >= Duration::from_millis(1)
            {
                std::thread::sleep(wait);
            }
        }
        let key = (i % 1_000).to_string();
        let mut record = BaseRecord::with_opaque_to(&args.topic, Box::new(Instant::now()))
            .key(&key)
            .payload(&payload)
            .partition((i % args.partitions as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    if Instant::now() > deadline {
                        bail!("produce timed out: {e}");
                    }
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(args.timeout_s))
        .context("flush")?;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *deliveries.latencies_us.lock().expect("latency lock"));
    latencies.sort_unstable();
    let mb = args.records as f64 * args.size as f64 / 1e6;
    println!(
        "produce records={} size={} partitions={} idempotence={} max_in_flight={} rate_limit_mb_s={} elapsed_s={:.2} records_per_s={:.0} mb_per_s={:.1} failed={} latency_ms p50={:.2} p99={:.2} p999={:.2} max={:.2} broker_cpu_cores={}",
        args.records,
        args.size,
        args.partitions,
        args.idempotence,
        args.max_in_flight
            .map_or_else(|| "default".to_string(), |n| n.to_string()),
        args.rate_mb_s,
        elapsed,
        args.records as f64 / elapsed,
        mb / elapsed,
        failed,
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        percentile(&latencies, 0.999) / 1000.0,
        percentile(&latencies, 1.0) / 1000.0,
        cpu_cores_used(args.broker_pid, cpu_before, elapsed),
    );
    if failed > 0 {
        bail!("{failed} records were not acknowledged");
    }
    if let Some(sampler) = sampler {
        sampler.report(args.records);
    }
    Ok(())
}

/// Samples the broker's RSS every 50 ms together with the count of
/// acknowledged records, to compare memory over the first and the last
/// million records (means, so a single sample's timing does not decide).
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32, deliveries: Arc<Deliveries>) -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let acked = deliveries.delivered.load(Ordering::Relaxed);
                    if let Some(kib) = proc_status_kib(pid, "VmRSS:") {
                        samples.push((acked, kib));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                samples
            })
        };
        RssSampler { stop, thread }
    }

    fn report(self, records: u64) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let window = 1_000_000.min(records / 2).max(1);
        let mean_mib = |keep: &dyn Fn(u64) -> bool| {
            let picked: Vec<u64> = samples
                .iter()
                .filter(|(a, _)| keep(*a))
                .map(|(_, k)| *k)
                .collect();
            (!picked.is_empty())
                .then(|| picked.iter().sum::<u64>() as f64 / picked.len() as f64 / 1024.0)
        };
        let first = mean_mib(&|acked| acked <= window);
        let last = mean_mib(&|acked| acked >= records - window);
        match (first, last) {
            (Some(first), Some(last)) => println!(
                "broker_rss_mib mean_over_first_{window}={first:.1} mean_over_last_{window}={last:.1} change={:+.1}% samples={}",
                (last - first) * 100.0 / first,
                samples.len()
            ),
            _ => println!("broker_rss_mib too_few_samples={}", samples.len()),
        }
    }
}

fn consume(args: &Args) -> anyhow::Result<()> {
    let cpu_before = args.broker_pid.and_then(proc_cpu_seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..args.consumers.max(1))
        .map(|i| {
            let partitions: Vec<i32> = (0..args.partitions)
                .filter(|p| *p as usize % args.consumers.max(1) == i)
                .collect();
            // Records were sent round-robin: partition p got every P-th one.
            let expected: u64 = partitions
                .iter()
                .map(|p| {
                    let (n, parts) = (args.records, args.partitions as u64);
                    n / parts + u64::from((*p as u64) < n % parts)
                })
                .sum();
            let (bootstrap, topic, timeout_s, raw, size) = (
                args.bootstrap.clone(),
                args.topic.clone(),
                args.timeout_s,
                args.raw_fetch,
                args.size as u64,
            );
            std::thread::spawn(move || {
                if raw {
                    // Count payload bytes like the librdkafka consumer does.
                    raw_fetch::consume(&bootstrap, &topic, &partitions, expected, timeout_s)
                        .map(|(records, _batch_bytes)| (records, records * size))
                } else {
                    consume_partitions(&bootstrap, &topic, &partitions, expected, timeout_s)
                }
            })
        })
        .collect();
    let (mut count, mut bytes) = (0u64, 0u64);
    for t in threads {
        let (c, b) = t
            .join()
            .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
        count += c;
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let broker_cores = cpu_cores_used(args.broker_pid, cpu_before, elapsed);
    println!(
        "consume client={} records={count} consumers={} elapsed_s={elapsed:.2} records_per_s={:.0} mb_per_s={:.1} broker_cpu_cores={broker_cores}",
        if args.raw_fetch {
            "raw-fetch"
        } else {
            "librdkafka"
        },
        args.consumers,
        count as f64 / elapsed,
        bytes as f64 / 1e6 / elapsed
    );
    Ok(())
}

/// Reads `expected` records from `partitions`; returns (records, payload bytes).
fn consume_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    expected: u64,
    timeout_s: u64,
) -> anyhow::Result<(u64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "lightstream-load")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .context("consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        assignment.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let (mut count, mut bytes) = (0u64, 0u64);
    while count < expected {
        if Instant::now() > deadline {
            bail!("consume timed out after {count} of {expected} records");
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                count += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => {}
        }
    }
    Ok((count, bytes))
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Broker cores used over `elapsed_s`, as text ("n/a" without a PID).
fn cpu_cores_used(pid: Option<u32>, before: Option<f64>, elapsed_s: f64) -> String {
    match (pid.and_then(proc_cpu_seconds), before) {
        (Some(after), Some(before)) => format!("{:.2}", (after - before) / elapsed_s),
        _ => "n/a".to_string(),
    }
}
