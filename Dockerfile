# syntax=docker/dockerfile:1
#
# tactful's container image: the release binary on a distroless base (glibc and CA certificates,
# no shell, no package manager), running as the unprivileged user 65532.
#
#   docker build -t registry.example.com/tactful:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9464:9464 registry.example.com/tactful:0.1.0
#
# The k8s/ manifests run this image; see k8s/README.md.

# The builder is the official Rust image on the same Debian release as the runtime (bookworm,
# glibc 2.36): the binary links against glibc dynamically, so it must not be built against a
# newer one than the runtime has. Nothing else is installed: the protobuf files are compiled in
# pure Rust by build.rs (no protoc), and the only C code (mimalloc) builds with the image's gcc.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the crate registry and the build directory from one build to the
# next, so a change to tactful's own code does not rebuild every dependency. They are not part
# of any layer, hence the copy out of target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tactful \
    && install -D -m 0755 target/release/tactful /out/bin/tactful \
    && install -d -m 0750 /out/lib/tactful \
    && install -d -m 0700 /out/lib/tactful-keys

FROM gcr.io/distroless/cc-debian12:nonroot
# No HEALTHCHECK: the image has no shell or client to run one, and Kubernetes ignores it anyway;
# the kubelet asks tactful's grpc.health.v1 service directly (k8s/ probes).
# checkov:skip=CKV_DOCKER_2:health is probed over grpc.health.v1 by the kubelet, and a distroless image has nothing to run a HEALTHCHECK with
LABEL org.opencontainers.image.title="tactful" \
      org.opencontainers.image.description="Low-latency gRPC re-ranking sidecar that removes the causes of recommendation avoidance" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/bin/tactful /usr/local/bin/tactful
# The data directory (write-ahead log and snapshots) and the key store apart from it (users'
# data keys, wrapped by the master key), owned by the user tactful runs as, so the image works
# without a volume too. Copying the parent makes the directories themselves copied entries,
# which is what --chown applies to.
COPY --from=builder --chown=65532:65532 /out/lib/ /var/lib/
# In a container the network namespace is the boundary, so listen on every interface (the
# binary's own default is loopback, right for a process on a shared host).
ENV TACTFUL_LISTEN=0.0.0.0:50051 \
    TACTFUL_ADMIN_LISTEN=0.0.0.0:9464 \
    TACTFUL_DATA_DIR=/var/lib/tactful \
    TACTFUL_KEY_DIR=/var/lib/tactful-keys \
    TACTFUL_LOG_FORMAT=json
# 50051: gRPC (Ranker, Events, Profile, grpc.health.v1, reflection). 9464: HTTP /metrics,
# /live, /ready.
EXPOSE 50051 9464
USER 65532:65532
WORKDIR /var/lib/tactful
# SIGTERM starts the drain (TACTFUL_DRAIN_GRACE_S); exec form, so tactful receives it directly.
ENTRYPOINT ["/usr/local/bin/tactful", "serve"]
