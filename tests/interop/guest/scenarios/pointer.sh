# Scenario pointer (issue 7): our HID mouse and tablet under usbhid + hid-generic, fed through
# their unix sockets; what arrives on their evdev nodes (rig-input-events) is checked.
# - mouse: `move 10 -5` (the first REL_X and REL_Y events must be 10 and -5), `move 300 -200`
#   (more than a report's 127: split, so REL_X must sum to 310 and REL_Y to -205), `scroll -2`
#   (REL_WHEEL sums to -2), `click left` (BTN_LEFT 1 then 0), `press right` and `release`
#   (BTN_RIGHT 1 then 0).
# - tablet: its axes are absolute 0..32767; `abs 0.5 0.25`, `abs 1 1`, `abs 0 0` must give
#   ABS_X 16384, 32767, 0 and ABS_Y 8192, 32767, 0 (round(v * 32767)); `click left` BTN_LEFT.
# Nothing opens a mouse before the reader (the kernel's VT and sysrq handlers open keyboards
# only), so usbhid starts polling when rig-input-events opens the node.

MOUSE_SOCK=/run/mouse.sock
TABLET_SOCK=/run/tablet.sock
# Mice reach a TCP peer only through a rule that names them (here: by bus id).
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device mouse:busid=1-1,socket=$MOUSE_SOCK \
--device tablet:busid=1-2,socket=$TABLET_SOCK \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2"

EV_KEY=1
EV_REL=2
EV_ABS=3
REL_X=0
REL_Y=1
REL_WHEEL=8
BTN_LEFT=272
BTN_RIGHT=273

for m in vhci-hcd usbhid hid-generic evdev; do rig_modprobe "$m"; done
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"

