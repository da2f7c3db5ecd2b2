# Scenario hangup: (a) kill -9 the gateway while testusb runs: the vhci port is freed within
# 5 s and nothing blocks; (b) detach during a transfer, twice: the port number written to vhci's
# sysfs detach while testusb runs, then `usbip detach` itself while the keyboard's interrupt IN
# URB is pending; each time the gateway logs the session's end and the device can be attached
# again at once; (c) SIGTERM with devices attached, restart the gateway: attach works again.
# No task may block (hung_task_timeout_secs=10) nor oops.

rig_client_modules
for m in usbhid hid-generic evdev usbmon; do rig_modprobe "$m"; done
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

# --- (b) detach during a transfer, through sysfs (Gadget Zero, testusb running) ---
# `usbip detach` itself would wait here: it reads sysfs attributes of the attached devices
# (bConfigurationValue, ...) that take the device lock, which usbtest's ioctl holds for the
# whole run. So the port is detached the way the tool does it in the end: its number written
# to vhci's sysfs detach. The tool itself runs in the second half of (b), below.
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

# --- (b) detach during a transfer with `usbip detach` (keyboard, interrupt IN pending) ---
# usbhid keeps one interrupt IN URB submitted while the keyboard is open, and the kernel's
# sysrq and VT keyboard handlers open every keyboard as it registers; with idle rate 0 the
# gateway holds that URB until a key is due. So a transfer is in flight at the gateway all the
# time, and, unlike usbtest's ioctl, it holds no USB device lock: the tool does not wait.
# Gadget Zero stays attached (idle) on its own port meanwhile.
mount -t debugfs none /sys/kernel/debug 2>/dev/null
[ -r /sys/kernel/debug/usb/usbmon/0u ] || fail "(b) no usbmon text interface"
cat /sys/kernel/debug/usb/usbmon/0u >"$W/usbmon" &
USBMON_PID=$!

# kbd_find OLD_DEVNODE: our keyboard (1209:0001) under vhci as an input device with an evdev
# node, on a USB device other than OLD_DEVNODE (which may still be going away); sets KBD_USB
# (sysfs dir of the USB device), KBD_DEV (its devnode), KBD_INPUT and KBD_ADDR (usbmon address
# of its interrupt IN endpoint). Any read that fails (a device vanishing under the look-up)
# means "not this one".
kbd_find() {
	for _i in /sys/class/input/input*; do
		_p=$(readlink -f "$_i" 2>/dev/null) || continue
		case $_p in *vhci_hcd*) ;; *) continue ;; esac
		# .../usb1/1-2/1-2:1.0/0003:1209:0001.0001/input/input3 -> .../usb1/1-2
		_u=$(echo "$_p" | sed 's#/[^/]*:[0-9]*\.[0-9]*/.*##')
		_id=$(cat "$_u/idVendor" 2>/dev/null):$(cat "$_u/idProduct" 2>/dev/null)
		[ "$_id" = 1209:0001 ] || continue
		_kn=$(rig_devnode "$_u") || continue
		[ "$_kn" != "$1" ] || continue
		ls -d "$_i"/event* >/dev/null 2>&1 || continue
		KBD_USB=$_u KBD_DEV=$_kn KBD_INPUT=$_i
		KBD_ADDR=$(echo "$_kn" | awk -F/ '{ printf "Ii:%d:%03d:1", $5, $6 }')
		return 0
	done
	return 1
}

# kbd_urbs ADDR: "submitted completed" counts of usbmon's events for ADDR so far.
kbd_urbs() {
	awk -v a="$1" '$4 == a { if ($3 == "S") s++; else if ($3 == "C") c++ }
		END { print s + 0, c + 0 }' "$W/usbmon"
}

kbd_pending() {
	_now=$(kbd_urbs "$1")
	[ "${_now% *}" -gt "${_now#* }" ]
}

# kbd_idle_pending ADDR: an interrupt IN URB is outstanding and nothing moved for 5 polls
# (about 1 s): the startup text is typed and the URB waits at the gateway.
kbd_idle_pending() {
	if kbd_pending "$1" && [ "$_now" = "$_kbd_prev" ]; then
		_kbd_still=$((_kbd_still + 1))
	else
		_kbd_still=0
	fi
	_kbd_prev=$_now
	[ "$_kbd_still" -ge 5 ]
}

