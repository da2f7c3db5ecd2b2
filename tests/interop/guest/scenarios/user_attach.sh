# Scenario user_attach: users who are not root attach through the gateway (issue 15). seat0's
# file names uid 1000 as the console user. uid 1000 runs `main.ts attach -b 1-1` without root:
# usbtest binds Gadget Zero and testusb passes through that port. uid 1001 is refused (exit 6,
# the policy's exit code) with an audit line. uid 1000 cannot detach the port root attached,
# detaches its own, and runs a device program of its own (user_keyboard.ts, against mod.ts: a
# stream attach, "[attach] streams" on): usbhid binds the keyboard and a line it types arrives
# on its evdev node. uid 1000 attaches Gadget Zero again, and a seat switch to uid 1001 frees
# both of its ports within 1 s, while root's stays.

CONSOLE=1000
OTHER=1001
SEATS=/run/systemd/seats

# seat UID: writes seat0 as logind does (a temporary file renamed over it).
seat() {
	mkdir -p "$SEATS"
	printf 'ACTIVE=c%s\nACTIVE_UID=%s\n' "$1" "$1" >"$SEATS/.#seat0" && mv "$SEATS/.#seat0" "$SEATS/seat0"
}

# as_deno UID SCRIPT ARGS...: a Deno program as that user, without any privilege (at most
# $TIMEOUT seconds, default 600).
as_deno() {
	_uid=$1
	shift
	# shellcheck disable=SC2086 # DENO_FLAGS is a word list
	timeout -s KILL "${TIMEOUT:-600}" /usr/bin/setpriv --reuid="$_uid" --regid="$_uid" --clear-groups \
		env HOME=/tmp DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 \
		"$DENO" run -A $DENO_FLAGS "$@"
}

# as_user UID ARGS...: main.ts ARGS as that user.
as_user() {
	_uid=$1
	shift
	TIMEOUT=90 as_deno "$_uid" "$ROOT/main.ts" "$@"
}

# free_within SECONDS PORT: waits for the port to be free, polling every 20 ms; prints the time.
free_within() {
	_t0=$(rig_uptime)
	_limit=$(awk -v u="$_t0" -v t="$1" 'BEGIN { print u + t }')
	while ! rig_vhci_port_free "$2"; do
		awk -v u="$(rig_uptime)" -v l="$_limit" 'BEGIN { exit !(u > l) }' && return 1
		usleep 20000
	done
	rig_since "$_t0"
}

