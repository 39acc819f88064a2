#!/usr/bin/env bash
# Single-node SLURM cluster on localhost for tests and CI.
#
#   bash slurm/local_cluster.sh install   # apt-get install slurm + munge (idempotent)
#   bash slurm/local_cluster.sh start     # install if needed, write config, start daemons, wait for idle node
#   bash slurm/local_cluster.sh stop      # stop slurmd, slurmctld, munged (config and state are kept)
#   bash slurm/local_cluster.sh status    # exit 0 iff sinfo answers and the node is usable
#
# Must run as root (Debian 12 / Slurm 22.05 from the Debian archive). No systemd needed: the daemons
# are started directly. cgroup-free: proctrack/linuxproc, task/none, jobacct_gather/none, no
# accounting database: the real sacct does not work, so `start` installs a small stand-in at
# /usr/local/bin/sacct that answers from `scontrol show job` (jobs are kept for MinJobAge=3600 s).
#
# Environment knobs:
#   SLURM_LOCAL_CLEAN=1     start slurmctld with -c (discard saved jobs) instead of recovering state
#   SLURM_LOCAL_WAIT=60     seconds to wait for the node to become usable
#   SLURM_LOCAL_MEM_FRAC=75 percent of MemAvailable advertised as RealMemory
#   SLURM_LOCAL_SACCT_SHIM=0  do not install the sacct stand-in
set -euo pipefail

CONF_DIR=/etc/slurm # Debian's clients and daemons read /etc/slurm/slurm.conf (compiled-in default)
CONF=$CONF_DIR/slurm.conf
CGROUP_CONF=$CONF_DIR/cgroup.conf
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_KEY=/etc/munge/munge.key
WAIT_S=${SLURM_LOCAL_WAIT:-60}
MEM_FRAC=${SLURM_LOCAL_MEM_FRAC:-75}
PKGS=(slurmctld slurmd slurm-client munge)