t0=$(rig_uptime)
rig_attach 1-2
rig_wait 20 kbd_find none || fail "(b) the keyboard did not appear as an input device under vhci_hcd within 20 s"
rig_field b_usbip_input_s "$(rig_since "$t0")"
log "(b) keyboard $(basename "$KBD_INPUT") on $(basename "$KBD_USB") ($KBD_DEV, $KBD_ADDR)"
_kbd_still=0 _kbd_prev=
rig_wait 15 kbd_idle_pending "$KBD_ADDR" ||
	fail "(b) no idle interrupt IN URB of the keyboard within 15 s (usbmon S/C: $(kbd_urbs "$KBD_ADDR"))"
rig_field b_usbip_urbs_before "$(rig_jstr "$(kbd_urbs "$KBD_ADDR")")"
kport=$(rig_vhci_port "$(basename "$KBD_USB")") || fail "(b) no vhci port holds the keyboard"
gzport=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "(b) no vhci port holds Gadget Zero"
before_kbd=$(wc -l <"$GW_LOG")
log "(b) usbip detach -p $kport with the keyboard's interrupt IN URB pending"
T_UDETACH=$(rig_uptime)
out=$(timeout -s KILL 20 usbip detach -p "$kport" 2>&1)
rc=$?
rig_field b_usbip_detach_s "$(rig_since "$T_UDETACH")"
echo "usbip detach -p $kport (exit $rc): $out"
[ "$rc" -eq 0 ] || fail "(b) usbip detach -p $kport failed or hung (exit $rc, 137 = killed after 20 s): $out"
rig_wait 5 rig_vhci_port_free "$kport" ||
	fail "(b) vhci port $kport not freed within 5 s of usbip detach: $(grep -v ' 004 ' "$VHCI/status")"
rig_field b_usbip_port_freed_s "$(rig_since "$T_UDETACH")"
rig_alive "$GW_PID" || fail "(b) the gateway died after usbip detach"
kbd_ended() {
	tail -n "+$((before_kbd + 1))" "$GW_LOG" |
		grep -E 'device 1-2\) ended: the peer closed the connection; .* [0-9]+ aborted' >"$W/kbd-ended"
}
rig_wait 10 kbd_ended ||
	fail "(b) the gateway logged no end of the keyboard's session within 10 s of usbip detach; its new log lines: $(tail -n "+$((before_kbd + 1))" "$GW_LOG" | tail -n 10)"
rig_field b_usbip_session_end_s "$(rig_since "$T_UDETACH")"
rig_field_str b_usbip_session_end_log "$(head -n 1 "$W/kbd-ended")"
aborted=$(head -n 1 "$W/kbd-ended" | sed -n 's/.* \([0-9][0-9]*\) aborted.*/\1/p')
rig_field b_usbip_aborted "${aborted:-null}"
[ "${aborted:-0}" -ge 1 ] ||
	fail "(b) the keyboard's session ended with ${aborted:-no} aborted URBs; its pending interrupt IN URB should have been aborted: $(head -n 1 "$W/kbd-ended")"
rig_vhci_port "$(basename "$GZ_DIR")" >/dev/null ||
	fail "(b) Gadget Zero lost its vhci port $gzport when the keyboard was detached"
# At once: no wait for the old device to go away.
OLD_KBD=$KBD_DEV
t0=$(rig_uptime)
rig_attach 1-2
rig_field b_usbip_reattach_s "$(rig_since "$t0")"
rig_wait 20 kbd_find "$OLD_KBD" ||
	fail "(b) the keyboard did not enumerate again as an input device within 20 s of re-attaching"
rig_field b_usbip_reattach_to_input_s "$(rig_since "$t0")"
rig_wait 10 kbd_pending "$KBD_ADDR" ||
	fail "(b) usbhid does not poll the re-attached keyboard (usbmon S/C for $KBD_ADDR: $(kbd_urbs "$KBD_ADDR"))"
rig_field b_usbip_reattach_polled_s "$(rig_since "$t0")"
log "(b) keyboard back as $(basename "$KBD_INPUT") on $(basename "$KBD_USB") ($KBD_DEV), polled"
kill "$USBMON_PID" 2>/dev/null
wait "$USBMON_PID" 2>/dev/null

# --- (c) stop the gateway with devices attached (Gadget Zero, keyboard), start it again ---
rig_field c_ports_in_use "$(rig_vhci_used)"
rig_stop_gateway TERM
t0=$(rig_uptime)
rig_wait 5 rig_vhci_free || fail "(c) vhci ports not freed within 5 s of the gateway's SIGTERM exit"
rig_field c_port_freed_s "$(rig_since "$t0")"
rig_start_gateway
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero 20 "$GZ_DEV"
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
