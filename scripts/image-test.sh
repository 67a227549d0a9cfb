#!/usr/bin/env bash
# make image-test: builds the CPU image from the Dockerfile with podman and
# checks it as a container runtime would run it, without a container engine:
# the image is mounted and its binary run under chroot as the image's user.
#
# Checks: the image config (user, entrypoint, cmd, ports, volume, healthcheck),
# every shared library resolved, --help, a server on a loopback port driven by
# the real client from the host's venv (round trip, one op, gRPC health), the
# default CMD with a token file in a private network namespace (its HEALTHCHECK
# command and metrics port), the same CMD refusing to start without the token,
# and a clean exit on SIGTERM, all on the image's read-only root filesystem.
# It ends with "image-test: N passed, M failed".
#
# Needs root (podman's storage, chroot, namespaces). Installs podman,
# debootstrap and iproute2 if missing. With no debian:bookworm-slim image in
# podman's storage (this machine reaches no registry), it builds one with
# debootstrap, cached under $TENSORD_IMAGE_CACHE.
#
# Environment: IMAGE (default localhost/tensord:cpu), TENSORD_IMAGE_CACHE
# (default /var/cache/tensord-image), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  exec sudo -E "$0" "$@"
fi

IMAGE=${IMAGE:-localhost/tensord:cpu}
BASE=docker.io/library/debian:bookworm-slim
CACHE=${TENSORD_IMAGE_CACHE:-/var/cache/tensord-image}
PYTHON=${PYTHON:-.venv/bin/python}
SMOKE=scripts/image_smoke.py
MIRROR=http://deb.debian.org/debian

passed=0
failed=0
pass() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
die() { echo "image-test: $*" >&2; echo "image-test: $passed passed, $((failed + 1)) failed"; exit 1; }
step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }

work=$(mktemp -d /tmp/tensord-image-test.XXXXXX)
root=""
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$root" ]; then
    podman image unmount "$IMAGE" >/dev/null || echo "image-test: could not unmount $IMAGE" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools ------------------------------------------------------------------------
step "tools"
[ -x "$PYTHON" ] || die "$PYTHON not found: run \`make venv\` (or \`make image-test\`, which does)"
missing=""
for tool in podman:podman debootstrap:debootstrap ip:iproute2; do
  command -v "${tool%%:*}" >/dev/null || missing="$missing ${tool#*:}"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
podman --version

# ---- base image -------------------------------------------------------------------
# A stand-in for the registry's debian:bookworm-slim: a minbase debootstrap with
# the same apt sources (including security updates) and the same dpkg
# exclusions for documentation, so images built here match images built
# against the real one. The rootfs is kept, so a wiped podman storage costs
# only the import.
step "base image $BASE"
if podman image exists "$BASE"; then
  echo "present"
