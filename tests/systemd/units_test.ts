// The systemd unit files and the modules-load.d file: the copies in packaging/systemd/ match
// the texts embedded in the module graph, the default configuration is valid, and
// systemd-analyze accepts the units.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { PACKAGING_FILES } from "../../packaging/systemd/generate.ts";
import { checkConfigText, formatAddress } from "../../lib/cli/config.ts";
import {
  defaultConfig,
  MODULES_LOAD_FILE,
  modulesLoadConf,
  SERVICE_SOCKET,
  serviceUnit,
  SOCKET_LINK,
  socketUnit,
  VHCI_STATE_DIR,
  VHCI_SYSFS_DIR,
} from "../../lib/systemd/units.ts";
import { VHCI_STATE_DIR as CLIENT_STATE_DIR, vhciDir } from "../../lib/client/vhci.ts";
import { USBIP_PORT } from "../../lib/protocol/constants.ts";
import { hasCommand } from "./_service.ts";

const PACKAGING = new URL("../../packaging/systemd/", import.meta.url);

Deno.test("packaging/systemd/ holds the embedded unit files and configuration", async () => {
  for (const [name, text] of Object.entries(PACKAGING_FILES)) {
    const onDisk = await Deno.readTextFile(new URL(name, PACKAGING));
    assertEquals(
      onDisk,
      text,
      `packaging/systemd/${name} differs from lib/systemd/units.ts; run: deno run -A packaging/systemd/generate.ts`,
    );
  }
});

/** The `Key=value` lines of a unit file, in order. */
function settings(unit: string): [string, string][] {
  return unit.split("\n").filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => {
    const i = l.indexOf("=");
    return [l.slice(0, i), l.slice(i + 1)];
  });
}
const values = (unit: string, key: string) =>
  settings(unit).filter(([k]) => k === key).map(([, v]) => v);

Deno.test("the service unit is a notify service with a watchdog and the hardening asked for", () => {
  const unit = serviceUnit();
  for (
    const [key, value] of [
      ["Type", "notify"],
      ["NotifyAccess", "main"],
      ["ExecStart", "/usr/local/bin/usbipgw serve --config /etc/usbipgw/usbipgw.toml"],
      ["ExecReload", "/bin/kill -HUP $MAINPID"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["NoNewPrivileges", "yes"],
      ["RuntimeDirectory", "usbipgw"],
      ["SocketBindDeny", "any"],
    ]
  ) {
    assertEquals(values(unit, key!), [value!], key);
  }
  assert(/^\d+s$/.test(values(unit, "WatchdogSec")[0] ?? ""), "WatchdogSec");
  assertEquals(values(unit, "SocketBindAllow"), [`tcp:${USBIP_PORT}`]);
  assertEquals(values(unit, "RestrictAddressFamilies")[0]?.split(" ").sort(), [
    "AF_INET",
    "AF_INET6",
    "AF_NETLINK",
    "AF_UNIX",
  ]);
  assert(values(unit, "DeviceAllow").includes("char-usb_device rw"));
  // The socket the default configuration names is in the one writable runtime folder.
  assert(SERVICE_SOCKET.startsWith(`/run/${values(unit, "RuntimeDirectory")[0]}/`));
});

Deno.test("the service may write vhci_hcd's attach and detach files and port records, despite ProtectKernelTunables", () => {
  const unit = serviceUnit();
  assertEquals(values(unit, "ProtectKernelTunables"), ["yes"]);
  assertEquals(values(unit, "ProtectKernelModules"), ["yes"]);
  // The folder lib/client writes attach and detach in, and where it keeps port records; "-":
  // a machine without vhci-hcd still starts the service.
  assertEquals(VHCI_SYSFS_DIR, vhciDir("/sys"));
  assertEquals(CLIENT_STATE_DIR.replace(/^\/var\/run\//, "/run/"), VHCI_STATE_DIR);
  assertEquals(values(unit, "ReadWritePaths"), [`-${VHCI_SYSFS_DIR}`, `-${VHCI_STATE_DIR}`]);
  // The records' folder exists before the sandbox is set up (made outside it, with "+").
  assert(values(unit, "ExecStartPre").includes(`+/bin/mkdir -p -m 0700 ${VHCI_STATE_DIR}`));
  // pkcheck reaches the system bus over a unix socket.
  assert(values(unit, "RestrictAddressFamilies")[0]?.split(" ").includes("AF_UNIX"));
});

Deno.test("the modules-load.d file loads vhci-hcd, and nothing else", () => {
  assertEquals(MODULES_LOAD_FILE, "/etc/modules-load.d/usbipgw.conf");
  const modules = modulesLoadConf().split("\n").filter((l) =>
    l.trim() !== "" && !l.startsWith("#") && !l.startsWith(";")
  );
  assertEquals(modules, ["vhci-hcd"]);
});

Deno.test("the socket unit activates the service on port 3240 and on the service's unix socket", () => {
  const unit = socketUnit();
  assertEquals(values(unit, "ListenStream"), [`127.0.0.1:${USBIP_PORT}`, SERVICE_SOCKET]);
  assertEquals(values(unit, "Symlinks"), [SOCKET_LINK]);
  assertEquals(values(unit, "Service"), ["usbipgw.service"]);
});

Deno.test("the default configuration parses and names the service's socket", async () => {
  const config = await checkConfigText(defaultConfig(), "usbipgw.toml");
  assertEquals(config.tcp.map(formatAddress), [`127.0.0.1:${USBIP_PORT}`]);
  assertEquals(config.unix, [{ path: SERVICE_SOCKET }]);
  assertEquals(config.logFormat, "auto");
  assertEquals(config.devices, []);
});

const analyze = await hasCommand("systemd-analyze");
if (!analyze) {
  console.log(
    "%cskipping systemd-analyze verify: systemd-analyze is not installed (Debian: systemd)",
    "color: yellow",
  );
}

Deno.test({
  name: "systemd-analyze verify accepts the service and socket units without a warning",
  ignore: !analyze,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "usbipgw-units-" });
    try {
      // verify checks that ExecStart= is executable: point it at one that exists.
      const binary = `${dir}/usbipgw`;
      await Deno.copyFile("/bin/true", binary);
      await Deno.chmod(binary, 0o755);
      await Deno.writeTextFile(
        `${dir}/usbipgw.service`,
        serviceUnit({ binary, config: "/etc/usbipgw/usbipgw.toml" }),
      );
      await Deno.writeTextFile(`${dir}/usbipgw.socket`, socketUnit());
      const out = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/usbipgw.service`, `${dir}/usbipgw.socket`],
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, text);
      // verify exits 0 after "Unknown key" and "Unable to parse" warnings: there must be none.
      const ours = text.split("\n").filter((l) => l.includes("usbipgw"));
      assertEquals(ours, [], text);

      // And it does catch a broken unit: the check above can fail.
      await Deno.writeTextFile(
        `${dir}/usbipgw.service`,
        serviceUnit({ binary: `${dir}/missing`, config: "/etc/usbipgw/usbipgw.toml" }),
      );
      const bad = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/usbipgw.service`],
        stdin: "null",
      }).output();
      assertEquals(bad.code === 0, false);
      assertStringIncludes(new TextDecoder().decode(bad.stderr), `${dir}/missing`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
