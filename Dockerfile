# Dockerfile - the upcall lab image: servercall and clientcall on Debian trixie.
#
# Build it through compose (`docker compose -f compose/upcall.yml up -d` builds it once and
# runs both containers from it), or by hand: `docker build -t upcall-lab:latest .`
#
# Two stages. The first has a Rust toolchain and builds the programs; the second starts
# again from a clean Debian and copies in only the two binaries, so the image you run has no
# compiler, no sources and no build cache in it: it is smaller and has less to go wrong.
#
# No line here needs BuildKit: the classic builder and BuildKit build it the same way.

# Which Debian to start from. The lab machines have no image registry: .ci/docker-setup.sh
# builds a local image under this exact tag with debootstrap. An instructor with a local
# registry mirror can point elsewhere: --build-arg BASE_IMAGE=mirror.example/debian:trixie-slim
ARG BASE_IMAGE=debian:trixie-slim

# ---------------------------------------------------------------- stage 1: build
FROM ${BASE_IMAGE} AS build

# apt must not stop to ask questions: nobody is at a keyboard during a build. An ARG, not an
# ENV, so the setting lives only while the image is built and not in the containers.
ARG DEBIAN_FRONTEND=noninteractive

# Debian's own cargo and rustc (1.85 in trixie), from the Debian archive: no rustup, nothing
# downloaded from anywhere else. librust-pcap-file-dev is the one crate the capture decoder
# needs (pcap-file 2.0.0, with its own dependencies), as Debian packages it: its source lands in
# /usr/share/cargo/registry, which the cargo configuration below uses instead of crates.io. So
# the image builds with no crate registry at all. --no-install-recommends keeps out
# documentation and extras. This layer comes before any COPY of our sources, so editing the
# code does not reinstall the toolchain: Docker reuses this cached layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cargo librust-pcap-file-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Only what the build needs (.dockerignore keeps target/, pcaps/ and .git out anyway): the
# programs' sources, and the capture decoder (tests/capture, examples/decode.rs), so that a
# student with Docker and no Rust can compare a capture with the reference ones.
COPY Cargo.toml ./
COPY src ./src
COPY tests/capture ./tests/capture
COPY examples/decode.rs ./examples/decode.rs

# Crates from Debian's packages, not from crates.io. Cargo.lock is not copied: it records
# crates.io's checksums, which Debian's copies do not carry, so Cargo writes a lock of its own
# from what is installed (the programs have no dependencies at all, so they are the same as from
# a normal `cargo build --release`; the decoder gets Debian's pcap-file 2.0.0, the version the
# repository's Cargo.lock names too).
RUN mkdir -p .cargo \
 && printf '%s\n' '[source.crates-io]' 'replace-with = "debian"' \
        '[source.debian]' 'directory = "/usr/share/cargo/registry"' >.cargo/config.toml \
 && cargo build --release --offline --bin servercall --bin clientcall --example decode \
 && ls -l target/release/servercall target/release/clientcall target/release/examples/decode

# ---------------------------------------------------------------- stage 2: run
FROM ${BASE_IMAGE}

# As in stage 1 (each stage starts afresh and forgets the ARGs of the one before).
ARG DEBIAN_FRONTEND=noninteractive

# What the lab needs inside the containers besides our programs:
#   iproute2        `ip a`, `ip route`, `ss`: look at interfaces, routes and sockets
#   tcpdump         watch the upcall/1 traffic from inside a container
#   netcat-openbsd  `nc upcall-server 4141`: speak the text protocol by hand
#   procps          `ps`, `top`: see the server's threads and processes
# The package lists are removed in the same RUN so they never land in an image layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 tcpdump netcat-openbsd procps \
 && rm -rf /var/lib/apt/lists/*

# The two programs and the decoder from stage 1, and nothing else from it. `decode` is
# `cargo run --example decode` on a machine with Rust: `decode /captures/upcall.pcap`.
COPY --from=build /src/target/release/servercall /src/target/release/clientcall \
     /src/target/release/examples/decode /usr/local/bin/
# `ended-with-input`: runs a command and stops it when its standard input ends, which is how
# a command run with `docker compose exec -T` learns that the docker command that started it
# was stopped with Ctrl-C (see the file itself).
COPY compose/ended-with-input /usr/local/bin/

# Defaults for the programs (a --listen / --server option overrides them):
# the server listens on every interface of its container, the client finds the server by
# its compose service name, which Docker's DNS on the lab network resolves.
ENV UPCALL_LISTEN=0.0.0.0:4141 \
    UPCALL_SERVER=upcall-server:4141

# Documents the port the server listens on (it publishes nothing to the host by itself).
EXPOSE 4141

# The containers idle; you start the programs yourself with `docker compose exec`, so you
# can watch both sides. `sleep` as PID 1 ignores SIGTERM, which is why compose/upcall.yml
# sets `init: true`: docker's tiny init forwards the signal and the container stops at once.
CMD ["sleep", "infinity"]
