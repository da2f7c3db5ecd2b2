// `usbipgw install-service` into a file system image (--root): binary, manual page, units,
// the modules-load.d file, the polkit actions, configuration, the systemctl enable symlink; a
// second run keeps the configuration; --uninstall.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { type InstallIo, installService } from "../../lib/cli/install_service.ts";
import {
  defaultConfig,
  MODULES_LOAD_FILE,
  modulesLoadConf,
  serviceUnit,
  socketUnit,
} from "../../lib/systemd/units.ts";
import { POLKIT_ACTIONS_FILE, polkitPolicyFile } from "../../lib/polkit/actions.ts";
import { packagedManPage } from "../../packaging/man/generate.ts";
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
    "install-service --root writes the units, vhci-hcd's modules-load.d file, the polkit actions and the configuration, and --uninstall removes them",
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
      // vhci-hcd at boot and the polkit actions, where modules-load.d and polkitd read them
      // (not under --prefix), world-readable.
      for (
        const [path, text] of [[MODULES_LOAD_FILE, modulesLoadConf()], [
          POLKIT_ACTIONS_FILE,
          polkitPolicyFile(),
        ]]
      ) {
        assertEquals(await Deno.readTextFile(`${root}${path}`), text, path);
        assertEquals((await Deno.stat(`${root}${path}`)).mode! & 0o777, 0o644, path);
        assertStringIncludes(r.stdout, `wrote ${root}${path}\n`);
      }
      // The manual page of the command table, as packaging/man/ has it.
      const manPage = `${root}/opt/gw/share/man/man1/usbipgw.1`;
      assertEquals(await Deno.readTextFile(manPage), packagedManPage());
      assertStringIncludes(r.stdout, `wrote ${manPage}\n`);
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
      assertEquals(await exists(`${root}/opt/gw/share/man/man1/usbipgw.1`), false);
      assertStringIncludes(gone.stdout, `removed ${root}/opt/gw/share/man/man1/usbipgw.1\n`);
      for (const path of [MODULES_LOAD_FILE, POLKIT_ACTIONS_FILE]) {
        assertEquals(await exists(`${root}${path}`), false, path);
        assertStringIncludes(gone.stdout, `removed ${root}${path}\n`);
      }
      assert(await exists(`${root}/etc/usbipgw/usbipgw.toml`), "the configuration stays");
      assertStringIncludes(gone.stdout, `kept ${root}/etc/usbipgw`);
    } finally {
      await dir.remove();
    }
  },
});

/** An InstallIo run as the compiled binary `execPath`, collecting stdout; counts manPage(). */
function fakeIo(execPath: string, page: string) {
  const io = {
    stdout: "",
    pages: 0,
    out(text: string) {
      io.stdout += text;
    },
    err(text: string) {
      throw new Error(`Unexpected stderr: ${text}`);
    },
    execPath,
    manPage() {
      io.pages++;
      return page;
    },
  } satisfies InstallIo & { stdout: string; pages: number };
  return io;
}

/** This program, as if compiled, in `dir`/build: any executable not named deno. */
async function compiledBinary(dir: string): Promise<string> {
  const binary = `${dir}/build/usbipgw`;
  await Deno.mkdir(`${dir}/build`);
  await Deno.writeTextFile(binary, "#!/bin/sh\n", { mode: 0o755 });
  return binary;
}

const PAGE = '.TH USBIPGW 1 "2026-11-21" "usbipgw 0.1.0"\n.SH NAME\nusbipgw \\- a test page\n';

Deno.test("install-service writes the page io.manPage() makes to PREFIX/share/man/man1", async () => {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  try {
    const binary = await compiledBinary(dir.path);
    const io = fakeIo(binary, PAGE);
    assertEquals(await installService({ root, noEnable: true }, io), 0);
    const page = `${root}/usr/local/share/man/man1/usbipgw.1`;
    assertEquals(await Deno.readTextFile(page), PAGE);
    assertEquals((await Deno.stat(page)).mode! & 0o777, 0o644);
    assertEquals(io.pages, 1);
    assertStringIncludes(io.stdout, `installed ${root}/usr/local/bin/usbipgw\nwrote ${page}\n`);
    // --no-enable under --root: the files only; no modprobe (io.err would throw).
    assertStringIncludes(
      io.stdout,
      `wrote ${root}${MODULES_LOAD_FILE}\nwrote ${root}${POLKIT_ACTIONS_FILE}\n`,
    );
    assertEquals(await Deno.readTextFile(`${root}${POLKIT_ACTIONS_FILE}`), polkitPolicyFile());
    assert(!io.stdout.includes("modprobe"), io.stdout);

    // --prefix moves it with the binary; a reinstall replaces it.
    const again = fakeIo(binary, `${PAGE}.PP\nnewer\n`);
    assertEquals(await installService({ root, prefix: "/opt/gw", noEnable: true }, again), 0);
    assertEquals(
      await Deno.readTextFile(`${root}/opt/gw/share/man/man1/usbipgw.1`),
      `${PAGE}.PP\nnewer\n`,
    );
  } finally {
    await dir.remove();
  }
});

Deno.test({
  name: "install-service --uninstall removes the manual page with the binary",
  ignore: !systemctl,
  async fn() {
    const dir = await tempDir();
    const root = `${dir.path}/root`;
    try {
      const binary = await compiledBinary(dir.path);
      const where = { root, prefix: "/opt/gw" };
      assertEquals(await installService({ ...where, noEnable: true }, fakeIo(binary, PAGE)), 0);
      const page = `${root}/opt/gw/share/man/man1/usbipgw.1`;
      assert(await exists(page));
      const io = fakeIo(binary, PAGE);
      assertEquals(await installService({ ...where, uninstall: true }, io), 0);
      assertEquals(await exists(page), false);
      assertEquals(await exists(`${root}/opt/gw/bin/usbipgw`), false);
      assertStringIncludes(io.stdout, `removed ${page}\n`);
      assertEquals(await exists(`${root}${POLKIT_ACTIONS_FILE}`), false);
      assertEquals(await exists(`${root}${MODULES_LOAD_FILE}`), false);
      assertEquals(io.pages, 0, "--uninstall does not make the page");
      // A second --uninstall finds nothing to remove, and says nothing about the page.
      const twice = fakeIo(binary, PAGE);
      assertEquals(await installService({ ...where, uninstall: true }, twice), 0);
      assert(!twice.stdout.includes("usbipgw.1"), twice.stdout);
      assert(!twice.stdout.includes("org.usbipgw.policy"), twice.stdout);
    } finally {
      await dir.remove();
    }
  },
});
