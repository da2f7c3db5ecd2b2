# Scenario gotemp (issue 7): our Go!Temp thermometer read by the real Linux drivers.
# Three devices: source=constant:21.5, source=file:... (known values, read in order and
# starting over) and source=unix:... (lines written while it is read). Their 8-byte reports
# (count, sequence, little-endian int16 raw words of 1/128 degC) are read and decoded by
# rig-gotemp-read; the readings must match the source within the resolution and the sequence
# numbers must count up by one (no report lost between two reads).
# 1. hidraw: usbhid and hid-generic bind the Go!Temp as they are (Linux 6.1's hid_ignore_list
#    no longer lists Vernier's devices, older kernels did), and all three devices are read
#    from /dev/hidrawN.
# 2. ldusb: usbhid unloaded; Debian 6.1's ldusb lists only LD Didactic's IDs, so the Go!Temp
#    is given to it with new_id; the constant and file devices are read from /dev/ldusbN.
# usbhid drops what arrives in the first 50 ms after an open (usbhid_open), so a read may
# start a report or two into the source's sequence: the file's values are matched from any
# starting point.

TEMPS=$W/temps.txt
TEMP_SOCK=/run/temp.sock
# The file source's values: exact ones (multiples of 1/128), negative ones, and 23.4 that
# rounds (raw 2995 = 23.3984375).
FILE_VALUES="20 21.5 -3.25 37.125 0.0078125 100.5 23.4 -40"
printf '# rig gotemp readings, degC\n' >"$TEMPS"
for v in $FILE_VALUES; do echo "$v" >>"$TEMPS"; done
rig_field_str file_values "$FILE_VALUES"
CONST_VALUE=21.5
rig_field_str const_value "$CONST_VALUE"
REPORTS=12

GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device gotemp:busid=1-1,serial=GTCONST,source=constant:$CONST_VALUE \
--device gotemp:busid=1-2,serial=GTFILE,source=file:$TEMPS \
--device gotemp:busid=1-3,serial=GTUNIX,source=unix:$TEMP_SOCK \
--rule allow:transport=tcp,source=127.0.0.0/8"

for m in vhci-hcd usbhid hid-generic; do rig_modprobe "$m"; done
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"

