# syntax=docker/dockerfile:1
#
# pg-queue-scaler container image.
#
#   docker build -t pg-queue-scaler:dev .
#
# Build stage: a release build of the single binary. No system protoc is needed (build.rs
# compiles the proto with protox) and TLS is rustls, so no OpenSSL either.
# Runtime stage: distroless cc (glibc + libgcc, nothing else), running as the nonroot user;
# the binary writes nothing to disk, so it runs with a read-only root filesystem.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Only what the build needs (see .dockerignore); the cache mounts keep the registry and
# target/ between builds, so an unchanged dependency graph is not rebuilt.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY src/ src/
# Cargo refuses a manifest whose declared targets are missing, even to build another one;
# the benchmarks are declared (they run without the test harness), so their sources come along.
COPY benches/scaler.rs benches/serving.rs benches/streams.rs benches/
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin pg-queue-scaler \
 && install -D -m 0755 target/release/pg-queue-scaler /out/pg-queue-scaler

# bookworm-based builder, debian12 runtime: the same glibc.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="pg-queue-scaler" \
      org.opencontainers.image.description="KEDA external scaler that reads Postgres queue depth (DBOS first)" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/pg-queue-scaler /usr/local/bin/pg-queue-scaler

# 65532 is distroless' nonroot user; numeric so runAsNonRoot can verify it.
USER 65532:65532
# 9090: gRPC (KEDA ExternalScaler, grpc.health.v1, reflection). 8080: HTTP (/metrics, /healthz, /readyz).
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/pg-queue-scaler"]
