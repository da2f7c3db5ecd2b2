// Tests of the storage device type: its keys, image paths, and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import { assertDescribedAsCreated, listFolder, parsed } from "./_describe.ts";

const DEFAULTS = {
  readOnly: false,
  blockSize: 512,
  removable: true,
  vendor: "usbipgw",
  product: "Thumb Drive",
  revision: "1.00",
  speed: "high",
} as const;

Deno.test("storage parses images, flags, size, block, speed and the SCSI strings", () => {
  assertEquals(parsed("storage", { image: "/srv/a.img" }).options, {
    images: ["/srv/a.img"],
    ...DEFAULTS,
  });
  assertEquals(
    parsed(
      "storage",
      {
        image: "/srv/a.img; /srv/b.img",
        ro: "",
        removable: "0",
        size: "64M",
        block: "4096",
        speed: "super",
        vendor: "ACME",
        product: "Stick",
        revision: "2",
        serial: "XYZ123456789",
      },
      undefined,
      ["ro"],
    ).options,
    {
      images: ["/srv/a.img", "/srv/b.img"],
      readOnly: true,
      size: 64 << 20,
      blockSize: 4096,
      removable: false,
      vendor: "ACME",
      product: "Stick",
      revision: "2",
      serial: "XYZ123456789",
      speed: "super",
    },
  );
  // TOML booleans arrive as "true" and "false".
  const toml = parsed("storage", { image: "/a", ro: "true", removable: "false" }).options;
  assertEquals([toml.readOnly, toml.removable], [true, false]);
});

Deno.test("storage resolves each relative image of a;b against the context's folder", () => {
  const options =
    parsed("storage", { image: "a.img;/srv/b.img;sub/c.img" }, pathsRelativeTo("/etc/gw"))
      .options;
  assertEquals(options.images, ["/etc/gw/a.img", "/srv/b.img", "/etc/gw/sub/c.img"]);
});

Deno.test("storage describes what it creates, the default serial from the image's real path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    // Described before the image exists, then created (which creates it).
    const device = parsed("storage", { image: "link/a.img", size: "1M" }, pathsRelativeTo(dir));
    await assertDescribedAsCreated(device);
    assertEquals(await listFolder(`${dir}/real`), ["a.img"]);
    // Described and created again now that it exists, at each speed, with two LUNs.
    for (const speed of ["high", "super", "full"]) {
      await assertDescribedAsCreated(
        parsed("storage", { image: "link/a.img;b.img", size: "1M", speed }, pathsRelativeTo(dir)),
      );
    }
    await assertDescribedAsCreated(
      parsed("storage", { image: `${dir}/real/a.img`, serial: "S1", vendor: "V" }),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
