# Scenario hangup: (a) kill -9 the gateway while testusb runs: the vhci port is freed within
# 5 s and nothing blocks; (b) `usbip detach` during a transfer: the gateway logs the session's
# end and the device can be attached again at once; (c) SIGTERM with a device attached, restart
# the gateway: attach works again. No task may block (hung_task_timeout_secs=10) nor oops.

rig_client_modules
# A long bulk OUT run: test 1, one million 512-byte writes (ends by the hangup, not by itself).
LONG_ARGS="-t 1 -c 1000000 -s 512"

# start_long_testusb: testusb in the background (TU_PID), transfers flowing for 2 s.
start_long_testusb() {
	# shellcheck disable=SC2086
	testusb -D "$GZ_DEV" $LONG_ARGS >"$W/long-$1.out" 2>&1 &
	TU_PID=$!
	sleep 2
	rig_alive "$TU_PID" || fail "($1) the long testusb run ended early: $(cat "$W/long-$1.out")"
}

# wait_long_testusb LABEL: testusb must end within 20 s of the hangup. The URB in flight when
# the connection goes is not given back by vhci: usbtest's own 10 s timeout ends the ioctl.
wait_long_testusb() {
	rig_wait 20 eval '! rig_alive "$TU_PID"' ||
		fail "($1) testusb still running 20 s after the hangup (state $(sed -n 's/^.*) \(.\) .*/\1/p' /proc/$TU_PID/stat))"
	wait "$TU_PID"
	echo "($1) long testusb ended with $?: $(cat "$W/long-$1.out")"
	rig_field_str "testusb_$1" "$(cat "$W/long-$1.out")"
}

# --- (a) kill -9 during a transfer ---
rig_start_gateway
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero
start_long_testusb a
log "(a) kill -9 gateway pid $GW_PID during testusb"
kill -9 "$GW_PID"
T_KILL=$(rig_uptime)
rig_wait 5 rig_vhci_free || fail "(a) vhci port not freed within 5 s of kill -9: $(grep -v ' 004 ' "$VHCI/status")"
rig_field a_port_freed_s "$(rig_since "$T_KILL")"
wait_long_testusb a
rig_wait 5 eval '! rig_vhci_device 0525:a4a0 >/dev/null' || fail "(a) Gadget Zero still present after kill -9"
wait "$GW_PID" 2>/dev/null
echo "=== rig: gateway pid $GW_PID killed with SIGKILL" >>"$GW_LOG"
GW_PID=

# --- (b) detach during a transfer ---
# `usbip detach` itself would wait here: it reads sysfs attributes of the attached device
# that take the device lock, which usbtest's ioctl holds for the whole run. So the port is
# detached the way the tool does it in the end: its number written to vhci's sysfs detach.
rig_start_gateway
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero
before=$(wc -l <"$GW_LOG")
start_long_testusb b
OLD_DEV=$GZ_DEV
port=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "(b) no vhci port holds Gadget Zero"
log "(b) detach port $port during testusb"
echo "$port" >"$VHCI/detach" || fail "(b) writing $port to $VHCI/detach failed"
T_DETACH=$(rig_uptime)
rig_wait 5 rig_vhci_free || fail "(b) vhci port $port not freed within 5 s of detach"
rig_field b_port_freed_s "$(rig_since "$T_DETACH")"
rig_alive "$GW_PID" || fail "(b) the gateway died after a client detached"
new_lines() {
	tail -n "+$((before + 1))" "$GW_LOG"
}
ended() {
	new_lines | grep -iE '(session|connection|client|import|conn).*(end|clos|disconnect|hang|eof|gone|reset|abort)|(end|clos|disconnect|hang).*(session|connection)' >"$W/ended"
}
rig_wait 10 ended || fail "(b) the gateway logged no session end within 10 s of detach; its new log lines: $(new_lines | tail -n 10)"
rig_field b_session_end_s "$(rig_since "$T_DETACH")"
rig_field_str b_session_end_log "$(head -n 3 "$W/ended")"
# At once: the import must succeed now. The guest's old device lingers until usbtest's
# timeout ends the ioctl, so the new one can take up to about 10 s more to show up.
t0=$(rig_uptime)
rig_attach "$GZ_BUSID"
rig_field b_reattach_s "$(rig_since "$t0")"
rig_wait_gadget_zero 30 "$OLD_DEV"
rig_field b_reattach_to_usbtest_s "$(rig_since "$t0")"
wait_long_testusb b
bad=$(rig_testusb_suite b "$GZ_DEV" 1)
[ -z "$bad" ] || fail "(b) testusb test 1 failed after re-attaching"

# --- (c) stop the gateway with a device attached, start it again ---
rig_stop_gateway TERM
t0=$(rig_uptime)
rig_wait 5 rig_vhci_free || fail "(c) vhci port not freed within 5 s of the gateway's SIGTERM exit"
rig_field c_port_freed_s "$(rig_since "$t0")"
rig_start_gateway
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero
bad=$(rig_testusb_suite c "$GZ_DEV" 1)
[ -z "$bad" ] || fail "(c) testusb test 1 failed after restarting the gateway"
rig_field tests "{\"b\": $(rig_tests_json b), \"c\": $(rig_tests_json c)}"
port=$(rig_vhci_first_used) || fail "(c) no vhci port in use"
usbip detach -p "$port" >/dev/null 2>&1 || fail "(c) usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "(c) vhci port $port still in use 10 s after detach"
rig_stop_gateway TERM

# The hung task detector reports after 10 s (+ up to 10 s of its own period).
while awk -v u="$(rig_uptime)" -v t="$T_KILL" 'BEGIN { exit !(u < t + 21) }'; do usleep 500000; done
problems=$(dmesg | grep -E 'blocked for more than|Oops|BUG:' | head -n 3)
[ -z "$problems" ] || fail "kernel: $problems"
log "hangup ok"