# user_input: the evdev node of the keyboard on vhci port $STREAM_PORT (root's is on another).
user_input() {
	_b=$(awk -v p="$STREAM_PORT" 'NR > 1 { n = $2; sub(/^0+/, "", n) } NR > 1 && n + 0 == p { print $7 }' "$VHCI/status")
	for _e in /sys/class/input/event*; do
		case "$(readlink -f "$_e/device")" in
		*/vhci_hcd.0/usb*/"$_b"/*)
			echo "/dev/input/$(basename "$_e")"
			return 0
			;;
		esac
	done
	return 1
}

rig_client_modules
for m in usbhid hid-generic evdev; do rig_modprobe "$m"; done
seat "$CONSOLE"
# A user's own program may attach a stream; the console user without asking polkit.
printf '[attach]\nstreams = "console"\n' >"$W/gw.toml"
# The socket is open to every local user (as the socket unit's is); the gateway decides.
GW_ARGS="serve --config $W/gw.toml --tcp 127.0.0.1:3240 --unix $GW_SOCK --unix-mode 0666 \
--device gadget-zero:busid=1-1 --device keyboard:busid=1-2 \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2 --log-level debug"
rig_start_gateway
chmod 0755 /run

# (1) the console user attaches Gadget Zero, and testusb passes through that port.
t0=$(rig_uptime)
out=$(as_user "$CONSOLE" attach -b "$GZ_BUSID" 2>"$W/user-attach.err") ||
	fail "uid $CONSOLE: main.ts attach -b $GZ_BUSID failed: $out $(cat "$W/user-attach.err")"
USER_PORT=$out
log "uid $CONSOLE attached $GZ_BUSID on vhci port $USER_PORT"
rig_wait_gadget_zero
rig_field user_attach_to_usbtest_s "$(rig_since "$t0")"
TESTUSB_ARGS="-c 100 -s 512 -g 32 -v 421"
bad=$(rig_testusb_suite user "$GZ_DEV" 1 2 9 10 13)
rig_field tests "$(rig_tests_json user)"
[ -z "$bad" ] || fail "testusb through the port uid $CONSOLE attached did not pass: $bad"
grep -q "allowed as console" "$GW_LOG" || fail "no audit line for uid $CONSOLE's attach"

# (2) another user is refused with the policy's exit code, and the refusal is audited.
as_user "$OTHER" attach -b 1-2 >"$W/other.out" 2>&1
rc=$?
rig_field other_exit "$rc"
[ "$rc" -eq 6 ] || fail "uid $OTHER: attach exited $rc, expected 6: $(cat "$W/other.out")"
grep -q "refused: uid $OTHER is not the console user" "$GW_LOG" ||
	fail "no audit line for uid $OTHER's refusal"

# (3) root's port is not uid 1000's to detach; its own is.
ROOT_PORT=$(gw_cli attach --unix "$GW_SOCK" -b 1-2 2>&1) || fail "root: main.ts attach -b 1-2 failed: $ROOT_PORT"
as_user "$CONSOLE" detach -p "$ROOT_PORT" >"$W/detach-root.out" 2>&1
rc=$?
[ "$rc" -eq 6 ] || fail "uid $CONSOLE: detach of root's port $ROOT_PORT exited $rc: $(cat "$W/detach-root.out")"
rig_vhci_port_free "$ROOT_PORT" && fail "uid $CONSOLE detached root's port $ROOT_PORT"
out=$(as_user "$CONSOLE" detach -p "$USER_PORT" 2>&1) || fail "uid $CONSOLE: detach -p $USER_PORT failed: $out"
rig_wait 10 rig_vhci_port_free "$USER_PORT" || fail "port $USER_PORT still in use 10 s after its detach"

# (4) uid 1000's own device program: a keyboard that types what it reads.
mkfifo "$W/kbd.in"
chmod 0666 "$W/kbd.in"
t0=$(rig_uptime)
as_deno "$CONSOLE" "$ROOT/tests/interop/guest/user_keyboard.ts" "$GW_SOCK" \
	<"$W/kbd.in" >"$W/kbd.out" 2>"$W/kbd.err" &
KBD_PID=$!
exec 3>"$W/kbd.in"
rig_wait 60 test -s "$W/kbd.out" || fail "uid $CONSOLE's keyboard program did not attach: $(cat "$W/kbd.err")"
STREAM_PORT=$(head -n 1 "$W/kbd.out")
rig_wait 20 user_input >/dev/null || fail "no evdev node for uid $CONSOLE's keyboard on vhci port $STREAM_PORT"
EV=$(user_input)
rig_wait 5 test -c "$EV" || fail "$EV did not appear in /dev"
rig_field stream_attach_to_input_s "$(rig_since "$t0")"
rig-evdev-read "$EV" 60 >"$W/typed" 2>/dev/null &
READER=$!
usleep 500000
LINE="typed by uid $CONSOLE"
echo "$LINE" >&3
rig_wait 30 eval '[ "$(tr -d "\n" <"$W/typed")" = "$LINE" ]' ||
	fail "expected '$LINE' on $EV; got '$(tr -d "\n" <"$W/typed")' ($(cat "$W/kbd.err"))"
kill "$READER" 2>/dev/null
rig_field_str typed_by_user "$(cat "$W/typed")"
log "uid $CONSOLE's own keyboard on vhci port $STREAM_PORT typed '$LINE'"

# (5) a seat switch takes uid 1000's ports back within 1 s; root's stays.
USER_PORT=$(as_user "$CONSOLE" attach -b "$GZ_BUSID" 2>&1) || fail "uid $CONSOLE: second attach failed: $USER_PORT"
rig_wait_gadget_zero
seat "$OTHER"
s=$(free_within 1 "$USER_PORT") || fail "uid $CONSOLE's port $USER_PORT still in use 1 s after the seat switch"
rig_field seat_switch_free_s "$s"
log "seat switch to uid $OTHER freed port $USER_PORT in $s s"
rig_wait 2 grep -q "Took back vhci port $USER_PORT of uid $CONSOLE" "$GW_LOG" ||
	fail "no audit line for the take-back"
rig_vhci_port_free "$STREAM_PORT" || fail "uid $CONSOLE's keyboard port $STREAM_PORT is still in use"
rig_vhci_port_free "$ROOT_PORT" && fail "root's port $ROOT_PORT was freed at the seat switch"
exec 3>&-
wait "$KBD_PID"

# (6) attach --persist through the gateway: a port freed under it is attached again, and
# SIGTERM detaches it.
seat "$CONSOLE"
# shellcheck disable=SC2086 # DENO_FLAGS is a word list
/usr/bin/setpriv --reuid="$CONSOLE" --regid="$CONSOLE" --clear-groups \
	env HOME=/tmp DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 \
	"$DENO" run -A $DENO_FLAGS "$ROOT/main.ts" attach -b "$GZ_BUSID" --persist \
	>"$W/persist.out" 2>"$W/persist.err" &
PERSIST_PID=$!
rig_wait 60 test -s "$W/persist.out" || fail "attach --persist as uid $CONSOLE did not attach: $(cat "$W/persist.err")"
P1=$(sed -n 1p "$W/persist.out")
rig_wait_gadget_zero
usbip detach -p "$P1" >/dev/null 2>&1 || fail "root: usbip detach -p $P1 failed"
rig_wait 60 eval '[ "$(grep -c . "$W/persist.out")" -ge 2 ]' ||
	fail "attach --persist did not attach again after port $P1 was freed: $(cat "$W/persist.err")"
P2=$(sed -n 2p "$W/persist.out")
rig_field persist_ports "[$P1, $P2]"
rig_wait_gadget_zero 30 "$GZ_DEV"
kill -TERM "$PERSIST_PID"
wait "$PERSIST_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "attach --persist exited $rc on SIGTERM: $(cat "$W/persist.err")"
rig_wait 10 rig_vhci_port_free "$P2" || fail "port $P2 still in use after --persist stopped"
log "attach --persist as uid $CONSOLE: port $P1, freed, then port $P2; SIGTERM detached it"

gw_cli detach -p "$ROOT_PORT" >/dev/null 2>&1 || fail "root: detach -p $ROOT_PORT failed"
rig_wait 10 rig_vhci_free || fail "vhci ports still in use at the end"
rig_stop_gateway TERM
log "user_attach ok"
