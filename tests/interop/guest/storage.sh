# Functions of the thumb-drive scenarios (issue 6: storage, storage_baseline), sourced after
# lib.sh: modules, finding a drive's disk by its SCSI product string, payload files, dd runs.

# The gateway's drives (lib/devices/storage) are 1209:0004.
ST_ID=1209:0004

# st_modules: the USB/IP client, usb-storage and uas with sd, and the file systems the
# scenarios use.
st_modules() {
	for _m in vhci-hcd usb-storage uas sd_mod crc32c_generic ext4 vfat nls_cp437 nls_ascii nls_utf8; do
		rig_modprobe "$_m"
	done
	[ -f "$VHCI/status" ] || fail "vhci_hcd.0 has no status file after modprobe vhci-hcd"
}

# st_disk MODEL [PATTERN]: /dev/sdX whose SCSI model (INQUIRY product) is MODEL and whose sysfs
# path matches the case PATTERN (default *vhci_hcd*); the disk must have a size.
st_disk() {
	for _b in /sys/block/sd*; do
		[ -e "$_b" ] || continue
		case "$(readlink -f "$_b")" in
		${2:-*vhci_hcd*}) ;;
		*) continue ;;
		esac
		_model=$(sed 's/ *$//' "$_b/device/model" 2>/dev/null)
		[ "$_model" = "$1" ] || continue
		[ -b "/dev/$(basename "$_b")" ] || continue
		[ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] || continue
		echo "/dev/$(basename "$_b")"
		return 0
	done
	return 1
}

# st_usb_of DISK: the USB device name (e.g. 3-1) a /dev/sdX hangs off.
st_usb_of() {
	readlink -f "/sys/block/$(basename "$1")" |
		sed -n 's#.*/\([0-9]*-[0-9.]*\)/[0-9]*-[0-9.]*:[0-9]*\.[0-9]*/host.*#\1#p'
}

# st_driver USB: the driver bound to interface 0 of USB device USB (uas or usb-storage).
st_driver() {
	basename "$(readlink -f "/sys/bus/usb/devices/$1:1.0/driver")"
}

# st_attach BUSID MODEL LABEL: usbip attach, then waits for the drive's disk (30 s); sets
# ST_DISK, ST_PORT (the vhci port) and records LABEL_attach_to_disk_s and LABEL_driver, which
# must be ST_DRIVER (default usb-storage).
st_attach() {
	_t0=$(rig_uptime)
	rig_attach "$1"
	rig_wait 30 st_disk "$2" >/dev/null || fail "$3: no disk with model $2 under vhci_hcd within 30 s"
	ST_DISK=$(st_disk "$2")
	_usb=$(st_usb_of "$ST_DISK")
	ST_PORT=$(rig_vhci_port "$_usb") || fail "$3: no vhci port for $_usb ($ST_DISK)"
	rig_field "$3_attach_to_disk_s" "$(rig_since "$_t0")"
	_driver=$(st_driver "$_usb")
	rig_field_str "$3_driver" "$_driver"
	log "$3: $1 is $ST_DISK (USB $_usb, vhci port $ST_PORT, driver $_driver, $(cat "/sys/block/$(basename "$ST_DISK")/size") sectors)"
	[ "$_driver" = "${ST_DRIVER:-usb-storage}" ] || fail "$3: $_driver drives $1, expected ${ST_DRIVER:-usb-storage}"
}

# st_detach PORT DISK LABEL: usbip detach; waits for the port to be free and the disk gone.
st_detach() {
	_out=$(timeout -s KILL 30 usbip detach -p "$1" 2>&1) || fail "$3: usbip detach -p $1 failed: $_out"
	rig_wait 10 rig_vhci_port_free "$1" || fail "$3: vhci port $1 not freed within 10 s of the detach"
	rig_wait 10 eval "[ ! -e /sys/block/$(basename "$2") ]" || fail "$3: $2 still there 10 s after the detach"
}

# st_payload DIR SMALL: a 4 MiB file of random bytes (big.bin) and SMALL files of 1 to 6000
# random bytes under DIR/small (names of 19 characters: long names on FAT).
st_payload() {
	mkdir -p "$1/small"
	head -c 4194304 /dev/urandom >"$1/big.bin" || fail "cannot write $1/big.bin"
	awk -v n="$2" 'BEGIN { srand(); for (i = 1; i <= n; i++) printf "%03d %d\n", i, 1 + int(rand() * 6000) }' |
		while read -r _i _n; do
			head -c "$_n" /dev/urandom >"$1/small/small-file-$_i.dat" || exit 1
		done || fail "cannot write the small files under $1"
}

