#!/usr/bin/env bash
# Single-node SLURM cluster on localhost, for CI and local testing.
#
# Usage:
#   .ci/slurm-setup.sh [start]   install (if needed), configure and start munge + SLURM,
#                                then wait until the node is idle (default)
#   .ci/slurm-setup.sh stop      stop slurmd, slurmctld and munged
#   .ci/slurm-setup.sh restart   stop, then start
#   .ci/slurm-setup.sh status    print daemon and node state; exit 0 only if the node is usable
#
# Must run as root. Does not use systemd: the daemons are started directly.
# Running "start" twice is safe: installed packages, the munge key and running daemons
# are reused; slurm.conf is rewritten only when its content changes (then the daemons are
# restarted so they pick it up).
#
# Environment knobs (all optional):
#   SLURM_NODE_CPUS     CPUs advertised for the node        (default: nproc)
#                       May be larger than nproc to run more 1-CPU jobs side by side;
#                       slurmd is told to trust the configured values (config_overrides).
#   SLURM_NODE_MEM_MB   RealMemory of the node in MiB       (default: physical RAM minus 1 GiB)
#   SLURM_CLUSTER_NAME  ClusterName                         (default: localcluster)
#   SLURM_PARTITION     name of the single, default partition (default: debug)
#   SLURM_FAKE_GPUS     number of fake GPUs (gres/gpu) the node advertises (default: 2).
#                       They are aliases of /dev/null: jobs that ask for --gpus get an
#                       allocation and CUDA_VISIBLE_DEVICES, but no real device. This lets
#                       GPU rules be scheduled exactly as on a real GPU cluster. 0 disables.
#   SLURM_WAIT_SECONDS  how long to wait for the node to become idle (default: 60)
#   SLURM_SKIP_INSTALL  set to 1 to fail instead of running apt-get when SLURM is missing

set -euo pipefail

readonly SLURM_CONF_DIR=/etc/slurm
readonly SLURM_CONF="${SLURM_CONF_DIR}/slurm.conf"
readonly GRES_CONF="${SLURM_CONF_DIR}/gres.conf"
readonly SPOOL_CTLD=/var/spool/slurmctld
readonly SPOOL_D=/var/spool/slurmd
readonly LOG_DIR=/var/log/slurm
readonly RUN_DIR=/run/slurm
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_SOCKET=/run/munge/munge.socket.2
readonly FAKE_GPU_DIR="${SPOOL_D}/fake-gpus"

# The node is always addressed as "localhost" / 127.0.0.1, whatever `hostname` says.
# slurmd is started with "-N localhost" so it does not derive its NodeName from the
# machine's hostname (which often differs in containers).
readonly NODE_NAME=localhost

CLUSTER_NAME="${SLURM_CLUSTER_NAME:-localcluster}"
PARTITION="${SLURM_PARTITION:-debug}"
WAIT_SECONDS="${SLURM_WAIT_SECONDS:-60}"
FAKE_GPUS="${SLURM_FAKE_GPUS:-2}"

log() { printf '[slurm-setup] %s\n' "$*" >&2; }
die() { printf '[slurm-setup] ERROR: %s\n' "$*" >&2; exit 1; }

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (try: sudo $0 ${1:-start})"
}

# ---------------------------------------------------------------------------------------
# installation
# ---------------------------------------------------------------------------------------

slurm_installed() {
    command -v slurmctld >/dev/null 2>&1 \
        && command -v slurmd >/dev/null 2>&1 \
        && command -v sbatch >/dev/null 2>&1 \
        && command -v munged >/dev/null 2>&1
}

install_packages() {
    if slurm_installed; then
        return 0
    fi
    [[ "${SLURM_SKIP_INSTALL:-0}" == 1 ]] && die "SLURM/munge not installed and SLURM_SKIP_INSTALL=1"
    command -v apt-get >/dev/null 2>&1 || die "SLURM is not installed and apt-get is not available"
    log "installing slurmctld, slurmd, slurm-client and munge via apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The individual daemons instead of the slurm-wlm meta package: same binaries, without
    # the optional plugin packages (hdf5, influxdb, rocm, ...) that slurm-wlm pulls in.
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    slurm_installed || die "installation finished but SLURM binaries are still missing"
}

# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------

node_cpus() {
    if [[ -n "${SLURM_NODE_CPUS:-}" ]]; then
        echo "${SLURM_NODE_CPUS}"
    else
        nproc
    fi
}

node_mem_mb() {
    if [[ -n "${SLURM_NODE_MEM_MB:-}" ]]; then
        echo "${SLURM_NODE_MEM_MB}"
        return
    fi
    local total_mb
    total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    # Keep 1 GiB for the OS and the daemons, but never go below 512 MiB.
    local mem=$((total_mb - 1024))
    ((mem < 512)) && mem=512
    echo "${mem}"
}

# Creates FAKE_GPUS character devices that alias /dev/null (slurmd only accepts device
# files for gres/gpu). Falls back to no GPUs, with a warning, where mknod is not allowed.
prepare_fake_gpus() {
    [[ "${FAKE_GPUS}" =~ ^[0-9]+$ ]] || die "SLURM_FAKE_GPUS must be a non-negative integer, got '${FAKE_GPUS}'"
    ((FAKE_GPUS > 0)) || return 0
    mkdir -p "${FAKE_GPU_DIR}"
    local i dev
    for ((i = 0; i < FAKE_GPUS; i++)); do
        dev="${FAKE_GPU_DIR}/gpu${i}"
        [[ -c "${dev}" ]] && continue
        rm -f "${dev}"
        if ! mknod -m 0666 "${dev}" c 1 3 2>/dev/null; then
            log "WARNING: cannot create device nodes (mknod) here; the node will have no GPUs"
            FAKE_GPUS=0
            return 0
        fi
    done
}

render_slurm_conf() {
    local cpus mem def_mem gres_types="" node_gres=""
    cpus=$(node_cpus)
    mem=$(node_mem_mb)
    # Memory given to a job that does not ask for any: an even share per CPU, at most
    # 1 GiB. Without this, a job without --mem would get the whole node.
    def_mem=$((mem / cpus))
    ((def_mem > 1024)) && def_mem=1024
    if ((FAKE_GPUS > 0)); then
        gres_types="GresTypes=gpu"
        node_gres=" Gres=gpu:${FAKE_GPUS}"
    fi
    cat <<CONF
# Generated by .ci/slurm-setup.sh -- single-node test cluster on localhost.
# Edit the script, not this file: it is rewritten on every start.
ClusterName=${CLUSTER_NAME}
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
MpiDefault=none
${gres_types}

StateSaveLocation=${SPOOL_CTLD}
SlurmdSpoolDir=${SPOOL_D}
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: containers rarely let slurmd manage them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Trust the node description below rather than the detected hardware
# (allows SLURM_NODE_CPUS > nproc).
SlurmdParameters=config_overrides

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=${def_mem}

# Keep finished jobs visible to squeue/scontrol for a day: without an accounting
# database, squeue is the only way to learn how a job ended.
MinJobAge=86400
MaxJobCount=100000
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# Reject jobs that can never run (e.g. more CPUs than the node has) at submission,
# instead of leaving them pending forever.
EnforcePartLimits=ALL

NodeName=${NODE_NAME} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=${cpus} Sockets=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${mem}${node_gres} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE_NAME} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

render_gres_conf() {
    echo "# Generated by .ci/slurm-setup.sh: fake GPUs (aliases of /dev/null)."
    if ((FAKE_GPUS > 0)); then
        echo "NodeName=${NODE_NAME} Name=gpu File=${FAKE_GPU_DIR}/gpu[0-$((FAKE_GPUS - 1))]"
    fi
}

# install_if_changed RENDER_FUNCTION DEST: returns 0 if DEST changed, 1 if up to date.
install_if_changed() {
    local render=$1 dest=$2 tmp
    tmp=$(mktemp)
    "${render}" >"${tmp}"
    if [[ -f "${dest}" ]] && cmp -s "${tmp}" "${dest}"; then
        rm -f "${tmp}"
        return 1
    fi
    install -m 0644 "${tmp}" "${dest}"
    rm -f "${tmp}"
    log "wrote ${dest}"
    return 0
}

