#!/usr/bin/env bash
# Real container engines for podmortem's integration tests.
#
#   scripts/engines.sh install   apt packages, CRI api.proto and CRIU 4.1 (idempotent)
#   scripts/engines.sh start     dockerd, a CRI containerd, the podman API service, base images
#   scripts/engines.sh stop      stop everything `start` started, by PID
#   scripts/engines.sh status    what runs
#   scripts/engines.sh env       `export` lines the tests read (eval "$(scripts/engines.sh env)")
#
# Written for a fresh Debian 12 machine without systemd, run as root (CI and developers alike).
# The facts behind each choice are in shared/notes/runtimes.md; comments below say which quirk
# forced what. Nothing here sends traffic off the machine: Docker runs with --bridge=none, Podman
# with netns=none, CRI pods use the host network, and the only downloads are apt packages.
set -euo pipefail

# Persistent artefacts (apt-extracted CRIU, api.proto, engine storage) and runtime state
# (sockets, PIDs, logs). Both can be moved for a developer who wants them elsewhere.
PM_LIB="${PODMORTEM_CI_LIB:-/var/lib/podmortem-ci}"
PM_RUN="${PODMORTEM_CI_RUN:-/run/podmortem-ci}"

DOCKER_SOCK="$PM_RUN/docker.sock"
PODMAN_SOCK="$PM_RUN/podman.sock"
CTRD_SOCK="$PM_RUN/containerd/containerd.sock"
CRI_PROTO="$PM_LIB/cri/api.proto"
PIDS="$PM_RUN/pids"
LOGS="$PM_RUN/logs"

BUSYBOX_IMAGE="podmortem-test/busybox:latest"
PAUSE_IMAGE="podmortem-test/pause:latest"

# /usr/local/bin/docker on the development machines is a newer client than the Debian 20.10
# daemon accepts; always use Debian's client.
DOCKER=/usr/bin/docker
CTR=/usr/bin/ctr

APT_PACKAGES=(
    docker.io containerd runc      # dockerd (API 1.41), containerd 1.6 with the CRI plugin, runc 1.1
    podman buildah skopeo umoci    # podman 4.3 (compat API), offline image tooling
    conmon catatonit               # podman's monitor and init, named so --no-install-recommends keeps them
    busybox-static                 # the base image rootfs: one static binary
    iproute2 procps psmisc         # ip/nsenter helpers for tests, ps/pgrep, fuser
    debootstrap                    # optional realistic Debian rootfs (not built by default)
    curl ca-certificates           # curl probes the podman API socket
)

