/**
 * The systemd unit files of usbipgw (systemd.service(5), systemd.socket(5), systemd.exec(5),
 * systemd.resource-control(5)) and the configuration a fresh install starts with, as text in
 * the module graph: the compiled binary installs them without reading files beside it.
 * `packaging/systemd/` holds the same texts rendered with the default paths (a test keeps
 * them equal; `deno run -A packaging/systemd/generate.ts` rewrites them).
 *
 * @module
 */

import { USBIP_PORT } from "../protocol/constants.ts";

/** Where an install puts things. */
export interface UnitPaths {
  /** The gateway binary `ExecStart=` runs. */
  binary: string;
  /** The configuration file `serve --config` reads. */
  config: string;
}

/** The default install: `/usr/local/bin/usbipgw` and `/etc/usbipgw/usbipgw.toml`. */
export const DEFAULT_UNIT_PATHS: Readonly<UnitPaths> = Object.freeze({
  binary: "/usr/local/bin/usbipgw",
  config: "/etc/usbipgw/usbipgw.toml",
});

/** The service's runtime folder (`RuntimeDirectory=usbipgw`). */
export const RUNTIME_DIR = "/run/usbipgw";

/** The unix socket of the service, in its runtime folder (writable under ProtectSystem=strict). */
export const SERVICE_SOCKET = `${RUNTIME_DIR}/usbipgw.sock`;

/** The path clients use by default as root; a symlink to {@linkcode SERVICE_SOCKET}. */
export const SOCKET_LINK = "/run/usbipgw.sock";

/** vhci_hcd's sysfs folder, which holds its `attach` and `detach` files (vhci_sysfs.c). */
export const VHCI_SYSFS_DIR = "/sys/devices/platform/vhci_hcd.0";

/** Where the usbip tool and the gateway keep vhci port records (`/var/run/vhci_hcd`). */
export const VHCI_STATE_DIR = "/run/vhci_hcd";

/** The modules-load.d(5) file that loads vhci-hcd at boot. */
export const MODULES_LOAD_FILE = "/etc/modules-load.d/usbipgw.conf";

/** The unit names. */
export const SERVICE_UNIT = "usbipgw.service";
export const SOCKET_UNIT = "usbipgw.socket";

/**
 * `usbipgw.service`: a `Type=notify` service with a watchdog, reloaded by SIGHUP, and
 * sandboxed so that it keeps only what it needs: usbfs and pty device nodes, its runtime
 * folder, vhci_hcd's sysfs folder and port records (to attach for users), TCP port 3240
 * and unix sockets, which include the system bus that pkcheck(1) talks to.
 * `SocketBindDeny=any` keeps the V8 inspector that Deno opens at SIGUSR1 from binding
 * 127.0.0.1:9229.
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { serviceUnit } from "./units.ts";
 * const unit = serviceUnit({ binary: "/opt/usbipgw/bin/usbipgw", config: "/etc/usbipgw/gw.toml" });
 * assertStringIncludes(unit, "ExecStart=/opt/usbipgw/bin/usbipgw serve --config /etc/usbipgw/gw.toml\n");
 * ```
 */
export function serviceUnit(paths: UnitPaths = DEFAULT_UNIT_PATHS): string {
  return `# usbipgw.service: the usbipgw USB/IP gateway as a systemd service.
# Installed by "usbipgw install-service"; see README.md, "Running as a systemd service".
# Local changes belong in a drop-in: systemctl edit usbipgw.service

[Unit]
Description=usbipgw USB/IP gateway
Documentation=man:usbip(8)
After=network.target

[Service]
Type=notify
NotifyAccess=main
# ${SOCKET_LINK}, where clients look by default, leads to the socket (the "+" runs this one
# command outside the sandbox, which keeps /run read-only).
ExecStartPre=+/bin/ln -sfn ${SERVICE_SOCKET} ${SOCKET_LINK}
# The folder of vhci port records, as "usbip attach" makes it, so that it can be made
# writable below (ReadWritePaths= needs it to exist when the sandbox is set up).
ExecStartPre=+/bin/mkdir -p -m 0700 ${VHCI_STATE_DIR}
ExecStart=${paths.binary} serve --config ${paths.config}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
WatchdogSec=30s
TimeoutStopSec=15s
# The unix socket lives here (writable under ProtectSystem=strict). It is kept when the
# service stops: usbipgw.socket may hold the socket there.
RuntimeDirectory=usbipgw
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes

# Sandbox. The service runs as root for usbfs and for handing its unix socket to the console
# user; the access policy decides who may see and import which device.
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
# No MemoryDenyWriteExecute=: V8 compiles JavaScript to machine code at run time.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# usbfs (/dev/bus/usb/*) for host devices, and ptys for the pty serial back-end.
DevicePolicy=closed
DeviceAllow=char-usb_device rw
DeviceAllow=/dev/ptmx rw
DeviceAllow=char-pts rw
# The only port the gateway binds. This keeps Deno's inspector (SIGUSR1, 127.0.0.1:9229) shut;
# add SocketBindAllow= lines in a drop-in for tcp: back-ends. Device sockets (socket=) belong
# in /run/usbipgw/; for other paths (file: back-ends, storage images), add ReadWritePaths=
# lines (a storage image with ro may use ReadOnlyPaths= instead).
SocketBindDeny=any
SocketBindAllow=tcp:${USBIP_PORT}
# Attaching into this kernel for users: the gateway writes vhci_hcd's attach and detach
# files, which ProtectKernelTunables= makes read-only with the rest of /sys, and records
# ports where "usbip port" reads them. vhci-hcd is loaded at boot by
# ${MODULES_LOAD_FILE} (ProtectKernelModules= forbids modprobe here); when it is
# not loaded at start, the "-" skips the folder and attaching for users stays unavailable
# until the module is loaded and the service restarted.
ReadWritePaths=-${VHCI_SYSFS_DIR}
ReadWritePaths=-${VHCI_STATE_DIR}
# Who may attach is decided by polkit for users other than root and the console user: the
# gateway runs pkcheck, which reaches the system bus over AF_UNIX at
# /run/dbus/system_bus_socket (connecting needs no write access to /run) and is not
# setuid, so NoNewPrivileges= and RestrictSUIDSGID= do not hinder it.

[Install]
WantedBy=multi-user.target
`;
}

