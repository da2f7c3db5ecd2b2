// The QEMU interop rig: boots Debian's own kernel with the real Linux USB/IP client (vhci-hcd +
// usbip) and runs one guest scenario per VM (tests/interop/README.md).

import { errorMessage } from "../../lib/util/error_message.ts";
import { makeTestPki } from "../transport/_certs.ts";

/** The scenarios the guest knows (guest/scenarios/<name>.sh). */
export const SCENARIOS = [
  "smoke",
  "list_attach",
  "testusb",
  "unix_attach",
  "keyboard",
  "hangup",
  "kernel_baseline",
  "passthrough_kernel",
  "passthrough",
  "passthrough_baseline",
  "serial",
  "gotemp",
  "pointer",
  "client_attach",
  "storage",
  "storage_baseline",
  "user_attach",
  "tls",
  "testusb_super",
  "storage_uas",
  "storage_latency",
  "testusb_baseline",
  "gateway_ab",
] as const;

/** A scenario name. */
export type ScenarioName = typeof SCENARIOS[number];

/** Scenarios that start our gateway (main.ts) in the guest. */
export const GATEWAY_SCENARIOS: readonly ScenarioName[] = [
  "list_attach",
  "testusb",
  "unix_attach",
  "keyboard",
  "hangup",
  "passthrough",
  "serial",
  "gotemp",
  "pointer",
  "client_attach",
  "storage",
  "storage_baseline",
  "user_attach",
  "tls",
  "testusb_super",
  "storage_uas",
  "storage_latency",
  "testusb_baseline",
  "gateway_ab",
];

/**
 * Scenarios of the thumb drive (issue 6): the guest formats, checks and benchmarks disks, and
 * the host checks the images afterwards ({@linkcode storageMissingReason}).
 */
export const STORAGE_SCENARIOS: readonly ScenarioName[] = [
  "storage",
  "storage_uas",
  "storage_baseline",
];

/**
 * Scenarios whose guest gets QEMU's own USB devices on a qemu-xhci (a usb-storage stick backed
 * by an ext4 image built at test time, a usb-kbd, an FTDI usb-serial, a usb-audio) and a QMP
 * socket that the host drives on the guest's request ({@linkcode QEMU_USB_DEVICES}).
 */
export const QEMU_USB_SCENARIOS: readonly ScenarioName[] = [
  "passthrough_kernel",
  "passthrough",
  "passthrough_baseline",
  "gateway_ab",
];

/** Kernel modules put into the initramfs, with everything they depend on. */
export const MODULES = [
  "virtio_pci",
  "9pnet_virtio",
  "9p",
  "vhci-hcd",
  "usbip-core",
  "usbip-host",
  "usbtest",
  "dummy_hcd",
  "libcomposite",
  "usb_f_ss_lb",
  "usbhid",
  "hid-generic",
  "evdev",
  "configfs",
  "usbmon",
  "xhci-pci",
  "usb-storage",
  "uas",
  "sd_mod",
  "ext4",
  "crc32c_generic",
  "ftdi_sio",
  "cdc-acm",
  "ldusb",
  "vfat",
  "nls_cp437",
  "nls_ascii",
  "nls_utf8",
  "usb_f_mass_storage",
  // Kernel TLS (net/tls) with ChaCha20-Poly1305, the cipher of `attach --tls`'s kernel path.
  "tls",
  "chacha_generic",
  "poly1305_generic",
  "chacha20poly1305",
  // netem, for the delay storage_latency adds on the guest's loopback (tc qdisc ... netem),
  // and tcp_diag for `ss -ti` (TCP's own round-trip and window figures).
  "sch_netem",
  "tcp_diag",
  // QEMU's usb-audio (passthrough): an isochronous OUT stream.
  "snd-usb-audio",
] as const;

/** Host binaries copied into the initramfs together with the libraries `ldd` lists. */
const DYNAMIC_BINARIES = [
  "/usr/sbin/usbip",
  "/usr/sbin/usbipd",
  "/usr/bin/socat",
  // util-linux's, for scenarios that act as other users (busybox's cannot change uids).
  "/usr/bin/setpriv",
  // iproute2's, for netem (busybox's tc has no netem), and ss for the TCP state it leaves.
  "/usr/sbin/tc",
  "/usr/bin/ss",
] as const;

/**
 * Libraries that programs open at run time rather than link: libssl for the kernel-TLS path of
 * `attach --tls` (lib/ffi/libssl.ts), copied with what `ldd` lists for them.
 */
const DLOPEN_LIBRARIES = [
  "/usr/lib/x86_64-linux-gnu/libssl.so.3",
  "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
] as const;

/**
 * File system tools for the storage scenarios (e2fsprogs, dosfstools), copied with their
 * libraries when the host has them ({@linkcode storageMissingReason} says when not).
 */
const STORAGE_BINARIES = [
  "/usr/sbin/mkfs.ext4",
  "/usr/sbin/e2fsck",
  "/usr/sbin/mkfs.vfat",
  "/usr/sbin/fsck.vfat",
] as const;

/** C helpers under guest/, built with `gcc -static` into the cache. */
const HELPERS = [
  "rig_unix_attach",
  "rig_evdev_read",
  "rig_input_events",
  "rig_gotemp_read",
  "rig_sg_write",
  "rig_pcm_play",
] as const;

/** Paths the rig works with; all derived from the checkout unless given. */
export interface RigPaths {
  /** The checkout, shared read-only with the guest as /mnt/host. */
  root: string;
  /** The download and build cache (git-ignored). */
  cache: string;
  /** This folder (tests/interop). */
  here: string;
}

