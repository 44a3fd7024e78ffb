//! Raw upload bandwidth of an S3 server through the same client the broker
//! uses (`storage::S3Store` on aws-sdk-s3): `--objects` PutObjects of
//! `--size` bytes, `--concurrency` at a time. The yardstick for the broker's
//! produce rate in S3 mode; with `--read-back`, the same objects are then
//! read with one ranged GET each, the yardstick for lagging reads of
//! compacted data. Prints figures; asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use storage::{ObjectStore, S3Config, S3Store};

#[derive(Parser, Debug)]
#[command(about = "Upload bandwidth of an S3 server through the broker's S3 client")]
struct Args {
    /// e.g. http://127.0.0.1:9000
    #[arg(long)]
    endpoint: String,
    /// s3://bucket/prefix
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "")]
    access_key_id: String,
    #[arg(long, default_value = "")]
    secret_access_key: String,
    #[arg(long, default_value_t = 64)]
    objects: usize,
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    size: usize,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Then read every object back (a ranged GET of all of it), as many at
    /// a time.
    #[arg(long)]
    read_back: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let non_empty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
    let store = Arc::new(
        S3Store::open(
            S3Config {
                endpoint: Some(args.endpoint.clone()),
                path_style: true,
                access_key_id: non_empty(&args.access_key_id),
                secret_access_key: non_empty(&args.secret_access_key),
                ..S3Config::default()
            }
            .with_url(&args.url)?,
        )
        .await?,
    );
    let body = Bytes::from(vec![b'x'; args.size]);
    let room = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let key = |i: usize| format!("upload-bench/{}/{i:06}.obj", std::process::id());
    let mut tasks = Vec::with_capacity(args.objects);
    for i in 0..args.objects {
        let (store, body, room, key) = (store.clone(), body.clone(), room.clone(), key(i));
        let permit = room.acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            store.put(&key, body).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mb = (args.objects * args.size) as f64 / 1e6;
    println!(
        "s3_upload objects={} size={} concurrency={} elapsed_s={elapsed:.2} mb_per_s={:.1} {}",
        args.objects,
        args.size,
        args.concurrency,
        mb / elapsed,
        store.stats()
    );
    if args.read_back {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(args.objects);
        for i in 0..args.objects {
            let (store, room, key) = (store.clone(), room.clone(), key(i));
            let size = args.size as u64;
            let permit = room.acquire_owned().await?;
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                store.get_range(&key, 0..size).await.map(|b| b.len())
            }));
        }
        let mut read = 0usize;
        for t in tasks {
            read += t.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "s3_ranged_get objects={} size={} concurrency={} elapsed_s={elapsed:.2} mb_per_s={:.1}",
            args.objects,
            args.size,
            args.concurrency,
            read as f64 / 1e6 / elapsed,
        );
    }
    Ok(())
}
