# Functions shared by the guest scenarios (busybox sh, sourced): logging, JSON fields,
# bounded waits, the gateway's lifecycle, vhci-hcd helpers and testusb runs.

R=/mnt/results
# The checkout (read-only share).
ROOT=/mnt/host
# deno, copied from its share to tmpfs on first use (rig_need_deno): run from 9p, the 95 MB
# binary pages in so slowly that a start took 5 to 25 s instead of 1.5 to 3 s.
DENO=/tmp/deno
W=/tmp/rig
VHCI=/sys/devices/platform/vhci_hcd.0
GW_LOG=$R/gateway.log
GW_SOCK=/run/usbipgw.sock
KBD_SOCK=/run/kbd.sock
GW_PID=
# Gadget Zero's busid on the server (the stand-in's differs).
GZ_BUSID=1-1
# The gateway's command line (CLI contract); a scenario may change it before starting it.
# TCP peers are denied unless a rule allows, and a keyboard reaches them only through a rule
# that names it: this one lets the guest's own loopback peers use both devices.
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --device gadget-zero:busid=1-1 \
--device keyboard:busid=1-2,socket=$KBD_SOCK,text=hello \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2"
# testusb parameters (tests/interop/README.md): 100 iterations of 512 bytes varied by 421, 32 sg entries;
# the bulk throughput tests 27/28 move 64 x 32 x 16 KiB = 32 MiB each. The variable-length
# READ tests 4 and 8 vary by whole packets (512..2048 bytes): Gadget Zero always sends
# full 512-byte packets, so a read of 421 bytes babbles (EOVERFLOW), on the kernel's own
# Gadget Zero too (kernel_baseline shows it; tools/usb/hcd-tests.sh reads in 512s as well).
TESTUSB_ARGS="-c 100 -s 512 -g 32 -v 421"
TESTUSB_READ_VARY_ARGS="-c 100 -s 2048 -g 32 -v 512"
TESTUSB_BULK_ARGS="-c 64 -g 32 -s 16384"
TESTUSB_TIMEOUT=180
# deno runs offline: npm packages from the rig's DENO_DIR, resolved through the rig's copy
# of deno.lock (the share is read-only; rig.ts explains the copy).
DENO_FLAGS="--cached-only --lock=/deno_dir/deno.lock"

rig_uptime() {
	read -r _u _ </proc/uptime
	echo "$_u"
}

# rig_sub A B: A - B with two decimals.
rig_sub() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'
}

rig_since() {
	rig_sub "$(rig_uptime)" "$1"
}

log() {
	_m="[$(rig_uptime)] $*"
	echo "$_m"
	echo "rig: $_m" >/dev/console
}

# fail REASON: the scenario fails with REASON (goes into result.json).
fail() {
	echo "$*" >"$W/reason"
	log "FAIL: $*"
	exit 1
}

# rig_jstr TEXT: TEXT as a JSON string literal.
rig_jstr() {
	printf '%s' "$1" | tr -d '\000-\010\013-\037' | awk '
		BEGIN { ORS = ""; print "\"" }
		{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); if (NR > 1) print "\\n"; print }
		END { print "\"" }'
}

# rig_jarray: stdin lines as a JSON array of strings (empty lines dropped).
rig_jarray() {
	_first=1
	printf '['
	while IFS= read -r _l; do
		[ -z "$_l" ] && continue
		[ "$_first" = 1 ] || printf ', '
		_first=0
		printf '%s' "$(rig_jstr "$_l")"
	done
	printf ']'
}

# rig_field KEY JSON: adds "KEY": JSON to result.json.
rig_field() {
	printf '"%s": %s\n' "$1" "$2" >>"$W/fields"
}

rig_field_str() {
	rig_field "$1" "$(rig_jstr "$2")"
}

rig_kernel_problems() {
	dmesg | grep -E 'Oops|BUG:|WARNING:|blocked for more than|general protection fault|Kernel panic|Call Trace' |
		head -n 20
}

# rig_wait SECONDS CMD...: polls CMD every 0.2 s until it succeeds (0) or time runs out (1).
rig_wait() {
	_limit=$(awk -v u="$(rig_uptime)" -v t="$1" 'BEGIN { print u + t }')
	shift
	while :; do
		"$@" && return 0
		awk -v u="$(rig_uptime)" -v l="$_limit" 'BEGIN { exit !(u > l) }' && return 1
		usleep 200000
	done
}

