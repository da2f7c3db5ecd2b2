// compile.sh: either a working single binary (version, then the README's smoke test: serve the
// demo set and list it with the binary itself, run from another folder), or, where denort
// cannot be had (no DENORT_BIN, no pre-seeded zip, no download), exactly the message that
// says how to provide it, with exit status 3.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { TextLineStream } from "@std/streams";
import denoJson from "../../deno.json" with { type: "json" };

const ROOT = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

Deno.test("compile.sh builds a working binary, or says exactly how to provide denort", async () => {
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-compile-" });
  try {
    const out = `${dir}/usbipgw`;
    const started = performance.now();
    const build = await new Deno.Command("sh", {
      args: [`${ROOT}compile.sh`],
      env: { OUT: out },
      stdin: "null",
    }).output();
    const seconds = (performance.now() - started) / 1000;
    const stderr = decoder.decode(build.stderr);
    if (build.code === 3) {
      // No denort here: the exact message, after whatever deno compile said.
      const version = Deno.version.deno;
      const target = "x86_64-unknown-linux-gnu";
      const info = JSON.parse(decoder.decode(
        (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
      ));
      const denoDir = Deno.env.get("DENO_DIR") ?? info.denoDir;
      assertEquals(stderr.trimEnd().split("\n").slice(-3), [
        `compile.sh: deno compile needs denort ${version} for ${target} and could not download it.`,
        `  Set DENORT_BIN=/path/to/denort, or place denort-${target}.zip at`,
        `  ${denoDir}/dl/release/v${version}/denort-${target}.zip, then run this again.`,
      ]);
      assertEquals(Deno.env.get("DENORT_BIN"), undefined, "with DENORT_BIN the build must work");
      assert(seconds < 60, `failing took ${seconds.toFixed(1)} s`);
      console.log(
        `%cno denort here: compile.sh stopped with its message in ${seconds.toFixed(1)} s`,
        "color: yellow",
      );
      return;
    }
    assertEquals(build.code, 0, `compile.sh failed (${build.code}):\n${stderr}`);
    assertStringIncludes(decoder.decode(build.stdout), `compile.sh: built ${out}`);

    await smokeTest([out], dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs `argv version`, then serves the demo set with `argv serve` and lists it over TCP and
 * the unix socket with `argv list`, all from `dir` (an empty folder: the binary needs nothing
 * beside it).
 */
async function smokeTest(argv: string[], dir: string): Promise<void> {
  const run = (args: string[]) =>
    new Deno.Command(argv[0]!, { args: [...argv.slice(1), ...args], cwd: dir, stdin: "null" })
      .output();
  const version = await run(["version"]);
  assertEquals(version.code, 0);
  assertMatch(
    decoder.decode(version.stdout),
    new RegExp(`^usbipgw ${denoJson.version.replaceAll(".", "\\.")} \\(deno `),
  );

  // README: "deno task serve" serves Gadget Zero on 1-1 and a keyboard on 1-2; "usbipgw list
  // -r 127.0.0.1" shows them.
  const gateway = new Deno.Command(argv[0]!, {
    args: [...argv.slice(1), "serve", "--tcp", "127.0.0.1:0", "--unix", `${dir}/gw.sock`],
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = gateway.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TextLineStream(),
  );
  const serving = Promise.withResolvers<number>();
  const drained = (async () => {
    for await (const line of lines) {
      const m = /usbipgw serving .*tcp 127\.0\.0\.1:(\d+)/.exec(line);
      if (m) serving.resolve(Number(m[1]));
    }
    serving.reject(new Error("The binary exited before it served"));
  })();
  try {
    const port = await serving.promise;
    for (const target of [["-r", `127.0.0.1:${port}`], ["--unix", `${dir}/gw.sock`]]) {
      const list = await run(["list", ...target]);
      assertEquals(list.code, 0, decoder.decode(list.stderr));
      const text = decoder.decode(list.stdout);
      assertMatch(text, /^1-1 +0525:a4a0 +high/m);
      assertMatch(text, /^1-2 +1209:0001 +full/m);
    }
  } finally {
    try {
      gateway.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    assertEquals((await gateway.status).code, 0);
    await drained;
  }
}
