# Scenario client_attach: usbipgw's own client side (`main.ts attach/port/detach`) against the
# real vhci_hcd. (1) attach Gadget Zero over TCP: usbtest binds it, testusb test 1 passes,
# `usbipgw port` and Debian's `usbip port` show where it came from, `usbipgw detach` frees the
# port and a second detach exits 9. (2) the same over the gateway's unix socket. (3) `attach
# --persist` in the background: kill -9 of the gateway frees the port within seconds, persist
# logs the drop and re-attaches by itself once the gateway is back. (4) a server that vanishes
# without a FIN (the loopback interface taken down: nothing is sent or answered any more):
# keep-alive / TCP_USER_TIMEOUT make the kernel drop the connection and vhci free the port;
# with loopback up again persist re-attaches (the gateway still holds its side of the dead
# connection, which is recorded; the gateway is restarted when it does). (5) SIGTERM to
# persist detaches the device and exits 0.

rig_client_modules
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"

# attach_once LABEL ARGS...: `main.ts attach ARGS`; sets PORT, records LABEL_attach_s.
attach_once() {
	_label=$1
	shift
	_t0=$(rig_uptime)
	PORT=$(gw_cli attach "$@" 2>"$W/$_label-attach.err")
	_rc=$?
	rig_field "${_label}_attach_s" "$(rig_since "$_t0")"
	echo "main.ts attach $* (exit $_rc, $(rig_since "$_t0") s): stdout '$PORT', stderr: $(cat "$W/$_label-attach.err")"
	[ "$_rc" -eq 0 ] || fail "($_label) main.ts attach $* failed (exit $_rc): $(cat "$W/$_label-attach.err")"
	case $PORT in
	'' | *[!0-9]*) fail "($_label) main.ts attach printed '$PORT', not a port number" ;;
	esac
}

# check_port LABEL URI: the port holding Gadget Zero is PORT, and both `port` commands show URI.
check_port() {
	_held=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "($1) no vhci port holds Gadget Zero"
	[ "$_held" = "$PORT" ] || fail "($1) Gadget Zero is on vhci port $_held, main.ts attach printed $PORT"
	_own=$(gw_cli port 2>&1)
	echo "main.ts port:"
	echo "$_own"
	rig_field_str "${1}_own_port" "$_own"
	echo "$_own" | grep -F "$2" | grep -q "0525:a4a0" || fail "($1) main.ts port does not show $2 with 0525:a4a0"
	_json=$(gw_cli port --json 2>&1)
	echo "$_json" | grep -q "\"port\": $PORT," || fail "($1) main.ts port --json does not list port $PORT: $_json"
	_tool=$(timeout -s KILL 30 usbip port 2>&1)
	echo "usbip port:"
	echo "$_tool"
	rig_field_str "${1}_usbip_port" "$_tool"
	echo "$_tool" | grep -qF "$2" || fail "($1) usbip port does not show $2 (our port record)"
}

# detach_once LABEL: `main.ts detach -p PORT`; the port is free and Gadget Zero gone after it.
detach_once() {
	_t0=$(rig_uptime)
	_out=$(gw_cli detach -p "$PORT" 2>&1)
	_rc=$?
	echo "main.ts detach -p $PORT (exit $_rc): $_out"
	[ "$_rc" -eq 0 ] || fail "($1) main.ts detach -p $PORT failed (exit $_rc): $_out"
	rig_wait 10 rig_vhci_port_free "$PORT" || fail "($1) vhci port $PORT still in use 10 s after main.ts detach"
	rig_field "${1}_detach_s" "$(rig_since "$_t0")"
	rig_wait 10 eval '! rig_vhci_device 0525:a4a0 >/dev/null' || fail "($1) Gadget Zero still present after detach"
	[ -e "/var/run/vhci_hcd/port$PORT" ] && fail "($1) the port record /var/run/vhci_hcd/port$PORT is still there"
	return 0
}

