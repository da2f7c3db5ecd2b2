// Installs the Debian packages the test suite uses (tests/interop/packages.txt: qemu, usbip,
// busybox, gcc, ...) when they are missing and this runs as root with apt-get; otherwise says
// which are missing, and the tests that need them skip with a printed reason. Part of
// `deno task test`, so that one command does all set-up on a fresh machine.

const list = new URL("./interop/packages.txt", import.meta.url);
const wanted = (await Deno.readTextFile(list)).split(/\s+/).filter((p) =>
  p !== "" && !p.startsWith("#")
);

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    return {
      ok: r.success,
      out: new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr),
    };
  } catch (e) {
    return { ok: false, out: String(e) };
  }
}

const query = await run("dpkg-query", ["-W", "-f=${Package} ${db:Status-Status}\n", ...wanted]);
const installed = new Set(
  query.out.split("\n").filter((l) => l.endsWith(" installed")).map((l) => l.split(" ")[0]),
);
const missing = wanted.filter((p) => !installed.has(p));
if (missing.length === 0) Deno.exit(0);

if (Deno.uid() !== 0) {
  console.log(
    `tests/prepare: missing Debian packages ${
      missing.join(" ")
    }; not root, so not installing them.`,
  );
  console.log(
    "tests/prepare: the tests that need them will skip (install them with apt-get to run those).",
  );
  Deno.exit(0);
}
console.log(`tests/prepare: installing ${missing.join(" ")} with apt-get`);
let install = await run("apt-get", ["install", "-y", "--no-install-recommends", ...missing]);
if (!install.ok) {
  await run("apt-get", ["update"]);
  install = await run("apt-get", ["install", "-y", "--no-install-recommends", ...missing]);
}
if (!install.ok) {
  console.log(`tests/prepare: apt-get failed:\n${install.out.split("\n").slice(-15).join("\n")}`);
  if (Deno.env.get("CI")) Deno.exit(1);
}
