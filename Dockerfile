# tensord server image: one multi-stage file for the CPU and the GPU image.
#
#   CPU (default):  docker build -t tensord:cpu .
#   GPU:            docker build -t tensord:gpu \
#                     --build-arg BUILD_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04 \
#                     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 \
#                     --build-arg TENSORD_CUDA=ON .
#
# Both variants take the same code path. Ubuntu 24.04 ships the same gRPC 1.51,
# protobuf 3.21 and Abseil 20220623 as Debian bookworm under the same -dev
# package names, so one apt-get line builds both. The runtime library packages
# do differ in name (24.04 renamed them for 64-bit time_t: libgrpc++1.51t64,
# libprotobuf32t64, ...), so the runtime stage installs no hand-written list:
# the build stage asks dpkg which packages own the libraries the binary loads,
# and the runtime stage installs exactly those.
#
# `make image-test` (scripts/image-test.sh) builds the CPU image with podman
# and checks it with the real client.

ARG BUILD_IMAGE=docker.io/library/debian:bookworm-slim
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# ---- build ----------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
ARG TENSORD_CUDA=OFF
# An ARG, not an ENV: set while building, not left in the image.
ARG DEBIAN_FRONTEND=noninteractive

# The toolchain layer comes first and depends on no source, so it stays cached.
# The list matches the Makefile's APT_PACKAGES, less the test-only ones.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev libabsl-dev \
      prometheus-cpp-dev libopenblas-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what CMakeLists.txt reads with TENSORD_BUILD_TESTS=OFF (.dockerignore
# keeps the rest of the tree out of the context). CMake configures the bench
# target even when only `tensord` is built, so its one source comes along.
COPY CMakeLists.txt ./
COPY proto/ proto/
COPY server/ server/
COPY bench/raw_stream_server.cc bench/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
      -DTENSORD_BUILD_TESTS=OFF -DTENSORD_CUDA=${TENSORD_CUDA} \
 && cmake --build build -j "$(nproc)" --target tensord

COPY scripts/runtime-packages.sh /usr/local/bin/
RUN mkdir /out \
 && install -m 0755 build/tensord /out/tensord \
 && runtime-packages.sh /out/tensord > /out/runtime-packages.txt \
 && echo "runtime packages:" $(cat /out/runtime-packages.txt)

# ---- runtime --------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive

# Copied before the binary, and on its own: the package list changes only when
# the binary's library dependencies do, so a source change leaves this layer
# and the apt-get layer below cached. The list includes libraries the base
# already has (libc6, libstdc++6): installing them brings them to the versions
# the build stage compiled against.
COPY --from=build /out/runtime-packages.txt /tmp/
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt \
      apt-get install -y --no-install-recommends \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt

# A fixed uid/gid so volumes and Kubernetes securityContext can name it.
RUN groupadd --system --gid 10001 tensord \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin tensord \
 && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=build /out/tensord /usr/local/bin/tensord
# Fail the build, not the first start, when a library is missing. libcuda.so.1
# is the exception: the NVIDIA container toolkit mounts it in at run time.
RUN ! ldd /usr/local/bin/tensord | grep 'not found' | grep -v 'libcuda\.so\.1'

USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 50051 9090
STOPSIGNAL SIGTERM

# ENTRYPOINT is the binary, so `docker run IMAGE --flag ...` passes flags
# straight to it (and replaces the CMD). Every flag also reads an environment
# variable (TENSORD_AUTH_TOKEN_FILE, TENSORD_MAX_MEMORY, TENSORD_SHUTDOWN_GRACE,
# ...); a flag wins over its variable, so the CMD's --listen and
# --metrics-listen shadow TENSORD_LISTEN and TENSORD_METRICS_LISTEN.
#
# The default CMD listens on all interfaces, and the server refuses a
# non-loopback --listen without --auth-token-file unless --insecure is given.
# That is deliberate: run the image with TENSORD_AUTH_TOKEN_FILE pointing at a
# mounted secret (or pass --insecure explicitly on a trusted network). Set
# TENSORD_MAX_MEMORY below the container's memory limit too: the default, 80%
# of physical memory, is the host's, not the cgroup's. And give `docker stop`
# more time than TENSORD_SHUTDOWN_GRACE (10 s by default, docker's own wait),
# or the drain is cut short by SIGKILL.
ENTRYPOINT ["/usr/local/bin/tensord"]
CMD ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9090"]

# The gRPC health protocol, asked by the binary itself (no extra tool in the
# image); it needs no token. It probes the default port in plaintext: a
# container that moves the port, or serves TLS (add --probe-ca CA.pem), should
# override the healthcheck too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tensord", "--health-probe", "127.0.0.1:50051"]

# Labels that vary per build (revision, version, created) are set with
# `--label` on the command line rather than from an ARG: buildah's layer cache
# ignores ARG values in a LABEL and would keep the first build's.
LABEL org.opencontainers.image.title="tensord" \
      org.opencontainers.image.description="tensord: a tensor compute service over gRPC"
