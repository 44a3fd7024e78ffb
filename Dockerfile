# syntax=docker/dockerfile:1
#
# The lightstream broker image: `docker build -t lightstream:0.1.0 .`
#
# Build stage: the pinned toolchain (keep the tag equal to the channel in
# rust-toolchain.toml; charts/test.sh checks it). Run stage: distroless
# glibc, no shell, user 65532 — the binary, its default settings file and
# an empty data dir, nothing else. See docs/operations.md.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# A C toolchain and cmake for aws-lc-sys (rustls' crypto) and rusqlite's
# bundled SQLite; pkg-config for the -sys crates' probes. The Debian release
# is pinned by the base image; package versions follow its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is
# copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p broker --bin lightstream \
    && install -D -m 0755 target/release/lightstream /out/lightstream \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lightstream /usr/local/bin/lightstream
COPY broker/docker.toml /etc/lightstream/lightstream.toml
# Writable by the broker for `docker run`; Kubernetes mounts an emptyDir here.
COPY --from=build --chown=65532:65532 /out/data /var/lib/lightstream
USER 65532:65532
WORKDIR /var/lib/lightstream
# Kafka listener, admin HTTP (/healthz, /readyz, /metrics).
EXPOSE 9092 9080
ENTRYPOINT ["/usr/local/bin/lightstream"]
CMD ["--config", "/etc/lightstream/lightstream.toml"]
