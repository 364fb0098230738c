#!/usr/bin/env bash
# Stop the one-node Slurm cluster that scripts/slurm-up.sh started in ${SLURM_STATE:-/tmp/vaereg-slurm}: cancel its
# jobs (their slurmstepd would outlive slurmd), then stop exactly the daemons recorded in its pids file and wait
# for them to exit. The state folder and its logs stay.
set -euo pipefail

state=${SLURM_STATE:-/tmp/vaereg-slurm}
timeout_s=${SLURM_DOWN_TIMEOUT:-20}
pids=$state/pids

alive() { [[ -r /proc/$2/comm && $(< "/proc/$2/comm") == "$1" ]]; }  # name pid: running, and not a reused pid
any_alive() { while read -r name pid; do if alive "$name" "$pid"; then return 0; fi; done < "$pids"; return 1; }

if [[ ! -s $pids ]]; then
    echo "slurm-down: nothing to stop ($pids is missing or empty)" >&2
    exit 0
fi

export SLURM_CONF=$state/slurm.conf
if grep -q '^slurmctld ' "$pids" && any_alive && squeue -h -o %A > /dev/null 2>&1; then
    next=$(scontrol show config | awk '$1 == "NEXT_JOB_ID" {print $3}')
    if [[ $next =~ ^[0-9]+$ ]]; then echo "$next" > "$state/next_job_id"; fi  # slurm-up.sh goes on from here
    squeue -h -o %A | xargs -r scancel --quiet || true
    deadline=$((SECONDS + timeout_s))
    while [[ -n $(squeue -h -t running,completing,suspended -o %A 2> /dev/null) ]] && ((SECONDS < deadline)); do
        sleep 0.2
    done
fi

# Reverse order of start: slurmd, slurmctld, munged.
tac "$pids" | while read -r name pid; do
    if alive "$name" "$pid"; then kill -TERM "$pid"; fi
done
deadline=$((SECONDS + timeout_s))
while any_alive; do
    if ((SECONDS >= deadline)); then
        tac "$pids" | while read -r name pid; do
            if alive "$name" "$pid"; then
                echo "slurm-down: $name ($pid) still running after ${timeout_s}s; sending SIGKILL" >&2
                kill -KILL "$pid" || true
            fi
        done
        sleep 0.5
        break
    fi
    sleep 0.1
done
if any_alive; then
    echo "slurm-down: daemons in $pids did not exit" >&2
    exit 1
fi
: > "$pids"
echo "slurm-down: stopped ($state)" >&2
