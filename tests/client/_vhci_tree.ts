// A fake sysfs tree with vhci_hcd's files (status, status.N, attach, detach, nports) in a temp
// folder, in the formats of drivers/usb/usbip/vhci_sysfs.c, for the client tests.

/** One port line to put in a fake status file. */
export interface FakePort {
  hub: "hs" | "ss";
  port: number;
  status?: number;
  speed?: number;
  devid?: number;
  sockfd?: number;
  busid?: string;
}

/** A status file's text in the Linux 4.14+ format. */
export function statusText(ports: FakePort[]): string {
  const lines = ["hub port sta spd dev      sockfd local_busid"];
  for (const p of ports) {
    const used = (p.status ?? 4) === 6;
    lines.push(
      `${p.hub}  ${String(p.port).padStart(4, "0")} ${String(p.status ?? 4).padStart(3, "0")} ` +
        (used
          ? `${String(p.speed ?? 0).padStart(3, "0")} ${
            (p.devid ?? 0).toString(16).padStart(8, "0")
          } ${String(p.sockfd ?? 0).padStart(6, "0")} ${p.busid ?? "0-0"}`
          : "000 00000000 000000 0-0"),
    );
  }
  return lines.join("\n") + "\n";
}

/** Free ports of controller `n` with `h` ports per hub, numbered as the kernel does. */
export function controllerPorts(n: number, h = 8): FakePort[] {
  const ports: FakePort[] = [];
  for (let i = 0; i < h; i++) ports.push({ hub: "hs", port: n * 2 * h + i });
  for (let i = 0; i < h; i++) ports.push({ hub: "ss", port: n * 2 * h + h + i });
  return ports;
}

/** A temp sysfs root holding vhci_hcd.0 with one status file per controller. */
export async function fakeSysfs(controllers: FakePort[][]): Promise<{
  root: string;
  vhci: string;
  setStatus(controller: number, ports: FakePort[]): void;
  read(name: string): string;
  remove(): Promise<void>;
}> {
  const root = await Deno.makeTempDir({ prefix: "usbipgw-sysfs-" });
  const vhci = `${root}/devices/platform/vhci_hcd.0`;
  await Deno.mkdir(vhci, { recursive: true });
  // Written aside and renamed into place: the gateway reads the file while a test rewrites it,
  // and a read between truncation and write would see no ports, which the kernel never shows.
  const setStatus = (c: number, ports: FakePort[]) => {
    const path = `${vhci}/${c === 0 ? "status" : `status.${c}`}`;
    Deno.writeTextFileSync(`${path}.new`, statusText(ports));
    Deno.renameSync(`${path}.new`, path);
  };
  controllers.forEach((ports, c) => setStatus(c, ports));
  for (let c = 1; c < controllers.length; c++) {
    await Deno.mkdir(`${root}/devices/platform/vhci_hcd.${c}`);
  }
  Deno.writeTextFileSync(`${vhci}/attach`, "");
  Deno.writeTextFileSync(`${vhci}/detach`, "");
  Deno.writeTextFileSync(`${vhci}/nports`, `${controllers.flat().length}\n`);
  return {
    root,
    vhci,
    setStatus,
    read: (name) => Deno.readTextFileSync(`${vhci}/${name}`),
    remove: () => Deno.remove(root, { recursive: true }),
  };
}
