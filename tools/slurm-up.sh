#!/usr/bin/env bash
# Brings up a throwaway single-node SLURM on this machine, from Debian's slurm-wlm and munge,
# for the tests and for trying the job scripts. Everything lives in DIR; nothing in /etc.
#
#   tools/slurm-up.sh DIR      then: export SLURM_CONF=DIR/slurm.conf; sbatch ...; squeue
#   tools/slurm-down.sh DIR    stops exactly the daemons this started (recorded PIDs)
#
# munged runs with its own key and socket; slurmctld and slurmd run as root with the machine's CPU
# count and memory, proctrack/linuxproc, task/none, MpiDefault=pmix; credentials expire after 30 s
# so that a requeued job starts again quickly.
set -euo pipefail
if [[ $# -ne 1 ]]; then echo "usage: tools/slurm-up.sh DIR" >&2; exit 2; fi
for tool in munged mungekey slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "slurm-up: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
dir=$(realpath -m "$1")
"$(dirname "${BASH_SOURCE[0]}")/slurm-down.sh" "$dir" 2>/dev/null || true
rm -rf "$dir"
mkdir -p "$dir"/{state,spool,log,run} "$dir/key"
chmod 700 "$dir/key"
chmod 755 "$dir/run"

mungekey --create --keyfile "$dir/key/munge.key" >/dev/null
munged --force --key-file="$dir/key/munge.key" --socket="$dir/run/munge.socket" \
  --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/key/munged.seed" \
  </dev/null >/dev/null 2>&1

# Free ports for slurmctld and slurmd.
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
ctld_port=$(port)
d_port=$(port)
while [[ $d_port == "$ctld_port" ]]; do d_port=$(port); done

host=$(hostname -s)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
cat >"$dir/slurm.conf" <<CONF
ClusterName=mdntest
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket,cred_expire=30
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=10
MinJobAge=3600
NodeName=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

# Daemons in the foreground of their own sessions, all descriptors closed: a caller's pipe ends.
setsid slurmctld -D -f "$SLURM_CONF" </dev/null >"$dir/log/slurmctld.out" 2>&1 &
echo $! >"$dir/run/slurmctld.daemon.pid"
setsid slurmd -D -f "$SLURM_CONF" </dev/null >"$dir/log/slurmd.out" 2>&1 &
echo $! >"$dir/run/slurmd.daemon.pid"

for _ in $(seq 1 150); do
  if [[ "$(sinfo -h -o %T 2>/dev/null)" == idle ]]; then
    echo "slurm-up: single-node SLURM ready in $dir ($host, $(nproc) CPUs); export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "slurm-up: the node did not become idle; logs in $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
