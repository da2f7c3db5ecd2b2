# Scenario serial (issue 7): our CDC-ACM and FTDI serial devices under the real cdc_acm and
# ftdi_sio drivers, each over a loopback and over a tcp back-end, and over a pty back-end for
# the line settings.
# - Echo: a short line, then 1 MiB of random bytes through /dev/ttyACMn and /dev/ttyUSBn in raw
#   mode (no echo, no flow control), written by one process and read by another at the same
#   time; the bytes read back must be the bytes written (length and sha256). The tcp back-end's
#   echoing peer is `socat TCP:127.0.0.1:PORT PIPE`, connected before the attach.
# - Line settings: `stty -F TTY 115200` (then 57600 with 2 stop bits) must show on the pty
#   back-end's slave (`stty -F /dev/pts/N`, the pty back-end sets its termios) and in the
#   gateway's log as a line-settings change naming the rate.

ACM_TCP_PORT=4555
FTDI_TCP_PORT=4556
ECHO_BYTES=1048576
ECHO_TIMEOUT=180
LINE="hello through usbipgw: 0123456789 ~!@#"

GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK \
--device cdc-acm:busid=1-1,serial=ACMLOOP,backend=loopback \
--device cdc-acm:busid=1-2,serial=ACMTCP,backend=tcp:127.0.0.1:$ACM_TCP_PORT \
--device cdc-acm:busid=1-3,serial=ACMPTY,backend=pty \
--device ftdi:busid=1-4,serial=FTDILOOP,backend=loopback \
--device ftdi:busid=1-5,serial=FTDITCP,backend=tcp:127.0.0.1:$FTDI_TCP_PORT \
--device ftdi:busid=1-6,serial=FTDIPTY,backend=pty \
--rule allow:transport=tcp,source=127.0.0.0/8"

for m in vhci-hcd cdc-acm ftdi_sio; do rig_modprobe "$m"; done
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"

# pty_of BUSID: the pty back-end's slave path of the device exported as BUSID (the gateway
# logs "pty back-end at PATH" while it creates the device, before "Exporting TYPE on BUSID").
pty_of() {
	awk -v b="$1" '/pty back-end at / { p = $NF } / Exporting .* on / && $NF == b && p != "" { print p; found = 1; exit } / Exporting / { p = "" } END { exit !found }' "$GW_LOG"
}
ACM_PTY=$(pty_of 1-3) || fail "the gateway logged no pty for the cdc-acm device 1-3"
FTDI_PTY=$(pty_of 1-6) || fail "the gateway logged no pty for the ftdi device 1-6"
log "pty back-ends: cdc-acm $ACM_PTY, ftdi $FTDI_PTY"

# The tcp back-ends' echoing peers.
for port in $ACM_TCP_PORT $FTDI_TCP_PORT; do
	socat "TCP:127.0.0.1:$port" PIPE </dev/null >>"$W/socat.log" 2>&1 &
	rig_wait 20 grep -q "tcp 127.0.0.1:$port: a peer connected" "$GW_LOG" ||
		fail "socat did not connect to the tcp back-end on port $port within 20 s"
done