# Writes slurm.conf and gres.conf; returns 0 if either changed, 1 if both were up to date.
write_config() {
    mkdir -p "${SLURM_CONF_DIR}"
    prepare_fake_gpus
    local changed=1
    install_if_changed render_slurm_conf "${SLURM_CONF}" && changed=0
    install_if_changed render_gres_conf "${GRES_CONF}" && changed=0
    return "${changed}"
}

prepare_dirs() {
    mkdir -p "${SPOOL_CTLD}" "${SPOOL_D}" "${LOG_DIR}" "${RUN_DIR}"
    chmod 0755 "${SPOOL_CTLD}" "${SPOOL_D}" "${LOG_DIR}" "${RUN_DIR}"
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    chmod 0755 /run/munge
    chmod 0700 /var/log/munge /var/lib/munge /etc/munge
}

ensure_munge_key() {
    if [[ -s "${MUNGE_KEY}" ]]; then
        return 0
    fi
    log "creating munge key ${MUNGE_KEY}"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="${MUNGE_KEY}" --force
    else
        dd if=/dev/urandom of="${MUNGE_KEY}" bs=1024 count=1 status=none
    fi
    chown munge:munge "${MUNGE_KEY}"
    chmod 0400 "${MUNGE_KEY}"
}

# ---------------------------------------------------------------------------------------
# daemons
# ---------------------------------------------------------------------------------------

