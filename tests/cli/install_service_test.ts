// `usbipgw install-service` into a file system image (--root): binary, units, configuration,
// the systemctl enable symlink; a second run keeps the configuration; --uninstall.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { defaultConfig, serviceUnit, socketUnit } from "../../lib/systemd/units.ts";
import { runMain, tempDir } from "../e2e/_gateway.ts";
import { hasCommand } from "../systemd/_service.ts";

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("install-service under deno run needs a compiled binary in place, and says so", async () => {
  const dir = await tempDir();
  try {
    const r = await runMain(["install-service", "--root", dir.path, "--no-enable"]);
    assertEquals(r.code, 1, r.stderr);
    assertStringIncludes(
      r.stderr,
      `usbipgw: Cannot install the service: there is no ${dir.path}/usr/local/bin/usbipgw, and this program is not the compiled usbipgw`,
    );
    assertStringIncludes(r.stderr, `deno task compile`);
    assertEquals([...Deno.readDirSync(dir.path)], [], "nothing is written");
    const bad = await runMain(["install-service", "--prefix", "relative"]);
    assertEquals(bad.code, 2);
    assertStringIncludes(bad.stderr, "--prefix needs an absolute path");
  } finally {
    await dir.remove();
  }
});

const systemctl = await hasCommand("systemctl");
if (!systemctl) {
  console.log(
    "%cskipping the install-service --root test: systemctl is not installed (Debian: systemd)",
    "color: yellow",
  );
}

Deno.test({
  name:
    "install-service --root writes the units and the configuration, and --uninstall removes them",
  ignore: !systemctl,
  async fn() {
    const dir = await tempDir();
    const root = dir.path;
    try {
      // The compiled binary, as an earlier "dist/usbipgw install-service" would have put it.
      await Deno.mkdir(`${root}/opt/gw/bin`, { recursive: true });
      await Deno.writeTextFile(`${root}/opt/gw/bin/usbipgw`, "#!/bin/sh\n");
      const args = ["install-service", "--root", root, "--prefix", "/opt/gw", "--socket"];
      const r = await runMain(args);
      assertEquals(r.code, 0, r.stderr);
      const units = `${root}/etc/systemd/system`;
      assertEquals(
        await Deno.readTextFile(`${units}/usbipgw.service`),
        serviceUnit({ binary: "/opt/gw/bin/usbipgw", config: "/etc/usbipgw/usbipgw.toml" }),
      );
      assertEquals(await Deno.readTextFile(`${units}/usbipgw.socket`), socketUnit());
      assertEquals(await Deno.readTextFile(`${root}/etc/usbipgw/usbipgw.toml`), defaultConfig());
      assertStringIncludes(r.stdout, `kept ${root}/opt/gw/bin/usbipgw`);
      // systemctl --root enable made the link a boot would follow.
      assertEquals(
        await Deno.readLink(`${units}/sockets.target.wants/usbipgw.socket`),
        "/etc/systemd/system/usbipgw.socket",
      );

      // Again, without --socket: the administrator's configuration stays, the socket unit goes.
      await Deno.writeTextFile(`${root}/etc/usbipgw/usbipgw.toml`, 'tcp = ["0.0.0.0:3240"]\n');
      const again = await runMain([
        "install-service",
        "--root",
        root,
        "--prefix",
        "/opt/gw",
        "--no-enable",
      ]);
      assertEquals(again.code, 0, again.stderr);
      assertStringIncludes(again.stdout, `kept ${root}/etc/usbipgw/usbipgw.toml`);
      assertEquals(
        await Deno.readTextFile(`${root}/etc/usbipgw/usbipgw.toml`),
        'tcp = ["0.0.0.0:3240"]\n',
      );
      assertEquals(await exists(`${units}/usbipgw.socket`), false);
      assertEquals(await exists(`${units}/sockets.target.wants/usbipgw.socket`), false);

      const gone = await runMain([
        "install-service",
        "--uninstall",
        "--root",
        root,
        "--prefix",
        "/opt/gw",
      ]);
      assertEquals(gone.code, 0, gone.stderr);
      assertEquals(await exists(`${units}/usbipgw.service`), false);
      assertEquals(await exists(`${root}/opt/gw/bin/usbipgw`), false);
      assert(await exists(`${root}/etc/usbipgw/usbipgw.toml`), "the configuration stays");
      assertStringIncludes(gone.stdout, `kept ${root}/etc/usbipgw`);
    } finally {
      await dir.remove();
    }
  },
});