# rig_alive PID: the process exists and is not a zombie.
rig_alive() {
	_st=$(sed -n 's/^.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$_st" ] && [ "$_st" != Z ]
}

# rig_need_deno: the deno binary in tmpfs (DENO); sets DENO_COPY_S the first time.
rig_need_deno() {
	[ -x "$DENO" ] && return 0
	[ -x "/mnt/deno/$RIG_DENO" ] || fail "no deno binary at /mnt/deno/$RIG_DENO (deno share)"
	_t0=$(rig_uptime)
	cp "/mnt/deno/$RIG_DENO" "$DENO.tmp" && mv "$DENO.tmp" "$DENO" || fail "cannot copy deno to $DENO"
	DENO_COPY_S=$(rig_since "$_t0")
	rig_field deno_copy_s "$DENO_COPY_S"
}

rig_modprobe() {
	modprobe "$@" || fail "modprobe $* failed"
}

rig_client_modules() {
	for _m in vhci-hcd usbtest; do rig_modprobe "$_m"; done
	[ -f "$VHCI/status" ] || fail "vhci_hcd.0 has no status file after modprobe vhci-hcd"
}

# --- the gateway ---------------------------------------------------------------------------

rig_gateway_listening() {
	grep -qE '(0100007F|00000000):0CA8 00000000:0000 0A' /proc/net/tcp && [ -S "$GW_SOCK" ]
}

rig_gateway_settled() {
	! rig_alive "$GW_PID" || rig_gateway_listening
}

# rig_start_gateway: starts main.ts serve in the background (GW_PID) and waits until it
# listens on 127.0.0.1:3240 and on its unix socket. Sets GW_START_S.
rig_start_gateway() {
	rig_try_gateway || fail "$RIG_GW_ERR"
}

# rig_try_gateway: rig_start_gateway, but a gateway that does not come up is stopped and the
# function returns 1 with the reason in RIG_GW_ERR instead of failing the scenario.
rig_try_gateway() {
	if [ "$RIG_STANDIN" = kernel ]; then
		_rig_start_standin
		return
	fi
	RIG_GW_ERR="gateway: $ROOT/main.ts does not exist"
	[ -f "$ROOT/main.ts" ] || return 1
	rig_need_deno
	rm -f "$GW_SOCK" "$KBD_SOCK"
	echo "=== rig: gateway start at uptime $(rig_uptime): main.ts $GW_ARGS" >>"$GW_LOG"
	_t0=$(rig_uptime)
	# run.ts --profile: V8's CPU profile of the gateway, written when it exits.
	_profile=
	[ "$RIG_GW_PROFILE" = 1 ] && _profile="--cpu-prof --cpu-prof-dir=$R/prof"
	# shellcheck disable=SC2086 # GW_ARGS and the flags are word lists
	DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 \
		"$DENO" run -A $DENO_FLAGS $_profile "$ROOT/main.ts" $GW_ARGS \
		>>"$GW_LOG" 2>&1 </dev/null &
	GW_PID=$!
	rig_wait 120 rig_gateway_settled
	if ! rig_alive "$GW_PID"; then
		wait "$GW_PID"
		RIG_GW_ERR="gateway: exited with code $? during startup (see gateway.log)"
		GW_PID=
		return 1
	fi
	if ! rig_gateway_listening; then
		RIG_GW_ERR="gateway: not listening on 127.0.0.1:3240 and $GW_SOCK after 120 s"
		kill -KILL "$GW_PID"
		wait "$GW_PID"
		GW_PID=
		return 1
	fi
	GW_START_S=$(rig_since "$_t0")
	log "gateway pid $GW_PID listening after $GW_START_S s"
}

# rig_stop_gateway [SIGNAL]: stops the gateway and checks that SIGTERM/SIGINT exit 0.
# gw_cli ARGS...: main.ts as a client (stdout and stderr as the command leaves them).
gw_cli() {
	# shellcheck disable=SC2086 # DENO_FLAGS is a word list
	DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 \
		timeout -s KILL 90 "$DENO" run -A $DENO_FLAGS "$ROOT/main.ts" "$@"
}

rig_stop_gateway() {
	_sig=${1:-TERM}
	[ -n "$GW_PID" ] || return 0
	[ -z "$_RIG_SOCAT_PID" ] || kill "$_RIG_SOCAT_PID" 2>/dev/null
	_RIG_SOCAT_PID=
	log "stopping gateway pid $GW_PID with SIG$_sig"
	kill "-$_sig" "$GW_PID" 2>/dev/null
	rig_wait 20 eval '! rig_alive "$GW_PID"' ||
		fail "gateway: still running 20 s after SIG$_sig"
	wait "$GW_PID"
	_rc=$?
	echo "=== rig: gateway pid $GW_PID ended by SIG$_sig with code $_rc" >>"$GW_LOG"
	GW_PID=
	if [ "$_sig" = TERM ] || [ "$_sig" = INT ]; then
		[ "$_rc" -eq 0 ] || fail "gateway: exit code $_rc after SIG$_sig (expected 0)"
	fi
	return 0
}

# --- vhci-hcd and attached devices ---------------------------------------------------------

# rig_vhci_device VID:PID: prints the sysfs dir of that device when it sits under vhci_hcd.
rig_vhci_device() {
	for _d in /sys/bus/usb/devices/*; do
		[ -f "$_d/idVendor" ] || continue
		[ "$(cat "$_d/idVendor"):$(cat "$_d/idProduct")" = "$1" ] || continue
		case "$(readlink -f "$_d")" in
		*vhci_hcd*)
			echo "$_d"
			return 0
			;;
		esac
	done
	return 1
}

rig_devnode() {
	# Fails, rather than printing a bogus node, when the device is going away meanwhile.
	_bn=$(cat "$1/busnum" 2>/dev/null) && _dn=$(cat "$1/devnum" 2>/dev/null) || return 1
	[ -n "$_bn" ] && [ -n "$_dn" ] || return 1
	printf '/dev/bus/usb/%03d/%03d\n' "$_bn" "$_dn"
}

# rig_usbtest_bound DEVDIR: an interface of that device is bound to usbtest.
rig_usbtest_bound() {
	ls /sys/bus/usb/drivers/usbtest/ 2>/dev/null | grep -q "^$(basename "$1"):"
}

# rig_vhci_port DEVNAME: the vhci port that holds the device DEVNAME (e.g. 3-1). The status
# file prints ports as 0015: busybox awk reads a leading 0 as octal, so zeros are stripped.
rig_vhci_port() {
	awk -v n="$1" '$7 == n { sub(/^0+/, "", $2); print $2 + 0; found = 1 } END { exit !found }' "$VHCI/status"
}

# rig_vhci_used: number of vhci ports in use.
rig_vhci_used() {
	awk 'NR > 1 && $3 != "004" { n++ } END { print n + 0 }' "$VHCI/status"
}

rig_vhci_free() {
	[ "$(rig_vhci_used)" -eq 0 ]
}

# rig_vhci_port_free PORT: that vhci port is free (status 004, VDEV_ST_NULL).
rig_vhci_port_free() {
	awk -v p="$1" 'NR > 1 { sub(/^0+/, "", $2) } NR > 1 && $2 + 0 == p { found = 1; free = $3 == "004" } END { exit !(found && free) }' \
		"$VHCI/status"
}

# rig_list_has BUSID: `usbip list -r 127.0.0.1` (the gateway on 3240) shows BUSID.
rig_list_has() {
	timeout -s KILL 30 usbip list -r 127.0.0.1 2>&1 | grep -qE "^ +$1: "
}

# rig_attach BUSID [HOST]: usbip attach; fails the scenario when the tool fails. The tool's
# "open vhci_driver" error is retried (up to 5 tries, 1 s apart): libusbip reads every used
# vhci port's device from sysfs, and a device attached just before that is still being
# enumerated (slow under TCG) is not there yet. The gateway has already ended that try's
# session and freed the device when the tool hangs up.
rig_attach() {
	rig_try_attach "$@" || fail "usbip attach -b $1 failed (exit $_rc): $_out"
}

# rig_try_attach BUSID [HOST [TCP_PORT]]: rig_attach (to TCP_PORT, default 3240) that returns
# the tool's exit code, its output in _out, instead of failing.
rig_try_attach() {
	_t0=$(rig_uptime)
	_try=1
	while :; do
		# shellcheck disable=SC2086 # the optional port is two words
		_out=$(timeout -s KILL 60 usbip ${3:+--tcp-port $3} attach -r "${2:-127.0.0.1}" -b "$1" 2>&1)
		_rc=$?
		echo "usbip ${3:+--tcp-port $3 }attach -r ${2:-127.0.0.1} -b $1 (try $_try, exit $_rc, $(rig_since "$_t0") s): $_out"
		case "$_out" in *"open vhci_driver"*) [ "$_rc" -ne 0 ] && [ "$_try" -lt 5 ] || break ;; *) break ;; esac
		_try=$((_try + 1))
		sleep 1
	done
	return "$_rc"
}

# _rig_new_gadget_zero [OLD_DEVNODE]: a Gadget Zero under vhci other than OLD_DEVNODE.
_rig_new_gadget_zero() {
	_g=$(rig_vhci_device 0525:a4a0) || return 1
	_gn=$(rig_devnode "$_g") || return 1
	[ "$_gn" != "$1" ]
}

# rig_wait_gadget_zero [SECONDS [OLD_DEVNODE]]: waits for Gadget Zero under vhci (not the
# device OLD_DEVNODE, which may still be going away) bound to usbtest; sets GZ_DIR, GZ_DEV.
rig_wait_gadget_zero() {
	_t0=$(rig_uptime)
	_secs=${1:-20}
	rig_wait "$_secs" _rig_new_gadget_zero "${2:-none}" ||
		fail "Gadget Zero (0525:a4a0) did not appear under vhci_hcd within $_secs s"
	# The device the wait found (rig_wait runs its test in this shell): not a look-up again,
	# which could meet the old device on its way out.
	GZ_DIR=$_g
	rig_wait 20 rig_usbtest_bound "$GZ_DIR" ||
		fail "usbtest did not bind $(basename "$GZ_DIR") within 20 s"
	GZ_DEV=$(rig_devnode "$GZ_DIR") || fail "Gadget Zero $(basename "$GZ_DIR") went away after binding"
	GZ_ENUM_S=$(rig_since "$_t0")
	log "Gadget Zero $(basename "$GZ_DIR") ($GZ_DEV) bound to usbtest after $GZ_ENUM_S s"
}

# --- testusb -------------------------------------------------------------------------------

# rig_testusb LABEL DEVNODE TEST [ARGS...]: runs one testusb test and records it in the JSON
# object built by rig_tests_json LABEL. Succeeds when the test passed.
rig_testusb() {
	_label=$1 _dev=$2 _t=$3
	shift 3
	_t0=$(rig_uptime)
	_out=$(timeout -s KILL "$TESTUSB_TIMEOUT" testusb -D "$_dev" -t "$_t" "$@" 2>&1)
	_rc=$?
	_wall=$(rig_since "$_t0")
	echo "testusb -D $_dev -t $_t $* (exit $_rc, $_wall s):"
	echo "$_out" | sed 's/^/    /'
	_line=$(echo "$_out" | grep " test $_t[ ,]" | head -n 1)
	_secs=$(echo "$_line" | sed -n 's/.* test [0-9]*, *\([0-9.]*\) secs.*/\1/p')
	_detail=
	if [ -n "$_secs" ]; then
		_status=pass
	elif echo "$_line" | grep -q -- '-->'; then
		_status=fail
		_detail=$(echo "$_line" | sed 's/.*--> //')
	elif [ "$_rc" -eq 137 ]; then
		_status=timeout
		_detail="killed after $TESTUSB_TIMEOUT s"
	elif [ "$_rc" -ne 0 ]; then
		_status=error
		_detail=$(echo "$_out" | tail -n 1)
	else
		_status=skipped
		_detail="not run by usbtest (EOPNOTSUPP)"
	fi
	printf '"%s": {"status": "%s", "seconds": %s, "wall_s": %s, "args": %s, "detail": %s}\n' \
		"$_t" "$_status" "${_secs:-null}" "$_wall" "$(rig_jstr "$*")" "$(rig_jstr "$_detail")" \
		>>"$W/tests-$_label"
	[ "$_status" = pass ]
}

# rig_testusb_suite LABEL DEVNODE TESTS...: runs each test with the parameters above; prints
# the tests that did not pass (empty when all passed).
rig_testusb_suite() {
	_sl=$1 _sd=$2
	shift 2
	_bad=
	for _st in "$@"; do
		case $_st in
		27 | 28) _sargs=$TESTUSB_BULK_ARGS ;;
		4 | 8) _sargs=$TESTUSB_READ_VARY_ARGS ;;
		*) _sargs=$TESTUSB_ARGS ;;
		esac
		# shellcheck disable=SC2086 # word lists
		rig_testusb "$_sl" "$_sd" "$_st" $_sargs >&2 || _bad="$_bad $_st"
	done
	echo "${_bad# }"
}