log() { echo "[local_cluster] $*"; }
die() {
    echo "[local_cluster] ERROR: $*" >&2
    exit 1
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"; }

node_name() { hostname -s; }

installed() {
    local p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
    done
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null &&
        command -v munged >/dev/null
}

# (`sinfo --version` needs a slurm.conf, so ask dpkg)
pkg_version() { dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo "?"; }

cmd_install() {
    need_root
    if installed; then
        log "slurm + munge already installed (slurm $(pkg_version))"
        return 0
    fi
    log "installing ${PKGS[*]} (apt-get)..."
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' init scripts from starting daemons during install (we start them
    # ourselves with our config): a temporary policy-rc.d, unless the machine already has one.
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    if ! timeout 600 apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/tmp/local_cluster_apt.log 2>&1; then
        timeout 300 apt-get update -qq >>/tmp/local_cluster_apt.log 2>&1 ||
            die "apt-get update failed, see /tmp/local_cluster_apt.log"
        timeout 600 apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >>/tmp/local_cluster_apt.log 2>&1 ||
            die "apt-get install failed, see /tmp/local_cluster_apt.log"
    fi
    installed || die "packages installed but binaries missing, see /tmp/local_cluster_apt.log"
    log "installed slurm $(pkg_version)"
}

pid_alive() { # pidfile
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating munge key $MUNGE_KEY"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge "$MUNGE_KEY"
    chmod 0700 /etc/munge
    chmod 0600 "$MUNGE_KEY"
    mkdir -p "$MUNGE_RUN" /var/log/munge /var/lib/munge
    chown munge:munge "$MUNGE_RUN" /var/log/munge /var/lib/munge
    chmod 0755 "$MUNGE_RUN"
    if pid_alive "$MUNGE_PID" && timeout 5 munge -n </dev/null | timeout 5 unmunge >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$MUNGE_PID" "$MUNGE_RUN"/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged </dev/null >>/var/log/munge/munged.stdout 2>&1 ||
        die "munged failed to start, see /var/log/munge/munged.log"
    local i
    for i in $(seq 1 50); do
        if timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    die "munge does not answer (munge -n | unmunge), see /var/log/munge/munged.log"
}

write_config() {
    local node cpus avail_kb mem_mb defmem
    node=$(node_name)
    cpus=$(nproc)
    avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    mem_mb=$((avail_kb / 1024 * MEM_FRAC / 100))
    ((mem_mb >= 256)) || mem_mb=256
    # default per-CPU memory for jobs that do not ask (--mem): at most 1 GiB, so several jobs fit
    defmem=$((mem_mb / cpus))
    ((defmem <= 1024)) || defmem=1024
    mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
    local tmp
    tmp=$(mktemp "$CONF_DIR/.slurm.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Written by slurm/local_cluster.sh -- single-node test cluster, regenerated on every start.
ClusterName=localcluster
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also is the delay before a requeued job may start again (default 120 s)
AuthInfo=cred_expire=20
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
# cgroup-free process tracking / task launch / accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# scheduling
SchedulerType=sched/backfill
# short scheduling cycles: a single small node, so overhead is negligible and tests stay fast
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
PreemptType=preempt/none
PreemptMode=OFF
JobRequeue=1
ReturnToService=2
# keep finished jobs visible to 'scontrol show job' (and the sacct shim) for an hour: there is no
# slurmdbd, and submitit polls job states as rarely as every 600 s
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=10
Waittime=0
SlurmdParameters=config_overrides
# state, pids, logs
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
# node and partition (CPUs from nproc, RealMemory = ${MEM_FRAC}% of MemAvailable at start time)
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 0644 "$tmp"
    mv -f "$tmp" "$CONF"
    # Not read with the plugins above; written so that nothing autodetects cgroups.
    cat >"$CGROUP_CONF" <<EOF
# Written by slurm/local_cluster.sh: this cluster uses no cgroup plugins.
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
    chmod 0644 "$CGROUP_CONF"
    log "wrote $CONF (node $node, CPUs=$cpus, RealMemory=${mem_mb}M, DefMemPerCPU=${defmem}M)"
}

node_state() { # prints the node's compact state, e.g. idle, mix, alloc, down*, drain, unk*
    timeout 10 sinfo -h -N -n "$(node_name)" -o '%t' 2>/dev/null | head -n1
}

usable_state() {
    case "$1" in
    idle | mix | alloc | comp | idle~ | mix- | alloc+ | plnd) return 0 ;;
    *) return 1 ;;
    esac
}

start_daemon() { # name pidfile -- argv...
    local name=$1 pidfile=$2
    shift 2
    if pid_alive "$pidfile"; then
        return 0
    fi
    rm -f "$pidfile"
    # Redirect all fds so that a CI runner reading our stdout never waits on the daemon.
    "$@" </dev/null >>"$LOG_DIR/$name.stdout" 2>&1 || die "$name failed to start, see $LOG_DIR/$name.log"
    local i
    for i in $(seq 1 50); do
        pid_alive "$pidfile" && return 0
        sleep 0.2
    done
    die "$name did not write $pidfile, see $LOG_DIR/$name.log"
}

SACCT_SHIM=/usr/local/bin/sacct