# serial_tty SERIAL: /dev/ttyACMn or /dev/ttyUSBn under vhci_hcd whose USB device has that
# serial number.
serial_tty() {
	for _t in /sys/class/tty/ttyACM* /sys/class/tty/ttyUSB*; do
		[ -e "$_t/device" ] || continue
		_d=$(readlink -f "$_t/device")
		case $_d in *vhci_hcd*) ;; *) continue ;; esac
		while [ "$_d" != /sys ] && [ ! -f "$_d/idVendor" ]; do _d=${_d%/*}; done
		[ "$(cat "$_d/serial" 2>/dev/null)" = "$1" ] || continue
		[ -c "/dev/$(basename "$_t")" ] || continue
		echo "/dev/$(basename "$_t")"
		return 0
	done
	return 1
}

# tty_driver TTY: the driver bound to the tty's device (cdc_acm for the interface of a
# ttyACM, ftdi_sio for the usb-serial port of a ttyUSB).
tty_driver() {
	basename "$(readlink -f "/sys/class/tty/$(basename "$1")/device/driver")"
}

t_attach=$(rig_uptime)
for b in 1-1 1-2 1-3 1-4 1-5 1-6; do rig_attach "$b"; done
for s in ACMLOOP ACMTCP ACMPTY FTDILOOP FTDITCP FTDIPTY; do
	rig_wait 30 serial_tty "$s" >/dev/null || fail "no tty for the device with serial $s within 30 s of the attach"
done
rig_field attach_to_ttys_s "$(rig_since "$t_attach")"
ACM_LOOP=$(serial_tty ACMLOOP)
ACM_TCP=$(serial_tty ACMTCP)
ACM_PTYDEV=$(serial_tty ACMPTY)
FTDI_LOOP=$(serial_tty FTDILOOP)
FTDI_TCP=$(serial_tty FTDITCP)
FTDI_PTYDEV=$(serial_tty FTDIPTY)
rig_field_str ttys "ACMLOOP=$ACM_LOOP ACMTCP=$ACM_TCP ACMPTY=$ACM_PTYDEV FTDILOOP=$FTDI_LOOP FTDITCP=$FTDI_TCP FTDIPTY=$FTDI_PTYDEV"
rig_field_str acm_driver "$(tty_driver "$ACM_LOOP")"
rig_field_str ftdi_driver "$(tty_driver "$FTDI_LOOP")"
case $ACM_LOOP in /dev/ttyACM*) ;; *) fail "the cdc-acm device is $ACM_LOOP, not a ttyACM" ;; esac
case $FTDI_LOOP in /dev/ttyUSB*) ;; *) fail "the ftdi device is $FTDI_LOOP, not a ttyUSB" ;; esac
[ "$(tty_driver "$ACM_LOOP")" = cdc_acm ] || fail "$ACM_LOOP is bound to $(tty_driver "$ACM_LOOP"), not cdc_acm"
[ "$(tty_driver "$FTDI_LOOP")" = ftdi_sio ] || fail "$FTDI_LOOP is bound to $(tty_driver "$FTDI_LOOP"), not ftdi_sio"
log "ttys: $ACM_LOOP $ACM_TCP $ACM_PTYDEV (cdc_acm), $FTDI_LOOP $FTDI_TCP $FTDI_PTYDEV (ftdi_sio)"

head -c "$ECHO_BYTES" /dev/urandom >"$W/random.bin"
RANDOM_SHA=$(sha256sum "$W/random.bin" | awk '{ print $1 }')
rig_field_str random_sha256 "$RANDOM_SHA"
rig_field_str line "$LINE"
rig_field random_bytes "$(wc -c <"$W/random.bin")"

# echo_test LABEL TTY: a line, then ECHO_BYTES random bytes through TTY and its back-end's echo.
# Records LABEL_line, LABEL_bytes, LABEL_sha256, LABEL_s and LABEL_kib_per_s.
echo_test() {
	_l=$1 _tty=$2
	# The shell holds the tty open meanwhile: the settings stay, and bytes that come back
	# before a reader opens it wait in the tty's buffer.
	exec 3<>"$_tty" || fail "$_l: cannot open $_tty"
	stty -F "$_tty" raw -echo -echoe -echok -echoctl -echoke -ixon -ixoff -crtscts clocal cs8 -parenb ||
		fail "$_l: stty raw on $_tty failed"
	echo "stty -F $_tty: $(stty -F "$_tty" -a | tr '\n' ' ')"
	_n=$((${#LINE} + 1))
	timeout -s KILL 30 head -c "$_n" <"$_tty" >"$W/$_l.line" &
	_rd=$!
	_t0=$(rig_uptime)
	printf '%s\n' "$LINE" >"$_tty" || fail "$_l: cannot write a line to $_tty"
	wait "$_rd"
	_got=$(cat "$W/$_l.line")
	rig_field_str "${_l}_line" "$_got"
	rig_field "${_l}_line_s" "$(rig_since "$_t0")"
	[ "$_got" = "$LINE" ] || fail "$_l: wrote the line '$LINE' to $_tty, read back '$_got'"

	timeout -s KILL "$ECHO_TIMEOUT" head -c "$ECHO_BYTES" <"$_tty" >"$W/$_l.out" &
	_rd=$!
	_t0=$(rig_uptime)
	timeout -s KILL "$ECHO_TIMEOUT" cat "$W/random.bin" >"$_tty"
	_wrc=$?
	_tw=$(rig_since "$_t0")
	wait "$_rd"
	_rrc=$?
	_secs=$(rig_since "$_t0")
	exec 3>&-
	_bytes=$(wc -c <"$W/$_l.out")
	_sha=$(sha256sum "$W/$_l.out" | awk '{ print $1 }')
	rig_field "${_l}_bytes" "$_bytes"
	rig_field_str "${_l}_sha256" "$_sha"
	rig_field "${_l}_write_s" "$_tw"
	rig_field "${_l}_s" "$_secs"
	rig_field "${_l}_kib_per_s" "$(awk -v b="$_bytes" -v s="$_secs" 'BEGIN { printf "%.1f", b / 1024 / s }')"
	log "$_l: $_bytes of $ECHO_BYTES bytes back through $_tty in $_secs s (writer $_tw s, exit $_wrc; reader exit $_rrc)"
	[ "$_wrc" -eq 0 ] || fail "$_l: writing $ECHO_BYTES bytes to $_tty failed or timed out (exit $_wrc)"
	[ "$_bytes" -eq "$ECHO_BYTES" ] || fail "$_l: read back $_bytes of $ECHO_BYTES bytes from $_tty (reader exit $_rrc)"
	[ "$_sha" = "$RANDOM_SHA" ] || {
		echo "first difference: $(cmp "$W/random.bin" "$W/$_l.out" 2>&1)"
		fail "$_l: the bytes read back from $_tty differ from those written (sha256 $_sha)"
	}
	rm -f "$W/$_l.out"
}

echo_test acm_loopback "$ACM_LOOP"
echo_test acm_tcp "$ACM_TCP"
echo_test ftdi_loopback "$FTDI_LOOP"
echo_test ftdi_tcp "$FTDI_TCP"
# Nothing the devices offered was dropped by a back-end (CharBackend logs every drop).
rig_field drops_logged "$(grep -c 'Dropping output\|Dropped [0-9]* output' "$GW_LOG")"
grep -q 'Dropping output\|Dropped [0-9]* output' "$GW_LOG" &&
	fail "the gateway dropped output: $(grep 'Dropp' "$GW_LOG" | head -n 1)"

# pty_speed PTY: the speed the pty's termios shows (busybox stty: "speed N baud; ...").
pty_speed() {
	stty -F "$1" | sed -n 's/^speed \([0-9]*\) baud.*/\1/p'
}

