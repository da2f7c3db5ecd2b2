# Scenario keyboard: attach our keyboard (busid 1-2) and check what it types.
# The kernel's own keyboard handlers (sysrq and the VT's kbd) open every keyboard as it
# registers, so usbhid polls it at once and the spec's text=hello is typed before any evdev
# reader can open the new node. "hello" is therefore read from usbmon, captured from before the
# attach: the keyboard's interrupt IN completions decoded as HID boot reports (HID 1.11 usage
# table, US layout). A line written to socket=/run/kbd.sock is then read from the keyboard's
# evdev node (rig-evdev-read, the kernel's key codes) and must also match in usbmon.

rig_modprobe vhci-hcd
for m in usbhid hid-generic evdev usbmon; do rig_modprobe "$m"; done
mount -t debugfs none /sys/kernel/debug 2>/dev/null
[ -r /sys/kernel/debug/usb/usbmon/0u ] || fail "no usbmon text interface"
cat /sys/kernel/debug/usb/usbmon/0u >"$W/usbmon" &
USBMON_READER=$!
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"
t_attach=$(rig_uptime)
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
rig_wait 20 kbd_event >/dev/null || fail "no evdev node for the keyboard under vhci_hcd within 20 s"
EV=$(kbd_event)
rig_wait 5 test -c "$EV" || fail "$EV did not appear in /dev"
rig_field input_s "$(rig_since "$t_attach")"
# the USB device: the sysfs path up to the interface (".../usb1/1-1/1-1:1.0/...")
UDEV=$(readlink -f "/sys/class/input/$(basename "$EV")/device" | sed 's#/[^/]*:[0-9]*\.[0-9]*/.*##')
[ -f "$UDEV/devnum" ] || fail "cannot find the keyboard's USB device from $EV ($UDEV)"
ADDR=$(printf 'Ii:%d:%03d:' "$(cat "$UDEV/busnum")" "$(cat "$UDEV/devnum")")
rig_field_str input_device "$EV $(cat "/sys/class/input/$(basename "$EV")/device/name") \
$(basename "$UDEV") $(cat "$UDEV/idVendor"):$(cat "$UDEV/idProduct") $(cat "$UDEV/speed") Mb/s"
rig_field_str input_handlers "$(grep -A5 "Sysfs=.*$(basename "$UDEV"):" /proc/bus/input/devices | grep '^H:')"
log "keyboard at $EV, USB $(basename "$UDEV") ($ADDR)"

# usbmon_typed: text typed so far per usbmon (keys newly pressed in each boot report; Enter
# dropped: whether a line's newline is typed as Enter is not specified).
usbmon_typed() {
	awk -v addr="$ADDR" '
	function hx(s, i, v) {
		v = 0
		for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
		return v
	}
	BEGIN {
		lower = "abcdefghijklmnopqrstuvwxyz1234567890"
		upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()"
		split("- = [ ] \\ x ; '"'"' ` , . /", lp, " ")
		split("_ + { } | x : \" ~ < > ?", up, " ")
	}
	$3 == "C" && index($4, addr) == 1 && $5 ~ /^0:/ && $6 == 8 {
		hex = $8 $9
		mod = hx(substr(hex, 1, 2))
		shift = (int(mod / 2) % 2) || (int(mod / 32) % 2)
		n = 0
		delete now
		for (i = 3; i <= 8; i++) {
			u = hx(substr(hex, 2 * i - 1, 2))
			if (u == 0) continue
			now[u] = 1
			if (u in before) continue
			if (u >= 4 && u <= 39) out = out substr(shift ? upper : lower, u - 3, 1)
			else if (u == 44) out = out " "
			else if (u >= 45 && u <= 56 && u != 50) out = out (shift ? up[u - 44] : lp[u - 44])
			else if (u != 40) out = out "<" u ">"
		}
		delete before
		for (u in now) before[u] = 1
	}
	END { printf "%s", out }' "$W/usbmon"
}

rig_wait 30 eval '[ "$(usbmon_typed)" = hello ]' ||
	fail "expected the keyboard to type 'hello' (text=hello) within 30 s of attach; usbmon saw '$(usbmon_typed)'"
rig_field hello_s "$(rig_since "$t_attach")"

# evdev text with Enter dropped
typed() {
	tr -d '\n' <"$W/typed"
}
rig-evdev-read "$EV" 120 >"$W/typed" 2>"$R/evdev.log" &
READER=$!
usleep 500000

LINE="The quick brown fox jumps over the lazy dog 0123456789"
t0=$(rig_uptime)
printf '%s\n' "$LINE" | timeout -s KILL 10 socat -u - "UNIX-CONNECT:$KBD_SOCK" ||
	fail "cannot write a line to the keyboard socket $KBD_SOCK"
rig_wait 60 eval '[ "$(typed)" = "$LINE" ]' ||
	fail "expected evdev to see '$LINE' within 60 s after writing to $KBD_SOCK; got '$(typed)'"
rig_field line_s "$(rig_since "$t0")"
rig_field line_chars_per_s "$(awk -v n=${#LINE} -v t="$(rig_since "$t0")" 'BEGIN { printf "%.1f", n / t }')"
usleep 500000
kill "$READER" "$USBMON_READER" 2>/dev/null
rig_field_str typed_evdev "$(cat "$W/typed")"
rig_field_str typed_usbmon "$(usbmon_typed)"
rig_field key_repeats "$(grep -c ' 2$' "$R/evdev.log")"
[ "$(typed)" = "$LINE" ] || fail "extra keys typed after the line: '$(typed)'"
[ "$(usbmon_typed)" = "hello$LINE" ] || fail "usbmon saw '$(usbmon_typed)', expected 'hello$LINE'"

port=$(rig_vhci_first_used) || fail "no vhci port in use before detach"
usbip detach -p "$port" >/dev/null 2>&1 || fail "usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "vhci port $port still in use 10 s after detach"
rig_stop_gateway TERM
log "keyboard ok"