log() { printf '[engines] %s\n' "$*" >&2; }
die() { printf '[engines] error: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------

missing_debs() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        [[ $p == \#* ]] && continue
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$p"
        fi
    done
}

# Private apt configuration for Debian trixie: its own lists, cache and an empty dpkg status,
# so trixie is never added to the system's sources and nothing from it is installed.
trixie_apt() {
    local dir=$1
    shift
    apt-get -q \
        -o Dir::Etc::SourceList=/dev/null \
        -o Dir::Etc::SourceParts="$dir/etc" \
        -o Dir::State::Lists="$dir/lists" \
        -o Dir::State::status="$dir/status" \
        -o Dir::Cache="$dir/cache" \
        -o Debug::NoLocking=1 \
        -o APT::Sandbox::User=root \
        "$@"
}

trixie_apt_cache() {
    local dir=$1
    shift
    apt-cache \
        -o Dir::Etc::SourceList=/dev/null \
        -o Dir::Etc::SourceParts="$dir/etc" \
        -o Dir::State::Lists="$dir/lists" \
        -o Dir::State::status="$dir/status" \
        -o Dir::Cache="$dir/cache" \
        "$@"
}

trixie_prepare() {
    local dir=$1 uri
    mkdir -p "$dir/etc" "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
    : >"$dir/status"
    # Same mirror as the system's bookworm source (a snapshot-pinned mirror on some machines).
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    cat >"$dir/etc/trixie.sources" <<EOF
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    trixie_apt "$dir" update >/dev/null
}

# CRI's api.proto: crictl is in no registry reachable here, so the tests speak CRI over gRPC,
# compiled from the proto that Debian trixie ships (Architecture: all, so no binary issues).
install_cri_proto() {
    local dir=$1 src
    [[ -s $CRI_PROTO ]] && return 0
    (cd "$dir/debs" && trixie_apt "$dir" download golang-github-kubernetes-cri-api-dev >/dev/null)
    mkdir -p "$dir/cri"
    dpkg-deb -x "$dir"/debs/golang-github-kubernetes-cri-api-dev_*.deb "$dir/cri"
    src=$(find "$dir/cri" -path '*/cri-api/pkg/apis/runtime/v1/api.proto' | head -n1)
    [[ -n $src ]] || die "api.proto not found in golang-github-kubernetes-cri-api-dev"
    mkdir -p "$(dirname "$CRI_PROTO")"
    install -m 0644 "$src" "$CRI_PROTO"
    log "CRI api.proto -> $CRI_PROTO"
}

# CRIU: bookworm's 3.17 fails on this kernel ("vdso: Unexpected rt vDSO area bounds"); trixie's
# 4.1.1 works. Installing trixie's libc would break the system, so the .debs are only extracted
# and criu runs through trixie's own dynamic loader. runc/podman look criu up on PATH, hence the
# wrapper in /usr/local/sbin.
install_criu() {
    local dir=$1 root="$PM_LIB/criu/root" pkgs
    if [[ -x /usr/local/sbin/criu ]] && /usr/local/sbin/criu --version 2>/dev/null | grep -q 'Version: 4'; then
        return 0
    fi
    # The package and its whole dependency closure, libc included (an empty dpkg status makes
    # apt-cache treat nothing as installed).
    pkgs=$(trixie_apt_cache "$dir" depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances criu |
        grep -v '^ ' | grep -v '^<' | sort -u)
    [[ -n $pkgs ]] || { log "criu: no dependency list from trixie"; return 1; }
    mkdir -p "$dir/criu-debs"
    # shellcheck disable=SC2086
    (cd "$dir/criu-debs" && trixie_apt "$dir" download $pkgs >/dev/null)
    rm -rf "$root"
    mkdir -p "$root"
    local deb
    for deb in "$dir"/criu-debs/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
    [[ -x $root/usr/sbin/criu ]] || { log "criu: binary missing after extraction"; return 1; }
    cat >/usr/local/sbin/criu <<EOF
#!/bin/sh
# podmortem: Debian trixie's CRIU $(
        dpkg-deb -f "$dir"/criu-debs/criu_*.deb Version
    ), extracted (not installed) by scripts/engines.sh.
# Runs through trixie's own loader and libraries; bookworm's glibc is too old for it.
exec "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \\
    --library-path "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \\
    "$root/usr/sbin/criu" "\$@"
EOF
    chmod 0755 /usr/local/sbin/criu
    /usr/local/sbin/criu --version >/dev/null || { log "criu: wrapper does not run"; return 1; }
    log "criu $(/usr/local/sbin/criu --version | awk '/Version/ {print $2}') -> /usr/local/sbin/criu"
}

cmd_install() {
    need_root
    local missing tmp
    mapfile -t missing < <(missing_debs)
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    if [[ -s $CRI_PROTO ]] && [[ -x /usr/local/sbin/criu ]]; then
        log "install: up to date"
        return 0
    fi
    tmp=$(mktemp -d /tmp/podmortem-trixie.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    trixie_prepare "$tmp"
    install_cri_proto "$tmp"
    # Best effort: only the checkpoint tests need CRIU; say why it failed and go on.
    install_criu "$tmp" || log "WARNING: CRIU 4.x not installed; checkpoint tests will fail or skip"
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "$what did not answer within ${secs}s (logs in $LOGS)"
}

write_podman_conf() {
    # crun fails on this host's hybrid cgroups ("cgroups in hybrid mode not supported"), so
    # runc; root lacks CAP_SYS_RESOURCE here, so the default ulimits must be lowered; no
    # network (nothing to route to, and no CNI/netavark setup needed); no systemd, hence
    # cgroupfs and file events.
    local target=/etc/containers/containers.conf
    mkdir -p /etc/containers
    if [[ -e $target ]] && ! grep -q 'written by podmortem scripts/engines.sh' "$target"; then
        # Someone else's configuration: leave it and point podman at ours instead.
        target="$PM_LIB/podman/containers.conf"
        mkdir -p "$(dirname "$target")"
        echo "$target" >"$PM_RUN/containers_conf"
    fi
    cat >"$target" <<'EOF'
# written by podmortem scripts/engines.sh (see shared/notes/runtimes.md)
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

write_containerd_conf() {
    # A separate containerd for CRI, so Docker's own (managed) containerd is left alone.
    local conf="$PM_RUN/containerd/config.toml"
    mkdir -p "$PM_RUN/containerd" "$PM_LIB/containerd" "$PM_LIB/cni/conf" "$PM_LIB/cni/bin"
    containerd config default >"$conf.default"
    python3 - "$conf" "$PM_LIB" "$PM_RUN" "$PAUSE_IMAGE" <<'PY'
import re, sys
conf, lib, run, pause = sys.argv[1:5]
text = open(conf + ".default").read()
def sub(pattern: str, repl: str) -> None:
    global text
    text, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"containerd config: no match for {pattern!r}")
sub(r'^root = .*$', f'root = "{lib}/containerd"')
sub(r'^state = .*$', f'state = "{run}/containerd/state"')
sub(r'^(\s*)address = "/run/containerd/containerd.sock"', rf'\1address = "{run}/containerd/containerd.sock"')
# oom_score_adj cannot be lowered on this host: without this every container start fails.
sub(r'^(\s*)restrict_oom_score_adj = false', r'\1restrict_oom_score_adj = true')
# No registry is reachable: the pause image is built locally and imported (see build_images).
sub(r'^(\s*)sandbox_image = .*$', rf'\1sandbox_image = "docker.io/{pause}"')
sub(r'^(\s*)conf_dir = .*$', rf'\1conf_dir = "{lib}/cni/conf"')
sub(r'^(\s*)bin_dir = .*$', rf'\1bin_dir = "{lib}/cni/bin"')
# The streaming server (exec/attach/port-forward) listens on loopback only.
sub(r'^(\s*)stream_server_address = .*$', r'\1stream_server_address = "127.0.0.1"')
# ttrpc socket next to the grpc one, not in /run/containerd.
text = re.sub(r'(\[ttrpc\]\s*\n\s*)address = ""', rf'\1address = "{run}/containerd/containerd.sock.ttrpc"', text)
open(conf, "w").write(text)
PY
}

start_dockerd() {
    if pid_alive "$PIDS/dockerd"; then return 0; fi
    mkdir -p "$PM_LIB/docker" "$PM_RUN/docker-exec"
    # No iptables/bridge: containers get only `lo`, nothing can reach the network, and no
    # host firewall state is touched. --experimental enables `docker checkpoint`.
    setsid dockerd --experimental \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
        --storage-driver=overlay2 \
        --data-root "$PM_LIB/docker" --exec-root "$PM_RUN/docker-exec" \
        --pidfile "$PM_RUN/dockerd.pid" \
        -H "unix://$DOCKER_SOCK" \
        </dev/null >>"$LOGS/dockerd.log" 2>&1 &
    echo $! >"$PIDS/dockerd"
}

start_containerd() {
    if pid_alive "$PIDS/containerd"; then return 0; fi
    write_containerd_conf
    setsid containerd --config "$PM_RUN/containerd/config.toml" \
        </dev/null >>"$LOGS/containerd.log" 2>&1 &
    echo $! >"$PIDS/containerd"
}

# Run "$@" with CONTAINERS_CONF set when our containers.conf could not go to /etc/containers.
with_podman_env() {
    if [[ -s $PM_RUN/containers_conf ]]; then
        CONTAINERS_CONF=$(cat "$PM_RUN/containers_conf") "$@"
    else
        "$@"
    fi
}

start_podman() {
    if pid_alive "$PIDS/podman"; then return 0; fi
    write_podman_conf
    rm -f "$PODMAN_SOCK"
    # Not through with_podman_env: a backgrounded shell function runs in a subshell, and $!
    # would be that subshell's PID rather than podman's. env+setsid exec, so $! is podman.
    local conf_env=()
    [[ -s $PM_RUN/containers_conf ]] && conf_env=("CONTAINERS_CONF=$(cat "$PM_RUN/containers_conf")")
    # --time=0: never exit on idle.
    env "${conf_env[@]}" setsid podman system service --time=0 "unix://$PODMAN_SOCK" \
        </dev/null >>"$LOGS/podman.log" 2>&1 &
    echo $! >"$PIDS/podman"
}

docker_ok() { DOCKER_HOST="unix://$DOCKER_SOCK" $DOCKER version --format '{{.Server.Version}}'; }
containerd_ok() { $CTR --address "$CTRD_SOCK" version; }
podman_ok() { curl -sf --unix-socket "$PODMAN_SOCK" http://d/_ping; }

# Base images, built offline: no registry is reachable. busybox rootfs = Debian's static busybox
# with every applet linked to it; the pause image is the same rootfs sleeping forever.
build_rootfs_tar() {
    local out=$1 root
    root=$(mktemp -d /tmp/podmortem-rootfs.XXXXXX)
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cp /bin/busybox "$root/bin/busybox"
    local applet
    while read -r applet; do
        # `busybox --list-full` includes bin/busybox itself: linking it would replace the binary
        # with a symlink to itself.
        [[ $applet == bin/busybox ]] && continue
        ln -sf /bin/busybox "$root/$applet"
    done < <(/bin/busybox --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" --numeric-owner -cf "$out" .
    rm -rf "$root"
}

build_images() {
    local tar="$PM_LIB/images/busybox-rootfs.tar" save="$PM_LIB/images/podmortem-test-images.tar"
    local bbver
    bbver=$(dpkg-query -W -f='${Version}' busybox-static)
    mkdir -p "$PM_LIB/images"
    # Rebuild when busybox-static changes.
    if [[ ! -s $tar || $(cat "$PM_LIB/images/busybox.version" 2>/dev/null) != "$bbver" ]]; then
        build_rootfs_tar "$tar"
        echo "$bbver" >"$PM_LIB/images/busybox.version"
        rm -f "$save"
    fi
    export DOCKER_HOST="unix://$DOCKER_SOCK"
    if ! $DOCKER image inspect "$BUSYBOX_IMAGE" "$PAUSE_IMAGE" >/dev/null 2>&1 || [[ ! -s $save ]]; then
        $DOCKER import --change 'CMD ["/bin/sh"]' "$tar" "$BUSYBOX_IMAGE" >/dev/null
        $DOCKER import --change 'ENTRYPOINT ["/bin/sleep","2147483647"]' "$tar" "$PAUSE_IMAGE" >/dev/null
        $DOCKER save -o "$save" "$BUSYBOX_IMAGE" "$PAUSE_IMAGE"
    fi
    # containerd's CRI looks in the k8s.io namespace; names become docker.io/podmortem-test/...
    local have
    have=$($CTR --address "$CTRD_SOCK" -n k8s.io images ls -q)
    if ! grep -qx "docker.io/$BUSYBOX_IMAGE" <<<"$have" || ! grep -qx "docker.io/$PAUSE_IMAGE" <<<"$have"; then
        $CTR --address "$CTRD_SOCK" -n k8s.io images import "$save" >/dev/null
    fi
    if ! with_podman_env podman image exists "$BUSYBOX_IMAGE" || ! with_podman_env podman image exists "$PAUSE_IMAGE"; then
        with_podman_env podman load -q -i "$save" >/dev/null
    fi
}

cmd_start() {
    need_root
    command -v dockerd >/dev/null || die "dockerd missing: run scripts/engines.sh install"
    [[ -s $CRI_PROTO ]] || die "$CRI_PROTO missing: run scripts/engines.sh install"
    mkdir -p "$PIDS" "$LOGS"
    # runc finds criu (our /usr/local/sbin wrapper) through the daemons' PATH.
    export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    start_dockerd
    start_containerd
    start_podman
    wait_for 30 dockerd docker_ok
    wait_for 30 containerd containerd_ok
    wait_for 30 "podman service" podman_ok
    build_images
    log "engines up: docker $(docker_ok), containerd $($CTR --address "$CTRD_SOCK" version | awk '/Version/ {print $2; exit}'), podman $(podman --version | awk '{print $3}')"
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------

# stop_pids NAME:TIMEOUT...: SIGTERM to all at once, wait for each, SIGKILL what ignored it.
stop_pids() {
    local spec name secs pid i
    local -A pidof=()
    for spec in "$@"; do
        name=${spec%%:*}
        [[ -s $PIDS/$name ]] || continue
        pid=$(cat "$PIDS/$name")
        # Only signal the PID if it is still the process we started (PIDs get reused).
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PM_RUN"; then
            kill -TERM "$pid" 2>/dev/null || true
            pidof[$name]=$pid
        else
            kill -0 "$pid" 2>/dev/null && log "WARNING: pid $pid of $name is not ours any more; not signalled"
            rm -f "$PIDS/$name"
        fi
    done
    for spec in "$@"; do
        name=${spec%%:*} secs=${spec##*:}
        pid=${pidof[$name]:-}
        [[ -n $pid ]] || continue
        for ((i = 0; i < secs * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) ignored SIGTERM for ${secs}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$PIDS/$name"
    done
}

# PIDs of processes running EXE whose command line contains MARK.
pids_of() {
    local exe=$1 mark=$2 p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == "$exe" ]] || continue
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$mark" && echo "${p#/proc/}"
    done
    return 0
}

cmd_stop() {
    need_root
    local p id podman_ids=() docker_ids=() task
    # 1. Containers, while the engines still answer, so no shim outlives its daemon.
    #    Podman uses the system's storage (/var/lib/containers), which may hold a developer's
    #    own containers: remove only those the tests labelled. Docker and containerd run on
    #    roots of their own under $PM_LIB: everything there is ours.
    if pid_alive "$PIDS/podman"; then
        mapfile -t podman_ids < <(with_podman_env timeout 20 podman ps -aq --no-trunc \
            --filter label=podmortem.test 2>/dev/null || true)
        if ((${#podman_ids[@]})); then
            with_podman_env timeout 30 podman rm -f -t 0 "${podman_ids[@]}" >/dev/null 2>&1 || true
        fi
    fi
    if pid_alive "$PIDS/dockerd"; then
        mapfile -t docker_ids < <(DOCKER_HOST="unix://$DOCKER_SOCK" timeout 20 $DOCKER ps -aq 2>/dev/null || true)
        if ((${#docker_ids[@]})); then
            DOCKER_HOST="unix://$DOCKER_SOCK" timeout 30 $DOCKER rm -f "${docker_ids[@]}" >/dev/null 2>&1 || true
        fi
    fi
    if pid_alive "$PIDS/containerd"; then
        # CRI pods left by an interrupted test run: kill their tasks and delete the containers
        # (containerd's CRI plugin rebuilds its pod list from these at the next start).
        for task in $($CTR --address "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null || true); do
            $CTR --address "$CTRD_SOCK" -n k8s.io tasks kill -s KILL "$task" >/dev/null 2>&1 || true
        done
        for id in $($CTR --address "$CTRD_SOCK" -n k8s.io containers ls -q 2>/dev/null || true); do
            $CTR --address "$CTRD_SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
            $CTR --address "$CTRD_SOCK" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
        done
    fi
    # 2. The daemons, in parallel. dockerd also stops the containerd it manages; containers
    #    that ignore SIGTERM would make it slow (none are left at this point).
    stop_pids podman:10 dockerd:40 containerd:15
    # 3. Leftovers, by PID. Podman 4.3 keeps a conmon per compat-API exec alive for 300 s
    #    (--exit-delay 300): those of the containers removed above carry their ids.
    for id in "${podman_ids[@]}"; do
        for p in $(pids_of /usr/bin/conmon "$id"); do kill -KILL "$p" 2>/dev/null || true; done
    done
    # Shims of our two containerds (Docker's managed one and the CRI one) name our dirs.
    for p in $(pids_of /usr/bin/containerd-shim-runc-v2 "$PM_RUN") $(pids_of /usr/bin/containerd-shim-runc-v2 "$PM_LIB"); do
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -f "$PODMAN_SOCK" "$DOCKER_SOCK"
    log "stopped"
}

cmd_status() {
    local n rc=0
    for n in dockerd containerd podman; do
        if pid_alive "$PIDS/$n"; then
            printf '%-10s running (pid %s)\n' "$n" "$(cat "$PIDS/$n")"
        else
            printf '%-10s stopped\n' "$n"
            rc=1
        fi
    done
    return $rc
}

cmd_env() {
    cat <<EOF
export DOCKER_HOST=unix://$DOCKER_SOCK
export PODMORTEM_DOCKER_HOST=unix://$DOCKER_SOCK
export PODMORTEM_PODMAN_SOCK=$PODMAN_SOCK
export PODMORTEM_CONTAINERD_SOCK=$CTRD_SOCK
export PODMORTEM_CRI_ENDPOINT=unix://$CTRD_SOCK
export PODMORTEM_CRI_PROTO=$CRI_PROTO
export PODMORTEM_TEST_IMAGE=$BUSYBOX_IMAGE
export PODMORTEM_PAUSE_IMAGE=$PAUSE_IMAGE
EOF
    if [[ -s $PM_RUN/containers_conf ]]; then
        echo "export CONTAINERS_CONF=$(cat "$PM_RUN/containers_conf")"
    fi
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 {install|start|stop|status|env}" >&2
    exit 2
    ;;
esac
