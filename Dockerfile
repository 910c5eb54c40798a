# wordtally: multi-stage build. The builder compiles the release binary with dependencies
# cached in their own layer; the runtime image is Debian slim with CA certificates, a
# non-root user and nothing else.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first (a layer that survives source edits). Cargo loads the whole manifest
# before building one binary, so every target Cargo.toml declares ([[bin]], [[bench]],
# [[example]], [[test]]: read from Cargo.toml itself, not listed here) gets a dummy source
# file; `--bin wordtally` never compiles them. The dummies outside src/ stay for the second
# step, which loads the same manifest. tests/deploy-check.sh runs these steps outside Docker.
COPY Cargo.toml Cargo.lock build.rs ./
# tokio-nsq with one patch, used through [patch.crates-io] (vendor/tokio-nsq/PATCHED.md).
COPY vendor vendor
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && awk '/^\[/ { if (k) print p; k = 0; p = "" } \
        /^\[\[(bin|bench|example|test)\]\]/ { k = 1; d = "src/bin" } \
        /^\[\[bench\]\]/ { d = "benches" } /^\[\[example\]\]/ { d = "examples" } \
        /^\[\[test\]\]/ { d = "tests" } \
        k && /^name *=/ { n = $0; sub(/^[^"]*"/, "", n); sub(/".*/, "", n); if (p == "") p = d "/" n ".rs" } \
        k && /^path *=/ { p = $0; sub(/^[^"]*"/, "", p); sub(/".*/, "", p) } \
        END { if (k) print p }' Cargo.toml \
    | while read -r f; do mkdir -p "$(dirname "$f")"; [ -e "$f" ] || echo 'fn main() {}' > "$f"; done \
    && cargo build --release --locked --bin wordtally \
    && rm -rf src
COPY src src
COPY migrations migrations
COPY templates templates
COPY static static
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin wordtally

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/wordtally --create-home wordtally
COPY --from=builder /src/target/release/wordtally /usr/local/bin/wordtally
USER wordtally
WORKDIR /var/lib/wordtally
ENV LISTEN=0.0.0.0:5000 \
    DATABASE_URL=sqlite:///var/lib/wordtally/wordtally.db \
    RUST_LOG=info,sqlx=warn,tokio_nsq=warn
EXPOSE 5000
# No curl in the image: bash's /dev/tcp asks /healthz directly.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["wordtally"]
CMD ["serve"]