install_sacct_shim() {
    # The real sacct needs slurmdbd; this stand-in answers from `scontrol show job` so that
    # submitit / hydra-submitit-launcher see final states of jobs that die without a result.
    [[ ${SLURM_LOCAL_SACCT_SHIM:-1} == 1 ]] || return 0
    if [[ -e $SACCT_SHIM ]] && ! grep -q "written by slurm/local_cluster.sh" "$SACCT_SHIM"; then
        log "not replacing $SACCT_SHIM (not ours)"
        return 0
    fi
    mkdir -p "$(dirname "$SACCT_SHIM")"
    cat >"$SACCT_SHIM.tmp" <<'SHIM_EOF'
#!/usr/bin/python3
# sacct stand-in written by slurm/local_cluster.sh for the local cluster, which has no
# accounting database (AccountingStorageType=accounting_storage/none, so the real sacct only says
# "Slurm accounting storage is disabled"). It answers the common queries (-j, -o/--format, -P,
# -p, -n, -X) from `scontrol show job`, i.e. for jobs younger than MinJobAge (3600 s).
# Tools that poll sacct for job states (submitit, hydra-submitit-launcher) need it to notice jobs
# that end without writing a result. With real accounting configured it runs the real sacct.
import os
import re
import subprocess
import sys

REAL = "/usr/bin/sacct"
DEFAULT_FIELDS = ["JobID", "JobName", "Partition", "Account", "AllocCPUS", "State", "ExitCode"]


def accounting_enabled() -> bool:
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    m = re.search(r"^AccountingStorageType\s*=\s*(\S+)", out, re.M)
    return bool(m) and m.group(1) != "accounting_storage/none"


def parse_args(argv):
    fields, jobs, sep, header = None, None, None, True
    i = 0
    while i < len(argv):
        a = argv[i]
        val = None
        if "=" in a and a.startswith("--"):
            a, val = a.split("=", 1)
        takes = a in ("-o", "--format", "-j", "--jobs")
        if takes and val is None:
            i += 1
            val = argv[i] if i < len(argv) else ""
        elif not a.startswith("--") and len(a) > 2 and a[1] in "oj" and a[0] == "-":
            a, val = a[:2], a[2:]
        if a in ("-o", "--format"):
            fields = (fields or []) + [f for f in val.split(",") if f]
        elif a in ("-j", "--jobs"):
            jobs = (jobs or []) + [j for j in val.split(",") if j]
        elif a in ("-P", "--parsable2"):
            sep = "2"
        elif a in ("-p", "--parsable"):
            sep = "1"
        elif a in ("-n", "--noheader"):
            header = False
        elif a.startswith("-") and not a.startswith("--") and len(a) > 2:
            # bundled short flags such as -nXP
            for ch in a[1:]:
                if ch == "P":
                    sep = "2"
                elif ch == "p":
                    sep = "1"
                elif ch == "n":
                    header = False
        i += 1
    return fields or DEFAULT_FIELDS, jobs, sep, header


def scontrol_jobs(jobs):
    targets = [j.split(".")[0] for j in jobs] if jobs else [None]
    records, seen = [], set()
    for t in targets:
        cmd = ["scontrol", "show", "job", "-o"] + ([t.split("_")[0]] if t else [])
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            rec = dict(re.findall(r"(\w[\w:/]*)=(\S*)", line))
            if "JobId" not in rec or rec["JobId"] in seen:
                continue
            seen.add(rec["JobId"])
            if rec.get("ArrayJobId") and rec.get("ArrayTaskId"):
                task = rec["ArrayTaskId"]
                if not re.fullmatch(r"\d+", task):
                    task = "[" + task.split("%")[0] + "]"
                rec["_JobID"] = f"{rec['ArrayJobId']}_{task}"
            else:
                rec["_JobID"] = rec["JobId"]
            if t and "_" in t and rec["_JobID"] != t and not rec["_JobID"].endswith("]"):
                continue
            records.append(rec)
    return records


def value(rec, field):
    f = field.split("%")[0].lower()
    node = rec.get("NodeList", "")
    table = {
        "jobid": rec["_JobID"],
        "jobidraw": rec.get("JobId", ""),
        "jobname": rec.get("JobName", ""),
        "partition": rec.get("Partition", ""),
        "account": rec.get("Account", "") if rec.get("Account") != "(null)" else "",
        "alloccpus": rec.get("NumCPUs", ""),
        "ncpus": rec.get("NumCPUs", ""),
        "nnodes": rec.get("NumNodes", ""),
        "state": rec.get("JobState", ""),
        "exitcode": rec.get("ExitCode", ""),
        "nodelist": "None assigned" if node in ("", "(null)") else node,
        "start": rec.get("StartTime", ""),
        "end": rec.get("EndTime", ""),
        "submit": rec.get("SubmitTime", ""),
        "elapsed": rec.get("RunTime", ""),
        "timelimit": rec.get("TimeLimit", ""),
        "user": rec.get("UserId", "").split("(")[0],
        "workdir": rec.get("WorkDir", ""),
        "reason": rec.get("Reason", ""),
        "restarts": rec.get("Restarts", ""),
    }
    return table.get(f, "")


def main():
    argv = sys.argv[1:]
    if os.path.exists(REAL) and accounting_enabled():
        os.execv(REAL, [REAL] + argv)
    fields, jobs, sep, header = parse_args(argv)
    rows = [[value(r, f) for f in fields] for r in scontrol_jobs(jobs)]
    names = [f.split("%")[0] for f in fields]
    if sep:
        end = "|" if sep == "1" else ""
        if header:
            print("|".join(names) + end)
        for row in rows:
            print("|".join(row) + end)
    else:
        widths = [max([10] + [len(c) for c in col]) for col in zip(names, *rows)]
        if header:
            print(" ".join(n.rjust(w) for n, w in zip(names, widths)))
            print(" ".join("-" * w for w in widths))
        for row in rows:
            print(" ".join(c.rjust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
SHIM_EOF
    chmod 0755 "$SACCT_SHIM.tmp"
    mv -f "$SACCT_SHIM.tmp" "$SACCT_SHIM"
}

cmd_start() {
    need_root
    if pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" && cmd_status >/dev/null 2>&1; then
        install_sacct_shim
        log "cluster already up: node $(node_name) $(node_state), partition debug"
        return 0
    fi
    installed || cmd_install
    start_munge
    install_sacct_shim
    # start from a consistent state: whatever is half-running goes down first
    stop_daemons quiet
    write_config
    local ctld_args=()
    [[ ${SLURM_LOCAL_CLEAN:-0} == 1 ]] && ctld_args+=(-c)
    start_daemon slurmctld "$CTLD_PID" /usr/sbin/slurmctld "${ctld_args[@]}"
    start_daemon slurmd "$SLURMD_PID" /usr/sbin/slurmd

    local deadline=$((SECONDS + WAIT_S)) st="" resumed=0
    while ((SECONDS < deadline)); do
        st=$(node_state || true)
        if usable_state "$st"; then
            log "SLURM cluster is up: slurm $(pkg_version), node $(node_name) $st, partition debug (config $CONF)"
            return 0
        fi
        case "$st" in
        down | drain | drng | drained | fail | down\* | drain\* | fail\*)
            # a recovered state can leave the node down/drained; slurmd is running, so resume it
            if ((resumed < 3)) && [[ $st != *\* ]]; then
                timeout 10 scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 || true
                resumed=$((resumed + 1))
            fi
            ;;
        esac
        pid_alive "$CTLD_PID" || die "slurmctld exited, see $LOG_DIR/slurmctld.log"
        pid_alive "$SLURMD_PID" || die "slurmd exited, see $LOG_DIR/slurmd.log"
        sleep 1
    done
    echo "[local_cluster] last sinfo:" >&2
    timeout 10 sinfo -N -l >&2 || true
    tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 2>/dev/null || true
    die "node $(node_name) not usable after ${WAIT_S}s (state '${st:-no answer}')"
}

stop_pidfile() { # name pidfile
    local name=$1 pidfile=$2 pid i
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        [[ ${3:-} == quiet ]] || log "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

stop_daemons() { # [quiet]
    stop_pidfile slurmd "$SLURMD_PID" "${1:-}"
    stop_pidfile slurmctld "$CTLD_PID" "${1:-}"
}

cmd_stop() {
    need_root
    stop_daemons
    stop_pidfile munged "$MUNGE_PID"
    log "cluster stopped (config kept in $CONF, state in $STATE_DIR)"
}

cmd_status() {
    command -v sinfo >/dev/null || {
        echo "slurm not installed"
        return 1
    }
    local out st
    if ! out=$(timeout 10 sinfo -h 2>&1); then
        echo "sinfo does not answer: $out"
        return 1
    fi
    st=$(node_state || true)
    if usable_state "$st"; then
        echo "up: node $(node_name) $st"
        timeout 10 sinfo
        return 0
    fi
    echo "node $(node_name) not usable (state '${st:-?}')"
    timeout 10 sinfo -N -l || true
    return 1
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
    cmd_stop
    cmd_start
    ;;
*)
    echo "usage: $0 {install|start|stop|status|restart}" >&2
    exit 2
    ;;
esac
