import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { encodeOtaFile } from "../../src/protocol/ota-file.ts";
import { RequestError } from "../../src/server/base/request-error.ts";
import { FirmwareIntegrityError } from "../../src/server/releases/firmware-files.ts";
import { FirmwareLibrary } from "../../src/server/releases/firmware-library.ts";
import { openSqliteStorage } from "../../src/server/storage/sqlite-storage.ts";
import type { Storage } from "../../src/server/storage/storage.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { tempDir, testKey } from "./support/test-server.ts";

describe("firmware store", () => {
  let t: ReturnType<typeof tempDir>;
  let storage: Storage;
  let library: FirmwareLibrary;
  const v1 = buildMicroPythonImage({ size: 60000, seed: 1 });
  const v2 = buildMicroPythonImage({ size: 64000, seed: 2 });
  const id1 = imageIdentity(v1);
  const id2 = imageIdentity(v2);

  before(async () => {
    t = tempDir();
    storage = await openSqliteStorage(t.dir);
    library = new FirmwareLibrary(storage, t.dir, () => 1_700_000_000_000);
  });
  after(async () => {
    await storage.close();
    t.remove();
  });

  const refused = (pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof RequestError, `expected a RequestError, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  };
  const stored = () =>
    existsSync(join(t.dir, "firmware")) ? readdirSync(join(t.dir, "firmware")).sort() : [];

  it("checks an image and files it by its MD5 identity, with its metadata", async () => {
    const { record, verdicts } = await library.add({
      bytes: v1,
      name: "sensor",
      version: "1.0",
      notes: "  first  ",
    });
    assert.equal(record.id, id1);
    assert.deepEqual(
      {
        name: record.name,
        version: record.version,
        size: record.size,
        notes: record.notes,
        addedAt: record.addedAt,
        build: record.build,
      },
      {
        name: "sensor",
        version: "1.0",
        size: v1.length,
        notes: "first",
        addedAt: 1_700_000_000_000,
        build: "ota",
      },
    );
    assert.ok(verdicts.some((v) => v.check === "md5-trailer" && v.level === "ok"));
    assert.deepEqual(stored(), [`${id1}.bin`]);
    assert.ok(Buffer.from(await library.readImage(id1)).equals(Buffer.from(v1)));
    assert.deepEqual(await storage.firmware.get(id1), record);
  });

  it("takes a canned .ota file and stores the image inside it", async () => {
    const image = buildMicroPythonImage({ size: 50000, seed: 4 });
    const canned = encodeOtaFile(signImage(image, testKey, 256).map((packet, i) => withSeq(i + 1, packet)));
    const { record } = await library.add({ bytes: canned, name: "canned", version: "1" });
    assert.equal(record.id, imageIdentity(image));
    assert.equal(record.size, image.length);
    assert.ok(Buffer.from(await library.readImage(record.id)).equals(Buffer.from(image)));
    await library.remove(record.id);
  });

  it("refuses a normal (non-OTA) build and stores nothing", async () => {
    const normal = buildMicroPythonImage({ size: 60000, seed: 3, ota: false });
    await assert.rejects(
      library.add({ bytes: normal, name: "sensor", version: "1.1" }),
      refused(/normal MicroPython build, not an OTA build[\s\S]*Pass --force/),
    );
    assert.deepEqual(stored(), [`${id1}.bin`]);
    assert.equal((await library.list()).length, 1);
  });

  it("refuses an image whose MD5 trailer does not match, even with force", async () => {
    const corrupt = new Uint8Array(v2);
    corrupt[0x9100] = (corrupt[0x9100] as number) ^ 0xff;
    await assert.rejects(
      library.add({ bytes: corrupt, name: "sensor", version: "1.2", force: true }),
      refused(/does not match the MD5[\s\S]*--force cannot override/),
    );
    assert.deepEqual(stored(), [`${id1}.bin`]);
  });

  it("refuses a file that is not firmware", async () => {
    await assert.rejects(
      library.add({
        bytes: new TextEncoder().encode("hello, this is a text file\n".repeat(100)),
        name: "x",
        version: "1",
      }),
      refused(/is not a firmware image I know/),
    );
  });

  it("refuses unusable names and versions, and duplicates", async () => {
    await assert.rejects(
      library.add({ bytes: v2, name: "my sensor", version: "1" }),
      refused(/firmware name "my sensor" is not usable/),
    );
    await assert.rejects(library.add({ bytes: v2, name: "a@b", version: "1" }), refused(/no "@"/));
    await assert.rejects(
      library.add({ bytes: v2, name: "sensor", version: "" }),
      refused(/version "" is not usable/),
    );
    await assert.rejects(
      library.add({ bytes: v1, name: "sensor", version: "9.9" }),
      refused(/already in the store as sensor 1\.0/),
    );
    await assert.rejects(
      library.add({ bytes: v2, name: "sensor", version: "1.0" }),
      refused(/already has sensor 1\.0/),
    );
    assert.deepEqual(stored(), [`${id1}.bin`]);
  });

  it("finds firmware by identity, prefix, name@version and name", async () => {
    await library.add({ bytes: v2, name: "sensor", version: "2.0" });
    assert.equal((await library.resolve(id2)).version, "2.0");
    assert.equal((await library.resolve(id2.toUpperCase())).version, "2.0");
    assert.equal((await library.resolve(id1.slice(0, 8))).version, "1.0");
    assert.equal((await library.resolve("sensor@1.0")).id, id1);
    assert.equal((await library.resolve("sensor")).id, id2, "a bare name means the newest");
    await assert.rejects(
      library.resolve("sensor@3.0"),
      refused(/No firmware "sensor" version "3\.0" is in the store/),
    );
    await assert.rejects(library.resolve("f".repeat(32)), refused(/No firmware with identity f{32}/));
    await assert.rejects(library.resolve(""), refused(/Name a firmware/));
  });

  it("never hands out an image whose bytes no longer match its identity", async () => {
    const path = library.files.pathOf(id2);
    const tampered = new Uint8Array(v2);
    tampered[0x9200] = (tampered[0x9200] as number) ^ 1;
    writeFileSync(path, tampered);
    await assert.rejects(library.readImage(id2), (error: unknown) => {
      assert.ok(error instanceof FirmwareIntegrityError);
      assert.match(error.message, new RegExp(`does not match firmware identity ${id2}`));
      assert.match(error.message, /will not be pushed/);
      return true;
    });
    writeFileSync(path, v1);
    await assert.rejects(library.readImage(id2), FirmwareIntegrityError);
  });

  it("removes an image and its file unless an active job needs it", async () => {
    const job = await storage.jobs.create(
      {
        id: "j-x",
        deviceId: "dev1",
        firmwareId: id1,
        firmwareName: "sensor",
        firmwareVersion: "1.0",
        firmwareSize: v1.length,
        maxAttempts: 3,
        createdAt: 1,
      },
      { at: 1, kind: "created", message: "", data: null },
    );
    assert.equal(job.ok, true);
    await assert.rejects(library.remove("sensor@1.0"), refused(/target of active job j-x \(dev1\)/));
    const removed = await library.remove("sensor@2.0");
    assert.equal(removed.id, id2);
    assert.deepEqual(stored(), [`${id1}.bin`]);
    assert.equal(await storage.firmware.get(id2), undefined);
  });
});