# usb_dir SYSFS_PATH: the USB device directory above a sysfs path (the first with idVendor).
usb_dir() {
	_d=$(readlink -f "$1")
	while [ "$_d" != /sys ] && [ ! -f "$_d/idVendor" ]; do _d=${_d%/*}; done
	[ -f "$_d/idVendor" ] && echo "$_d"
}

# node_of CLASS SERIAL: /dev/NODE of /sys/class/CLASS/* under vhci_hcd whose USB device is the
# Go!Temp with that serial number.
node_of() {
	for _n in /sys/class/"$1"/*; do
		[ -e "$_n/device" ] || continue
		case "$(readlink -f "$_n/device")" in *vhci_hcd*) ;; *) continue ;; esac
		_u=$(usb_dir "$_n/device") || continue
		[ "$(cat "$_u/idVendor"):$(cat "$_u/idProduct")" = 08f7:0002 ] || continue
		[ "$(cat "$_u/serial" 2>/dev/null)" = "$2" ] || continue
		[ -c "/dev/$(basename "$_n")" ] || continue
		echo "/dev/$(basename "$_n")"
		return 0
	done
	return 1
}

# readings FILE: the raw samples of rig-gotemp-read's output, one per line.
readings() {
	awk '$1 == "report" { for (i = 4; i <= NF; i++) print $i }' "$1"
}

# seq_gaps FILE: the number of reports whose sequence number is not the previous one + 1.
seq_gaps() {
	awk '$1 == "report" { if (n++ && $3 != (prev + 1) % 256) g++; prev = $3 } END { print g + 0 }' "$1"
}

# check_const LABEL FILE: every sample is CONST_VALUE within 1/256 degC.
check_const() {
	_raw=$(readings "$2" | tr '\n' ' ')
	rig_field_str "$1_raw" "$_raw"
	rig_field "$1_samples" "$(readings "$2" | wc -l)"
	rig_field "$1_seq_gaps" "$(seq_gaps "$2")"
	[ "$(readings "$2" | wc -l)" -ge "$REPORTS" ] || fail "$1: fewer than $REPORTS samples: $_raw"
	_bad=$(readings "$2" | awk -v c="$CONST_VALUE" '{ d = $1 / 128 - c; if (d < 0) d = -d; if (d > 1 / 256) print }' | head -n 1)
	[ -z "$_bad" ] || fail "$1: sample raw $_bad is not $CONST_VALUE degC (raw $(awk -v c="$CONST_VALUE" 'BEGIN { print c * 128 }'))"
	[ "$(seq_gaps "$2")" -eq 0 ] || fail "$1: sequence numbers skip: $(grep report "$2" | tr '\n' ';')"
	log "$1: $(readings "$2" | wc -l) samples of raw $(readings "$2" | head -n 1) = $CONST_VALUE degC"
}

# check_file LABEL FILE: the samples are FILE_VALUES in order (starting anywhere, wrapping
# around), each within 1/256 degC; records the index of the first one.
check_file() {
	_raw=$(readings "$2" | tr '\n' ' ')
	rig_field_str "$1_raw" "$_raw"
	rig_field "$1_samples" "$(readings "$2" | wc -l)"
	rig_field "$1_seq_gaps" "$(seq_gaps "$2")"
	[ "$(readings "$2" | wc -l)" -ge "$REPORTS" ] || fail "$1: fewer than $REPORTS samples: $_raw"
	_start=$(readings "$2" | awk -v vals="$FILE_VALUES" '
		BEGIN { n = split(vals, v, " ") }
		{ raw[NR] = $1 }
		END {
			for (s = 1; s <= n; s++) {
				ok = 1
				for (i = 1; i <= NR; i++) {
					d = raw[i] / 128 - v[(s + i - 2) % n + 1]
					if (d < 0) d = -d
					if (d > 1 / 256) { ok = 0; break }
				}
				if (ok) { print s - 1; exit }
			}
			print -1
		}')
	rig_field "$1_start_index" "$_start"
	[ "$_start" -ge 0 ] || fail "$1: samples (raw) $_raw are not the file's values $FILE_VALUES in order"
	[ "$(seq_gaps "$2")" -eq 0 ] || fail "$1: sequence numbers skip: $(grep report "$2" | tr '\n' ';')"
	log "$1: samples $_raw = the file's values from index $_start on"
}

# --- hidraw (usbhid, hid-generic) ------------------------------------------------------------
t_attach=$(rig_uptime)
for b in 1-1 1-2 1-3; do rig_attach "$b"; done
for s in GTCONST GTFILE GTUNIX; do
	rig_wait 30 node_of hidraw "$s" >/dev/null || fail "no hidraw node for the Go!Temp $s within 30 s of the attach"
done
rig_field attach_to_hidraw_s "$(rig_since "$t_attach")"
HR_CONST=$(node_of hidraw GTCONST)
HR_FILE=$(node_of hidraw GTFILE)
HR_UNIX=$(node_of hidraw GTUNIX)
HID_DRIVER=$(basename "$(readlink -f "/sys/class/hidraw/$(basename "$HR_CONST")/device/driver")")
rig_field_str hidraw_nodes "GTCONST=$HR_CONST GTFILE=$HR_FILE GTUNIX=$HR_UNIX"
rig_field_str hid_driver "$HID_DRIVER"
rig_field_str usb_interface_driver "$(basename "$(readlink -f "/sys/class/hidraw/$(basename "$HR_CONST")/device/../driver")")"
log "hidraw: $HR_CONST $HR_FILE $HR_UNIX (driver $HID_DRIVER)"

t0=$(rig_uptime)
rig-gotemp-read "$HR_CONST" "$REPORTS" 30 >"$W/hr_const.txt" 2>&1 || fail "reading $HR_CONST failed: $(cat "$W/hr_const.txt")"
rig_field hidraw_const_read_s "$(rig_since "$t0")"
cat "$W/hr_const.txt"
rig_field_str hidraw_info "$(head -n 1 "$W/hr_const.txt")"
[ "$(head -n 1 "$W/hr_const.txt")" = "hidraw 3 08f7 0002" ] ||
	fail "HIDIOCGRAWINFO of $HR_CONST: '$(head -n 1 "$W/hr_const.txt")', expected bus 3 (USB) 08f7:0002"
check_const hidraw_const "$W/hr_const.txt"

rig-gotemp-read "$HR_FILE" "$REPORTS" 30 >"$W/hr_file.txt" 2>&1 || fail "reading $HR_FILE failed: $(cat "$W/hr_file.txt")"
cat "$W/hr_file.txt"
check_file hidraw_file "$W/hr_file.txt"

# The unix source: nothing is sent before its first line; then each line is the next reading,
# repeated until the next line.
rig-gotemp-read "$HR_UNIX" 16 60 >"$W/hr_unix.txt" 2>&1 &
READER=$!
usleep 500000
printf '30.25\n' | timeout -s KILL 10 socat -u - "UNIX-CONNECT:$TEMP_SOCK" || fail "cannot write to $TEMP_SOCK"
rig_wait 20 eval '[ "$(readings "$W/hr_unix.txt" | wc -l)" -ge 4 ]' || fail "no readings from the unix source within 20 s"
printf -- '-1.5\n' | timeout -s KILL 10 socat -u - "UNIX-CONNECT:$TEMP_SOCK" || fail "cannot write to $TEMP_SOCK"
wait "$READER" || fail "reading $HR_UNIX failed: $(cat "$W/hr_unix.txt")"
cat "$W/hr_unix.txt"
UNIX_RAW=$(readings "$W/hr_unix.txt" | tr '\n' ' ')
rig_field_str hidraw_unix_raw "$UNIX_RAW"
# The readings: 30.25 (raw 3872) some times, then -1.5 (raw -192) to the end.
echo "$UNIX_RAW" | grep -Eq '^(3872 )+(-192 )+$' ||
	fail "unix source: expected raw 3872 (30.25) then -192 (-1.5), got $UNIX_RAW"

# --- ldusb (given the Go!Temp's ID with new_id) -------------------------------------------
for p in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
	usbip detach -p "$p" >/dev/null 2>&1 || fail "usbip detach -p $p failed"
done
rig_wait 10 rig_vhci_free || fail "vhci ports still in use 10 s after detach"
rmmod hid_generic usbhid || fail "cannot unload usbhid"
rig_modprobe ldusb
echo "08f7 0002" >/sys/bus/usb/drivers/ldusb/new_id || fail "cannot add 08f7:0002 to ldusb's IDs"
t_attach=$(rig_uptime)
for b in 1-1 1-2; do rig_attach "$b"; done
for s in GTCONST GTFILE; do
	rig_wait 30 node_of usbmisc "$s" >/dev/null || fail "no ldusb node for the Go!Temp $s within 30 s"
done
rig_field attach_to_ldusb_s "$(rig_since "$t_attach")"
LD_CONST=$(node_of usbmisc GTCONST)
LD_FILE=$(node_of usbmisc GTFILE)
rig_field_str ldusb_nodes "GTCONST=$LD_CONST GTFILE=$LD_FILE"
rig_field_str ldusb_driver "$(basename "$(readlink -f "/sys/class/usbmisc/$(basename "$LD_CONST")/device/driver")")"
rig-gotemp-read "$LD_CONST" "$REPORTS" 30 >"$W/ld_const.txt" 2>&1 || fail "reading $LD_CONST failed: $(cat "$W/ld_const.txt")"
cat "$W/ld_const.txt"
check_const ldusb_const "$W/ld_const.txt"
rig-gotemp-read "$LD_FILE" "$REPORTS" 30 >"$W/ld_file.txt" 2>&1 || fail "reading $LD_FILE failed: $(cat "$W/ld_file.txt")"
cat "$W/ld_file.txt"
check_file ldusb_file "$W/ld_file.txt"

for p in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
	usbip detach -p "$p" >/dev/null 2>&1 || fail "usbip detach -p $p failed"
done
rig_wait 10 rig_vhci_free || fail "vhci ports still in use 10 s after detach"
rig_stop_gateway TERM
log "gotemp ok"
