"""Hand-built Kafka wire messages for the malformed-input tests.

This module owns just enough of the Kafka protocol to talk to a broker with
no client library in the way: framing, request headers v1/v2, ApiVersions
v0 (request and response), Produce v3 (request and response), RecordBatch v2
(magic 2) and a legacy magic-1 message set, and CRC-32C. It exists so that
`test_bad_input.py` can send bytes a real client never would (a wrong CRC, a
record count that lies) and read the exact error code the broker answers.

It deliberately does not do compression, flexible (tagged-field) bodies,
or anything a test does not need; every encoder is a plain function from
values to `bytes`, with no I/O, so a test can corrupt the result before
sending it. `Connection` is the only piece that touches a socket.

Layouts follow the Kafka protocol guide
(https://kafka.apache.org/protocol and the "Message Format" page).
"""

from __future__ import annotations

import gzip
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

# --- API keys and error codes used by the tests -------------------------------

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_MESSAGE_TOO_LARGE = 10
ERROR_INVALID_TOPIC_EXCEPTION = 17
ERROR_UNSUPPORTED_VERSION = 35
ERROR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
ERROR_INVALID_RECORD = 87

# RecordBatch v2 header: everything before the first record. baseOffset (8) +
# batchLength (4) + partitionLeaderEpoch (4) + magic (1) + crc (4) +
# attributes (2) + lastOffsetDelta (4) + baseTimestamp (8) + maxTimestamp (8)
# + producerId (8) + producerEpoch (2) + baseSequence (4) + recordsCount (4).
RECORD_BATCH_OVERHEAD = 61
# baseOffset + batchLength: the bytes not counted by batchLength.
LOG_OVERHEAD = 12
# Offset of the CRC field inside a v2 batch; the CRC covers everything after it.
CRC_OFFSET = 17
CRC_COVERED_FROM = 21
RECORDS_COUNT_OFFSET = 57


# --- CRC-32C (Castagnoli), table driven ---------------------------------------

_CRC32C_POLY_REFLECTED = 0x82F63B78


def _make_crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C as Kafka's RecordBatch v2 uses it. crc32c(b"123456789") == 0xE3069283."""
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- primitive encoders -------------------------------------------------------