# event_of VID:PID: /dev/input/eventN under vhci_hcd of the USB device with these IDs.
event_of() {
	for _e in /sys/class/input/event*; do
		[ -e "$_e/device" ] || continue
		_d=$(readlink -f "$_e/device")
		case $_d in *vhci_hcd*) ;; *) continue ;; esac
		while [ "$_d" != /sys ] && [ ! -f "$_d/idVendor" ]; do _d=${_d%/*}; done
		[ "$(cat "$_d/idVendor" 2>/dev/null):$(cat "$_d/idProduct" 2>/dev/null)" = "$1" ] || continue
		[ -c "/dev/input/$(basename "$_e")" ] || continue
		echo "/dev/input/$(basename "$_e")"
		return 0
	done
	return 1
}

# events FILE TYPE CODE: the values of those events, one per line.
events() {
	awk -v t="$2" -v c="$3" '$1 == "ev" && $2 == t && $3 == c { print $4 }' "$1"
}

# sum FILE TYPE CODE: the sum of those events' values.
sum() {
	events "$@" | awk '{ s += $1 } END { print s + 0 }'
}

# values FILE TYPE CODE: those events' values on one line.
values() {
	events "$@" | tr '\n' ' ' | sed 's/ $//'
}

t_attach=$(rig_uptime)
rig_attach 1-1
rig_attach 1-2
rig_wait 30 event_of 1209:0002 >/dev/null || fail "no evdev node for the mouse (1209:0002) within 30 s of the attach"
rig_wait 30 event_of 1209:0003 >/dev/null || fail "no evdev node for the tablet (1209:0003) within 30 s of the attach"
rig_field attach_to_input_s "$(rig_since "$t_attach")"
MOUSE_EV=$(event_of 1209:0002)
TABLET_EV=$(event_of 1209:0003)
rig_field_str input_nodes "mouse=$MOUSE_EV tablet=$TABLET_EV"
log "mouse $MOUSE_EV, tablet $TABLET_EV"

# --- mouse ---------------------------------------------------------------------------------
rig-input-events "$MOUSE_EV" 90 >"$W/mouse.ev" 2>"$W/mouse.err" &
MOUSE_READER=$!
rig_wait 10 grep -q '^name ' "$W/mouse.ev" || fail "rig-input-events did not open $MOUSE_EV: $(cat "$W/mouse.err")"
rig_field_str mouse_name "$(sed -n 's/^name //p' "$W/mouse.ev")"
t0=$(rig_uptime)
printf 'move 10 -5\nmove 300 -200\nscroll -2\nclick left\npress right\nrelease\n' |
	timeout -s KILL 10 socat -u - "UNIX-CONNECT:$MOUSE_SOCK" || fail "cannot write to $MOUSE_SOCK"
# The last command's event: BTN_RIGHT released.
rig_wait 30 eval '[ "$(values "$W/mouse.ev" $EV_KEY $BTN_RIGHT)" = "1 0" ]' ||
	fail "the mouse's events did not all arrive within 30 s: $(grep -v '^syn' "$W/mouse.ev" | tr '\n' ';')"
rig_field mouse_events_s "$(rig_since "$t0")"
usleep 300000
kill "$MOUSE_READER" 2>/dev/null
grep -v '^syn' "$W/mouse.ev" | sed 's/^/mouse: /'
rig_field_str mouse_rel_x "$(values "$W/mouse.ev" $EV_REL $REL_X)"
rig_field_str mouse_rel_y "$(values "$W/mouse.ev" $EV_REL $REL_Y)"
rig_field mouse_rel_x_sum "$(sum "$W/mouse.ev" $EV_REL $REL_X)"
rig_field mouse_rel_y_sum "$(sum "$W/mouse.ev" $EV_REL $REL_Y)"
rig_field mouse_wheel_sum "$(sum "$W/mouse.ev" $EV_REL $REL_WHEEL)"
rig_field_str mouse_btn_left "$(values "$W/mouse.ev" $EV_KEY $BTN_LEFT)"
rig_field_str mouse_btn_right "$(values "$W/mouse.ev" $EV_KEY $BTN_RIGHT)"
[ "$(events "$W/mouse.ev" $EV_REL $REL_X | head -n 1)" = 10 ] || fail "the mouse's first REL_X is not 10: $(values "$W/mouse.ev" $EV_REL $REL_X)"
[ "$(events "$W/mouse.ev" $EV_REL $REL_Y | head -n 1)" = -5 ] || fail "the mouse's first REL_Y is not -5: $(values "$W/mouse.ev" $EV_REL $REL_Y)"
[ "$(sum "$W/mouse.ev" $EV_REL $REL_X)" = 310 ] || fail "the mouse's REL_X sum to $(sum "$W/mouse.ev" $EV_REL $REL_X), not 310"
[ "$(sum "$W/mouse.ev" $EV_REL $REL_Y)" = -205 ] || fail "the mouse's REL_Y sum to $(sum "$W/mouse.ev" $EV_REL $REL_Y), not -205"
[ "$(sum "$W/mouse.ev" $EV_REL $REL_WHEEL)" = -2 ] || fail "the mouse's REL_WHEEL sum to $(sum "$W/mouse.ev" $EV_REL $REL_WHEEL), not -2"
[ "$(values "$W/mouse.ev" $EV_KEY $BTN_LEFT)" = "1 0" ] || fail "BTN_LEFT: $(values "$W/mouse.ev" $EV_KEY $BTN_LEFT), expected a press and a release"
# No X, Y or wheel step beyond a report's -127..127 (REL_WHEEL_HI_RES counts 120 per detent).
awk -v t=$EV_REL '$1 == "ev" && $2 == t && ($3 == 0 || $3 == 1 || $3 == 8) && ($4 > 127 || $4 < -127) { exit 1 }' "$W/mouse.ev" ||
	fail "a REL_X, REL_Y or REL_WHEEL event beyond -127..127"
log "mouse: REL_X $(values "$W/mouse.ev" $EV_REL $REL_X), REL_Y $(values "$W/mouse.ev" $EV_REL $REL_Y), buttons ok"

# --- tablet --------------------------------------------------------------------------------
rig-input-events "$TABLET_EV" 90 >"$W/tablet.ev" 2>"$W/tablet.err" &
TABLET_READER=$!
rig_wait 10 grep -q '^name ' "$W/tablet.ev" || fail "rig-input-events did not open $TABLET_EV: $(cat "$W/tablet.err")"
rig_field_str tablet_name "$(sed -n 's/^name //p' "$W/tablet.ev")"
rig_field_str tablet_absinfo "$(grep '^absinfo' "$W/tablet.ev" | tr '\n' ';')"
[ "$(grep '^absinfo' "$W/tablet.ev" | tr '\n' ';')" = "absinfo 0 0 32767;absinfo 1 0 32767;" ] ||
	fail "the tablet's axes: $(grep '^absinfo' "$W/tablet.ev" | tr '\n' ';') (expected ABS_X and ABS_Y 0..32767)"
t0=$(rig_uptime)
printf 'abs 0.5 0.25\nabs 1 1\nabs 0 0\nclick left\n' |
	timeout -s KILL 10 socat -u - "UNIX-CONNECT:$TABLET_SOCK" || fail "cannot write to $TABLET_SOCK"
rig_wait 30 eval '[ "$(values "$W/tablet.ev" $EV_KEY $BTN_LEFT)" = "1 0" ]' ||
	fail "the tablet's events did not all arrive within 30 s: $(grep -v '^syn' "$W/tablet.ev" | tr '\n' ';')"
rig_field tablet_events_s "$(rig_since "$t0")"
usleep 300000
kill "$TABLET_READER" 2>/dev/null
grep -v '^syn' "$W/tablet.ev" | sed 's/^/tablet: /'
rig_field_str tablet_abs_x "$(values "$W/tablet.ev" $EV_ABS 0)"
rig_field_str tablet_abs_y "$(values "$W/tablet.ev" $EV_ABS 1)"
rig_field_str tablet_btn_left "$(values "$W/tablet.ev" $EV_KEY $BTN_LEFT)"
[ "$(values "$W/tablet.ev" $EV_ABS 0)" = "16384 32767 0" ] || fail "the tablet's ABS_X: $(values "$W/tablet.ev" $EV_ABS 0), expected 16384 32767 0"
[ "$(values "$W/tablet.ev" $EV_ABS 1)" = "8192 32767 0" ] || fail "the tablet's ABS_Y: $(values "$W/tablet.ev" $EV_ABS 1), expected 8192 32767 0"
log "tablet: ABS_X $(values "$W/tablet.ev" $EV_ABS 0), ABS_Y $(values "$W/tablet.ev" $EV_ABS 1), BTN_LEFT ok"

for p in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
	usbip detach -p "$p" >/dev/null 2>&1 || fail "usbip detach -p $p failed"
done
rig_wait 10 rig_vhci_free || fail "vhci ports still in use 10 s after detach"
rig_stop_gateway TERM
log "pointer ok"