# rig_tests_json LABEL: the recorded tests of LABEL as one JSON object.
rig_tests_json() {
	printf '{'
	[ -f "$W/tests-$1" ] && sed '$!s/$/,/' "$W/tests-$1" | tr -d '\n'
	printf '}'
}

# rig_usbtest_alt ALT DEVDIR: sets usbtest's alt parameter and rebinds the device's interfaces.
rig_usbtest_alt() {
	echo "$1" >/sys/module/usbtest/parameters/alt || fail "cannot set usbtest alt=$1"
	for _i in /sys/bus/usb/drivers/usbtest/"$(basename "$2")":*; do
		_n=$(basename "$_i")
		echo "$_n" >/sys/bus/usb/drivers/usbtest/unbind
		echo "$_n" >/sys/bus/usb/drivers/usbtest/bind || fail "cannot rebind $_n to usbtest (alt=$1)"
	done
	rig_wait 10 rig_usbtest_bound "$2" || fail "usbtest did not rebind $(basename "$2") with alt=$1"
	log "usbtest alt=$1 on $(basename "$2")"
}

# rig_vhci_first_used: the first vhci port in use.
rig_vhci_first_used() {
	awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0; found = 1; exit } END { exit !found }' "$VHCI/status"
}

# --- the kernel's own Gadget Zero (kernel_baseline, and the developer stand-in) ------------