# On hosts that run systemd, the Debian/Ubuntu packages start their own slurmctld and
# slurmd (with the packaged configuration). Stop them so that they do not compete with
# the daemons started here for the same ports and state directories.
stop_packaged_services() {
    [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 || return 0
    local unit
    for unit in slurmd slurmctld; do
        if systemctl is-active --quiet "${unit}" 2>/dev/null; then
            log "stopping systemd unit ${unit} (this script manages the daemons itself)"
            systemctl stop "${unit}" || true
        fi
    done
}

# PID of a running daemon, from its pid file (validated against /proc), else empty.
daemon_pid() {
    local pidfile=$1 name=$2 pid
    [[ -r "${pidfile}" ]] || return 0
    pid=$(tr -dc '0-9' <"${pidfile}")
    [[ -n "${pid}" && -r "/proc/${pid}/comm" ]] || return 0
    # comm is truncated to 15 chars; the Debian binaries may be called e.g. slurmctld-wlm
    if [[ "$(cat "/proc/${pid}/comm")" == "${name}"* ]]; then
        echo "${pid}"
    fi
}

munge_running() { [[ -n "$(daemon_pid /run/munge/munged.pid munged)" ]] && munge -n </dev/null >/dev/null 2>&1; }
slurmctld_running() { [[ -n "$(daemon_pid "${RUN_DIR}/slurmctld.pid" slurmctld)" ]]; }
slurmd_running() { [[ -n "$(daemon_pid "${RUN_DIR}/slurmd.pid" slurmd)" ]]; }

start_munge() {
    if munge_running; then
        return 0
    fi
    log "starting munged"
    rm -f "${MUNGE_SOCKET}" "${MUNGE_SOCKET}.lock"
    # munged refuses to run as root; run it as its own user.
    runuser -u munge -- /usr/sbin/munged
    local i
    for ((i = 0; i < 50; i++)); do
        munge -n </dev/null >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged did not come up; see /var/log/munge/munged.log"
}

start_slurmctld() {
    if slurmctld_running; then
        return 0
    fi
    log "starting slurmctld"
    # -i: ignore errors in state files (e.g. left over from an older configuration).
    slurmctld -i
    local i
    for ((i = 0; i < 100; i++)); do
        scontrol ping 2>/dev/null | grep -q 'is UP' && return 0
        sleep 0.1
    done
    die "slurmctld did not respond; see ${LOG_DIR}/slurmctld.log"
}

start_slurmd() {
    if slurmd_running; then
        return 0
    fi
    log "starting slurmd (NodeName=${NODE_NAME})"
    slurmd -N "${NODE_NAME}"
    local i
    for ((i = 0; i < 50; i++)); do
        slurmd_running && return 0
        sleep 0.1
    done
    die "slurmd did not start; see ${LOG_DIR}/slurmd.log"
}

# stop_daemons PIDFILE:NAME ...: send SIGTERM to all, wait up to 10 s, then SIGKILL.
stop_daemons() {
    local spec pidfile name pid i
    local -a pids=()
    for spec in "$@"; do
        pidfile=${spec%%:*}
        name=${spec#*:}
        pid=$(daemon_pid "${pidfile}" "${name}")
        rm -f "${pidfile}"
        [[ -n "${pid}" ]] || continue
        log "stopping ${name} (pid ${pid})"
        kill -TERM "${pid}" 2>/dev/null || true
        pids+=("${pid}")
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do
            [[ -d "/proc/${pid}" ]] || break
            sleep 0.1
        done
        if [[ -d "/proc/${pid}" ]]; then
            log "pid ${pid} did not exit after 10 s; sending SIGKILL"
            kill -KILL "${pid}" 2>/dev/null || true
        fi
    done
}

stop_slurm_daemons() {
    stop_daemons "${RUN_DIR}/slurmd.pid:slurmd" "${RUN_DIR}/slurmctld.pid:slurmctld"
}

# State of the node as sinfo reports it (e.g. "idle", "down*"); empty if unreachable.
node_state() {
    { sinfo --noheader --nodes="${NODE_NAME}" --format='%T' 2>/dev/null || true; } \
        | head -n1 | tr -d '[:space:]'
}

wait_for_idle() {
    local deadline=$((SECONDS + WAIT_SECONDS)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case "${state}" in
            idle | mixed | allocated | completing)
                log "node ${NODE_NAME} is ${state}"
                return 0
                ;;
            drain* | down* | fail*)
                # A node that was down (e.g. after a crash) is returned to service by
                # ReturnToService=2 once slurmd registers; nudge it in case it was drained.
                scontrol update NodeName="${NODE_NAME}" State=RESUME >/dev/null 2>&1 || true
                ;;
        esac
        sleep 0.5
    done
    log "node state: '${state}'"
    sinfo -N -l >&2 || true
    scontrol show node "${NODE_NAME}" >&2 || true
    tail -n 20 "${LOG_DIR}/slurmd.log" >&2 || true
    die "node ${NODE_NAME} did not become idle within ${WAIT_SECONDS} s"
}

do_start() {
    require_root start
    local t0=${SECONDS}
    install_packages
    prepare_dirs
    ensure_munge_key
    if write_config; then
        # Configuration changed: running daemons must be restarted to pick it up.
        stop_slurm_daemons
    fi
    stop_packaged_services
    start_munge
    start_slurmctld
    start_slurmd
    wait_for_idle
    log "cluster ready after $((SECONDS - t0)) s: partition '${PARTITION}', node ${NODE_NAME}:" \
        "$(node_cpus) CPUs, $(node_mem_mb) MiB, ${FAKE_GPUS} fake GPUs"
}

do_stop() {
    require_root stop
    stop_slurm_daemons
    stop_daemons /run/munge/munged.pid:munged
    log "stopped"
}

do_status() {
    local ok=0 daemon
    for daemon in munge slurmctld slurmd; do
        if "${daemon}_running"; then
            log "$(printf '%-10s running' "${daemon}:")"
        else
            log "$(printf '%-10s not running' "${daemon}:")"
            ok=1
        fi
    done
    if ((ok == 0)); then
        local state
        state=$(node_state)
        log "node ${NODE_NAME}: ${state:-unknown}"
        case "${state}" in
            idle | mixed | allocated | completing) ;;
            *) ok=1 ;;
        esac
    fi
    return "${ok}"
}

main() {
    local cmd=${1:-start}
    case "${cmd}" in
        start) do_start ;;
        stop) do_stop ;;
        restart)
            do_stop
            do_start
            ;;
        status) do_status ;;
        -h | --help | help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0" ;;
        *) die "unknown command '${cmd}' (expected start, stop, restart or status)" ;;
    esac
}

main "$@"