/** Everything needed to boot a guest. */
export interface RigImage {
  paths: RigPaths;
  kernelVersion: string;
  vmlinuz: string;
  initrd: string;
  /** The deno binary the guest runs from the `deno` share. */
  denoBinary: string;
  /** Seconds each build step took, for the report. */
  buildSeconds: Record<string, number>;
}

/** What the guest wrote into the results share (guest/lib.sh `rig_finish`). */
export interface ScenarioResult {
  scenario: string;
  ok: boolean;
  exit_code: number;
  reason: string;
  boot_uptime_s: number;
  ready_uptime_s: number;
  scenario_seconds: number;
  kernel_problems: string[];
  [field: string]: unknown;
}

/** One scenario run as seen from the host. */
export interface ScenarioRun {
  scenario: ScenarioName;
  /** The exit code the guest wrote, or null when it wrote none. */
  exitCode: number | null;
  result: ScenarioResult | null;
  /** Why the run is not usable at all (no result, QEMU died, timeout), or null. */
  rigError: string | null;
  timedOut: boolean;
  wallSeconds: number;
  runDir: string;
  consoleLog: string;
  dmesg: string;
  gatewayLog: string;
  scenarioLog: string;
  qemuStderr: string;
  /** The stick image of a {@linkcode QEMU_USB_SCENARIOS} run (its file's checksum), or null. */
  stick: StickImage | null;
  /** The host's QMP log (requests of the guest), empty when none. */
  qmpLog: string;
  /** What the guest wrote to QEMU's FTDI usb-serial (its chardev file), empty when none. */
  serialOut: string;
}

/** Options for {@linkcode runScenario}. */
export interface RunOptions {
  /** Host-side limit; QEMU is killed after it. */
  timeoutSeconds?: number;
  /** Extra `key=value` words for the kernel command line (read by the guest as rig.*). */
  extraArgs?: string[];
  log?: (msg: string) => void;
}

const decoder = new TextDecoder();

function _defaultLog(msg: string): void {
  console.error(`[rig] ${msg}`);
}

/** Default paths, from where this file lives. */
export function defaultPaths(): RigPaths {
  const here = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
  const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
  return { root, here, cache: `${root}/.cache/interop` };
}

/** Why the rig cannot run on this machine, or null when it can. */
export function rigMissingReason(): string | null {
  for (
    const tool of ["qemu-system-x86_64", "cpio", "busybox", "depmod", "gcc", "usbip", "tc", "ss"]
  ) {
    if (_which(tool) === null) {
      return `${tool} is not installed (apt-get install $(cat tests/interop/packages.txt))`;
    }
  }
  return null;
}

/**
 * Why the storage scenarios cannot run here (beyond {@linkcode rigMissingReason}), or null: the
 * guest needs mkfs and fsck for ext4 and FAT, the host checks the images with e2fsck, debugfs,
 * fsck.vfat and mtools' mcopy.
 */
export function storageMissingReason(): string | null {
  const tools: [string, string][] = [
    ["mkfs.ext4", "e2fsprogs"],
    ["e2fsck", "e2fsprogs"],
    ["debugfs", "e2fsprogs"],
    ["mkfs.vfat", "dosfstools"],
    ["fsck.vfat", "dosfstools"],
    ["mcopy", "mtools"],
  ];
  for (const [tool, pkg] of tools) {
    if (_which(tool) === null) {
      return `${tool} is not installed (${pkg}; apt-get install $(cat tests/interop/packages.txt))`;
    }
  }
  return null;
}

/** Why the QEMU USB scenarios cannot run here (beyond {@linkcode rigMissingReason}), or null. */
export function qemuUsbMissingReason(): string | null {
  return _which("mke2fs") === null
    ? "mke2fs is not installed (e2fsprogs; apt-get install $(cat tests/interop/packages.txt))"
    : null;
}

function _which(tool: string): string | null {
  const path = Deno.env.get("PATH") ?? "/usr/bin:/bin";
  for (const dir of [...path.split(":"), "/usr/sbin", "/sbin"]) {
    try {
      const st = Deno.statSync(`${dir}/${tool}`);
      if (st.isFile) return `${dir}/${tool}`;
    } catch {
      // not here
    }
  }
  return null;
}

/** Whether KVM can boot a stock kernel here (only with kvm_intel or kvm_amd: a nested
 * hypervisor without them offers /dev/kvm that cannot boot a stock kernel). */
export function kvmUsable(): boolean {
  for (const m of ["/sys/module/kvm_intel", "/sys/module/kvm_amd"]) {
    try {
      Deno.statSync(m);
      return true;
    } catch {
      // absent
    }
  }
  return false;
}

interface CmdOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: Uint8Array;
}

/** Runs a command; throws with its stderr when it fails. Returns stdout. */
async function _run(cmd: string[], opts: CmdOptions = {}): Promise<string> {
  const [program, ...args] = cmd;
  if (program === undefined) throw new TypeError("Cannot run an empty command");
  const child = new Deno.Command(program, {
    args,
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  }).spawn();
  if (opts.stdin) {
    const w = child.stdin.getWriter();
    await w.write(opts.stdin);
    await w.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(
      `Command failed (exit ${out.code}): ${cmd.join(" ")}\n${decoder.decode(out.stderr)}`,
    );
  }
  return decoder.decode(out.stdout);
}

function _exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

async function _timed<T>(
  seconds: Record<string, number>,
  name: string,
  f: () => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    seconds[name] = Math.round(performance.now() - t0) / 1000;
  }
}