# --- (1) TCP ---
log "(1) main.ts attach -r 127.0.0.1 -b $GZ_BUSID"
attach_once tcp -r 127.0.0.1 -b "$GZ_BUSID"
rig_wait_gadget_zero
rig_field tcp_enumerate_s "$GZ_ENUM_S"
rig_field_str vhci_status "$(grep -v ' 004 ' "$VHCI/status")"
check_port tcp "usbip://127.0.0.1:3240/$GZ_BUSID"
bad=$(rig_testusb_suite tcp "$GZ_DEV" 1)
rig_field tests_tcp "$(rig_tests_json tcp)"
[ -z "$bad" ] || fail "(1) testusb test 1 through main.ts attach (TCP) did not pass"
OLD_DEV=$GZ_DEV
detach_once tcp
out=$(gw_cli detach -p "$PORT" 2>&1)
rc=$?
echo "main.ts detach -p $PORT again (exit $rc): $out"
rig_field tcp_detach_free_exit "$rc"
[ "$rc" -eq 9 ] || fail "(1) detaching a free port exited $rc, expected 9: $out"

# --- (2) unix socket ---
log "(2) main.ts attach --unix $GW_SOCK -b $GZ_BUSID"
attach_once unix --unix "$GW_SOCK" -b "$GZ_BUSID"
rig_wait_gadget_zero 20 "$OLD_DEV"
check_port unix "usbip://unix:$GW_SOCK:-/$GZ_BUSID"
bad=$(rig_testusb_suite unix "$GZ_DEV" 1)
rig_field tests_unix "$(rig_tests_json unix)"
[ -z "$bad" ] || fail "(2) testusb test 1 through main.ts attach --unix did not pass"
OLD_DEV=$GZ_DEV
detach_once unix

# --- (3) --persist through kill -9 of the gateway ---
PLOG=$R/persist.log
log "(3) main.ts attach --persist in the background"
# shellcheck disable=SC2086
DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 \
	"$DENO" run -A $DENO_FLAGS "$ROOT/main.ts" attach -r 127.0.0.1 -b "$GZ_BUSID" --persist \
	>"$W/persist.out" 2>"$PLOG" </dev/null &
P_PID=$!
# persist_lines: ports printed so far (one per attach).
persist_lines() {
	wc -l <"$W/persist.out"
}
rig_wait 60 eval '[ "$(persist_lines)" -ge 1 ]' || fail "(3) persist printed no port within 60 s: $(cat "$PLOG")"
rig_wait_gadget_zero 20 "$OLD_DEV"
PORT=$(tail -n 1 "$W/persist.out")
held=$(rig_vhci_port "$(basename "$GZ_DIR")")
[ "$held" = "$PORT" ] || fail "(3) Gadget Zero is on vhci port $held, persist printed $PORT"
OLD_DEV=$GZ_DEV
log "(3) kill -9 of gateway pid $GW_PID with Gadget Zero attached by persist on port $PORT"
kill -9 "$GW_PID"
T_KILL=$(rig_uptime)
wait "$GW_PID" 2>/dev/null
echo "=== rig: gateway pid $GW_PID killed with SIGKILL" >>"$GW_LOG"
GW_PID=
rig_wait 10 rig_vhci_port_free "$PORT" || fail "(3) vhci port $PORT not freed within 10 s of kill -9"
rig_field persist_port_freed_s "$(rig_since "$T_KILL")"
rig_wait 10 grep -q 'lost' "$PLOG" || fail "(3) persist logged no lost connection within 10 s: $(cat "$PLOG")"
rig_field persist_lost_logged_s "$(rig_since "$T_KILL")"
rig_field_str persist_lost_log "$(grep 'lost' "$PLOG" | head -n 1)"
rig_alive "$P_PID" || fail "(3) persist exited after the drop: $(cat "$PLOG")"
# Down for a while, so that persist retries against a closed port (ECONNREFUSED).
sleep 3
rig_start_gateway
T_BACK=$(rig_uptime)
rig_field persist_gateway_down_s "$(rig_since "$T_KILL")"
rig_wait 60 eval '[ "$(persist_lines)" -ge 2 ]' ||
	fail "(3) persist did not re-attach within 60 s of the gateway's restart: $(tail -n 5 "$PLOG")"
