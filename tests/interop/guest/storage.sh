# Functions of the thumb-drive scenarios (issue 6: storage, storage_baseline), sourced after
# lib.sh: modules, finding a drive's disk by its SCSI product string, payload files, dd runs.

# The gateway's drives (lib/devices/storage) are 1209:0004.
ST_ID=1209:0004

# st_modules: the USB/IP client, usb-storage with sd, and the file systems the scenarios use.
st_modules() {
	for _m in vhci-hcd usb-storage sd_mod crc32c_generic ext4 vfat nls_cp437 nls_ascii nls_utf8; do
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

# st_attach BUSID MODEL LABEL: usbip attach, then waits for the drive's disk (30 s); sets
# ST_DISK, ST_PORT (the vhci port) and records LABEL_attach_to_disk_s.
st_attach() {
	_t0=$(rig_uptime)
	rig_attach "$1"
	rig_wait 30 st_disk "$2" >/dev/null || fail "$3: no disk with model $2 under vhci_hcd within 30 s"
	ST_DISK=$(st_disk "$2")
	_usb=$(st_usb_of "$ST_DISK")
	ST_PORT=$(rig_vhci_port "$_usb") || fail "$3: no vhci port for $_usb ($ST_DISK)"
	rig_field "$3_attach_to_disk_s" "$(rig_since "$_t0")"
	log "$3: $1 is $ST_DISK (USB $_usb, vhci port $ST_PORT, $(cat "/sys/block/$(basename "$ST_DISK")/size") sectors)"
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