# line_test LABEL TTY PTY: stty on TTY must show on PTY and in the gateway's log.
line_test() {
	_l=$1 _tty=$2 _pty=$3
	rig_field "${_l}_pty_speed_before" "$(pty_speed "$_pty")"
	stty -F "$_tty" 115200 || fail "$_l: stty -F $_tty 115200 failed"
	rig_wait 5 eval '[ "$(pty_speed "$_pty")" = 115200 ]' ||
		fail "$_l: after stty -F $_tty 115200 the back-end's $_pty shows speed $(pty_speed "$_pty")"
	rig_field "${_l}_pty_speed" "$(pty_speed "$_pty")"
	rig_wait 5 grep -q "pty $_pty: line settings 115200 8N1" "$GW_LOG" ||
		fail "$_l: the gateway logged no line settings 115200 8N1 for pty $_pty"
	rig_field_str "${_l}_log" "$(grep "pty $_pty: line settings 115200 " "$GW_LOG" | tail -n 1 | sed 's/^.*\] //')"
	# A second rate with 2 stop bits (a pty keeps 8 bits without parity, so those cannot show).
	stty -F "$_tty" 57600 cstopb || fail "$_l: stty -F $_tty 57600 cstopb failed"
	rig_wait 5 eval '[ "$(pty_speed "$_pty")" = 57600 ]' ||
		fail "$_l: after stty -F $_tty 57600 the back-end's $_pty shows speed $(pty_speed "$_pty")"
	_all=$(stty -F "$_pty" -a)
	echo "stty -F $_pty -a: $_all"
	_stop=$(echo "$_all" | tr ' ' '\n' | grep -x -- '-\{0,1\}cstopb')
	rig_field "${_l}_pty_speed2" "$(pty_speed "$_pty")"
	rig_field_str "${_l}_pty_cstopb2" "$_stop"
	[ "$_stop" = cstopb ] || fail "$_l: $_pty shows '$_stop' after stty -F $_tty 57600 cstopb"
	rig_wait 5 grep -q "pty $_pty: line settings 57600 8N2" "$GW_LOG" ||
		fail "$_l: the gateway logged no line settings 57600 8N2 for pty $_pty"
	rig_field_str "${_l}_log2" "$(grep "pty $_pty: line settings 57600 " "$GW_LOG" | tail -n 1 | sed 's/^.*\] //')"
	log "$_l: stty -F $_tty 115200 and 57600 cstopb reached $_pty"
}

line_test ftdi_line "$FTDI_PTYDEV" "$FTDI_PTY"
line_test acm_line "$ACM_PTYDEV" "$ACM_PTY"

for b in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
	usbip detach -p "$b" >/dev/null 2>&1 || fail "usbip detach -p $b failed"
done
rig_wait 10 rig_vhci_free || fail "vhci ports still in use 10 s after detach"
rig_stop_gateway TERM
log "serial ok"