rig_wait_gadget_zero 30 "$OLD_DEV"
rig_field persist_reattach_s "$(rig_since "$T_BACK")"
rig_field persist_reattach_from_kill_s "$(rig_since "$T_KILL")"
PORT=$(tail -n 1 "$W/persist.out")
held=$(rig_vhci_port "$(basename "$GZ_DIR")")
[ "$held" = "$PORT" ] || fail "(3) Gadget Zero is back on vhci port $held, persist printed $PORT"
bad=$(rig_testusb_suite persist "$GZ_DEV" 1)
rig_field tests_persist "$(rig_tests_json persist)"
[ -z "$bad" ] || fail "(3) testusb test 1 after persist re-attached did not pass"
OLD_DEV=$GZ_DEV

# --- (4) the server vanishes without a FIN: loopback down ---
log "(4) ip link set lo down with Gadget Zero attached by persist on port $PORT (idle)"
before_lost=$(grep -c 'lost' "$PLOG")
ip link set lo down || fail "(4) cannot take the loopback interface down"
T_DOWN=$(rig_uptime)
if ! rig_wait 60 rig_vhci_port_free "$PORT"; then
	ip link set lo up
	fail "(4) vhci port $PORT not freed within 60 s of the server going silent (keep-alive)"
fi
rig_field keepalive_port_freed_s "$(rig_since "$T_DOWN")"
rig_wait 10 eval '[ "$(grep -c lost "$PLOG")" -gt "$before_lost" ]' ||
	fail "(4) persist logged no lost connection after the keep-alive drop: $(tail -n 5 "$PLOG")"
rig_field_str keepalive_lost_log "$(grep 'lost' "$PLOG" | tail -n 1)"
# A few refused retries while the network is gone, then it is back.
sleep 3
ip link set lo up || fail "(4) cannot bring the loopback interface up again"
T_UP=$(rig_uptime)
log "(4) loopback up again"
# The gateway's side of the dead connection is given up by its own keep-alive (10 s idle, 3
# probes 5 s apart): its session ends and the device is free for persist's next attempt.
rig_wait 60 eval '[ "$(persist_lines)" -ge 3 ]' ||
	fail "(4) persist did not re-attach within 60 s of loopback up (does the gateway still hold the device?): $(tail -n 5 "$PLOG")"
rig_wait_gadget_zero 30 "$OLD_DEV"
rig_field keepalive_reattach_s "$(rig_since "$T_UP")"
PORT=$(tail -n 1 "$W/persist.out")

# --- (5) SIGTERM stops persist: it detaches and exits 0 ---
log "(5) SIGTERM to persist pid $P_PID (port $PORT)"
kill -TERM "$P_PID"
T_TERM=$(rig_uptime)
rig_wait 30 eval '! rig_alive "$P_PID"' || fail "(5) persist still running 30 s after SIGTERM"
wait "$P_PID"
rc=$?
rig_field persist_exit "$rc"
rig_field persist_stop_s "$(rig_since "$T_TERM")"
[ "$rc" -eq 0 ] || fail "(5) persist exited $rc after SIGTERM: $(tail -n 5 "$PLOG")"
rig_wait 10 rig_vhci_port_free "$PORT" || fail "(5) vhci port $PORT still in use after persist stopped"
rig_field persist_attaches "$(persist_lines)"
rig_field_str persist_log_tail "$(tail -n 12 "$PLOG")"
rig_stop_gateway TERM
log "client_attach ok"