# st_verify DIR MANIFEST LABEL: sha256sum -c of MANIFEST (paths relative to DIR); records
# LABEL_verified (files checked) and fails on any mismatch.
st_verify() {
	# No `timeout` here: busybox's keeps a watcher process (with this cwd) for up to a second
	# after the command, which would make the umount that follows fail with EBUSY.
	_out=$(cd "$1" && sha256sum -c "$2" 2>&1)
	_rc=$?
	_n=$(echo "$_out" | grep -c ': OK$')
	_want=$(grep -c . "$2")
	rig_field "$3_verified" "$_n"
	log "$3: $_n of $_want files verified in $1 (sha256sum -c exit $_rc)"
	[ "$_rc" -eq 0 ] && [ "$_n" -eq "$_want" ] ||
		fail "$3: sha256sum -c in $1: $(echo "$_out" | grep -v ': OK$' | head -n 5 | tr '\n' ';')"
}

# st_dd_mbs LABEL DD-ARGS...: runs busybox dd with DD-ARGS (bs=1M count=ST_MIB ...) and prints
# MB/s (10^6 bytes/s) measured with the uptime clock.
st_dd_mbs() {
	_l=$1
	shift
	_t0=$(rig_uptime)
	timeout -s KILL 300 dd "$@" 2>"$W/dd.err" || fail "$_l: dd $* failed: $(cat "$W/dd.err")"
	_s=$(rig_since "$_t0")
	echo "dd $* ($_l): $_s s; $(tail -n 1 "$W/dd.err")" >&2
	awk -v s="$_s" -v m="$ST_MIB" 'BEGIN { printf "%.1f", m * 1048576 / s / 1e6 }'
}

