#!/usr/bin/env node
// KafkaJS's admin.deleteTopicRecords against a lightstream broker: deletes
// up to offset 7 of partition 0 and everything of partition 1 ("-1"), reads
// the offsets back, then asks for an offset beyond the high watermark.
// Prints one JSON object for test_delete_records.py; asserts nothing.
//
//   node delete_records.js <bootstrap> <topic>
//
// Exits 1 on an unexpected client error and 2 if not finished within 90 s.

const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic] = process.argv.slice(2);

setTimeout(() => {
  console.error('delete_records: not finished within 90 s');
  process.exit(2);
}, 90_000).unref();

const kafka = new Kafka({
  clientId: 'compat-kafkajs-delete-records',
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  retry: { retries: 3 },
});

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  const out = {};
  try {
    // deleteTopicRecords looks the leaders up in metadata it does not load
    // itself (KafkaJSTopicMetadataNotLoaded otherwise).
    await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.deleteTopicRecords({
      topic,
      partitions: [
        { partition: 0, offset: '7' },
        { partition: 1, offset: '-1' },
      ],
    });
    const offsets = await admin.fetchTopicOffsets(topic);
    out.offsets = offsets
      .map(({ partition, low, high }) => ({ partition, low, high }))
      .sort((a, b) => a.partition - b.partition);
    try {
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '1000' }] });
      out.beyond = 'no error';
    } catch (e) {
      // The retrier wraps the per-partition error in a KafkaJSNonRetriableError.
      const inner = e.partitions ? e : e.cause;
      out.beyond = inner && inner.partitions ? inner.partitions.map((p) => p.error.type).join(',') : String(e);
    }
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