/** The kernel package linux-image-amd64 depends on, falling back to a cached download. */
async function _kernelPackage(debs: string): Promise<string> {
  try {
    const out = await _run(["apt-cache", "depends", "linux-image-amd64"]);
    const m = out.match(/Depends:\s*(linux-image-[0-9][^\s]*)/);
    if (m?.[1]) return m[1];
  } catch {
    // no apt lists: use what the cache holds
  }
  for (const e of _sortedEntries(debs)) {
    const m = e.match(/^(linux-image-[0-9][^_]*)_/);
    if (m?.[1]) return m[1];
  }
  throw new Error("Cannot find the kernel package: apt-cache knows none and .cache holds none");
}

function _sortedEntries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** Path of the cached .deb of `pkg`, downloading it with apt-get when absent. */
async function _deb(debs: string, pkg: string, log: (m: string) => void): Promise<string> {
  const find = () =>
    _sortedEntries(debs).find((n) => n.startsWith(`${pkg}_`) && n.endsWith(".deb"));
  let name = find();
  if (!name) {
    log(`downloading ${pkg} with apt-get download`);
    await Deno.mkdir(debs, { recursive: true });
    await _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg], { cwd: debs });
    name = find();
    if (!name) throw new Error(`apt-get download ${pkg} left no .deb in ${debs}`);
  }
  return `${debs}/${name}`;
}

/** Unpacks the kernel package (once) and runs depmod; returns its root and version. */
async function _kernel(
  cache: string,
  log: (m: string) => void,
): Promise<{ root: string; version: string }> {
  const debs = `${cache}/debs`;
  const pkg = await _kernelPackage(debs);
  const root = `${cache}/kernel/${pkg}`;
  // Only the current kernel stays cached (the archive moves on to newer ones).
  for (const name of _sortedEntries(`${cache}/kernel`)) {
    if (name !== pkg && !name.includes(".tmp")) {
      await Deno.remove(`${cache}/kernel/${name}`, { recursive: true }).catch(() => {});
    }
  }
  for (const name of _sortedEntries(debs)) {
    if (/^linux-image-/.test(name) && !name.startsWith(`${pkg}_`)) {
      await Deno.remove(`${debs}/${name}`).catch(() => {});
    }
  }
  if (!_exists(`${root}/.rig-ready`)) {
    const deb = await _deb(debs, pkg, log);
    log(`unpacking ${deb}`);
    const tmp = `${root}.tmp${Deno.pid}`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.mkdir(tmp, { recursive: true });
    await _run(["dpkg-deb", "-x", deb, tmp]);
    const version = _sortedEntries(`${tmp}/lib/modules`)[0];
    if (!version) throw new Error(`${deb} holds no lib/modules/<version>`);
    await _run(["depmod", "-b", tmp, version]);
    await Deno.writeTextFile(`${tmp}/.rig-ready`, `${version}\n`);
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, root);
  }
  const version = (await Deno.readTextFile(`${root}/.rig-ready`)).trim();
  return { root, version };
}

/** The static testusb binary, built once from Debian's linux-source package. */
async function _testusb(
  cache: string,
  kernelVersion: string,
  log: (m: string) => void,
): Promise<string> {
  const bin = `${cache}/bin/testusb`;
  if (_exists(bin)) return bin;
  const series = kernelVersion.match(/^(\d+\.\d+)/)?.[1];
  if (!series) throw new Error(`Cannot tell the kernel series of ${kernelVersion}`);
  const deb = await _deb(`${cache}/debs`, `linux-source-${series}`, log);
  log(`extracting tools/usb/testusb.c from ${deb}`);
  await Deno.mkdir(`${cache}/src`, { recursive: true });
  const src = `${cache}/src/testusb.c`;
  // Only testusb.c is kept: kernel sources never enter the checkout.
  await _run([
    "bash",
    "-c",
    'set -euo pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO "./usr/src/linux-source-$2.tar.xz" ' +
    '| xz -dc | tar -xO "linux-source-$2/tools/usb/testusb.c" > "$3.tmp"; mv "$3.tmp" "$3"',
    "extract",
    deb,
    series,
    src,
  ]);
  await Deno.mkdir(`${cache}/bin`, { recursive: true });
  await _run(["gcc", "-static", "-O2", "-o", `${bin}.tmp${Deno.pid}`, src, "-lpthread"]);
  await Deno.rename(`${bin}.tmp${Deno.pid}`, bin);
  return bin;
}

async function _sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Builds the C helpers of guest/ (static) when their source changed. */
async function _helpers(paths: RigPaths): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  await Deno.mkdir(`${paths.cache}/bin`, { recursive: true });
  for (const name of HELPERS) {
    const src = `${paths.here}/guest/${name}.c`;
    const bin = `${paths.cache}/bin/${name}`;
    const hash = await _sha256(src);
    const stamp = `${bin}.sha256`;
    const built = _exists(stamp) ? (await Deno.readTextFile(stamp)).trim() : "";
    if (built !== hash || !_exists(bin)) {
      const tmp = `${bin}.tmp${Deno.pid}`;
      await _run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", tmp, src]);
      await Deno.rename(tmp, bin);
      await Deno.writeTextFile(stamp, `${hash}\n`);
    }
    out[name] = bin;
  }
  return out;
}

/**
 * Fills the rig's own DENO_DIR with the npm packages the project uses, so that the offline
 * guest can run with --cached-only. It works on a private copy of deno.lock (the guest gets
 * that copy too): the checkout's lock is never written, and a lock that lags behind the code
 * (a developer's working tree) does not stop the rig; the rig says so in its log.
 */
