#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (munged, slurmctld, slurmd; no systemd, run as root) with its
# config, state and logs in ${SLURM_STATE:-/tmp/vaereg-slurm}. Prints the `export` lines to eval:
#     eval "$(scripts/slurm-up.sh)"
# Needs: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge. Stop it with slurm-down.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${SLURM_STATE:-/tmp/vaereg-slurm}
timeout_s=${SLURM_UP_TIMEOUT:-30}
conf=$state/slurm.conf
pids=$state/pids

die() { echo "slurm-up: $*" >&2; exit 1; }
# On failure print `false` so that `eval "$(scripts/slurm-up.sh)"` fails too (eval of nothing succeeds).
starting=0
on_exit() {
    local status=$?
    ((status)) || return 0
    if ((starting)); then SLURM_STATE=$state "$here/slurm-down.sh" >&2 || true; fi
    echo false
}
trap on_exit EXIT
# shellcheck disable=SC2016  # $PATH is meant to expand in the caller's eval, not here
exports() { printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$conf" "$here/slurm"; }
alive() { [[ -r /proc/$2/comm && $(< "/proc/$2/comm") == "$1" ]]; }  # name pid: running, and not a reused pid

[[ $EUID -eq 0 ]] || die "must run as root (it starts munged as the munge user and slurmd as root)"
for cmd in munged slurmctld slurmd sinfo; do
    command -v "$cmd" > /dev/null ||
        die "$cmd not found; run: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
done

if [[ -s $pids ]]; then
    up=0 total=0
    while read -r name pid; do
        total=$((total + 1))
        if alive "$name" "$pid"; then up=$((up + 1)); fi
    done < "$pids"
    if ((up == total)); then
        echo "slurm-up: already up ($state); not starting a second set" >&2
        exports
        exit 0
    fi
    ((up == 0)) || die "partly up ($up of $total daemons in $pids alive); run scripts/slurm-down.sh first"
fi

# A failure from here on stops whatever this run started (the logs stay in $state).
starting=1
mkdir -p "$state"
rm -rf "$state/ctld" "$state/spool"
mkdir -p "$state/ctld" "$state/spool"
: > "$pids"
export SLURM_CONF=$conf

# wait_for WHAT LOG COMMAND...: poll COMMAND every 0.1 s; one-line error naming LOG after $timeout_s.
wait_for() {
    local what=$1 log=$2 deadline=$((SECONDS + timeout_s))
    shift 2
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${timeout_s}s waiting for $what; see $log"
        sleep 0.1
    done
}
munge_works() { munge -n < /dev/null | unmunge > /dev/null; }
record() {  # name pidfile log: wait for the daemon's pid file, then record its pid for slurm-down.sh
    wait_for "$1 to write $2" "$3" test -s "$2"
    echo "$1 $(< "$2")" >> "$pids"
}

# munged: reuse one that already answers (a developer's system munged; then down leaves it alone).
if munge_works 2> /dev/null; then
    echo "slurm-up: using the munged already running" >&2
else
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 0700 /etc/munge
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0700 "$state/munge"
    rm -f "$state/munge/munged.pid"
    runuser -u munge -- munged --log-file="$state/munge/munged.log" --pid-file="$state/munge/munged.pid" \
        --seed-file="$state/munge/munged.seed" || die "munged failed to start; see $state/munge/munged.log"
    record munged "$state/munge/munged.pid" "$state/munge/munged.log"
    wait_for "munged to answer" "$state/munge/munged.log" munge_works
fi

# Job ids go on from where the last cluster in $state stopped (slurm-down.sh records it; -i would restart them at 1,
# and a submitit folder named by %j would then mix two jobs' files).
first_job_id=1
if [[ -s $state/next_job_id ]]; then first_job_id=$(< "$state/next_job_id"); fi
[[ $first_job_id =~ ^[0-9]+$ ]] || die "$state/next_job_id holds '$first_job_id', not a job id; delete it"
# The node line comes from this machine (a RealMemory above the machine's would drain the node).
node_line=$(slurmd -C | head -n 1)
node=${node_line#NodeName=}
node=${node%% *}
cat > "$conf" << EOF
# Written by scripts/slurm-up.sh: a one-node cluster for tests; scripts/slurm/README.md says why each line is here.
ClusterName=vaereg
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0,sched_interval=1
KillWait=5
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
JobRequeue=1
FirstJobId=$first_job_id
MailProg=/bin/true
ReturnToService=2
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
rm -f "$state/slurmctld.pid" "$state/slurmd.pid"
: > "$state/slurmctld.log"
: > "$state/slurmd.log"

slurmctld -i || die "slurmctld failed to start; see $state/slurmctld.log"
record slurmctld "$state/slurmctld.pid" "$state/slurmctld.log"
slurmd || die "slurmd failed to start; see $state/slurmd.log"
record slurmd "$state/slurmd.pid" "$state/slurmd.log"

node_state() { sinfo -h -n "$node" -o %T 2>&1 | head -n 1; }
deadline=$((SECONDS + timeout_s))
until [[ $(node_state) == idle ]]; do
    ((SECONDS < deadline)) || die "node $node not idle after ${timeout_s}s (sinfo: $(node_state));" \
        "see $state/slurmctld.log and $state/slurmd.log"
    sleep 0.1
done
echo "slurm-up: node $node idle ($state)" >&2
exports