_rig_kgz_device() {
	for _d in /sys/bus/usb/devices/*; do
		[ -f "$_d/idVendor" ] || continue
		[ "$(cat "$_d/idVendor"):$(cat "$_d/idProduct")" = 0525:a4a0 ] || continue
		case "$(readlink -f "$_d")" in *vhci_hcd*) continue ;; esac
		echo "$_d"
		return 0
	done
	return 1
}

# rig_kernel_gadget_zero: configfs gadget 0525:a4a0 with SourceSink in configuration 3 and
# Loopback in configuration 2 (as g_zero, which Debian does not build) bound to dummy_udc;
# sets KGZ_DIR (sysfs dir on dummy_hcd) and KGZ_BUSID.
rig_kernel_gadget_zero() {
	for _m in configfs dummy_hcd libcomposite usb_f_ss_lb usbip-host vhci-hcd usbtest; do
		rig_modprobe "$_m"
	done
	mount -t configfs none /sys/kernel/config 2>/dev/null
	_g=/sys/kernel/config/usb_gadget/gz
	mkdir "$_g" || fail "cannot create a configfs gadget"
	echo 0x0525 >"$_g/idVendor"
	echo 0xa4a0 >"$_g/idProduct"
	echo 0x0200 >"$_g/bcdUSB"
	mkdir "$_g/strings/0x409"
	echo "usbipgw rig" >"$_g/strings/0x409/manufacturer"
	echo "Gadget Zero (kernel)" >"$_g/strings/0x409/product"
	echo "0123456789" >"$_g/strings/0x409/serialnumber"
	mkdir "$_g/functions/SourceSink.0" "$_g/functions/Loopback.0" || fail "no SourceSink/Loopback"
	mkdir "$_g/configs/c.3" "$_g/configs/c.2"
	mkdir "$_g/configs/c.3/strings/0x409" "$_g/configs/c.2/strings/0x409"
	echo "source/sink" >"$_g/configs/c.3/strings/0x409/configuration"
	echo "loopback" >"$_g/configs/c.2/strings/0x409/configuration"
	ln -s "$_g/functions/SourceSink.0" "$_g/configs/c.3/"
	ln -s "$_g/functions/Loopback.0" "$_g/configs/c.2/"
	_udc=$(ls /sys/class/udc | head -n 1)
	[ -n "$_udc" ] || fail "no UDC (dummy_udc) found"
	echo "$_udc" >"$_g/UDC" || fail "cannot bind the gadget to $_udc"
	rig_wait 20 _rig_kgz_device >/dev/null || fail "the configfs Gadget Zero did not enumerate on dummy_hcd"
	KGZ_DIR=$(_rig_kgz_device)
	KGZ_BUSID=$(basename "$KGZ_DIR")
}

# _rig_start_standin: instead of main.ts, the kernel's Gadget Zero exported by usbipd, with a
# socat bridge for the unix socket (rig.standin=kernel; only to check the rig's own plumbing).
_rig_start_standin() {
	[ -n "$KGZ_BUSID" ] || {
		rig_kernel_gadget_zero
		usbip bind -b "$KGZ_BUSID" >/dev/null || fail "stand-in: usbip bind failed"
	}
	GZ_BUSID=$KGZ_BUSID
	echo "=== rig: STAND-IN gateway (kernel usbipd) start at uptime $(rig_uptime)" >>"$GW_LOG"
	rm -f "$GW_SOCK"
	usbipd -4 >>"$GW_LOG" 2>&1 </dev/null &
	GW_PID=$!
	socat "UNIX-LISTEN:$GW_SOCK,fork" TCP:127.0.0.1:3240 </dev/null >>"$GW_LOG" 2>&1 &
	_RIG_SOCAT_PID=$!
	rig_wait 20 rig_gateway_listening || fail "stand-in: usbipd/socat not listening"
	GW_START_S=0
}

# --- QEMU's own USB devices and requests to the host (passthrough scenarios) ---------------

# QEMU's usb-storage stick, usb-kbd and FTDI usb-serial on the qemu-xhci (rig.ts
# QEMU_USB_DEVICES); their QMP ids are stick, kbd and serial.
STICK_ID=46f4:0001
QKBD_ID=0627:0001
FTDI_ID=0403:6001

# rig_qemu_usb_modules: the host controller and the drivers of QEMU's devices.
rig_qemu_usb_modules() {
	for _m in xhci-pci usb-storage sd_mod crc32c_generic ext4 usbhid hid-generic evdev ftdi_sio; do
		rig_modprobe "$_m"
	done
}

# rig_host_request LINE: asks the host to run LINE over QMP (`device_del ID` or
# `device_add ID`) through the results share (rig.ts _serveHostRequests). Prints the host's
# answer (`ok SECONDS` or `error MESSAGE`); succeeds on ok. Waits at most 20 s.
rig_host_request() {
	_n=$(($(cat "$W/host-req-n" 2>/dev/null || echo 0) + 1))
	echo "$_n" >"$W/host-req-n"
	_rq=$R/host-req/$_n
	{ echo "$*" >"$_rq.tmp" && mv "$_rq.tmp" "$_rq"; } || {
		echo "error cannot write $_rq"
		return 1
	}
	rig_wait 20 test -f "$_rq.done" || {
		echo "error the host did not answer within 20 s"
		return 1
	}
	_ans=$(cat "$_rq.done")
	echo "$_ans"
	case $_ans in ok*) return 0 ;; esac
	return 1
}

# rig_native_device VID:PID: prints the sysfs dir of that device when it is NOT under vhci.
rig_native_device() {
	for _d in /sys/bus/usb/devices/*; do
		[ -f "$_d/idVendor" ] || continue
		[ "$(cat "$_d/idVendor"):$(cat "$_d/idProduct")" = "$1" ] || continue
		case "$(readlink -f "$_d")" in *vhci_hcd*) continue ;; esac
		echo "$_d"
		return 0
	done
	return 1
}

# rig_disk_under PATTERN: /dev/sdX whose sysfs path matches the case PATTERN (e.g. *vhci_hcd*).
rig_disk_under() {
	for _b in /sys/block/sd*; do
		[ -e "$_b" ] || continue
		case "$(readlink -f "$_b")" in
		$1)
			[ -b "/dev/$(basename "$_b")" ] || continue
			[ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] || continue
			echo "/dev/$(basename "$_b")"
			return 0
			;;
		esac
	done
	return 1
}

# rig_native_disk: a disk NOT attached through vhci_hcd (the guest has no other sd disks).
rig_native_disk() {
	for _b in /sys/block/sd*; do
		[ -e "$_b" ] || continue
		case "$(readlink -f "$_b")" in *vhci_hcd*) continue ;; esac
		[ -b "/dev/$(basename "$_b")" ] || continue
		[ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] || continue
		echo "/dev/$(basename "$_b")"
		return 0
	done
	return 1
}

# rig_vhci_disk: the disk attached through vhci_hcd.
rig_vhci_disk() {
	rig_disk_under '*vhci_hcd*'
}

# rig_vhci_input: /dev/input/eventN of an input device under vhci_hcd.
rig_vhci_input() {
	for _e in /sys/class/input/event*; do
		[ -e "$_e" ] || continue
		case "$(readlink -f "$_e/device")" in
		*vhci_hcd*)
			echo "/dev/input/$(basename "$_e")"
			return 0
			;;
		esac
	done
	return 1
}

# rig_vhci_tty DRIVER: ttyUSBn under vhci_hcd whose USB serial port is bound to DRIVER.
rig_vhci_tty() {
	for _t in /sys/bus/usb-serial/devices/ttyUSB*; do
		[ -e "$_t" ] || continue
		case "$(readlink -f "$_t")" in *vhci_hcd*) ;; *) continue ;; esac
		[ "$(basename "$(readlink -f "$_t/driver")")" = "$1" ] || continue
		echo "$(basename "$_t")"
		return 0
	done
	return 1
}

# rig_stick_expect: the random file's name and sha256 the host put on the stick
# (share/stick.json); sets STICK_FILE, STICK_SHA.
rig_stick_expect() {
	STICK_FILE=$(sed -n 's/.*"file": *"\([^"]*\)".*/\1/p' "$R/stick.json")
	STICK_SHA=$(sed -n 's/.*"sha256": *"\([0-9a-f]*\)".*/\1/p' "$R/stick.json")
	[ -n "$STICK_FILE" ] && [ -n "$STICK_SHA" ] || fail "no stick.json from the host in the share"
}

