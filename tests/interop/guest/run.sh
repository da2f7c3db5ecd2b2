#!/bin/sh
# Runs one scenario under a time limit and writes result.json, dmesg.txt and exit_code into
# the results share (the host waits for QEMU to end, then reads them).

R=/mnt/results
W=/tmp/rig
mkdir -p "$W"
: >"$W/fields"
read -r READY_UPTIME _ </proc/uptime
export READY_UPTIME

. /rig/lib.sh

script=/rig/scenarios/$RIG_SCENARIO.sh
rc=0
if [ ! -f "$script" ]; then
	echo "unknown scenario $RIG_SCENARIO" >"$W/reason"
	rc=2
else
	echo "rig: scenario $RIG_SCENARIO starts at uptime $READY_UPTIME s (limit $RIG_TIMEOUT s)" >/dev/console
	timeout -s KILL "$RIG_TIMEOUT" /bin/sh -c ". /rig/lib.sh; . $script" >>"$R/scenario.log" 2>&1 </dev/null
	rc=$?
fi
END_UPTIME=$(rig_uptime)

if [ "$rc" -ne 0 ] && [ ! -s "$W/reason" ]; then
	case $rc in
	137) echo "timed out in the guest after $RIG_TIMEOUT s" >"$W/reason" ;;
	*) echo "scenario script exited with code $rc" >"$W/reason" ;;
	esac
fi

# On failure, the stacks of blocked tasks go to dmesg (sysrq w) for the report.
[ "$rc" -eq 0 ] || echo w >/proc/sysrq-trigger
dmesg >"$R/dmesg.txt" 2>&1
problems=$(rig_kernel_problems)
if [ -n "$problems" ] && [ "$rc" -eq 0 ]; then
	echo "kernel reported a problem: $(echo "$problems" | head -n 1)" >"$W/reason"
	rc=1
fi

ok=false
[ "$rc" -eq 0 ] && ok=true
{
	printf '{\n  "scenario": %s,\n  "ok": %s,\n  "exit_code": %s,\n' \
		"$(rig_jstr "$RIG_SCENARIO")" "$ok" "$rc"
	printf '  "reason": %s,\n' "$(rig_jstr "$(cat "$W/reason" 2>/dev/null)")"
	printf '  "boot_uptime_s": %s,\n  "ready_uptime_s": %s,\n' "$BOOT_UPTIME" "$READY_UPTIME"
	printf '  "scenario_seconds": %s,\n' "$(rig_sub "$END_UPTIME" "$READY_UPTIME")"
	printf '  "kernel_problems": %s' "$(echo "$problems" | rig_jarray)"
	while IFS= read -r line; do
		printf ',\n  %s' "$line"
	done <"$W/fields"
	printf '\n}\n'
} >"$R/result.json"
echo "rig: scenario $RIG_SCENARIO ended: exit $rc $(cat "$W/reason" 2>/dev/null)" >/dev/console
echo "$rc" >"$R/exit_code"
sync