/**
 * `usbipgw.socket`: socket activation on loopback port 3240 and on the unix socket, with
 * `/run/usbipgw.sock` as a symlink to it. Unix peers may connect; the gateway reads each one's
 * SO_PEERCRED credentials and its policy decides (by default root and the console user).
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { socketUnit } from "./units.ts";
 * assertStringIncludes(socketUnit(), "ListenStream=/run/usbipgw/usbipgw.sock\n");
 * ```
 */
export function socketUnit(): string {
  return `# usbipgw.socket: starts usbipgw.service at the first connection (optional).
# Installed by "usbipgw install-service --socket"; see README.md, "Running as a systemd service".
# The gateway serves on these sockets instead of the listeners of its configuration.

[Unit]
Description=usbipgw USB/IP gateway sockets
Documentation=man:usbip(8)

[Socket]
# Loopback only. For other machines, use ListenStream=${USBIP_PORT} (every address) in a drop-in
# and allow their TCP peers with [[rule]]s in the configuration.
ListenStream=127.0.0.1:${USBIP_PORT}
ListenStream=${SERVICE_SOCKET}
Symlinks=${SOCKET_LINK}
FileDescriptorName=usbipgw
# Every local user may connect; the policy checks each peer's uid.
SocketMode=0666
DirectoryMode=0755
NoDelay=yes
KeepAlive=yes
Service=${SERVICE_UNIT}

[Install]
WantedBy=sockets.target
`;
}

/**
 * The modules-load.d(5) file for {@linkcode MODULES_LOAD_FILE}: systemd-modules-load loads
 * vhci-hcd early at boot (before sysinit.target, so before the service starts and sets up
 * its sandbox, where `ReadWritePaths=` needs vhci_hcd's folder to exist).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { modulesLoadConf } from "./units.ts";
 * assertEquals(modulesLoadConf().split("\n").filter((l) => l !== "" && !l.startsWith("#")), [
 *   "vhci-hcd",
 * ]);
 * ```
 */
export function modulesLoadConf(): string {
  return `# ${MODULES_LOAD_FILE}: kernel modules for the usbipgw USB/IP gateway.
# Installed by "usbipgw install-service"; read at boot by systemd-modules-load.service.
# vhci-hcd is the USB/IP client's virtual host controller, into which the gateway attaches
# devices for local users (it pulls in usbip-core).
vhci-hcd
`;
}

/**
 * The configuration a fresh install writes (when there is none): the service's listeners and
 * logging, devices and rules left to the administrator (without devices the gateway serves
 * its demo set).
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { defaultConfig } from "./units.ts";
 * assertStringIncludes(defaultConfig(), 'path = "/run/usbipgw/usbipgw.sock"');
 * ```
 */
export function defaultConfig(): string {
  return `# usbipgw configuration, read by "usbipgw serve --config"; see README.md, "Configuration file".
# "systemctl reload usbipgw" applies changed devices and rules; listeners need a restart.

tcp = ["127.0.0.1:${USBIP_PORT}"]

# Without owner and mode, the socket follows the console user the way udev's uaccess does.
[[unix]]
path = "${SERVICE_SOCKET}"

[logging]
level = "info"
# auto: journal priorities under systemd, text on a terminal; or text, journal, json
format = "auto"

# The devices to serve. Without any, the demo set: Gadget Zero on 1-1, a keyboard on 1-2.
# [[device]]
# type = "host"
# vid = "0403"
# pid = "6001"

# Who may import what; the first matching rule decides. Without a matching rule, root and
# the console user may use the unix socket, and TCP peers are denied.
# [[rule]]
# action = "allow"
# transport = "tcp"
# source = "192.168.1.0/24"
`;
}
