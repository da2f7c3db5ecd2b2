// Host-side checks of the thumb-drive scenarios (issue 6; guest/scenarios/storage.sh and
// storage_baseline.sh): the images the guest wrote through the gateway are checked with the
// host's own tools (fsck.vfat, e2fsck, mtools' mcopy, debugfs), and the benchmark is printed.

import { describeRun, type ScenarioResult, type ScenarioRun } from "./rig.ts";

const decoder = new TextDecoder();

/** A tool's exit code and its output (stdout and stderr). */
async function _tool(
  cmd: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  const [program, ...args] = cmd;
  const out = await new Deno.Command(program!, { args, env, stdin: "null" }).output();
  return {
    code: out.code,
    out: decoder.decode(out.stdout) + decoder.decode(out.stderr),
  };
}

async function _sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** `sha256sum` lines (`HASH  PATH`) as a map from path to hash. */
function _manifest(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const hit = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (hit) m.set(hit[2]!, hit[1]!);
  }
  return m;
}

/** Every regular file under `dir`, as paths relative to it. */
async function _files(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${prefix}`)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await _files(dir, rel));
    else if (e.isFile) out.push(rel);
  }
  return out.sort();
}

/**
 * The files of `want` under `dir` have their hashes; returns how many matched. With `exact`,
 * `dir` must hold no other file.
 */
async function _compare(
  run: ScenarioRun,
  what: string,
  dir: string,
  want: Map<string, string>,
  exact: boolean,
): Promise<number> {
  const bad: string[] = [];
  for (const [path, hash] of want) {
    let got: string;
    try {
      got = await _sha256(await Deno.readFile(`${dir}/${path}`));
    } catch {
      bad.push(`${path} missing`);
      continue;
    }
    if (got !== hash) bad.push(`${path} is ${got}, expected ${hash}`);
  }
  if (exact) {
    for (const f of await _files(dir)) if (!want.has(f)) bad.push(`unexpected file ${f}`);
  }
  if (bad.length > 0) {
    throw new Error(
      describeRun(run, `${what}: ${bad.length} file(s) wrong: ${bad.slice(0, 5).join("; ")}`),
    );
  }
  return want.size;
}

function _num(run: ScenarioRun, r: ScenarioResult, field: string, ok: (v: number) => boolean) {
  const v = r[field];
  if (typeof v !== "number" || !ok(v)) {
    throw new Error(describeRun(run, `${field} is ${JSON.stringify(v)}: not as expected`));
  }
  return v;
}

function _str(run: ScenarioRun, r: ScenarioResult, field: string, ok: (v: string) => boolean) {
  const v = r[field];
  if (typeof v !== "string" || !ok(v)) {
    throw new Error(describeRun(run, `${field} is ${JSON.stringify(v)}: not as expected`));
  }
  return v;
}

/** Partition 1 of an MBR: its type and byte range. */
function _mbrPartition1(
  sector0: Uint8Array,
): { type: number; offset: number; bytes: number } | null {
  if (sector0.length < 512 || sector0[510] !== 0x55 || sector0[511] !== 0xaa) return null;
  const v = new DataView(sector0.buffer, sector0.byteOffset + 446, 16);
  return {
    type: v.getUint8(4),
    offset: v.getUint32(8, true) * 512,
    bytes: v.getUint32(12, true) * 512,
  };
}

/**
 * Checks the `storage` scenario's images on the host: the vfat partition with `fsck.vfat -n`
 * and its files (mcopy) against the guest's manifest, exactly; the ext4 image (after the kill
 * -9, the journal replay and the guest's e2fsck) with `e2fsck -fn` and the files synced before
 * the kill (debugfs rdump); the read-only images unchanged; and the guest's fields.
 */
export async function checkStorage(run: ScenarioRun, r: ScenarioResult): Promise<void> {
  const dir = `${run.runDir}/share/storage`;
  const work = `${run.runDir}/host-check`;
  await Deno.remove(work, { recursive: true }).catch(() => {});
  await Deno.mkdir(work, { recursive: true });
  const payload = _manifest(await Deno.readTextFile(`${dir}/payload.sha256`));
  const synced = _manifest(await Deno.readTextFile(`${dir}/synced.sha256`));
  const files = _num(run, r, "payload_files", (v) => v === payload.size && v > 100);
  if (synced.size !== 1) throw new Error(describeRun(run, "synced.sha256 does not name 1 file"));

  // vfat: MBR partition 1 (W95 FAT32 LBA), checked as a file of its own.
  const image = await Deno.open(`${dir}/vfat.img`, { read: true });
  let part: ReturnType<typeof _mbrPartition1>;
  try {
    const sector0 = new Uint8Array(512);
    await image.read(sector0);
    part = _mbrPartition1(sector0);
    if (part === null || part.type !== 0x0c || part.bytes === 0) {
      throw new Error(
        describeRun(run, `vfat.img: no MBR partition 1 of type 0x0c (${part?.type})`),
      );
    }
    await image.seek(part.offset, Deno.SeekMode.Start);
    const out = await Deno.open(`${work}/vfat-part1.img`, { write: true, create: true });
    try {
      const buf = new Uint8Array(1 << 20);
      for (let left = part.bytes; left > 0;) {
        const n = await image.read(buf.subarray(0, Math.min(buf.length, left)));
        if (n === null) throw new Error(describeRun(run, "vfat.img ends inside partition 1"));
        for (let done = 0; done < n;) done += await out.write(buf.subarray(done, n));
        left -= n;
      }
    } finally {
      out.close();
    }
  } finally {
    image.close();
  }
  const fsckVfat = await _tool(["fsck.vfat", "-n", `${work}/vfat-part1.img`]);
  if (fsckVfat.code !== 0) {
    throw new Error(
      describeRun(
        run,
        `fsck.vfat -n of the vfat partition: exit ${fsckVfat.code}\n${fsckVfat.out}`,
      ),
    );
  }
  await Deno.mkdir(`${work}/vfat`);
  const mcopy = await _tool(
    ["mcopy", "-s", "-n", "-i", `${dir}/vfat.img@@${part.offset}`, "::*", `${work}/vfat/`],
    { MTOOLS_SKIP_CHECK: "1" },
  );
  if (mcopy.code !== 0) {
    throw new Error(describeRun(run, `mcopy from vfat.img: exit ${mcopy.code}\n${mcopy.out}`));
  }
  await _compare(run, "vfat (mcopy)", `${work}/vfat`, payload, true);

  // ext4: consistent without repairs, the payload and the file synced before the kill intact.
  const e2fsck = await _tool(["e2fsck", "-fn", `${dir}/ext4.img`]);
  if (e2fsck.code !== 0) {
    throw new Error(describeRun(run, `e2fsck -fn ext4.img: exit ${e2fsck.code}\n${e2fsck.out}`));
  }
  await Deno.mkdir(`${work}/ext4`);
  const rdump = await _tool(["debugfs", "-R", `rdump / ${work}/ext4`, `${dir}/ext4.img`]);
  if (rdump.code !== 0) {
    throw new Error(
      describeRun(run, `debugfs rdump of ext4.img: exit ${rdump.code}\n${rdump.out}`),
    );
  }
  await _compare(run, "ext4 (debugfs)", `${work}/ext4`, new Map([...payload, ...synced]), false);

  // read-only images: as the guest made them.
  const roSha = _str(run, r, "ro_image_sha256", (v) => /^[0-9a-f]{64}$/.test(v));
  for (const f of ["ro", "policy"]) {
    const sha = await _sha256(await Deno.readFile(`${dir}/${f}.img`));
    if (sha !== roSha) {
      throw new Error(describeRun(run, `${f}.img changed on the host: ${sha}, was ${roSha}`));
    }
    _num(run, r, `${f}_sysfs_ro`, (v) => v === 1);
    _num(run, r, `${f}_getro`, (v) => v === 1);
    _str(run, r, `${f}_rw_mount_mode`, (v) => v !== "rw");
    _num(run, r, `${f}_verified`, (v) => v === files);
    _str(run, r, `${f}_disk_sha256`, (v) => v === roSha);
    _num(run, r, `${f}_dd_write_exit`, (v) => v !== 0);
    _num(run, r, `${f}_sg_write_exit`, (v) => v === 1);
    _str(run, r, `${f}_sg_write`, (v) => / sense_key=0x7 asc=0x27 /.test(v));
  }

  // the guest's own verdicts, checked again
  for (const f of ["vfat_again_verified", "ext4_again_verified"]) {
    _num(run, r, f, (v) => v === files);
  }
  _num(run, r, "crash_synced_verified", (v) => v === files + 1);
  const mib = _num(run, r, "crash_dd_mib", (v) => v > 0);
  _num(run, r, "crash_written_mib_at_kill", (v) => v >= 8 && v < mib);
  _num(run, r, "crash_port_freed_s", (v) => v <= 5);
  _num(run, r, "crash_disk_gone_s", (v) => v <= 20);
  _num(run, r, "crash_dd_exit", (v) => v !== 0);
  _num(run, r, "crash_e2fsck_exit", (v) => v === 0 || v === 1);
  _num(run, r, "crash_e2fsck_again_exit", (v) => v === 0);
  if (r["crash_journal_recovered"] !== true) {
    throw new Error(
      describeRun(run, "e2fsck after the kill replayed no journal (was the kill real?)"),
    );
  }
  console.log(
    `storage: ${files} files (${r["payload_bytes"]} bytes) on vfat and ext4, checked on the host ` +
      `(fsck.vfat, e2fsck, mcopy, debugfs); kill -9 at ${
        r["crash_written_mib_at_kill"]
      } of ${mib} MiB: ` +
      `port freed ${r["crash_port_freed_s"]} s, disk gone ${r["crash_disk_gone_s"]} s, dd ended ` +
      `${r["crash_dd_ended_s"]} s (exit ${r["crash_dd_exit"]}); restart ${
        r["crash_restart_s"]
      } s, ` +
      `re-attach to disk ${r["crash_reattach_attach_to_disk_s"]} s, e2fsck -fp ${
        r["crash_e2fsck_s"]
      } s ` +
      `(exit ${
        r["crash_e2fsck_exit"]
      }, journal replayed); ro and policy read-only: write-protected, ` +
      `WRITE(10) refused with DATA PROTECT, images unchanged`,
  );
}

/**
 * `storage_uas`: the checks of `storage` through UAS (every drive bound by the kernel's uas
 * driver, many commands in flight), then a SuperSpeed drive with uas=1 that usb-storage drives
 * through Bulk-Only because vhci has no streams.
 */
export async function checkStorageUas(run: ScenarioRun, r: ScenarioResult): Promise<void> {
  await checkStorage(run, r);
  for (
    const label of ["vfat", "ext4", "vfat_again", "ext4_again", "crash_reattach", "ro", "policy"]
  ) {
    _str(run, r, `${label}_driver`, (v) => v === "uas");
  }
  const most = _num(run, r, "uas_most_in_flight", (v) => v > 1 && v <= 32);
  _str(run, r, "super_driver", (v) => v === "usb-storage");
  _str(run, r, "super_speed", (v) => v === "5000");
  _str(run, r, "super_readback", (v) => v === "match");
  console.log(
    `storage_uas: every check of storage passed with the uas driver bound, up to ${most} ` +
      `commands in flight; a SuperSpeed uas=1 drive ran Bulk-Only under usb-storage`,
  );
}

/** The paths of `storage_baseline`, in table order. */
const BASELINE_PATHS: readonly [string, string][] = [
  ["ours", "usbipgw storage (high speed) + vhci"],
  ["kernel", "kernel f_mass_storage (high speed) + vhci"],
  ["ours_ss", "usbipgw storage, speed=super, + vhci"],
  ["kernel_ss", "kernel f_mass_storage, SuperSpeed, + vhci"],
  ["ours_uas", "usbipgw storage, uas=1, high speed, + vhci"],
  ["direct", "kernel f_mass_storage, high speed, direct"],
  ["direct_ss", "kernel f_mass_storage, SuperSpeed, direct"],
];

/**
 * Prints the `storage_baseline` table (MB/s, median and best of the runs, each direction) and
 * checks that every path and direction has its figures.
 */
export function printStorageBaseline(run: ScenarioRun, r: ScenarioResult): void {
  const rows = [
    `sequential MB/s, ${r["st_mib"]} MiB per run: write dd ${r["write_args"]}; read dd ${
      r["read_args"]
    }`,
    `${"path".padEnd(42)} | ${"write median".padStart(12)} | ${"best".padStart(6)} | ${
      "read median".padStart(11)
    } | ${"best".padStart(6)} | max_sectors_kb`,
  ];
  for (const [k, label] of BASELINE_PATHS) {
    for (const dir of ["write", "read"]) {
      const all = r[`${k}_${dir}_mbs`];
      if (!Array.isArray(all) || all.length === 0 || !all.every((v) => v > 0)) {
        throw new Error(describeRun(run, `${k}_${dir}_mbs is ${JSON.stringify(all)}`));
      }
    }
    rows.push(
      `${label.padEnd(42)} | ${String(r[`${k}_write_median_mbs`]).padStart(12)} | ${
        String(r[`${k}_write_best_mbs`]).padStart(6)
      } | ${String(r[`${k}_read_median_mbs`]).padStart(11)} | ${
        String(r[`${k}_read_best_mbs`]).padStart(6)
      } | ${r[`${k}_max_sectors_kb`]}`,
    );
  }
  console.log(rows.join("\n"));
}
