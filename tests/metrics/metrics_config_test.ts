// `metrics = "HOST:PORT"` in the configuration file: a port alone is loopback, a host needs a
// port (there is no default one), a wrong value names its line, and `config check` shows it.
import { assertEquals, assertRejects } from "@std/assert";
import { checkConfigText, ConfigError } from "../../lib/cli/config.ts";
import { runMain } from "../e2e/_gateway.ts";

const DEVICE = `\n[[device]]\ntype = "gadget-zero"\n`;

Deno.test("metrics in a config file: off by default, a port alone on 127.0.0.1", async () => {
  assertEquals((await checkConfigText(DEVICE, "gw.toml")).metrics, undefined);
  const at = async (value: string) =>
    (await checkConfigText(`metrics = ${value}${DEVICE}`, "gw.toml")).metrics;
  assertEquals(await at(`"9464"`), { hostname: "127.0.0.1", port: 9464 });
  assertEquals(await at(`9464`), { hostname: "127.0.0.1", port: 9464 });
  assertEquals(await at(`"[::1]:9464"`), { hostname: "::1", port: 9464 });
  assertEquals(await at(`"0.0.0.0:9464"`), { hostname: "0.0.0.0", port: 9464 });
});

Deno.test("a metrics address without a port, or not an address, names its line", async () => {
  for (
    const [value, problem] of [
      [`"127.0.0.1"`, "the port is missing"],
      [`"127.0.0.1:99999"`, "the port must be 1..65535"],
      [`true`, `expected "HOST:PORT" for the metrics listener`],
    ]
  ) {
    await assertRejects(
      () => checkConfigText(`log_level = "info"\nmetrics = ${value}${DEVICE}`, "gw.toml"),
      ConfigError,
      `gw.toml:2: metrics: `,
    );
    await assertRejects(
      () => checkConfigText(`metrics = ${value}${DEVICE}`, "gw.toml"),
      ConfigError,
      problem,
    );
  }
});

Deno.test("config check names the metrics listener among the listeners", async () => {
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-metrics-" });
  try {
    const file = `${dir}/gw.toml`;
    await Deno.writeTextFile(file, `tcp = "127.0.0.1:3240"\nmetrics = "9464"${DEVICE}`);
    const out = await runMain(["config", "check", file]);
    assertEquals([out.code, out.stdout.trimEnd().split("listeners: ")[1]], [
      0,
      "127.0.0.1:3240, metrics 127.0.0.1:9464",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
