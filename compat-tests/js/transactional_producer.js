#!/usr/bin/env node
// A KafkaJS transactional producer against a broker without transactions:
// prints the error that `producer.transaction()` fails with, as JSON
// ({ name, type, code, retriable, message }), or { ok: true } if it did not
// fail. Asserts nothing itself; test_transactional_producers.py checks it.
//
//   node transactional_producer.js <bootstrap> <transactional id>
//
// Exits 2 if it has not finished within 60 s.

const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, transactionalId] = process.argv.slice(2);

setTimeout(() => {
  console.error('transactional_producer: not finished within 60 s');
  process.exit(2);
}, 60_000).unref();

async function main() {
  const kafka = new Kafka({ clientId: 'compat-kafkajs-txn', brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const transaction = await producer.transaction();
    await transaction.abort();
    console.log(JSON.stringify({ ok: true }));
  } catch (e) {
    console.log(JSON.stringify({
      name: e.name, type: e.type, code: e.code, retriable: e.retriable, message: e.message,
    }));
  } finally {
    await producer.disconnect();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
