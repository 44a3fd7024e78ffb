#!/usr/bin/env node
// KafkaJS against a lightstream broker: an idempotent producer, a group of
// two consumers, and the group admin calls. Prints one JSON object of what
// it saw on stdout for test_kafkajs.py to check; asserts nothing itself.
//
//   node group_round_trip.js <bootstrap> <topic> <group> <records>
//
// Exits 1 on any client error and 2 if it has not finished within 90 s.

const { Kafka, logLevel, AssignerProtocol } = require('kafkajs');

const [bootstrap, topic, group, recordsArg] = process.argv.slice(2);
const RECORDS = Number(recordsArg);
const PARTITIONS = 3;
const DEADLINE_MS = 90_000;

setTimeout(() => {
  console.error('group_round_trip: not finished within 90 s');
  process.exit(2);
}, DEADLINE_MS).unref();

const kafka = new Kafka({
  clientId: 'compat-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  retry: { retries: 8 },
});

const byNumber = (a, b) => a - b;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, predicate, timeoutMs = 60_000) {
  const start = Date.now();
  while (!(await predicate())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function main() {
  const out = {};
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: PARTITIONS }] });

  // Two members join before anything is produced; each reports the
  // partitions it was given (KafkaJS's GROUP_JOIN event).
  const consumed = [[], []];
  const assignments = [null, null];
  const consumers = [];
  for (let i = 0; i < 2; i++) {
    const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10_000, heartbeatInterval: 500 });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      assignments[i] = (e.payload.memberAssignment[topic] || []).slice().sort(byNumber);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        consumed[i].push([partition, Number(message.offset), message.value.toString()]);
      },
    });
    consumers.push(consumer);
  }
  await until('both members assigned', async () => {
    const described = await admin.describeGroups([group]);
    const g = described.groups[0];
    return g.state === 'Stable' && g.members.length === 2 && assignments.every((a) => a !== null);
  });

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < RECORDS; i++) messages.push({ value: `js-${i}`, partition: i % PARTITIONS });
  const sent = [];
  for (let i = 0; i < messages.length; i += 100) {
    sent.push(...(await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 100) })));
  }
  out.produced = sent.map((r) => [r.partition, Number(r.baseOffset), r.errorCode]);
  await producer.disconnect();

  await until('every record consumed', async () => consumed[0].length + consumed[1].length >= RECORDS);
  // KafkaJS commits after each batch it resolved; wait until the group's
  // committed offsets cover everything.
  const committedOffsets = async () => {
    const fetched = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return fetched[0].partitions.map((p) => [p.partition, Number(p.offset)]).sort((a, b) => a[0] - b[0]);
  };
  await until('offsets committed', async () =>
    (await committedOffsets()).reduce((sum, [, offset]) => sum + Math.max(offset, 0), 0) >= RECORDS);
  out.committed = await committedOffsets();
  // A copy: leaving members make the rest rejoin, and the events rewrite these.
  out.assignments = assignments.map((a) => a.slice());
  out.consumed = consumed;

  const described = (await admin.describeGroups([group])).groups[0];
  out.described = {
    state: described.state,
    protocol: described.protocol,
    members: described.members
      .map((m) => (AssignerProtocol.MemberAssignment.decode(m.memberAssignment).assignment[topic] || []).sort(byNumber))
      .sort((a, b) => a[0] - b[0]),
  };

  for (const consumer of consumers) await consumer.disconnect(); // LeaveGroup
  // The second member may have been rejoining when it left; DeleteGroups
  // needs the group Empty (NON_EMPTY_GROUP otherwise, as in Kafka).
  await until('the group empty', async () => (await admin.describeGroups([group])).groups[0].state === 'Empty');
  out.listed = (await admin.listGroups()).groups.map((g) => g.groupId).filter((id) => id === group);
  out.deleted = (await admin.deleteGroups([group])).map((r) => r.errorCode);
  out.afterDelete = (await admin.fetchOffsets({ groupId: group, topics: [topic] }))[0].partitions
    .map((p) => Number(p.offset));
  await admin.disconnect();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('group_round_trip failed:', e);
    process.exit(1);
  },
);