else
  rootfs=$CACHE/bookworm-rootfs
  if [ ! -e "$CACHE/bookworm-rootfs.done" ]; then
    rm -rf "$rootfs"
    mkdir -p "$CACHE"
    echo "debootstrap --variant=minbase bookworm (about a minute; log in $CACHE/debootstrap.log)"
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    # The host's resolver and name: a container runtime supplies its own.
    rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname" "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    # ... and without what those exclusions would have kept out (45 MB).
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/*
    find "$rootfs/usr/share/doc" ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$CACHE/bookworm-rootfs.done"
  fi
  tar -C "$rootfs" --numeric-owner -c . \
    | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE" >/dev/null \
    || die "podman import of $rootfs failed"
  echo "imported"
fi

# ---- build ------------------------------------------------------------------------
# --format docker: the OCI image format has no HEALTHCHECK, and podman drops it.
# --network host: chroot isolation has no network of its own to give RUN steps.
step "podman build $IMAGE"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if ! podman build --isolation chroot --pull=never --format docker --network host \
    --label "org.opencontainers.image.revision=$revision" -t "$IMAGE" . >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  die "podman build failed (last 40 lines above)"
fi
# One line per step, marked when podman's layer cache served it.
awk '/^(\[[0-9]+\/[0-9]+\] )?STEP / { if (step) print step; step = substr($0, 1, 100); next }
     /^--> Using cache/ { step = step "  [cached]" }
     /^runtime packages:/ { packages = $0 }
     END { if (step) print step; if (packages) print packages }' "$work/build.log"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
pass "image builds"

# ---- image config -----------------------------------------------------------------
step "image config"
podman image inspect "$IMAGE" >"$work/inspect.json"
# count_checks FILE: adds the "ok:" and "FAIL:" lines of image_smoke.py's
# output to the totals; output with neither (a crash) is a failure of its own.
count_checks() {
  local ok bad
  ok=$(grep -c '^ok:' "$1" || true)
  bad=$(grep -c '^FAIL:' "$1" || true)
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [ $((ok + bad)) = 0 ]; then
    fail "$SMOKE $(basename "$1" .out) reported no checks (its output is above)"
  fi
}
"$PYTHON" "$SMOKE" config "$work/inspect.json" 2>&1 | tee "$work/config.out" || true
count_checks "$work/config.out"
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
mapfile -t image_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
mapfile -t entrypoint < <(podman image inspect --format '{{range .Config.Entrypoint}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
mapfile -t default_cmd < <(podman image inspect --format '{{range .Config.Cmd}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
mapfile -t healthcheck < <(podman image inspect --format '{{range .HealthCheck.Test}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
workdir=$(podman image inspect --format '{{.Config.WorkingDir}}' "$IMAGE")
if [ -z "$user" ] || [ "${#entrypoint[@]}" = 0 ]; then
  die "the image has no USER or ENTRYPOINT to run"
fi

# ---- running the image's programs -------------------------------------------------
root=$(podman image mount "$IMAGE") || die "podman image mount $IMAGE failed"
echo "mounted at $root"

# image_cmd [--net] [--enter PID] [--token FILE] [ENV...] PROGRAM ARGS...:
# sets IMAGE_CMD to a command that runs PROGRAM in the image as its USER, with
# only the image's environment (plus ENV...) and its WORKDIR. Each step execs
# the next, so a background IMAGE_CMD's $! is the program's own pid. A private
# mount namespace gives the program /dev, /proc and a fresh /run, and takes
# them away again when it exits, whatever happens to this script. The image
# itself is mounted read-only, as deploy/ runs it (read_only,
# readOnlyRootFilesystem); its WORKDIR gets a writable tmpfs with the
# directory's owner and mode, as a fresh volume would.
#   --net      a network namespace of its own, with only a loopback interface
#   --enter    the network namespace of process PID instead
#   --token    FILE copied to /run/token, readable by the image's user only
data_options=$(stat -c 'uid=%u,gid=%g,mode=%a' "$root$workdir")
image_cmd() {
  local new_net="" enter=() token=""
  while :; do
    case $1 in
      --net) new_net=1; shift ;;
      --enter) enter=(nsenter "--net=/proc/$2/ns/net" --); shift 2 ;;
      --token) token=$2; shift 2 ;;
      *) break ;;
    esac
  done
  # shellcheck disable=SC2016 # the inner sh expands them
  IMAGE_CMD=(env "NEW_NET=$new_net" "TOKEN_SOURCE=$token" "USERSPEC=$user"
    "DATA_DIR=$workdir" "DATA_OPTIONS=$data_options" "${enter[@]}"
    unshare --mount --propagation private ${new_net:+--net} -- sh -c '
      root=$1; shift
      mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" &&
        mount -t tmpfs -o mode=0755 tmpfs "$root/run" &&
        mount -t tmpfs -o "$DATA_OPTIONS" tmpfs "$root$DATA_DIR" || exit 97
      if [ -n "$TOKEN_SOURCE" ]; then
        install -o "${USERSPEC%%:*}" -m 0400 "$TOKEN_SOURCE" "$root/run/token" || exit 97
      fi
      if [ -n "$NEW_NET" ]; then ip link set lo up || exit 97; fi
      exec chroot --userspec="$USERSPEC" "$root" "$@"
    ' image_cmd "$root" /usr/bin/env -i -C "$workdir" "${image_env[@]}" "$@")
}
in_image() { image_cmd "$@"; "${IMAGE_CMD[@]}"; }

# wait_listening PID STDOUT_FILE: prints HOST:PORT once the server says so.
wait_listening() {
  local pid=$1 out=$2 line
  for _ in $(seq 1 300); do
    if line=$(grep -m1 '^tensord listening on ' "$out" 2>/dev/null); then
      echo "${line#tensord listening on }"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# wait_exit PID SECONDS: the exit status of PID, or 124 after KILLing it once
# SECONDS have passed.
wait_exit() {
  local pid=$1 code=0
  for _ in $(seq 1 $(($2 * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    return 124
  fi
  wait "$pid" || code=$?
  return "$code"
}

# stop_server PID: SIGTERM, then its exit status (124: still running after 15 s).
stop_server() {
  kill -TERM "$1" 2>/dev/null || true
  wait_exit "$1" 15
}

step "binary"
if out=$(in_image ldd "${entrypoint[0]}" 2>&1) && ! grep -q 'not found' <<<"$out"; then
  pass "ldd resolves all $(grep -c '=>' <<<"$out") shared libraries"
else
  fail "ldd ${entrypoint[0]} in the image: $(grep 'not found' <<<"$out" || echo "$out")"
fi
if out=$(in_image "${entrypoint[@]}" --help 2>&1) && grep -q -- '--listen' <<<"$out"; then
  pass "--help works as user $user"
else
  fail "--help from the image: $out"
fi
owner=$(stat -c '%u:%g' "$root$workdir")
if [ "$workdir" = /data ] && [ "$owner" = "$user" ]; then
  pass "$workdir belongs to $user"
else
  fail "WORKDIR $workdir belongs to $owner, not the image's USER $user"
fi

# A server on a loopback port of the host, driven by the client in the venv.
step "server on loopback, real client"
image_cmd "${entrypoint[@]}" --listen 127.0.0.1:0 --max-memory 256M
"${IMAGE_CMD[@]}" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
if address=$(wait_listening "$server_pid" "$work/server.out"); then
  pass "server started: $address"
  uid=$(awk '/^Uid:/ { print $2 }' "/proc/$server_pid/status")
  comm=$(cat "/proc/$server_pid/comm")
  if [ "$comm" = tensord ] && [ "$uid" = "${user%%:*}" ]; then
    pass "tensord runs as uid $uid, not root"
  else
    fail "process $server_pid is '$comm' with uid $uid, expected tensord as ${user%%:*}"
  fi
  "$PYTHON" "$SMOKE" client "$address" 2>&1 | tee "$work/client.out" || true
  count_checks "$work/client.out"
  if stop_server "$server_pid"; then
    pass "SIGTERM: clean exit 0"
  else
    fail "SIGTERM: exit status $?; stderr: $(tail -n 5 "$work/server.err")"
  fi
else
  fail "server did not start: $(cat "$work/server.out" "$work/server.err")"
  stop_server "$server_pid" || true
fi
server_pid=""

# The image's own ENTRYPOINT + CMD, as `docker run IMAGE` would start it, in a
# network namespace of its own so that 0.0.0.0:50051 and :9090 are private.
step "default CMD"
printf 'image-test-%s\n' "$RANDOM$RANDOM" >"$work/token"
chmod 0400 "$work/token"
image_cmd --net --token "$work/token" TENSORD_AUTH_TOKEN_FILE=/run/token \
  "${entrypoint[@]}" "${default_cmd[@]}"
"${IMAGE_CMD[@]}" >"$work/default.out" 2>"$work/default.err" &
server_pid=$!
if address=$(wait_listening "$server_pid" "$work/default.out"); then
  pass "default CMD with TENSORD_AUTH_TOKEN_FILE starts: $address"
  if [ "${healthcheck[0]:-}" = CMD ] \
      && out=$(in_image --enter "$server_pid" "${healthcheck[@]:1}" 2>&1); then
    pass "HEALTHCHECK command exits 0: ${healthcheck[*]:1}"
  else
    fail "HEALTHCHECK command (${healthcheck[*]}) failed: $out"
  fi
  nsenter --net="/proc/$server_pid/ns/net" -- "$PYTHON" "$SMOKE" metrics 127.0.0.1:9090 2>&1 \
    | tee "$work/metrics.out" || true
  count_checks "$work/metrics.out"
  stop_server "$server_pid" || fail "default CMD: exit status $? on SIGTERM"
else
  fail "default CMD did not start: $(cat "$work/default.out" "$work/default.err")"
  stop_server "$server_pid" || true
fi
server_pid=""

# Without a token the same CMD must refuse to serve on 0.0.0.0.
image_cmd --net "${entrypoint[@]}" "${default_cmd[@]}"
"${IMAGE_CMD[@]}" >"$work/refuse.out" 2>"$work/refuse.err" &
server_pid=$!
code=0
wait_exit "$server_pid" 20 || code=$?
server_pid=""
if [ "$code" != 0 ] && [ "$code" != 124 ] && ! grep -q '^tensord listening on' "$work/refuse.out"; then
  pass "default CMD without a token refuses to start (exit $code): $(head -n 1 "$work/refuse.err")"
else
  fail "default CMD without a token: exit $code, stdout: $(cat "$work/refuse.out")"
fi

printf '\n== done in %ds\n' "$SECONDS"
echo "image-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