async function _denoDir(
  paths: RigPaths,
  log: (m: string) => void,
): Promise<{ dir: string; lock: string }> {
  const dir = `${paths.cache}/deno_dir`;
  const lock = `${paths.cache}/deno.lock.${Deno.pid}`;
  const env = { DENO_DIR: dir, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
  const deno = Deno.execPath();
  const original = await _readText(`${paths.root}/deno.lock`);
  await Deno.remove(lock).catch(() => {});
  if (original) await Deno.writeTextFile(lock, original);
  try {
    await _run([deno, "install", `--lock=${lock}`], { cwd: paths.root, env });
    if (_exists(`${paths.root}/main.ts`)) {
      await _run([deno, "install", `--lock=${lock}`, "--entrypoint", "main.ts"], {
        cwd: paths.root,
        env,
      });
    }
  } catch (e) {
    throw new Error(
      `Cannot fill the guest's npm cache: ${errorMessage(e)}`,
    );
  }
  if (original && (await _readText(lock)) !== original) {
    log("note: the checkout's deno.lock is out of date; the guest uses the rig's updated copy");
  }
  return { dir, lock };
}

/** `ldd` dependencies of a binary (real files, absolute paths). */
async function _lddLibs(binary: string): Promise<string[]> {
  const out = await _run(["ldd", binary]);
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = line.match(/=>\s*(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

async function _copyFile(from: string, to: string, mode?: number): Promise<void> {
  await Deno.mkdir(to.replace(/\/[^/]+$/, ""), { recursive: true });
  await Deno.copyFile(await Deno.realPath(from), to);
  if (mode !== undefined) await Deno.chmod(to, mode);
}

async function _copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  await _run(["cp", "-a", `${from}/.`, to]);
}

/** Builds the guest's initramfs (uncompressed newc cpio: nothing to unpack under TCG). */
async function _initramfs(
  paths: RigPaths,
  kernel: { root: string; version: string },
  testusb: string,
  helpers: Record<string, string>,
  deno: { dir: string; lock: string },
): Promise<string> {
  const out = `${paths.cache}/image`;
  await Deno.mkdir(out, { recursive: true });
  const root = `${out}/root.tmp${Deno.pid}`;
  await Deno.remove(root, { recursive: true }).catch(() => {});
  for (
    const d of [
      "bin",
      "sbin",
      "usr/bin",
      "usr/sbin",
      "etc",
      "proc",
      "sys",
      "dev",
      "tmp",
      "run",
      "root",
      "mnt/host",
      "mnt/results",
      "mnt/deno",
      "lib/x86_64-linux-gnu",
      "lib64",
    ]
  ) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await Deno.symlink("../run", `${root}/var/run`).catch(async () => {
    await Deno.mkdir(`${root}/var`, { recursive: true });
    await Deno.symlink("../run", `${root}/var/run`);
  });

  // busybox and its applets
  await _copyFile(_which("busybox") ?? "/bin/busybox", `${root}/bin/busybox`, 0o755);
  const applets = (await _run(["busybox", "--list"])).split("\n").filter((a) =>
    a && a !== "busybox"
  );
  for (const a of applets) await Deno.symlink("busybox", `${root}/bin/${a}`);

  // dynamic tools with their libraries, deno's libraries
  const libs = new Set<string>();
  for (const b of DYNAMIC_BINARIES) {
    await _copyFile(b, `${root}${b}`, 0o755);
    for (const l of await _lddLibs(b)) libs.add(l);
  }
  for (const b of STORAGE_BINARIES) {
    if (!_exists(b)) continue;
    await _copyFile(b, `${root}${b}`, 0o755);
    for (const l of await _lddLibs(b)) libs.add(l);
  }
  if (_exists("/etc/mke2fs.conf")) {
    await _copyFile("/etc/mke2fs.conf", `${root}/etc/mke2fs.conf`, 0o644);
  }
  for (const l of await _lddLibs(Deno.execPath())) libs.add(l);
  for (const l of DLOPEN_LIBRARIES) {
    if (!_exists(l)) continue;
    libs.add(l);
    for (const dep of await _lddLibs(l)) libs.add(dep);
  }
  for (const l of libs) {
    const base = l.split("/").pop() ?? l;
    const dest = l.startsWith("/lib64/")
      ? `${root}/lib64/${base}`
      : `${root}/lib/x86_64-linux-gnu/${base}`;
    await _copyFile(l, dest, 0o755);
  }
  for (const ids of ["/usr/share/misc/usb.ids", "/usr/share/hwdata/usb.ids"]) {
    if (_exists(ids)) await _copyFile(ids, `${root}${ids}`, 0o644);
  }

  // static test tools
  await _copyFile(testusb, `${root}/usr/bin/testusb`, 0o755);
  for (const [name, bin] of Object.entries(helpers)) {
    await _copyFile(bin, `${root}/usr/bin/${name.replaceAll("_", "-")}`, 0o755);
  }

  // kernel modules with their dependencies
  const modRoot = `${kernel.root}/lib/modules/${kernel.version}`;
  const wanted = new Set<string>();
  for (const m of MODULES) {
    const out = await _run([
      "modprobe",
      "-d",
      kernel.root,
      "-S",
      kernel.version,
      "--show-depends",
      m,
    ]);
    for (const line of out.split("\n")) {
      const mm = line.match(/^insmod\s+(\S+)/);
      if (mm?.[1]) wanted.add(mm[1]);
    }
  }
  for (const ko of wanted) {
    if (!ko.startsWith(`${modRoot}/`)) throw new Error(`Unexpected module path ${ko}`);
    await _copyFile(ko, `${root}/lib/modules/${kernel.version}/${ko.slice(modRoot.length + 1)}`);
  }
  for (const f of ["modules.order", "modules.builtin", "modules.builtin.modinfo"]) {
    if (_exists(`${modRoot}/${f}`)) {
      await _copyFile(`${modRoot}/${f}`, `${root}/lib/modules/${kernel.version}/${f}`);
    }
  }
  await _run(["depmod", "-b", root, kernel.version]);

  // npm cache for the offline deno (only npm/: deno's sqlite caches are rebuilt in the guest;
  // warming its transpile and code caches on the host gained nothing measurable)
  await _copyTree(`${deno.dir}/npm`, `${root}/deno_dir/npm`);
  if (_exists(deno.lock)) await _copyFile(deno.lock, `${root}/deno_dir/deno.lock`, 0o644);

  // configuration and the rig's own guest scripts
  await Deno.writeTextFile(`${root}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  await Deno.writeTextFile(`${root}/etc/group`, "root:x:0:\n");
  await Deno.writeTextFile(`${root}/etc/hosts`, "127.0.0.1 localhost\n::1 localhost\n");
  await Deno.writeTextFile(
    `${root}/etc/nsswitch.conf`,
    "passwd: files\ngroup: files\nhosts: files\n",
  );
  await _copyTree(`${paths.here}/guest`, `${root}/rig`);
  for (const e of _sortedEntries(`${root}/rig`)) {
    if (e.endsWith(".c")) await Deno.remove(`${root}/rig/${e}`);
  }
  await _copyFile(`${paths.here}/guest/init.sh`, `${root}/init`, 0o755);

  // One image per process (several test runs may share a checkout); stale ones are removed.
  for (const name of _sortedEntries(out)) {
    const m = name.match(/^initrd\.(\d+)\.img$/);
    if (m && Number(m[1]) !== Deno.pid && !_exists(`/proc/${m[1]}`)) {
      await Deno.remove(`${out}/${name}`).catch(() => {});
    }
  }
  const img = `${out}/initrd.${Deno.pid}.img`;
  await _run([
    "bash",
    "-c",
    'set -euo pipefail; cd "$1"; find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > "$2.tmp$3"; mv "$2.tmp$3" "$2"',
    "cpio",
    root,
    img,
    String(Deno.pid),
  ]);
  await Deno.remove(root, { recursive: true });
  await Deno.remove(deno.lock).catch(() => {});
  return img;
}

/**
 * Prepares everything a guest needs: kernel (downloaded once), testusb and helpers (built
 * once), the npm cache, and a fresh initramfs (about 2 s).
 */
export async function buildImage(
  opts: { paths?: RigPaths; log?: (msg: string) => void } = {},
): Promise<RigImage> {
  const paths = opts.paths ?? defaultPaths();
  const log = opts.log ?? _defaultLog;
  const seconds: Record<string, number> = {};
  await Deno.mkdir(paths.cache, { recursive: true });
  const kernel = await _timed(seconds, "kernel", () => _kernel(paths.cache, log));
  const testusb = await _timed(
    seconds,
    "testusb",
    () => _testusb(paths.cache, kernel.version, log),
  );
  const helpers = await _timed(seconds, "helpers", () => _helpers(paths));
  const deno = await _timed(seconds, "deno_dir", () => _denoDir(paths, log));
  const initrd = await _timed(
    seconds,
    "initramfs",
    () => _initramfs(paths, kernel, testusb, helpers, deno),
  );
  const vmlinuz = `${kernel.root}/boot/vmlinuz-${kernel.version}`;
  log(`image ready: kernel ${kernel.version}, build seconds ${JSON.stringify(seconds)}`);
  return {
    paths,
    kernelVersion: kernel.version,
    vmlinuz,
    initrd,
    denoBinary: Deno.execPath(),
    buildSeconds: seconds,
  };
}

async function _readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

/**
 * QEMU's own USB devices on the qemu-xhci of {@linkcode QEMU_USB_SCENARIOS}, by QMP id: the
 * properties of `-device` and of QMP `device_add` (the guest re-plugs them by id). Fixed ports
 * keep their guest busids across a re-plug. IDs: stick 46f4:0001, kbd 0627:0001, serial
 * 0403:6001 (FTDI), audio 46f4:0002 (full speed, an isochronous OUT endpoint: QEMU's
 * hw/usb/dev-audio.c).
 */
export const QEMU_USB_DEVICES: Record<string, Record<string, string>> = {
  stick: { driver: "usb-storage", id: "stick", bus: "xhci.0", port: "1", drive: "stick0" },
  kbd: { driver: "usb-kbd", id: "kbd", bus: "xhci.0", port: "2" },
  serial: { driver: "usb-serial", id: "serial", bus: "xhci.0", port: "3", chardev: "ser0" },
  audio: { driver: "usb-audio", id: "audio", bus: "xhci.0", port: "4", audiodev: "snd0" },
};

/** The stick's image: an ext4 file system holding one file of random bytes. */
export interface StickImage {
  image: string;
  /** The file's name in the image's root directory. */
  file: string;
  bytes: number;
  sha256: string;
  buildSeconds: number;
}

/** Size of the stick image (the benchmark reads 64 MiB of the raw disk). */
const STICK_IMAGE_SIZE = "96M";
/** Size of the random file on the stick. */
const STICK_FILE_BYTES = 8 * 1024 * 1024;

/**
 * The tls scenario's certificates, made by openssl on the host (tests/transport/_certs.ts) and
 * written to `dir` under the names guest/scenarios/tls.sh uses.
 */
async function writeTestPki(dir: string): Promise<void> {
  const pki = await makeTestPki();
  try {
    await Deno.mkdir(dir, { recursive: true });
    const files: Record<string, string> = {
      "ca.pem": pki.ca,
      "server.pem": pki.server.cert,
      "server.key": pki.server.key,
      "alice.pem": pki.alice.cert,
      "alice.key": pki.alice.key,
      "stranger.pem": pki.stranger.cert,
      "stranger.key": pki.stranger.key,
    };
    for (const [name, from] of Object.entries(files)) await Deno.copyFile(from, `${dir}/${name}`);
  } finally {
    await pki.remove();
  }
}

/** Builds the stick's ext4 image in `dir` with `mke2fs -d` (e2fsprogs). */
export async function buildStickImage(dir: string): Promise<StickImage> {
  const t0 = performance.now();
  const src = `${dir}/stick-src`;
  await Deno.remove(src, { recursive: true }).catch(() => {});
  await Deno.mkdir(src, { recursive: true });
  const data = new Uint8Array(STICK_FILE_BYTES);
  for (let off = 0; off < data.length; off += 65536) {
    crypto.getRandomValues(data.subarray(off, Math.min(off + 65536, data.length)));
  }
  const file = "payload.bin";
  await Deno.writeFile(`${src}/${file}`, data);
  const digest = await crypto.subtle.digest("SHA-256", data);
  const sha256 = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const image = `${dir}/stick.ext4`;
  await Deno.remove(image).catch(() => {});
  const mke2fs = _which("mke2fs");
  if (mke2fs === null) throw new Error("mke2fs is not installed (package e2fsprogs)");
  await _run([
    mke2fs,
    "-q",
    "-F",
    "-t",
    "ext4",
    "-L",
    "RIGSTICK",
    "-d",
    src,
    image,
    STICK_IMAGE_SIZE,
  ]);
  await Deno.remove(src, { recursive: true });
  return {
    image,
    file,
    bytes: data.length,
    sha256,
    buildSeconds: Math.round(performance.now() - t0) / 1000,
  };
}

/** A minimal QMP client (one command at a time; events are kept for waitEvent). */
class Qmp {
  #conn: Deno.UnixConn;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  #buf = "";
  #events: Record<string, unknown>[] = [];

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#reader = conn.readable.getReader();
  }

  /** Connects (retrying until the socket exists) and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs: number): Promise<Qmp> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const q = new Qmp(await Deno.connect({ transport: "unix", path }));
        await q.#message(deadline - performance.now()); // greeting
        await q.command("qmp_capabilities", undefined, deadline - performance.now());
        return q;
      } catch (e) {
        if (performance.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async #message(timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (line) return JSON.parse(line) as Record<string, unknown>;
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`QMP: no answer within ${timeoutMs} ms`);
      this.#pending ??= this.#reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        this.#pending,
        new Promise<null>((res) => timer = setTimeout(() => res(null), left)),
      ]);
      clearTimeout(timer);
      if (r === null) continue;
      this.#pending = null;
      if (r.done) throw new Error("QMP: QEMU closed the socket");
      this.#buf += decoder.decode(r.value, { stream: true });
    }
  }

  /** Runs one command; throws QMP's error. */
  async command(execute: string, args?: unknown, timeoutMs = 10000): Promise<unknown> {
    const msg = JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
    await this.#conn.write(new TextEncoder().encode(msg + "\n"));
    for (;;) {
      const m = await this.#message(timeoutMs);
      if ("event" in m) {
        this.#events.push(m);
      } else if ("error" in m) {
        throw new Error(`QMP ${execute}: ${JSON.stringify(m["error"])}`);
      } else if ("return" in m) {
        return m["return"];
      }
    }
  }

  /** Waits for an event named `name` whose data matches `match`. */
  async waitEvent(
    name: string,
    match: (data: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const hit = (m: Record<string, unknown>) =>
      m["event"] === name && match((m["data"] ?? {}) as Record<string, unknown>);
    for (;;) {
      const i = this.#events.findIndex(hit);
      if (i >= 0) {
        this.#events.splice(i, 1);
        return;
      }
      const m = await this.#message(Math.max(1, deadline - performance.now()));
      if ("event" in m) this.#events.push(m);
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * Serves the guest's requests to the host while QEMU runs: the guest writes a file
 * `host-req/N` (one line, `device_del ID` or `device_add ID`, ID a key of
 * {@linkcode QEMU_USB_DEVICES}) into the results share; the host runs it over QMP and writes
 * `host-req/N.done` (`ok SECONDS` or `error MESSAGE`). Each step is logged to `qmp.log`.
 */
async function _serveHostRequests(
  share: string,
  qmpPath: string,
  stop: { stopped: boolean },
): Promise<void> {
  const dir = `${share}/host-req`;
  const logPath = `${share}/qmp.log`;
  const t0 = performance.now();
  const note = async (m: string) => {
    const line = `[${((performance.now() - t0) / 1000).toFixed(2)}] ${m}\n`;
    await Deno.writeTextFile(logPath, line, { append: true }).catch(() => {});
  };
  let qmp: Qmp | null = null;
  const handled = new Set<string>();
  while (!stop.stopped) {
    for (const name of _sortedEntries(dir)) {
      if (!/^\d+$/.test(name) || handled.has(name)) continue;
      handled.add(name);
      const req = (await _readText(`${dir}/${name}`)).trim();
      const started = performance.now();
      let answer: string;
      try {
        qmp ??= await Qmp.connect(qmpPath, 10000);
        const [verb, id] = req.split(/\s+/);
        const props = QEMU_USB_DEVICES[id ?? ""];
        if (props === undefined) throw new Error(`unknown device id ${id}`);
        if (verb === "device_del") {
          await qmp.command("device_del", { id });
          await qmp.waitEvent("DEVICE_DELETED", (d) => d["device"] === id, 10000);
        } else if (verb === "device_add") {
          await qmp.command("device_add", props);
        } else {
          throw new Error(`unknown request ${verb}`);
        }
        answer = `ok ${((performance.now() - started) / 1000).toFixed(3)}`;
      } catch (e) {
        answer = `error ${errorMessage(e)}`.replaceAll("\n", " ");
      }
      await note(`request ${name}: ${req} -> ${answer}`);
      await Deno.writeTextFile(`${dir}/${name}.tmp`, answer + "\n");
      await Deno.rename(`${dir}/${name}.tmp`, `${dir}/${name}.done`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  qmp?.close();
}

/** QEMU's exit code when the guest writes 0x10 to isa-debug-exit: (0x10 << 1) | 1. */
const QEMU_GUEST_DONE = 33;

/** Removes earlier run folders of `scenario` whose process is gone. */
async function _pruneRuns(runs: string, scenario: string): Promise<void> {
  for (const name of _sortedEntries(runs)) {
    const m = name.match(/^(.+)\.(\d+)$/);
    if (!m || m[1] !== scenario) continue;
    if (Number(m[2]) !== Deno.pid && _exists(`/proc/${m[2]}`)) continue;
    await Deno.remove(`${runs}/${name}`, { recursive: true }).catch(() => {});
  }
}

/** Default host-side time limits (seconds) per scenario under TCG. */
export const DEFAULT_TIMEOUTS: Record<ScenarioName, number> = {
  smoke: 180,
  list_attach: 240,
  testusb: 900,
  unix_attach: 240,
  keyboard: 240,
  hangup: 480,
  kernel_baseline: 600,
  passthrough_kernel: 420,
  passthrough: 480,
  passthrough_baseline: 480,
  serial: 600,
  gotemp: 300,
  pointer: 240,
  client_attach: 600,
  storage: 600,
  storage_uas: 600,
  storage_baseline: 600,
  user_attach: 420,
  tls: 900,
  testusb_super: 900,
  // A benchmark: about 12 min under TCG on an idle host (tens of seconds per row at 50 ms).
  storage_latency: 1500,
  // A benchmark: three rounds of testusb on both Gadget Zeros, about 4 min under TCG.
  testusb_baseline: 900,
  // A benchmark: eight turns of a gateway start, an attach and a workload, 4 to 10 min.
  gateway_ab: 1500,
};

/**
 * Boots one guest that runs `scenario` and collects its results. Never throws for a guest
 * failure: the returned run says what happened.
 */
export async function runScenario(
  image: RigImage,
  scenario: ScenarioName,
  opts: RunOptions = {},
): Promise<ScenarioRun> {
  const log = opts.log ?? _defaultLog;
  const timeoutSeconds = opts.timeoutSeconds ?? DEFAULT_TIMEOUTS[scenario];
  // One folder per scenario and process: several test runs may share a checkout.
  const runs = `${image.paths.cache}/runs`;
  await _pruneRuns(runs, scenario);
  const runDir = `${runs}/${scenario}.${Deno.pid}`;
  const share = `${runDir}/share`;
  await Deno.remove(runDir, { recursive: true }).catch(() => {});
  await Deno.mkdir(share, { recursive: true });
  const consolePath = `${runDir}/console.log`;
  const denoDir = image.denoBinary.replace(/\/[^/]+$/, "");
  const denoName = image.denoBinary.split("/").pop() ?? "deno";
  // The guest gets a little less time than the host so that it can still report.
  const guestTimeout = Math.max(30, timeoutSeconds - 30);
  const append = [
    "console=ttyS0",
    "quiet",
    "panic=-1",
    "oops=panic",
    "rdinit=/init",
    `rig.scenario=${scenario}`,
    `rig.timeout=${guestTimeout}`,
    `rig.deno=${denoName}`,
    ...(opts.extraArgs ?? []).map((a) => `rig.${a}`),
  ].join(" ");
  const kvm = kvmUsable();
  const qemuUsb = QEMU_USB_SCENARIOS.includes(scenario);
  const qmpPath = `${runDir}/qmp.sock`;
  let stick: StickImage | null = null;
  const usbArgs: string[] = [];
  if (qemuUsb) {
    stick = await buildStickImage(runDir);
    await Deno.writeTextFile(
      `${share}/stick.json`,
      JSON.stringify({ file: stick.file, bytes: stick.bytes, sha256: stick.sha256 }) + "\n",
    );
    await Deno.mkdir(`${share}/host-req`);
    const dev = (p: Record<string, string>) => {
      const { driver, ...rest } = p;
      return [driver, ...Object.entries(rest).map(([k, v]) => `${k}=${v}`)].join(",");
    };
    usbArgs.push(
      "-qmp",
      `unix:${qmpPath},server=on,wait=off`,
      "-blockdev",
      JSON.stringify({
        driver: "raw",
        "node-name": "stick0",
        "read-only": true,
        file: { driver: "file", filename: stick.image, "read-only": true },
      }),
      // QEMU attaches a usb-serial only once its chardev is open (a null one never is); what
      // the guest writes to the FTDI's ttyUSB lands in this file.
      "-chardev",
      `file,id=ser0,path=${runDir}/serial.out`,
      // The usb-audio's back-end: no host sound; it takes the samples in real time.
      "-audiodev",
      "none,id=snd0",
      "-device",
      "qemu-xhci,id=xhci",
      ...Object.values(QEMU_USB_DEVICES).flatMap((p) => ["-device", dev(p)]),
    );
  }
  if (scenario === "tls") await writeTestPki(`${share}/pki`);
  const virtfs = (path: string, tag: string, ro: boolean) => [
    "-virtfs",
    `local,path=${path},mount_tag=${tag},security_model=none,${
      ro ? "readonly=on," : ""
    }multidevs=remap`,
  ];
  const args = [
    "-M",
    "q35",
    "-accel",
    kvm ? "kvm" : "tcg",
    "-cpu",
    kvm ? "host" : "max",
    "-m",
    "2048",
    "-smp",
    "2",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-monitor",
    "none",
    "-nic",
    "none",
    "-no-reboot",
    // The guest ends by writing GUEST_DONE to this port: QEMU exits at once, even when a
    // stuck kernel task would block a poweroff (a hung USB device in the hangup scenario).
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
    "-chardev",
    `file,id=con,path=${consolePath}`,
    "-serial",
    "chardev:con",
    "-kernel",
    image.vmlinuz,
    "-initrd",
    image.initrd,
    "-append",
    append,
    ...virtfs(image.paths.root, "host", true),
    ...virtfs(share, "results", false),
    ...virtfs(denoDir, "deno", true),
    ...usbArgs,
  ];
  log(`booting ${scenario} (${kvm ? "kvm" : "tcg"}, limit ${timeoutSeconds} s)`);
  const t0 = performance.now();
  const child = new Deno.Command("qemu-system-x86_64", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, timeoutSeconds * 1000);
  const stop = { stopped: false };
  const requests = qemuUsb ? _serveHostRequests(share, qmpPath, stop) : Promise.resolve();
  const out = await child.output();
  clearTimeout(timer);
  stop.stopped = true;
  await requests;
  const wallSeconds = Math.round(performance.now() - t0) / 1000;
  const qemuStderr = decoder.decode(out.stderr) + decoder.decode(out.stdout);

  const exitText = (await _readText(`${share}/exit_code`)).trim();
  const exitCode = /^\d+$/.test(exitText) ? Number(exitText) : null;
  let result: ScenarioResult | null = null;
  let rigError: string | null = null;
  const resultText = await _readText(`${share}/result.json`);
  if (resultText) {
    try {
      result = JSON.parse(resultText) as ScenarioResult;
    } catch (e) {
      rigError = `result.json is not JSON (${errorMessage(e)})`;
    }
  }
  if (timedOut) {
    rigError = `the guest did not finish within ${timeoutSeconds} s; QEMU was killed`;
  } else if (out.code !== 0 && out.code !== QEMU_GUEST_DONE) {
    rigError = `QEMU exited with code ${out.code}`;
  } else if (exitCode === null) {
    const consoleText = await _readText(consolePath);
    const first = consoleText.match(/^.*(?:BUG:|Oops|general protection fault|Kernel panic).*$/m);
    rigError = first
      ? `the guest kernel crashed: ${first[0].replace(/^\[[\s\d.]+\]\s*/, "")}`
      : "the guest ended without writing an exit code";
  } else if (result === null && rigError === null) {
    rigError = "the guest wrote no result.json";
  }
  const run: ScenarioRun = {
    scenario,
    exitCode,
    result,
    rigError,
    timedOut,
    wallSeconds,
    runDir,
    consoleLog: await _readText(consolePath),
    dmesg: await _readText(`${share}/dmesg.txt`),
    gatewayLog: await _readText(`${share}/gateway.log`),
    scenarioLog: await _readText(`${share}/scenario.log`),
    qemuStderr,
    stick,
    qmpLog: await _readText(`${share}/qmp.log`),
    serialOut: await _readText(`${runDir}/serial.out`),
  };
  await Deno.writeTextFile(
    `${runDir}/summary.json`,
    JSON.stringify({ scenario, exitCode, rigError, timedOut, wallSeconds, result }, null, 2) +
      "\n",
  );
  log(`${scenario}: exit ${exitCode} in ${wallSeconds} s${rigError ? ` (${rigError})` : ""}`);
  return run;
}

function _tail(text: string, lines: number): string {
  const all = text.trimEnd().split("\n");
  return all.slice(Math.max(0, all.length - lines)).join("\n");
}

/** A failure report: scenario, reason, and the guest's logs (tails). */
export function describeRun(run: ScenarioRun, reason: string): string {
  const parts = [
    `interop scenario ${run.scenario} failed: ${reason}`,
    `(logs in ${run.runDir})`,
  ];
  const section = (title: string, text: string, n: number) => {
    if (text.trim()) parts.push(`--- ${title} (last ${n} lines) ---\n${_tail(text, n)}`);
  };
  section("scenario log", run.scenarioLog, 60);
  section("gateway log", run.gatewayLog, 40);
  section("host QMP log", run.qmpLog, 20);
  section("dmesg", run.dmesg, 40);
  section("console", run.consoleLog, 40);
  section("qemu", run.qemuStderr, 10);
  return parts.join("\n");
}

/** Throws {@linkcode describeRun}'s report unless the guest said the scenario passed. */
export function assertScenarioPassed(run: ScenarioRun): ScenarioResult {
  if (run.rigError !== null) throw new Error(describeRun(run, run.rigError));
  const r = run.result;
  if (r === null) throw new Error(describeRun(run, "no result"));
  if (r.scenario !== run.scenario) {
    throw new Error(describeRun(run, `result.json is for scenario ${r.scenario}`));
  }
  if (!r.ok || run.exitCode !== 0) {
    throw new Error(describeRun(run, `${r.reason || "no reason given"} (exit ${run.exitCode})`));
  }
  return r;
}
