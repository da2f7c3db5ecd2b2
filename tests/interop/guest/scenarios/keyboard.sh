# Scenario keyboard: attach our keyboard (busid 1-2), read what it types from the guest's
# evdev node (rig-evdev-read, US layout): first the spec's text=hello once usbhid polls it,
# then a line written to its socket=/run/kbd.sock.

rig_modprobe vhci-hcd
for m in usbhid hid-generic evdev; do rig_modprobe "$m"; done
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"
rig_attach 1-2

kbd_event() {
	for _e in /sys/class/input/event*; do
		case "$(readlink -f "$_e/device")" in
		*vhci_hcd*)
			echo "/dev/input/$(basename "$_e")"
			return 0
			;;
		esac
	done
	return 1
}
t0=$(rig_uptime)
rig_wait 20 kbd_event >/dev/null || fail "no evdev node for the keyboard under vhci_hcd within 20 s"
EV=$(kbd_event)
rig_wait 5 test -c "$EV" || fail "$EV did not appear in /dev"
rig_field input_s "$(rig_since "$t0")"
rig_field_str input_device "$EV $(cat "/sys/class/input/$(basename "$EV")/device/name" 2>/dev/null)"
log "keyboard at $EV"

# typed text with Enter dropped (whether a line's newline is typed as Enter is not specified)
typed() {
	tr -d '\n' <"$W/typed"
}
rig-evdev-read "$EV" 120 >"$W/typed" 2>"$R/evdev.log" &
READER=$!

t0=$(rig_uptime)
rig_wait 30 eval '[ "$(typed)" = hello ]' ||
	fail "expected the keyboard to type 'hello' (text=hello) within 30 s; got '$(typed)'"
rig_field hello_s "$(rig_since "$t0")"

LINE="The quick brown fox jumps over the lazy dog 0123456789"
t0=$(rig_uptime)
printf '%s\n' "$LINE" | timeout -s KILL 10 socat -u - "UNIX-CONNECT:$KBD_SOCK" ||
	fail "cannot write a line to the keyboard socket $KBD_SOCK"
rig_wait 60 eval '[ "$(typed)" = "hello$LINE" ]' ||
	fail "expected 'hello$LINE' within 60 s after writing to $KBD_SOCK; got '$(typed)'"
rig_field line_s "$(rig_since "$t0")"
rig_field line_chars_per_s "$(awk -v n=${#LINE} -v t="$(rig_since "$t0")" 'BEGIN { printf "%.1f", n / t }')"
usleep 500000
rig_field_str typed "$(cat "$W/typed")"
rig_field key_repeats "$(grep -c ' 2$' "$R/evdev.log")"
[ "$(typed)" = "hello$LINE" ] || fail "extra keys typed after the line: '$(typed)'"
kill "$READER" 2>/dev/null

port=$(rig_vhci_first_used) || fail "no vhci port in use before detach"
usbip detach -p "$port" >/dev/null 2>&1 || fail "usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "vhci port $port still in use 10 s after detach"
rig_stop_gateway TERM
log "keyboard ok"