def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def uint32(v: int) -> bytes:
    return struct.pack(">I", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    """Kafka STRING / NULLABLE_STRING: int16 length, -1 for null."""
    if s is None:
        return int16(-1)
    raw = s.encode()
    return int16(len(raw)) + raw


def kbytes(b: bytes | None) -> bytes:
    """Kafka BYTES / NULLABLE_BYTES: int32 length, -1 for null."""
    if b is None:
        return int32(-1)
    return int32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    """Kafka ARRAY (non-flexible): int32 count then the encoded items."""
    return int32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    """Unsigned LEB128 varint (used for tagged-field counts)."""
    assert v >= 0
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint, as records use for lengths and deltas (32 bit)."""
    assert -(2**31) <= v < 2**31
    return uvarint((v << 1) ^ (v >> 31))


def varlong(v: int) -> bytes:
    """Zig-zag signed varint over 64 bits (record timestampDelta)."""
    assert -(2**63) <= v < 2**63
    return uvarint(((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF)


# --- request framing ----------------------------------------------------------


def request_header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    """Request header v1: api_key, api_version, correlation_id, client_id."""
    return int16(api_key) + int16(api_version) + int32(correlation_id) + string(client_id)


def request_header_v2(api_key: int, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    """Request header v2 (flexible requests): v1 plus an empty tagged-field section."""
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    """Prefix a request or response with its int32 size."""
    return int32(len(payload)) + payload


# --- ApiVersions --------------------------------------------------------------


def api_versions_request_v0(correlation_id: int, client_id: str = "compat-raw") -> bytes:
    """A framed ApiVersions v0 request (empty body)."""
    return frame(request_header_v1(API_API_VERSIONS, 0, correlation_id, client_id))


@dataclass
class ApiVersionsResponse:
    correlation_id: int
    error_code: int
    # api_key -> (min_version, max_version)
    api_keys: dict[int, tuple[int, int]]


def parse_api_versions_response_v0(payload: bytes) -> ApiVersionsResponse:
    """Parse a v0 ApiVersions response (response header v0, no tagged fields).

    A broker answers an ApiVersions request of a version it does not know in
    this v0 form, with error UNSUPPORTED_VERSION and its api list, so a client
    can retry with a version both sides know.
    """
    r = Reader(payload)
    correlation_id = r.int32()
    error_code = r.int16()
    count = r.int32()
    keys = {}
    for _ in range(max(count, 0)):
        key = r.int16()
        keys[key] = (r.int16(), r.int16())
    return ApiVersionsResponse(correlation_id, error_code, keys)


# --- RecordBatch v2 -----------------------------------------------------------


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_delta: int = 0


def encode_record(record: Record, offset_delta: int) -> bytes:
    """One record inside a v2 batch: a varint length, then the record body."""
    body = bytearray()
    body += int8(0)  # attributes: unused
    body += varlong(record.timestamp_delta)
    body += varint(offset_delta)
    if record.key is None:
        body += varint(-1)
    else:
        body += varint(len(record.key)) + record.key
    if record.value is None:
        body += varint(-1)
    else:
        body += varint(len(record.value)) + record.value
    body += varint(len(record.headers))
    for name, value in record.headers:
        raw_name = name.encode()
        body += varint(len(raw_name)) + raw_name
        if value is None:
            body += varint(-1)
        else:
            body += varint(len(value)) + value
    return varint(len(body)) + bytes(body)


def encode_record_batch(
    records: list[Record],
    base_timestamp_ms: int | None = None,
    *,
    base_offset: int = 0,
    records_count: int | None = None,
    batch_length: int | None = None,
    crc: int | None = None,
    magic: int = 2,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """An uncompressed RecordBatch (magic 2), as a producer would send it.

    The keyword arguments exist to lie on purpose: `records_count`,
    `batch_length` and `crc` replace the true values in the header (the CRC is
    computed over the header as finally written, so a lying count still has a
    valid CRC unless `crc` is also given).
    """
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    encoded = b"".join(encode_record(r, i) for i, r in enumerate(records))
    max_timestamp = base_timestamp_ms + max((r.timestamp_delta for r in records), default=0)
    after_crc = (
        int16(0)  # attributes: no compression, CreateTime, not transactional
        + int32(len(records) - 1)  # lastOffsetDelta
        + int64(base_timestamp_ms)
        + int64(max_timestamp)
        + int64(producer_id)
        + int16(producer_epoch)
        + int32(base_sequence)
        + int32(len(records) if records_count is None else records_count)
        + encoded
    )
    checksum = crc32c(after_crc) if crc is None else crc
    after_length = int32(-1) + int8(magic) + uint32(checksum) + after_crc  # partitionLeaderEpoch = -1
    true_length = len(after_length)
    return int64(base_offset) + int32(true_length if batch_length is None else batch_length) + after_length


CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD = 0, 1, 2, 3, 4


def compress(codec: int, data: bytes) -> bytes:
    """`data` compressed as producers do: gzip, snappy in xerial framing
    (Java clients), lz4 frame, zstd."""
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_GZIP:
        return gzip.compress(data)
    if codec == CODEC_SNAPPY:
        import snappy

        out = bytearray(b"\x82SNAPPY\x00" + int32(1) + int32(1))
        for at in range(0, len(data), 32 * 1024):
            block = snappy.compress(data[at:at + 32 * 1024])
            out += int32(len(block)) + block
        return bytes(out)
    if codec == CODEC_LZ4:
        import lz4.frame

        return lz4.frame.compress(data)
    if codec == CODEC_ZSTD:
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(f"no codec {codec}")


def encode_raw_batch(payload: bytes, records_count: int, codec: int = CODEC_NONE,
                     base_timestamp_ms: int | None = None) -> bytes:
    """A v2 batch around `payload` (the records, already compressed for
    `codec`), declaring `records_count` records, with a correct CRC: what a
    buggy or hostile producer can send."""
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    after_crc = (
        int16(codec)
        + int32(records_count - 1)
        + int64(base_timestamp_ms)
        + int64(base_timestamp_ms)
        + int64(-1)
        + int16(-1)
        + int32(-1)
        + int32(records_count)
        + payload
    )
    after_length = int32(-1) + int8(2) + uint32(crc32c(after_crc)) + after_crc
    return int64(0) + int32(len(after_length)) + after_length


def encode_legacy_message_set_v1(key: bytes | None, value: bytes | None, timestamp_ms: int | None = None) -> bytes:
    """A one-message magic-1 message set (pre-0.11 format) with a valid CRC-32.

    Layout: offset int64, message_size int32, then crc uint32 (CRC-32 over
    everything after it), magic int8 = 1, attributes int8, timestamp int64,
    key BYTES, value BYTES.
    """
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    after_crc = int8(1) + int8(0) + int64(timestamp_ms) + kbytes(key) + kbytes(value)
    message = uint32(zlib.crc32(after_crc) & 0xFFFFFFFF) + after_crc
    return int64(0) + int32(len(message)) + message


# --- Fetch v4 -----------------------------------------------------------------


def fetch_request_v4(correlation_id: int, topic: str, partition: int, offset: int, *,
                     max_bytes: int, partition_max_bytes: int, max_wait_ms: int = 0) -> bytes:
    """A Fetch v4 (the lowest version Kafka 4 answers) for one partition."""
    body = (
        request_header_v1(API_FETCH, 4, correlation_id, "compat-raw")
        + int32(-1)  # replica id
        + int32(max_wait_ms)
        + int32(0)  # min bytes
        + int32(max_bytes)
        + int8(0)  # read_uncommitted
        + array([string(topic) + array([int32(partition) + int64(offset) + int32(partition_max_bytes)])])
    )
    return frame(body)


# --- Produce v3 ---------------------------------------------------------------


def produce_request_v3(
    correlation_id: int,
    topic: str,
    partition: int,
    records: bytes,
    *,
    acks: int = -1,
    timeout_ms: int = 30_000,
    client_id: str = "compat-raw",
) -> bytes:
    """A framed Produce v3 request for one partition.

    v3 is the oldest Produce version Kafka 4 accepts and the simplest one
    that carries a RecordBatch v2 (non-flexible, header v1). Body:
    transactional_id NULLABLE_STRING, acks int16, timeout_ms int32,
    [topic STRING, [partition int32, records BYTES]].
    """
    partition_data = int32(partition) + kbytes(records)
    topic_data = string(topic) + array([partition_data])
    body = string(None) + int16(acks) + int32(timeout_ms) + array([topic_data])
    return frame(request_header_v1(API_PRODUCE, 3, correlation_id, client_id) + body)


@dataclass
class ProducePartitionResponse:
    topic: str
    partition: int
    error_code: int
    base_offset: int
    log_append_time_ms: int


def parse_produce_response_v3(payload: bytes) -> tuple[int, list[ProducePartitionResponse]]:
    """Parse a Produce v3 response: (correlation_id, per-partition results).

    Layout: header v0 (correlation_id), then [topic STRING, [partition int32,
    error_code int16, base_offset int64, log_append_time_ms int64]],
    throttle_time_ms int32.
    """
    r = Reader(payload)
    correlation_id = r.int32()
    results = []
    for _ in range(r.int32()):
        topic = r.string()
        for _ in range(r.int32()):
            results.append(ProducePartitionResponse(topic, r.int32(), r.int16(), r.int64(), r.int64()))
    r.int32()  # throttle_time_ms
    return correlation_id, results


# --- reading ------------------------------------------------------------------


class Reader:
    """Big-endian cursor over one response payload; raises on short input."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"short response: need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str:
        n = self.int16()
        return "" if n < 0 else self.take(n).decode()


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection."""


class Connection:
    """One blocking TCP connection to a broker with a per-operation timeout."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.settimeout(timeout_s)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ConnectionClosed(str(e)) from e
            if not chunk:
                raise ConnectionClosed(f"eof after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Read one size-prefixed response and return its payload."""
        (size,) = struct.unpack(">i", self._recv_exact(4))
        if not 0 <= size <= max_bytes:
            raise ValueError(f"implausible response size {size}")
        return self._recv_exact(size)

    def request(self, framed: bytes) -> bytes:
        self.send(framed)
        return self.recv_frame()

    def wait_closed(self, timeout_s: float = 10.0) -> bool:
        """Read and discard until the peer closes; True if it did within the bound."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def answers_api_versions(bootstrap: str, timeout_s: float = 0.5) -> bool:
    """Whether a broker at `bootstrap` answers an ApiVersions request within
    `timeout_s`: it is serving, not just bound (a broker binds its port
    before it has joined the cluster)."""
    try:
        with Connection(bootstrap, timeout_s) as conn:
            return parse_api_versions_response_v0(conn.request(api_versions_request_v0(1))).error_code == 0
    except (OSError, ConnectionClosed, ValueError):
        return False
