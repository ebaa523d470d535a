# One Dockerfile, three runtime targets: generator, aggregator, api.
#
# The dependency layer is built from the manifests alone (stub sources), so editing the code
# rebuilds only the workspace crates, not librdkafka, sqlx and axum.

FROM rust:1.95-slim-bookworm AS build
# librdkafka is compiled from source by rdkafka-sys: it needs make, a C compiler and zlib headers,
# and OpenSSL's headers (found with pkg-config) for TLS and SASL SCRAM; sqlx's TLS uses OpenSSL too.
# Build-stage tools only (nothing ships in the runtime images) and Debian replaces old package
# versions on its mirrors, so pinning exact versions would only make the build break later.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make zlib1g-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

COPY Cargo.toml Cargo.lock ./
COPY crates/common/Cargo.toml crates/common/
COPY crates/message/Cargo.toml crates/message/
COPY crates/store/Cargo.toml crates/store/
COPY crates/testkit/Cargo.toml crates/testkit/
COPY crates/e2e/Cargo.toml crates/e2e/
COPY generator/Cargo.toml generator/
COPY aggregator/Cargo.toml aggregator/
COPY api/Cargo.toml api/
COPY migrations migrations
RUN for crate in crates/common crates/message crates/store crates/testkit crates/e2e generator aggregator api; do \
        mkdir -p "$crate/src" && touch "$crate/src/lib.rs" && echo 'fn main() {}' > "$crate/src/main.rs"; \
    done \
    && cargo build --release --locked --bins \
    && rm -rf crates/*/src generator/src aggregator/src api/src

COPY crates crates
COPY generator generator
COPY aggregator aggregator
COPY api api
# The stub build left newer timestamps on fingerprints than the sources may carry: touch them.
RUN find crates generator aggregator api -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/generator target/release/aggregator target/release/api /out/

# The dashboard (web/): Debian's Node.js and npm, the locked npm dependencies, then the esbuild
# script, which writes index.html and the content-hashed assets into /out/web. (playwright-core, a
# test-only devDependency, wants Node 20 while bookworm has 18; nothing here runs it.)
FROM debian:bookworm-slim AS web
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/build.mjs ./
COPY web/src src
RUN node build.mjs --out /out/web

FROM debian:bookworm-slim AS runtime
# OpenSSL (librdkafka's and sqlx's TLS) and the CA certificates a managed Kafka or PostgreSQL
# presents (KAFKA_SSL_CA_LOCATION and sslrootcert are only needed for a private CA).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tickpipe
USER 10001
ENV RUST_LOG=info LOG_FORMAT=text

FROM runtime AS generator
COPY --from=build /out/generator /usr/local/bin/generator
EXPOSE 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/generator", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/generator"]

FROM runtime AS aggregator
COPY --from=build /out/aggregator /usr/local/bin/aggregator
EXPOSE 9102
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/aggregator", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/aggregator"]

FROM runtime AS api
COPY --from=build /out/api /usr/local/bin/api
COPY --from=web /out/web /usr/local/share/tickpipe/web
ENV API_WEB_DIR=/usr/local/share/tickpipe/web
EXPOSE 8080 9103
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/api", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/api"]