# rig_stick_checksum DISK LABEL: mounts DISK read-only, sha256s the random file, compares it
# with the host's; records LABEL_sha256 and LABEL_checksum_s.
rig_stick_checksum() {
	_t0=$(rig_uptime)
	mkdir -p /mnt/stick
	timeout -s KILL 30 mount -t ext4 -o ro,noload "$1" /mnt/stick || fail "$2: cannot mount $1 read-only"
	_sum=$(timeout -s KILL 60 sha256sum "/mnt/stick/$STICK_FILE" | awk '{ print $1 }')
	timeout -s KILL 30 umount /mnt/stick || fail "$2: cannot unmount $1"
	rig_field_str "$2_sha256" "$_sum"
	rig_field "$2_checksum_s" "$(rig_since "$_t0")"
	log "$2: sha256 of $STICK_FILE on $1: $_sum (host: $STICK_SHA)"
	[ "$_sum" = "$STICK_SHA" ] || fail "$2: checksum of $STICK_FILE on $1 is '$_sum', the host's is $STICK_SHA"
}

# rig_dd_mbs DISK LABEL: reads 64 MiB of DISK with O_DIRECT; prints MB/s (10^6 bytes/s) and
# records LABEL_s.
rig_dd_mbs() {
	_t0=$(rig_uptime)
	timeout -s KILL 120 dd if="$1" of=/dev/null bs=1M count=64 iflag=direct 2>"$W/dd.err" ||
		fail "$2: dd of $1 failed: $(cat "$W/dd.err")"
	_s=$(rig_since "$_t0")
	echo "dd $1 ($2): $_s s; $(tail -n 1 "$W/dd.err")" >&2
	awk -v s="$_s" 'BEGIN { printf "%.1f", 67108864 / s / 1e6 }'
}