# st_stats LABEL VALUES: records LABEL_mbs (all), LABEL_median_mbs and LABEL_best_mbs.
st_stats() {
	_sorted=$(echo "$2" | tr ' ' '\n' | sort -n)
	_median=$(echo "$_sorted" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	_best=$(echo "$_sorted" | tail -n 1)
	rig_field "$1_mbs" "[$(echo "$2" | sed 's/ /, /g')]"
	rig_field "$1_median_mbs" "$_median"
	rig_field "$1_best_mbs" "$_best"
	log "$1: $2 MB/s (median $_median, best $_best)"
}

# st_umount DIR LABEL: unmounts DIR, retrying for 10 s while it is busy.
st_umount() {
	rig_wait 10 umount "$1" || fail "$2: cannot unmount $1: $(umount "$1" 2>&1)"
}

# --- the kernel's mass-storage gadget (storage_baseline, storage_latency) -------------------

# st_kernel_modules: dummy_hcd with two UDCs (dummy_udc.0 and .1, SuperSpeed-capable), the
# mass-storage function and usbip-host, configfs mounted.
st_kernel_modules() {
	rig_modprobe configfs
	rig_modprobe dummy_hcd is_super_speed=1 num=2
	for _m in libcomposite usb_f_mass_storage usbip-host; do rig_modprobe "$_m"; done
	mount -t configfs none /sys/kernel/config 2>/dev/null
}

# st_kernel_gadget NAME MODEL MAX_SPEED UDC MIB [REMOVABLE]: a configfs gadget with one
# usb_f_mass_storage LUN (removable unless REMOVABLE is 0) on a tmpfs file of MIB MiB
# (/tmp/NAME.img), SCSI product MODEL, bound to UDC; waits for its disk on dummy_hcd and sets
# ST_KBUSID (its USB device there).
st_kernel_gadget() {
	_g=/sys/kernel/config/usb_gadget/$1
	truncate -s "${5}M" "/tmp/$1.img" || fail "cannot create /tmp/$1.img"
	mkdir "$_g" || fail "cannot create the configfs gadget $1"
	echo 0x0525 >"$_g/idVendor"
	echo 0xa4a5 >"$_g/idProduct"
	echo 0x0300 >"$_g/bcdUSB"
	echo "$3" >"$_g/max_speed" || fail "$1: cannot set max_speed $3"
	mkdir "$_g/strings/0x409"
	echo "usbipgw rig" >"$_g/strings/0x409/manufacturer"
	echo "Mass Storage (kernel)" >"$_g/strings/0x409/product"
	echo "0123456789AB" >"$_g/strings/0x409/serialnumber"
	mkdir "$_g/functions/mass_storage.0" || fail "no mass_storage function (usb_f_mass_storage)"
	echo "${6:-1}" >"$_g/functions/mass_storage.0/lun.0/removable"
	# vendor (8), product (16), revision (4): the model st_disk looks for
	printf '%-8s%-16s%-4s\n' usbipgw "$2" 1.00 >"$_g/functions/mass_storage.0/lun.0/inquiry_string"
	echo "/tmp/$1.img" >"$_g/functions/mass_storage.0/lun.0/file" || fail "$1: cannot set the backing file"
	mkdir "$_g/configs/c.1" "$_g/configs/c.1/strings/0x409"
	echo "mass storage" >"$_g/configs/c.1/strings/0x409/configuration"
	ln -s "$_g/functions/mass_storage.0" "$_g/configs/c.1/"
	echo "$4" >"$_g/UDC" || fail "$1: cannot bind the gadget to $4"
	rig_wait 30 st_disk "$2" '*dummy_hcd*' >/dev/null || fail "$1: no disk on dummy_hcd within 30 s"
	ST_KBUSID=$(st_usb_of "$(st_disk "$2" '*dummy_hcd*')")
	log "kernel gadget $1: $ST_KBUSID, $(cat "/sys/bus/usb/devices/$ST_KBUSID/speed") Mb/s"
}

# st_usbipd PORT BUSID...: usbip bind of each BUSID, then usbipd -D on TCP PORT (the gateway
# has 3240).
st_usbipd() {
	_port=$1
	shift
	for _b in "$@"; do
		_out=$(usbip bind -b "$_b" 2>&1) || fail "usbip bind -b $_b failed: $_out"
	done
	usbipd -D -t "$_port" || fail "usbipd -D -t $_port failed"
	rig_wait 20 eval 'usbip --tcp-port $_port list -r 127.0.0.1 >/dev/null 2>&1' || fail "usbipd does not answer"
}

# st_try_attach BUSID MODEL LABEL [TCP_PORT]: usbip attach from the gateway (or from usbipd on
# TCP_PORT), then waits 30 s for the disk; sets ST_DISK and ST_BOUND (the driver) and records
# LABEL_attach_to_disk_s and LABEL_driver, or returns 1 with the reason in ST_ERR.
st_try_attach() {
	_at0=$(rig_uptime)
	rig_try_attach "$1" 127.0.0.1 "$4" || {
		ST_ERR="$3: usbip attach -b $1 failed (exit $_rc): $_out"
		return 1
	}
	rig_wait 30 st_disk "$2" >/dev/null || {
		ST_ERR="$3: no disk with model $2 under vhci_hcd within 30 s of the attach"
		return 1
	}
	ST_DISK=$(st_disk "$2")
	ST_BOUND=$(st_driver "$(st_usb_of "$ST_DISK")")
	rig_field "$3_attach_to_disk_s" "$(rig_since "$_at0")"
	rig_field_str "$3_driver" "$ST_BOUND"
	log "$3: $1 is $ST_DISK (driver $ST_BOUND)"
}

# _st_detach PORT: detaches vhci port PORT; true once it is free.
_st_detach() {
	usbip detach -p "$1" >/dev/null 2>&1 && return 0
	awk -v p="$1" 'NR > 1 { q = $2; sub(/^0+/, "", q); if (q + 0 == p && $3 != "004") u = 1 }
		END { exit u }' "$VHCI/status"
}

# st_detach_all: usbip detach of every vhci port in use; waits until all are free.
st_detach_all() {
	for _p in $(awk 'NR > 1 && $3 != "004" { sub(/^0+/, "", $2); print $2 + 0 }' "$VHCI/status"); do
		# usbip detach first reads every port in use with its USB device
		# (tools/usb/usbip/libsrc/vhci_driver.c, imported_device_init), which fails for a port
		# whose device the previous detach is still removing (seen once: "detach -p 16" right
		# after 15's); so a failure counts only while the port is still in use.
		rig_wait 10 _st_detach "$_p" || fail "usbip detach -p $_p failed"
	done
	rig_wait 10 rig_vhci_free || fail "vhci ports not freed after the detaches"
}
